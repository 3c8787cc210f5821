"""The keys conditions and templates can read, and what the runtime really provides.

`journeys validate` refuses `trigger.product_id` and `contact.vip` because they are not
in `orchestrator/dsl/roots.py`. That is only right while every builder of a context
(sends, conditions, actions, preview, validate's own sample data) produces exactly
those keys: these tests hold them to the one definition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine
from temporalio.testing import ActivityEnvironment

from orchestrator.activities.actions import ActionActivities
from orchestrator.dsl.roots import (
    CART_KEYS,
    CONTACT_KEYS,
    EVENT_KEYS,
    POINTS_KEYS,
    TEMPLATE_JOURNEY_KEYS,
    coupon_keys,
)
from orchestrator.rendering.catalog import Message
from orchestrator.rendering.preview import contact_from_call, event_from_call
from orchestrator.rendering.samples import sample_context
from orchestrator.store.context import (
    cart_from_events,
    contact_context,
    event_context,
    journey_context,
)
from orchestrator.store.db import session_scope
from orchestrator.store.tables import Contact, Event
from orchestrator.workflows import types as t

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_contact_and_event_of_sends_and_conditions_have_exactly_the_defined_keys(
    sqlite_engine: Engine,
) -> None:
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="ann", email="ann@example.com", traits={"first_name": "Ann"}))
        session.add(
            Event(
                message_id="m1",
                type="track",
                name="Product Added",
                contact_id="ann",
                properties={"product_id": "p1"},
                timestamp=NOW,
                received_at=NOW,
            )
        )
    with session_scope(sqlite_engine) as session:
        contact = session.get(Contact, "ann")
        event = session.get(Event, 1)
        assert tuple(contact_context(contact, session)) == CONTACT_KEYS
        assert tuple(event_context(event)) == EVENT_KEYS
    assert tuple(cart_from_events([])) == CART_KEYS
    assert tuple(journey_context(None, "j", "s")) == TEMPLATE_JOURNEY_KEYS


def test_preview_and_validate_sample_data_have_the_same_keys_as_real_sends(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m").mkdir()
    sample = sample_context(Message(tmp_path, "m"), "Product Added")
    assert set(sample["contact"]) == set(CONTACT_KEYS)
    assert set(sample["event"]) == set(EVENT_KEYS)
    assert set(sample["cart"]) == set(CART_KEYS)
    assert set(sample["journey"]) == set(TEMPLATE_JOURNEY_KEYS)
    assert set(contact_from_call({"userId": "u", "traits": {}})) == set(CONTACT_KEYS)
    assert set(event_from_call({"event": "X", "properties": {}}, "X")) == set(EVENT_KEYS)


def test_actions_keep_on_the_run_exactly_the_keys_validation_lets_templates_read(
    sqlite_engine: Engine,
) -> None:
    with session_scope(sqlite_engine) as session:
        session.add(Contact(id="fay", email="fay@example.com"))
    actions = ActionActivities(sqlite_engine)

    def run(action: dict) -> t.ActionResult:  # type: ignore[type-arg]
        request = t.ActionRequest("wf", 1, "s", "j", "fay", None, action, NOW.isoformat())
        return ActivityEnvironment().run(actions.run_action, request)

    coupon = {
        "type": "issue_coupon",
        "campaign": "c",
        "prefix": "C",
        "discount": {"kind": "percent", "value": 5},
        "save_as": "gift",
    }
    assert run(coupon).saved == sorted(coupon_keys("gift"))
    points = {"type": "award_points", "points": 10, "per": 1, "of": "revenue", "multipliers": []}
    assert run(points).saved == sorted(POINTS_KEYS)


def test_an_identify_calls_traits_are_what_its_event_properties_hold(
    sqlite_engine: Engine,
) -> None:
    """`journeys validate` tells a marketer who writes `event.traits.consent…` in an
    identify-triggered journey to write `event.properties.consent…`: it must hold for a
    real identify call."""
    from orchestrator.api.ingest import store_call
    from orchestrator.api.segment import IdentifyCall
    from orchestrator.dsl.conditions import evaluate

    call = IdentifyCall.model_validate(
        {
            "userId": "ann",
            "traits": {"email": "ann@example.com", "consent": {"email": {"marketing": True}}},
        }
    )
    assert store_call(sqlite_engine, call)
    with session_scope(sqlite_engine) as session:
        stored = session.get(Event, 1)
        assert stored is not None and stored.type == "identify"
        event = event_context(stored)
    advised = "event.properties.consent.email.marketing == true"
    assert evaluate(advised, {"event": event, "trigger": event})
    assert not evaluate("event.properties.traits.consent.email.marketing == true", {"event": event})
