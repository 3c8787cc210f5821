"""The journey diagram (server-side SVG) and the simulator's one-page HTML report.

The stats are made by hand, with the step ids the reporting model derives
(`stats._steps`), so a count drawn on the wrong box, an unlabelled lane or an
unescaped label shows up as a failed assertion, not as a broken page in a browser.
"""

from __future__ import annotations

import copy
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from orchestrator.analytics.diagram import journey_svg
from orchestrator.analytics.stats import (
    Comparison,
    JourneyStats,
    MessageStats,
    SplitStats,
    StepStats,
    VariantStats,
    _steps,
)
from orchestrator.dsl.loader import journey_files, load_journey
from orchestrator.dsl.models import Journey
from orchestrator.simulation.html_report import journey_stats_from_json, render_html

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"


def cart() -> Journey:
    return load_journey(ROOT / "journeys" / "abandoned_cart.yaml").journey


def cart_stats() -> JourneyStats:
    return JourneyStats(
        journey_id="abandoned_cart",
        name="Abandoned cart recovery",
        version=None,
        versions=[1],
        since=None,
        until=None,
        entered=300,
        active=32,
        finished={"completed": 230, "exited": 38},
        exits={"event: Order Completed": 38},
        refused={"re_entry": 4},
        goal="Order Completed",
        converted=42,
        conversion_rate=0.14,
        revenue=5150.5,
        steps=[
            StepStats("steps.0", "wait", 0, "wait 1d", reached=300, waiting_now=12),
            StepStats(
                "reminder",
                "send",
                0,
                "send cart_reminder by email",
                reached=288,
                outcomes={"sent": 280, "suppressed": 8},
            ),
            StepStats(
                "steps.2",
                "wait_for",
                0,
                "wait up to 2d for message reminder to be opened",
                reached=280,
                waiting_now=20,
                outcomes={"engaged:opened": 110, "timeout": 150},
            ),
            StepStats(
                "reminder_push",
                "send",
                1,
                "send cart_reminder by push or sms",
                reached=150,
                outcomes={"sent": 140, "skipped": 10},
            ),
        ],
        messages=[
            MessageStats(
                "reminder",
                "cart_reminder",
                sent=280,
                delivered=270,
                opened=110,
                clicked=37,
                not_sent={"suppressed": 8, "failed": 2},
                not_sent_reasons={"suppressed: consent": 8},
                rates={"open": 0.4, "click": 0.13},
            ),
            MessageStats(
                "reminder_push",
                "cart_reminder",
                sent=140,
                opened=20,
                clicked=5,
                not_sent={"skipped": 10},
                deferred={"quiet_hours": 6},
            ),
        ],
    )


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.find(f"{SVG}title") is not None
    return root


def nodes(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-step", ""): g for g in root.iter(f"{SVG}g") if g.get("data-step")}


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def lanes(root: ET.Element) -> dict[str, str]:
    """Each lane's edge label: {the lane's name: the label drawn}."""
    return {
        g.get("data-lane", ""): " ".join(texts(g))
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "edge-label"
    }


# --- the diagram -----------------------------------------------------------------


def test_a_node_for_every_step_the_stats_count() -> None:
    journey, stats = cart(), cart_stats()
    root = parse(journey_svg(journey, stats))
    # The ids the reporting model derives for this journey are the ones the stats carry...
    assert [s.step_id for s in _steps(journey, {}, {})] == [s.step_id for s in stats.steps]
    # ...and the ones the diagram draws.
    assert set(nodes(root)) == {s.step_id for s in stats.steps}


def test_counts_are_drawn_on_their_step() -> None:
    root = parse(journey_svg(cart(), cart_stats()))
    boxes = nodes(root)
    assert "reached 300 · waiting now 12" in texts(boxes["steps.0"])
    assert "wait 1d" in texts(boxes["steps.0"])
    reminder = texts(boxes["reminder"])
    counted = " · ".join(reminder)  # long counts break between items, never inside one
    assert "send cart_reminder by email" in reminder
    assert "reached 288 · waiting now 0" in reminder
    assert "sent 280 · opened 110 · clicked 37" in counted
    assert "not sent: suppressed 8 · failed 2" in reminder
    assert "reached 280 · waiting now 20" in texts(boxes["steps.2"])
    push = texts(boxes["reminder_push"])
    assert "sent 140 · opened 20 · clicked 5" in " · ".join(push)
    assert not any("280" in t for t in push)
    trigger = next(g for g in root.iter(f"{SVG}g") if g.get("data-node") == "trigger")
    assert "when Product Added" in texts(trigger)
    assert "entered 300" in texts(trigger)
    summary = next(g for g in root.iter(f"{SVG}g") if g.get("data-node") == "summary")
    assert "converted 42 (14 %)" in texts(summary)
    assert "revenue 5,150.50" in texts(summary)


def test_the_wait_for_outcomes_are_labelled_lanes() -> None:
    root = parse(journey_svg(cart(), cart_stats()))
    assert lanes(root) == {"opened": "opened · 110", "timeout (2d)": "timeout (2d) · 150"}


def test_output_is_deterministic() -> None:
    first = journey_svg(cart(), cart_stats())
    assert journey_svg(cart(), copy.deepcopy(cart_stats())) == first
    assert journey_svg(cart(), journey_stats_from_json(cart_stats().to_json())) == first


def test_without_stats_the_journey_alone() -> None:
    root = parse(journey_svg(cart()))
    assert set(nodes(root)) == {"steps.0", "reminder", "steps.2", "reminder_push"}
    assert not any("reached" in t for t in texts(root))
    assert lanes(root) == {"opened": "opened", "timeout (2d)": "timeout (2d)"}


@pytest.mark.parametrize("path", sorted(journey_files([ROOT / "journeys"])), ids=lambda p: p.stem)
def test_every_journey_draws(path: Path) -> None:
    journey = load_journey(path).journey
    root = parse(journey_svg(journey))
    assert set(nodes(root)) == {s.step_id for s in _steps(journey, {}, {})}


EXPERIMENT = """
id: experiment
name: Experiment
trigger: { segment: big_spenders }
steps:
  - id: ab
    split:
      - variant: control
        weight: 1
        then: [{ send: { id: offer_a, channel: email, template: a } }]
      - variant: bold
        weight: 3
        then: [{ send: { id: offer_b, channel: email, template: b } }]
  - id: tier
    branch:
      - if: contact.traits.tier == "gold"
        then: [{ send: { id: gold, channel: email, template: gold } }]
      - if: contact.traits.tier == "silver"
        then: [exit]
    else:
      - wait: 1d
"""


def test_split_variants_and_branch_cases_are_lanes(tmp_path: Path) -> None:
    path = tmp_path / "experiment.yaml"
    path.write_text(textwrap.dedent(EXPERIMENT))
    journey = load_journey(path).journey
    stats = JourneyStats("experiment", "Experiment", None, [1], None, None, entered=160)
    stats.steps = _steps(journey, {}, {})
    by_id = {s.step_id: s for s in stats.steps}
    by_id["ab"].outcomes = {"control": 40, "bold": 120}
    by_id["tier"].outcomes = {"case 1": 5, "case 2": 3, "else": 152}
    root = parse(journey_svg(journey, stats))
    assert set(nodes(root)) == set(by_id) and "steps.1.else.0" in by_id
    drawn = lanes(root)
    assert drawn["control 25 %"] == "control 25 % · 40"
    assert drawn["bold 75 %"] == "bold 75 % · 120"
    assert drawn['if contact.traits.tier == "gold"'].endswith(" · 5")
    assert drawn['if contact.traits.tier == "silver"'].endswith(" · 3")
    assert drawn["else"] == "else · 152"
    # A label cut to fit its lane keeps the whole text as its tooltip.
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert 'if contact.traits.tier == "gold" · 5' in titles
    assert "segment big_spenders" in " ".join(texts(root))


def test_labels_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    text = (ROOT / "journeys" / "abandoned_cart.yaml").read_text()
    path.write_text(text.replace("name: Abandoned cart recovery", "name: 'Cart <&> \"x\"'"))
    journey = load_journey(path).journey
    svg = journey_svg(journey, cart_stats())
    assert "<&>" not in svg
    assert "Cart &lt;&amp;&gt; &quot;x&quot;" in svg
    root = parse(svg)
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == 'Journey Cart <&> "x" (abandoned_cart)'


# --- the HTML report ---------------------------------------------------------------


def report() -> dict[str, Any]:
    stats = cart_stats()
    stats.splits = [
        SplitStats(
            "ab",
            [
                VariantStats("a", 50, 100, 10, 0.1, 500.0, 5.0),
                VariantStats(
                    "b",
                    50,
                    100,
                    20,
                    0.2,
                    900.0,
                    9.0,
                    Comparison("a", 0.1, (0.01, 0.19), True, 4.0, None, False, "b converts better"),
                ),
            ],
        )
    ]
    return {
        "simulation": {
            "id": "sim-1",
            "seed": 7,
            "contacts": 300,
            "days": 30,
            "start": "2027-01-04T00:00:00+00:00",
            "journeys": ["abandoned_cart"],
            "scenario": "default",
        },
        "journeys": [stats.to_json()],
        "time_to_convert": {"abandoned_cart": {"median_hours": 30.5, "p90_hours": 70.0}},
        "messages_by_local_hour": {"abandoned_cart": {"email": [0] * 9 + [50] * 12 + [0] * 3}},
        "samples": [
            {
                "journey": "abandoned_cart",
                "step": "reminder",
                "channel": "email",
                "locale": "en",
                "contact": "sim-0003",
                "content": {
                    "subject": "<script>alert(1)</script> your cart",
                    "text": "Your cart & more",
                    "html": '<html><body><p class="x">Hi</p><script>alert(2)</script></body>',
                },
            },
            {
                "journey": "abandoned_cart",
                "step": "reminder_push",
                "channel": "push",
                "locale": "ar",
                "contact": "sim-0009",
                "content": {"title": "سلة التسوق", "body": "لا تنس سلتك"},
            },
        ],
        "invariants": [
            {
                "name": "no marketing SMS at night",
                "where": "journeys/invariants.yaml:3",
                "checked": 120,
                "violations": 2,
                "examples": [{"contact": "sim-0007", "what": "sms reminder_push at 23:05 local"}],
            },
            {"name": "one reminder a week", "where": "x:9", "checked": 300, "violations": 0},
        ],
        "ok": False,
    }


def test_the_report_escapes_message_content() -> None:
    page = render_html(report(), {"abandoned_cart": cart()})
    assert "<script" not in page.lower()  # the page has no script, and lets none in
    assert "&lt;script&gt;alert(1)&lt;/script&gt; your cart" in page
    assert 'sandbox=""' in page
    assert 'srcdoc="&lt;html&gt;&lt;body&gt;&lt;p class=&quot;x&quot;&gt;Hi' in page
    assert "Content-Security-Policy" in page and "default-src &#x27;none&#x27;" in page
    assert '<pre dir="auto">سلة التسوق</pre>' in page


def test_the_report_draws_the_journey_with_its_counts() -> None:
    page = render_html(report(), {"abandoned_cart": cart()})
    start = page.index("<svg")
    svg = page[start : page.index("</svg>", start) + len("</svg>")]
    root = parse(svg)
    assert root.get("data-journey") == "abandoned_cart"
    assert "reached 288 · waiting now 0" in texts(nodes(root)["reminder"])
    assert "b converts better" in page  # the split's verdict
    assert "suppressed: consent 8, failed 2" in page  # not sent, by reason where known
    assert "quiet_hours 6" in page  # deferred
    assert "30.5 hours" in page and "2.9 days" in page  # time to convert
    assert "09:00 email: 50" in page  # the hour chart's bars
    for fact in ("<dt>seed</dt>", '<dd dir="auto">7</dd>', "2027-01-04T00:00:00+00:00"):
        assert fact in page


def test_the_invariants_table_marks_the_failing_row() -> None:
    page = render_html(report(), {"abandoned_cart": cart()})
    assert '<tr class="fail"><td>no marketing SMS at night</td>' in page
    assert '<tr class="ok"><td>one reminder a week</td>' in page
    assert "✗ 2 violations" in page and "✓ holds" in page
    assert "sms reminder_push at 23:05 local" in page
    assert "1 invariant violated" in page


def test_a_journey_without_its_model_still_reports() -> None:
    page = render_html(report())
    assert "<svg" in page  # the hour chart
    assert "data-journey" not in page
    assert "no diagram" in page


def test_stats_survive_the_json_round_trip() -> None:
    stats = report()["journeys"][0]
    assert journey_stats_from_json(stats).to_json() == stats
