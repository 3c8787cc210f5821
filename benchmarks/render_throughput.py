"""What the bounded sandbox and email post-processing cost per message.

Renders the shipped `cart_reminder` email (layout, partials, a 3-product cart,
Babel filters) for a Russian contact, N times each way, in one run:

- baseline: Jinja's stock `ImmutableSandboxedEnvironment` rendering the same
  parts with the same filters (no budget, no CSS inlining, no text generation);
- ours, parts only: the `Renderer`'s bounded sandbox, parts rendered;
- ours, full: `Renderer.render` as the send activity calls it (CSS inlined,
  plain text generated, limits checked).

SMS and push are measured the same way (stock parts beside ours, full). Prints
renders per second and the ratios. The target (issue 17): the full email pipeline
at 2,000 renders/s or more on one core.

    python benchmarks/render_throughput.py [--count 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.rendering import Renderer
from orchestrator.rendering.formatting import filters
from orchestrator.rendering.samples import sample_context

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from figures import Figure, Report  # noqa: E402

TEMPLATES = ROOT / "templates"
TARGET_PER_SECOND = 2000  # issue 17; 200 was the bar before it
PARTS = {
    "email": ("email.subject", "email.preheader", "email.html", "email.text"),
    "sms": ("sms.body",),
    "push": ("push.title", "push.body", "push.link", "push.image"),
}


def context(renderer: Renderer) -> dict[str, Any]:
    ctx = sample_context(renderer.message("cart_reminder"), "Product Added")
    ctx["contact"]["locale"] = "ru-RU"
    ctx["message"] = {
        "id": "m-1",
        "channel": "email",
        "unsubscribe_url": "https://crm.example.com/u/t",
        "preferences_url": "https://crm.example.com/preferences/t",
        "view_url": "https://crm.example.com/m/t",
        "locale": "ru_RU",
        "lang": "ru",
        "dir": "ltr",
        "currency": "RUB",
        "timezone": "Europe/Moscow",
    }
    ctx["brand"] = renderer.brand()
    return ctx


def timed(count: int, render: Any) -> float:
    render()  # warm the template caches
    start = time.perf_counter()
    for _ in range(count):
        render()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--json", metavar="FILE", help="write the figures (benchmarks/figures.py)")
    args = parser.parse_args()

    renderer = Renderer(TEMPLATES)
    ctx = context(renderer)

    stock = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=lambda name: bool(name) and name.endswith(".html"),
        undefined=StrictUndefined,
    )
    stock.filters.update(filters())

    def stock_parts(channel: str) -> Any:
        names = [f"cart_reminder/ru/{p}" for p in PARTS[channel]]

        def render() -> None:
            for name in names:
                stock.get_template(name).render(ctx)

        return render

    env = renderer._environment(("ru", "en"))

    def ours_parts() -> None:
        for name in PARTS["email"]:
            renderer._render_part(env, f"cart_reminder/ru/{name}", ctx)

    def ours_full(channel: str) -> Any:
        def render() -> None:
            renderer.render("cart_reminder", channel, ctx)

        return render

    results = {
        "email: stock Jinja sandbox, parts only": timed(args.count, stock_parts("email")),
        "email: ours, parts only": timed(args.count, ours_parts),
        "email: ours, full pipeline": timed(args.count, ours_full("email")),
        "sms: stock Jinja sandbox": timed(args.count, stock_parts("sms")),
        "sms: ours, full pipeline": timed(args.count, ours_full("sms")),
        "push: stock Jinja sandbox": timed(args.count, stock_parts("push")),
        "push: ours, full pipeline": timed(args.count, ours_full("push")),
    }
    tracemalloc.start()
    ours_full("email")()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    base = results["email: stock Jinja sandbox, parts only"]
    print(f"cart_reminder (ru, 3 products), {args.count} renders each, one core")
    for name, rate in results.items():
        print(f"  {name:40} {rate:8.0f} /s")
    print(f"  peak memory of one full email render: {peak / 1024:.0f} KiB")
    full = results["email: ours, full pipeline"]
    verdict = "met" if full >= TARGET_PER_SECOND else "NOT met"
    print(f"  ours full / stock parts: {full / base:.2f}")
    print(f"target >= {TARGET_PER_SECOND} full email renders/s on one core: {verdict}")
    report = Report("rendering", settings={"count": args.count, "template": "cart_reminder/ru"})
    report.add(
        Figure(
            "cart email, full pipeline (HTML, CSS inlined, text part), renders/s",
            full,
            "renders/s",
            base,
            target=f">= {TARGET_PER_SECOND} /s",
            met=full >= TARGET_PER_SECOND,
            note="baseline: stock Jinja sandbox rendering the same parts, no post-processing",
        )
    )
    report.add(
        Figure(
            "cart email, parts only (bounded sandbox), renders/s",
            results["email: ours, parts only"],
            "renders/s",
            base,
        )
    )
    for channel in ("sms", "push"):
        report.add(
            Figure(
                f"cart {channel}, full pipeline, renders/s",
                results[f"{channel}: ours, full pipeline"],
                "renders/s",
                results[f"{channel}: stock Jinja sandbox"],
            )
        )
    report.write(args.json)


if __name__ == "__main__":
    main()
