"""examples/storefront: the simulated shop sends what it says it sends, and the store
keeps it as a storefront developer would expect (contacts merged at checkout, carts,
orders, consent, push tokens). The last test runs it against `journeys dev` with the
demo journey, as its README tells a newcomer to (slow)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack import DevStack, subprocess_env
from live_api import serve
from sqlalchemy import Engine
from sqlmodel import select

from examples.storefront.opens import SentEmail, open_emails, opens, sent_emails
from examples.storefront.shoppers import KINDS, plan
from examples.storefront.simulator import segment_client, send
from orchestrator.api import create_app
from orchestrator.store.db import make_engine, session_scope, sqlite_url
from orchestrator.store.tables import Contact, ContactAlias, Event, JourneyRun, Message

KEY = "wk_storefront_example"
ROOT = Path(__file__).resolve().parents[1]
SEED, SHOPPERS = 7, 12


@pytest.fixture
def api_url(engine: Engine) -> Iterator[str]:
    with serve(create_app(engine, [KEY])) as url:
        yield url


def events_of(engine: Engine, contact_id: str) -> list[Event]:
    with session_scope(engine) as session:
        query = select(Event).where(Event.contact_id == contact_id).order_by(Event.id)
        return list(session.exec(query))


def test_the_store_holds_the_sessions_the_simulator_claims(api_url: str, engine: Engine) -> None:
    shoppers = plan(SHOPPERS, SEED)
    assert {s.kind for s in shoppers} == set(KINDS), "pick a seed that has every kind"
    errors: list[Exception] = []
    client = segment_client(api_url, KEY, errors)
    send(shoppers, client)
    client.join()
    assert errors == []

    with session_scope(engine) as session:
        assert session.exec(select(Event)).all().__len__() == sum(len(s.calls) for s in shoppers)
    for shopper in shoppers:
        events = events_of(engine, shopper.contact_id)
        assert [(e.type, e.name) for e in events] == [
            (c.method, c.kwargs.get("event") or c.kwargs.get("name")) for c in shopper.calls
        ], shopper.describe()
        names = {e.name: e.properties for e in events if e.type == "track"}
        with session_scope(engine) as session:
            contact = session.get(Contact, shopper.contact_id)
            assert contact is not None
            merged = session.get(ContactAlias, shopper.anonymous_id)
            if shopper.user_id:
                # Signed in at checkout: one contact, the anonymous browsing on it.
                assert session.get(Contact, shopper.anonymous_id) is None
                assert merged is not None and merged.contact_id == shopper.user_id
                assert contact.email == shopper.email
                assert contact.consent["email"] == {"marketing": shopper.marketing_email}
            else:
                assert merged is None and contact.email is None
            assert contact.timezone and contact.locale
            assert contact.push_tokens == ([shopper.device_token] if shopper.device_token else [])
        if shopper.cart_id:
            assert names["Product Added"]["cart_id"] == shopper.cart_id
        else:
            assert "Product Added" not in names
        if shopper.order_id:
            order = names["Order Completed"]
            assert (order["order_id"], order["revenue"]) == (shopper.order_id, shopper.revenue)
        else:
            assert "Order Completed" not in names


def test_the_same_seed_plans_the_same_shoppers() -> None:
    def calls(seed: int) -> list[object]:
        return [(s.anonymous_id, s.kind, s.calls) for s in plan(8, seed)]

    assert calls(3) == calls(3)
    assert calls(3) != calls(4)


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.storefront", *args],
        cwd=cwd,
        env=subprocess_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_sends_shoppers_and_reports_a_wrong_key(api_url: str, engine: Engine) -> None:
    done = run_cli("--host", api_url, "--write-key", KEY, "--shoppers", "3", "--seed", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("3 shoppers, ")
    calls = sum(len(s.calls) for s in plan(3, 2))
    with session_scope(engine) as session:
        assert len(session.exec(select(Event)).all()) == calls

    wrong = run_cli("--host", api_url, "--write-key", "wk_wrong", "--shoppers", "1")
    assert wrong.returncode == 1
    assert "invalid or revoked write key" in wrong.stderr


def test_opens_send_email_opened_for_the_chosen_emails(
    api_url: str, engine: Engine, tmp_path: Path
) -> None:
    emails = [SentEmail(f"msg-{n}", f"shopper-5-{n:03d}@example.com") for n in range(12)]
    log = tmp_path / "dev.log"
    log.write_text(
        "journey: abandoned_cart_fast v1\n"
        + "".join(f"--- email to {e.to} (message {e.message_id})\nsubject: hi\n" for e in emails)
        + "--- email to someone@else.example (message msg-x)\n"
        + "--- push to fcm-1 (message msg-push)\n"
    )
    done = run_cli(
        "opens", "--host", api_url, "--write-key", KEY, "--log", str(log), "--seed", "5",
        "--rate", "0.5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    chosen = [e for e in emails if opens(e.message_id, 5, 0.5)]
    assert 0 < len(chosen) < len(emails)
    assert done.stdout.splitlines()[-1] == f"opened {len(chosen)} emails"
    with session_scope(engine) as session:
        stored = session.exec(select(Event).where(Event.name == "Email Opened")).all()
        assert sorted((e.contact_id, e.properties["message_id"]) for e in stored) == sorted(
            (e.user_id, e.message_id) for e in chosen
        )


# --- with `journeys dev`, as the README tells ---------------------------------------

FAST_JOURNEY = ROOT / "examples" / "storefront" / "journeys" / "abandoned_cart_fast.yaml"


@pytest.mark.slow
def test_journeys_react_to_the_simulated_shop(tmp_path: Path) -> None:
    """The demo journey, its waits cut to seconds: checkout leavers get the reminder
    email; those who open it get no push; buyers and anonymous carts get nothing."""
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    text = FAST_JOURNEY.read_text()
    text = re.sub(r"wait: \d+s", "wait: 3s", text).replace("timeout: 40s", "timeout: 20s")
    (journeys / FAST_JOURNEY.name).write_text(text)
    stack = DevStack(
        tmp_path, extra_args=("--journeys", str(journeys), "--templates", str(ROOT / "templates"))
    )
    with stack:
        shop = run_cli("--host", stack.api_url, "--write-key", stack.write_key, "--seed", "11")
        assert shop.returncode == 0, shop.stderr
        shoppers = plan(20, 11)
        reminded = [s for s in shoppers if s.kind == "leaves_checkout" and s.marketing_email]
        assert reminded, "pick a seed with checkout leavers who accept marketing email"
        log = stack.log_path
        assert log is not None
        _wait_for(lambda: _emails_to(stack.output(), reminded), 60, stack, lambda: _outbox(stack))
        # Of the two app users among them, the first opens the email, the second does not.
        on_app = [s.user_id for s in reminded if s.device_token]
        assert len(on_app) >= 2, "pick a seed with two app users among the checkout leavers"
        errors: list[Exception] = []
        client = segment_client(stack.api_url, stack.write_key, errors)
        opened = open_emails(client, log, 0, 0, choose=lambda e: e.user_id == on_app[0])
        client.join()
        assert [e.user_id for e in opened] == [on_app[0]] and errors == []
        # Wait until every run has ended: the reminded ones after the open or the timeout.
        db = make_engine(sqlite_url(stack.data_dir))
        try:
            _wait_for(lambda: _all_runs_ended(db), 90, stack)
            with session_scope(db) as session:
                messages = session.exec(select(Message)).all()
        finally:
            db.dispose()
    by_contact: dict[str, set[str]] = {}
    for m in messages:
        if m.status not in ("suppressed", "skipped", "failed"):
            by_contact.setdefault(m.contact_id, set()).add(m.step_id)
    for shopper in shoppers:
        # Runs start under the anonymous id (Product Added comes before sign-in).
        got = by_contact.get(shopper.anonymous_id, set()) | by_contact.get(
            shopper.contact_id, set()
        )
        if shopper in reminded:
            pushed = shopper.device_token is not None and shopper.user_id != on_app[0]
            expect = {"reminder", "reminder_push"} if pushed else {"reminder"}
            assert got == expect, (shopper.describe(), got, stack.report())
        else:
            assert "reminder" not in got, (shopper.describe(), got)


def _emails_to(output: str, shoppers: list) -> list[SentEmail] | None:  # type: ignore[type-arg]
    emails = sent_emails(output)
    wanted = {s.email for s in shoppers}
    found = [e for e in emails if e.to in wanted]
    return found if {e.to for e in found} == wanted else None


def _all_runs_ended(db: Engine) -> bool:
    with session_scope(db) as session:
        runs = session.exec(select(JourneyRun)).all()
        return bool(runs) and all(r.status != "active" for r in runs)


def _outbox(stack: DevStack) -> str:
    """Every message the store holds, to tell a send that failed from one not printed."""
    db = make_engine(sqlite_url(stack.data_dir))
    try:
        with session_scope(db) as session:
            rows = session.exec(select(Message).order_by(Message.created_at)).all()
            return "\n".join(
                f"{m.contact_id} {m.step_id} {m.channel} {m.status} {m.error or ''}" for m in rows
            )
    finally:
        db.dispose()


def _wait_for(probe, timeout: float, stack: DevStack, explain=lambda: ""):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"not seen within {timeout:.0f}s\n{explain()}\n{stack.report()}")
