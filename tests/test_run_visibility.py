"""What ran and why: `journeys runs` shows how each run's last message ended, and a send
that failed is logged once, at WARNING, with its journey, step, contact and reason."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from harness import Bench, write_journey, write_message
from sqlalchemy import Engine, event
from sqlmodel import select

from channels.base import Channel, OutgoingMessage, Receipt
from channels.errors import PermanentChannelError
from orchestrator.cli import main
from orchestrator.cli.runs_table import list_runs
from orchestrator.store.db import session_scope
from orchestrator.store.tables import JourneyRun, Message

SENDING_LOG = "orchestrator.activities.sending"

PRODUCT_VIEWED = """
# A follow-up to someone who looked at a product.
id: product_viewed
name: Viewed a product
trigger: { event: Product Viewed }
entry: { re_entry: always }
steps:
  - send: { id: follow_up, channel: email, template: viewed }
"""
VIEWED = {
    "email.subject": "{{ event.properties.name }} is still here",
    "email.text": "It costs {{ event.properties.price | money }}.",
    "sample.yaml": "event:\n  properties: {name: Red shoes, price: 59.9}\n",
}


def runs_cli(engine: Engine, *args: str) -> str:
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["runs", *args], env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return result.stdout


def table(output: str) -> dict[str, str]:
    """`journeys runs` output: the `last message` cell of each contact's run."""
    header, *lines = output.splitlines()
    start = header.index("last message")
    return {line.split()[2]: line[start:].strip() for line in lines}


# --- the example, end to end -----------------------------------------------


async def test_a_product_viewed_without_the_price_shows_failed_with_its_reason(
    ts_env: Any, engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    templates = tmp_path / "templates"
    write_message("viewed", VIEWED, templates)
    bench = Bench(ts_env, engine, tmp_path / "journeys", templates)
    write_journey(bench.journeys_dir, "product_viewed", PRODUCT_VIEWED)
    caplog.set_level(logging.WARNING)
    bench.deploy()  # it deploys, warning that a view without a price (or name) fails
    deployed = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [m.split(": warning: ")[1].split(" may be missing")[0] for m in deployed] == [
        "event.properties.name",  # email.subject
        "event.properties.price",  # email.text
    ]
    caplog.clear()
    async with bench.worker():
        await bench.identify("ann", email="ann@example.com")
        await bench.identify("bob", email="bob@example.com")
        await bench.track("ann", "Product Viewed", name="Red shoes")  # no price
        await bench.track("bob", "Product Viewed", name="Hat", price=20)
        assert await bench.result("product_viewed", "ann") == "completed"
        assert await bench.result("product_viewed", "bob") == "completed"

    reason = "template viewed: undefined variable: event.properties.price (viewed/email.text:1)"
    [failed] = bench.messages("ann")
    assert (failed.status, failed.error) == ("failed", reason)

    shown = table(runs_cli(engine))
    assert shown["ann"] == "failed: template viewed: undefined variable: event.properties.price …"
    assert shown["bob"] == "sent"
    [ann] = [r for r in json.loads(runs_cli(engine, "--json")) if r["contact"] == "ann"]
    assert ann["last_message"]["outcome"] == f"failed: {reason}"
    assert ann["last_message"]["step"] == "follow_up"

    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage()) for r in warned] == [
        (
            SENDING_LOG,
            f"send failed: journey product_viewed, step follow_up, contact ann: {reason}",
        )
    ]


class Refusing(Channel):
    """A provider that refuses every address for good."""

    name: ClassVar[str] = "refusing"
    serves: ClassVar[tuple[str, ...]] = ("email", "push", "sms")

    def send(self, message: OutgoingMessage) -> Receipt:
        raise PermanentChannelError(
            f"invalid address {message.to}", provider="refusing", reason="invalid_recipient"
        )


async def test_a_provider_refusal_is_logged_once_without_a_traceback(
    ts_env: Any, sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    templates = tmp_path / "templates"
    write_message("viewed", VIEWED, templates)
    bench = Bench(ts_env, sqlite_engine, tmp_path / "journeys", templates)
    write_journey(bench.journeys_dir, "product_viewed", PRODUCT_VIEWED)
    bench.deploy()  # (warns about the unguarded name and price: the test above)
    caplog.clear()
    caplog.set_level(logging.WARNING)
    async with bench.worker({"email": Refusing()}):
        await bench.identify("cy", email="cy@example.com")
        await bench.track("cy", "Product Viewed", name="Hat", price=20)
        assert await bench.result("product_viewed", "cy") == "completed"

    [refused] = bench.messages("cy")
    assert refused.status == "failed"
    assert refused.error == "invalid_recipient: invalid address <recipient>"
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.getMessage(), r.exc_info) for r in warned] == [
        (
            SENDING_LOG,
            "send failed: journey product_viewed, step follow_up, contact cy: "
            "invalid_recipient: invalid address <recipient>",
            None,
        )
    ]
    assert table(runs_cli(sqlite_engine))["cy"] == (
        "failed: invalid_recipient: invalid address <recipient>"
    )


# --- every outcome, from stored rows ------------------------------------------------

T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def store_run(engine: Engine, contact: str, *messages: dict[str, Any], entry: int = 1) -> None:
    """A run of `contact` entered at T0 (+ entry minutes) with `messages`, in order."""
    wid = f"journey:promo:{contact}"
    with session_scope(engine) as session:
        session.add(
            JourneyRun(
                workflow_id=wid,
                entry_seq=entry,
                journey_id="promo",
                version=1,
                contact_id=contact,
                entered_at=T0 + timedelta(minutes=entry),
            )
        )
        for n, fields in enumerate(messages):
            step = fields.pop("step", f"step{n}")
            session.add(
                Message(
                    id=f"{contact}-{entry}-{n}",
                    idempotency_key=f"{wid}:{step}:{entry}",
                    workflow_id=wid,
                    entry_seq=entry,
                    step_id=step,
                    journey_id="promo",
                    contact_id=contact,
                    channel="email",
                    adapter="console",
                    template="offer",
                    created_at=T0 + timedelta(minutes=entry, seconds=n),
                    **fields,
                )
            )


def test_runs_show_each_way_a_last_message_ends(engine: Engine) -> None:
    long_reason = "template offer: undefined variable: contact.traits.loyalty_tier " + "x" * 80
    store_run(engine, "sent", {"status": "opened"})
    store_run(engine, "failed", {"status": "failed", "error": long_reason})
    store_run(
        engine,
        "suppressed",
        {"status": "suppressed", "error": "email address on the suppression list (bounced)"},
    )
    store_run(engine, "skipped", {"status": "skipped", "error": "marketing cap reached: 3/24h"})
    until = datetime(2026, 11, 23, 7, 0, tzinfo=UTC).isoformat()
    store_run(
        engine,
        "deferred",
        {
            "status": "deferred",
            "error": f"quiet hours 21:00-08:00 in Europe/Belgrade; deferred until {until}",
            "timeline": [
                {"status": "pending", "at": T0.isoformat()},
                {
                    "status": "deferred",
                    "check": "quiet_hours",
                    "detail": "quiet hours 21:00-08:00 in Europe/Belgrade",
                    "until": until,
                },
            ],
        },
    )
    store_run(engine, "nothing")
    # The last message counts: a failure retried by a later step that went out.
    store_run(engine, "later", {"status": "failed", "error": "no address"}, {"status": "sent"})
    # Each entry its own messages: the earlier entry's failure is not this entry's.
    store_run(engine, "again", {"status": "failed", "error": "render"})
    store_run(engine, "again", {"status": "sent"}, entry=2)

    output = runs_cli(engine, "--limit", "100")
    shown = table(output)
    assert shown["sent"] == "opened"
    assert shown["suppressed"] == "suppressed: email address on the suppression list (bounced)"
    assert shown["skipped"] == "skipped: marketing cap reached: 3/24h"
    # The time says its zone: 07:00 UTC is the 08:00 the quiet hours end at in Belgrade.
    assert shown["deferred"] == (
        "deferred until 2026-11-23 07:00 UTC (quiet hours 21:00-08:00 in Europe/Belgrade)"
    )
    assert shown["nothing"] == "-"
    assert shown["later"] == "sent"
    assert shown["failed"].startswith("failed: template offer: undefined variable: contact.")
    assert shown["failed"].endswith(" …") and len(shown["failed"]) <= 80
    again = [line.split()[-1] for line in output.splitlines() if " again " in line]
    assert again == ["sent", "render"]  # newest entry first

    by_contact = {r["contact"]: r for r in json.loads(runs_cli(engine, "--json"))}
    assert by_contact["failed"]["last_message"]["reason"] == long_reason
    assert by_contact["failed"]["last_message"]["outcome"] == f"failed: {long_reason}"
    assert by_contact["deferred"]["last_message"]["deferred_until"] == until
    assert by_contact["nothing"]["last_message"] is None


def test_last_messages_are_read_in_one_query_however_many_runs(engine: Engine) -> None:
    from orchestrator.cli.runs_table import last_messages

    for n in range(120):
        store_run(engine, f"c{n:03}", {"status": "sent"}, {"status": "failed", "error": "no"})
    runs = list_runs(engine, limit=1000)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        found = last_messages(engine, runs)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(found) == 120
    assert {m.outcome for m in found.values()} == {"failed: no"}
    assert len([s for s in statements if "FROM messages" in s]) == 1


def test_stored_control_characters_are_shown_escaped_never_sent_to_the_terminal(
    engine: Engine,
) -> None:
    """A contact id stored before ingest refused control characters (or a provider's error
    text) must not reach the terminal raw: an OSC sequence retitled the window of whoever
    ran `journeys runs`, a line break forged a row. Shown escaped, one row per run."""
    osc = "att\x1b]0;pwned\x07"
    store_run(engine, osc, {"status": "failed", "error": "relay said\r\nX-Forged: yes"})
    store_run(engine, "bidi\u202etxt.exe", {"status": "sent"})
    output = runs_cli(engine)
    assert not any(c in output for c in "\x1b\x07\r\u202e"), repr(output)
    assert len(output.splitlines()) == 3  # the header and one line per run
    shown = table(output)
    assert shown[r"att\x1b]0;pwned\x07"] == r"failed: relay said\r\nX-Forged: yes"
    assert r"bidi\u202etxt.exe" in shown
    # JSON output is JSON: its strings carry the characters escaped by the encoder.
    contacts = {r["contact"] for r in json.loads(runs_cli(engine, "--json"))}
    assert contacts == {osc, "bidi\u202etxt.exe"}


def refused_runs(engine: Engine, *args: str) -> str:
    """The one error line of a `journeys runs` that refuses its options."""
    url = engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["runs", *args], env={"DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert result.stdout == "", result.stdout
    [line] = result.stderr.strip().splitlines()
    return line


def test_runs_filter_by_how_the_last_message_ended(engine: Engine) -> None:
    """The review's `journeys runs --status failed`: what it meant is this."""
    store_run(engine, "ann", {"status": "failed", "error": "template offer: no price"})
    store_run(engine, "bob", {"status": "sent"})
    store_run(engine, "cid", {"status": "failed", "error": "no address"}, {"status": "sent"})
    store_run(engine, "dan")
    store_run(engine, "eve", {"status": "failed", "error": "render"})
    store_run(engine, "eve", {"status": "opened"}, entry=2)
    store_run(engine, "fay", {"status": "failed", "error": "no address"}, entry=3)

    def contacts(*args: str) -> list[str]:
        output = runs_cli(engine, *args)
        if output.strip() == "no journey runs":
            return []
        return [line.split()[2] for line in output.splitlines()[1:]]

    # Only the last message counts, per entry; newest first.
    assert contacts("--last-message", "failed") == ["fay", "eve", "ann"]
    assert contacts("--last-message", "sent") == ["cid", "bob"]
    assert contacts("--last-message", "sent", "--last-message", "opened") == [
        "eve",
        "cid",
        "bob",
    ]
    assert contacts("--last-message", "none") == ["dan"]
    assert contacts("--last-message", "failed", "--contact", "eve") == ["eve"]
    assert contacts("--last-message", "failed", "--status", "completed") == []
    # The limit counts the runs that match, not the runs before filtering.
    assert contacts("--last-message", "failed", "--limit", "2") == ["fay", "eve"]
    [failed] = json.loads(
        runs_cli(engine, "--last-message", "failed", "--contact", "ann", "--json")
    )
    assert failed["last_message"]["outcome"] == "failed: template offer: no price"


def test_runs_refuse_a_status_or_outcome_they_do_not_know(engine: Engine) -> None:
    store_run(engine, "ann", {"status": "failed", "error": "no address"})
    assert refused_runs(engine, "--status", "failed") == (
        "error: --status failed: runs are active, completed or exited; "
        "for runs whose last message is failed: --last-message failed"
    )
    assert refused_runs(engine, "--status", "actve") == (
        "error: --status actve: runs are active, completed or exited"
    )
    assert refused_runs(engine, "--last-message", "faild") == (
        "error: --last-message faild: not a way a message ends; use one of sent, delivered, "
        "opened, clicked, replied, bounced, failed, suppressed, skipped, deferred, unknown, "
        "pending, queued, sending, or none (no message yet)"
    )
    # A status a hand-written Python journey recorded is one the store has: accepted.
    with session_scope(engine) as session:
        run = session.exec(select(JourneyRun)).one()
        run.status = "escalated"
    assert runs_cli(engine, "--status", "escalated").splitlines()[1].split()[:4] == [
        "promo",
        "v1",
        "ann",
        "escalated",
    ]
    assert refused_runs(engine, "--status", "failed").startswith(
        "error: --status failed: runs are active, completed, exited or escalated;"
    )
