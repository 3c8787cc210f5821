"""The provider pauses every worker shares (store/provider_pauses.py, activities/provider_gate.py),
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from orchestrator.activities.provider_gate import ProviderGate
from orchestrator.store.db import session_scope
from orchestrator.store.provider_pauses import pause_provider, provider_pauses
from orchestrator.store.tables import ProviderPause, utcnow


def test_the_longest_wait_heard_wins_and_past_pauses_are_not_held(engine: Engine) -> None:
    with session_scope(engine) as session:
        pause_provider(session, "sendgrid", 30, "429")
    with session_scope(engine) as session:
        pause_provider(session, "sendgrid", 5, "429 again")  # shorter: the 30 s stays
        pause_provider(session, "twilio", 60, "20429")
        session.add(ProviderPause(provider="fcm", until=utcnow() - timedelta(seconds=1)))
    with session_scope(engine) as session:
        held = provider_pauses(session)
        reason = session.get(ProviderPause, "sendgrid").reason  # type: ignore[union-attr]
    assert set(held) == {"sendgrid", "twilio"}
    assert timedelta(seconds=28) < held["sendgrid"] - utcnow() <= timedelta(seconds=30)
    assert timedelta(seconds=58) < held["twilio"] - utcnow() <= timedelta(seconds=60)
    assert reason == "429"
    with session_scope(engine) as session:
        pause_provider(session, "sendgrid", 90, "429 longer")
    with session_scope(engine) as session:
        assert provider_pauses(session)["sendgrid"] - utcnow() > timedelta(seconds=88)


def test_a_pause_in_one_process_holds_the_others_after_their_next_read(engine: Engine) -> None:
    told, other, cached = (
        ProviderGate(engine),
        ProviderGate(engine, refresh=0),
        ProviderGate(engine),
    )
    assert cached.wait_time("sendgrid") == 0  # read now: nothing held; next read in 1 s
    told.pause("sendgrid", 20, "429")
    assert 19 < told.wait_time("sendgrid") <= 20
    assert 19 < other.wait_time("sendgrid") <= 20
    assert other.wait_time("twilio") == 0
    assert cached.wait_time("sendgrid") == 0  # within its refresh interval: not read yet


def test_without_a_store_the_pause_is_the_process_own() -> None:
    gate = ProviderGate()
    gate.pause("sendgrid", 10)
    assert 9 < gate.wait_time("sendgrid") <= 10
    assert ProviderGate().wait_time("sendgrid") == 0


def test_a_pause_is_capped_so_one_long_wait_cannot_hold_a_provider_for_hours(
    engine: Engine,
) -> None:
    gate = ProviderGate(engine, refresh=0)
    gate.pause("twilio", 86400, "30001")  # the message itself still waits its full day
    assert 890 < gate.wait_time("twilio") <= 900
    assert 890 < ProviderGate(engine, refresh=0).wait_time("twilio") <= 900
