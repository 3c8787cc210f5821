"""What the bounded sandbox and email post-processing cost per message.

Renders the shipped `cart_reminder` email (layout, partials, a 3-product cart,
Babel filters) for a Russian contact, N times each way, in one run:

- baseline: Jinja's stock `ImmutableSandboxedEnvironment` rendering the same
  parts with the same filters (no budget, no CSS inlining, no text generation);
- ours, parts only: the `Renderer`'s bounded sandbox, parts rendered;
- ours, full: `Renderer.render` as the send activity calls it (CSS inlined,
  plain text generated, limits checked).

Prints renders per second and the ratios. The target: the full pipeline stays
above 200 emails/s on one core, i.e. rendering is never what limits sending.

    python benchmarks/render_throughput.py [--count 2000]
"""

from __future__ import annotations

import argparse
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
TEMPLATES = ROOT / "templates"
TARGET_PER_SECOND = 200


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
    args = parser.parse_args()

    renderer = Renderer(TEMPLATES)
    ctx = context(renderer)
    parts = [f"cart_reminder/ru/email.{p}" for p in ("subject", "preheader", "html", "text")]

    stock = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=lambda name: bool(name) and name.endswith(".html"),
        undefined=StrictUndefined,
    )
    stock.filters.update(filters())

    def baseline() -> None:
        for name in parts:
            stock.get_template(name).render(ctx)

    variant = renderer.message("cart_reminder").choose(["ru"], "email")
    assert variant is not None
    env = renderer._environment(("ru", "en"))

    def ours_parts() -> None:
        for name in parts:
            renderer._render_part(env, name, ctx)

    def ours_full() -> None:
        renderer.render("cart_reminder", "email", ctx)

    results = {
        "baseline (stock sandbox)": timed(args.count, baseline),
        "ours, parts only": timed(args.count, ours_parts),
        "ours, full pipeline": timed(args.count, ours_full),
    }
    tracemalloc.start()
    ours_full()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    base = results["baseline (stock sandbox)"]
    print(f"cart_reminder email (ru, 3 products), {args.count} renders each")
    for name, rate in results.items():
        print(f"  {name:26} {rate:8.0f} /s   {rate / base:5.2f}x baseline")
    print(f"  peak memory of one full render: {peak / 1024:.0f} KiB")
    full = results["ours, full pipeline"]
    verdict = "met" if full >= TARGET_PER_SECOND else "NOT met"
    print(f"target >= {TARGET_PER_SECOND} full renders/s on one core: {verdict}")


if __name__ == "__main__":
    main()
