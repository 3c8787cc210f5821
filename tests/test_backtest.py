"""`journeys backtest`: a recorded week of abandoned carts replayed through the journey.

Four shoppers, numbers a marketer can check by hand against journeys/abandoned_cart.yaml
(email 24 h after the cart, push 2 days later unless the email was opened, out on an
order):

- ann bought 3 h after her cart: no message, converted;
- cy never bought: the email at 24 h, the push at 72 h (to her app's token);
- bob opened the recorded reminder an hour after the 24 h mark: the open is put on the
  simulated email, so he gets the email only;
- dee bought on day 2: the email, then converted after it.

So 4 entered, 3 emails, 1 push to 3 distinct contacts, 2 converted (50 + 80).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from orchestrator.api.ingest import store_call
from orchestrator.api.segment import CALLS
from orchestrator.cli.main import main
from orchestrator.simulation.backtest import _from_events
from orchestrator.store.db import make_engine, migrate, sqlite_url
from orchestrator.store.tables import ORIGIN_CLIENT, ORIGIN_INTERNAL, Event

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)  # a Monday, mid-morning (quiet hours: none)


def _call(kind: str, user: str, at: timedelta, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "userId": user,
        "messageId": f"rec-{user}-{n}",
        "timestamp": (T0 + at).isoformat(),
        **fields,
    }


def _identify(user: str, at: timedelta, token: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"timezone": "Europe/London", "locale": "en"}
    if token:
        context["device"] = {"token": token}
    traits = {"email": f"{user}@example.com", "first_name": user.title()}
    return _call("identify", user, at, 0, traits=traits, context=context)


def _cart(user: str, at: timedelta) -> dict[str, Any]:
    props = {"cart_id": f"c-{user}", "name": "Linen shirt", "price": 45, "product_id": "sku-1"}
    return _call("track", user, at, 1, event="Product Added", properties=props)


def _order(user: str, at: timedelta, revenue: float) -> dict[str, Any]:
    props = {"order_id": f"o-{user}", "revenue": revenue, "cart_id": f"c-{user}"}
    return _call("track", user, at, 2, event="Order Completed", properties=props)


def recording() -> list[dict[str, Any]]:
    h = timedelta(hours=1)
    m = timedelta(minutes=1)
    opened = {"message_id": "msg-from-last-year"}  # no such message in the simulation
    return [
        _identify("ann", 0 * m),
        _cart("ann", 1 * m),
        _identify("cy", 2 * m, token="tok-cy"),
        _cart("cy", 3 * m),
        _identify("bob", 4 * m, token="tok-bob"),
        _cart("bob", 5 * m),
        _identify("dee", 6 * m),
        _cart("dee", 7 * m),
        _order("ann", 1 * m + 3 * h, 50.0),
        _call("track", "bob", 5 * m + 25 * h, 3, event="Email Opened", properties=opened),
        _order("dee", 7 * m + 48 * h, 80.0),
    ]


def _write(path: Path, calls: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in calls))
    return path


def _live_store(data_dir: Path, calls: list[dict[str, Any]]) -> Path:
    """A live store holding the recording, as the API would have stored it."""
    engine = make_engine(sqlite_url(data_dir))
    migrate(engine)
    for raw in calls:
        store_call(engine, CALLS[raw["type"]].model_validate(raw))
    engine.dispose()
    return data_dir / "journeys.db"


def _snapshot(db: Path) -> tuple[list[str], float, int, dict[str, int]]:
    connection = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        tables = [
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        counts = {
            t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables
        }
    finally:
        connection.close()
    files = sorted(p.name for p in db.parent.iterdir() if p.name != "simulations")
    return files, db.stat().st_mtime_ns, db.stat().st_size, counts


def _backtest(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["backtest", "abandoned_cart", "--journeys", str(ROOT / "journeys"), "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _check_numbers(report: dict[str, Any]) -> None:
    [stats] = report["journeys"]
    assert stats["entered"] == 4
    assert stats["converted"] == 2
    assert stats["revenue"] == 130.0
    sent = {m["step_id"]: (m["sent"], m["by_channel"]) for m in stats["messages"]}
    assert sent == {"reminder": (3, {"email": 3}), "reminder_push": (1, {"push": 1})}
    b = report["backtest"]
    assert b["would_send"] == {
        "messages": 4,
        "contacts": 3,
        "by_step": {"reminder": {"email": 3}, "reminder_push": {"push": 1}},
    }
    converted = {c["contact"]: (c["revenue"], c["messages_before"]) for c in b["converted"]}
    assert converted == {"ann": (50.0, 0), "dee": (80.0, 1)}
    assert b["replayed"]["engagement_mapped"] == 1
    assert b["replayed"]["engagement_dropped"] == 0
    assert b["nothing_sent"] is True and b["live_store_written"] is False
    assert {(s["step"], s["channel"]) for s in b["samples"]} == {
        ("reminder", "email"),
        ("reminder_push", "push"),
    }


def test_backtest_over_a_recorded_ndjson_file(tmp_path: Path) -> None:
    live = tmp_path / "live"
    db = _live_store(live, [_identify("someone", timedelta())])
    before = _snapshot(db)
    events = _write(tmp_path / "week.ndjson", recording())

    report = _backtest("--events", str(events), "--data-dir", str(live))

    _check_numbers(report)
    assert report["backtest"]["recorded"]["calls"] == 11
    assert _snapshot(db) == before  # the live store: not one row, not one byte, no new file
    assert (live / "simulations" / "backtest-abandoned_cart" / "journeys.db").is_file()


def test_backtest_over_the_stores_own_events(tmp_path: Path) -> None:
    live = tmp_path / "live"
    db = _live_store(live, recording())
    before = _snapshot(db)

    report = _backtest("--from", "2025-03-03", "--to", "2025-03-09", "--data-dir", str(live))

    _check_numbers(report)
    assert _snapshot(db) == before
    # Its copies of live contacts do not outlive the report (unless --keep).
    assert report["backtest"]["simulation_store"] is None
    assert not (live / "simulations" / "backtest-abandoned_cart").exists()


def test_a_bad_line_is_named_and_nothing_runs(tmp_path: Path) -> None:
    calls = [json.dumps(c) for c in recording()[:4]]
    calls[1] = json.dumps({**recording()[1], "userId": ""})  # line 2: nobody
    calls.insert(3, "{not json")  # line 4
    events = tmp_path / "bad.ndjson"
    events.write_text("\n".join(calls) + "\n")

    result = CliRunner().invoke(
        main,
        ["backtest", "abandoned_cart", "--events", str(events), "--data-dir", str(tmp_path)],
    )

    assert result.exit_code == 1
    assert f"{events}:2: " in result.output and "userId or anonymousId" in result.output
    assert f"{events}:4: not JSON" in result.output
    assert "nothing was run" in result.output
    assert not (tmp_path / "simulations").exists()


def test_events_or_a_period_not_both(tmp_path: Path) -> None:
    events = _write(tmp_path / "week.ndjson", recording())
    both = ["--events", str(events), "--from", "2025-03-03", "--to", "2025-03-04"]
    for args in (both, [], ["--from", "2025-03-03"]):
        result = CliRunner().invoke(main, ["backtest", "abandoned_cart", *args])
        assert result.exit_code == 1
        assert "--events" in result.output or "--to" in result.output


def test_provider_reports_about_messages_replay_and_our_other_events_do_not() -> None:
    def row(name: str, origin: str, **properties: Any) -> Event:
        return Event(
            message_id=f"{origin}:{name}",
            origin=origin,
            type="track",
            name=name,
            contact_id="cy",
            properties=properties,
            timestamp=T0,
        )

    recording = _from_events(
        [
            row("Product Added", ORIGIN_CLIENT, cart_id="c1"),
            row("Email Opened", ORIGIN_INTERNAL, message_id="old-1"),
            row("Segment Entered", ORIGIN_INTERNAL, segment="vip"),
            row("SMS Received", ORIGIN_INTERNAL, body="hi"),
        ],
        "test",
    )

    assert [(r.call.name, r.internal) for r in recording.calls] == [
        ("Product Added", False),
        ("Email Opened", True),
    ]
    assert recording.skipped == {"Segment Entered": 1, "SMS Received": 1}
