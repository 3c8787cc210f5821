"""A simulation's report: the reporting model of live journeys, read from the
simulation's own store, plus what only a simulation can show.

The journeys' numbers are `analytics.stats.journey_stats`, exactly what `journeys
stats` prints for live runs; added here: messages by hour of the contact's local day,
a rendered sample of each message, and the invariants. Nothing in the report depends
on when it was made or on random ids (message ids, click tokens and coupon codes are
masked in samples), so the same seed gives the same report, byte for byte.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from ..analytics.stats import journey_stats
from ..services.zones import zone_of
from ..store.db import session_scope
from ..store.tables import Contact, Coupon, Message
from .invariants import InvariantReport
from .runner import Simulation

SAMPLE_CHANNELS = ("email", "push", "sms")
# Our own links' tokens (view in browser, unsubscribe, preferences, survey, click):
# `<payload>.<signature>` or one run, which a sentence's full stop does not end.
_LINK_TOKEN = re.compile(r"(?<=/)(m|u|preferences|s|c)/[A-Za-z0-9_\-]{16,}(?:\.[A-Za-z0-9_\-]+)?")


def build_report(
    simulation: Simulation,
    invariants: InvariantReport | None,
    default_timezone: str = "UTC",
    scenario_label: str | None = None,
) -> dict[str, Any]:
    ids = [item.journey.id for item in simulation.journeys]
    # The storefront simulator sends shoppers' events: it has no catalogue events, no
    # dates coming due and no campaign schedules, so those journeys are said to be
    # unsimulated, not failed.
    unsimulated = {
        item.journey.id: _unsimulated_trigger(item.journey.trigger)
        for item in simulation.journeys
        if _unsimulated_trigger(item.journey.trigger)
    }
    with session_scope(simulation.engine) as session:
        stats = [journey_stats(session, journey_id).to_json() for journey_id in ids]
        hours = _by_local_hour(session, ids, default_timezone)
        samples = _samples(session, ids)
        problems = _problems(session, [s for s in stats if s["journey_id"] not in unsimulated], ids)
    warnings = [
        f"{s['journey_id']}: not simulated: it starts on {unsimulated[s['journey_id']]}, "
        "which the storefront simulator does not produce"
        for s in stats
        if s["journey_id"] in unsimulated and not s["entered"]
    ] + [
        f"{s['journey_id']}: step {step['step_id']} ({step['label']}) was never reached"
        for s in stats
        if s["entered"]
        for step in s["steps"]
        if not step["reached"]
    ]
    rules_ok = invariants.ok if invariants else True
    return {
        "simulation": {
            "id": simulation.id,
            "seed": simulation.seed,
            "contacts": simulation.contacts,
            "days": simulation.days,
            "start": simulation.start.isoformat(),
            "journeys": ids,
            "scenario": scenario_label
            or (str(simulation.scenario_path) if simulation.scenario_path else "default"),
        },
        "journeys": stats,
        "messages_by_local_hour": hours,
        "samples": samples,
        "invariants": [_rule(r) for r in invariants.to_json()["invariants"]] if invariants else [],
        "orders": dict(simulation.orders),  # entry events, anyway, after a message
        "webhook_calls": simulation.webhook_calls,
        "problems": problems,
        "warnings": warnings,
        "ok": rules_ok and not problems,
    }


def _problems(session: Session, stats: list[dict[str, Any]], ids: list[str]) -> list[str]:
    """What makes a simulation fail besides an invariant: a journey nobody entered (the
    simulation says nothing about it) and messages whose template did not render."""
    found = [
        f"{s['journey_id']}: nobody entered it; give it a scenario that does "
        f"(journeys/scenarios/{s['journey_id']}.yaml, docs/simulation.md)"
        for s in stats
        if not s["entered"]
    ]
    rows = session.exec(
        select(Message.journey_id, Message.step_id, Message.contact_id, Message.error)
        .where(col(Message.journey_id).in_(ids), Message.status == "failed")
        .where(col(Message.error).startswith("template "))
        .order_by(col(Message.journey_id), col(Message.step_id), col(Message.contact_id))
    ).all()
    failed: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for journey_id, step_id, contact_id, error in rows:
        failed.setdefault((journey_id or "", step_id or ""), []).append((contact_id, error or ""))
    for (journey_id, step_id), items in failed.items():
        contact_id, error = items[0]
        found.append(
            f"{journey_id}: {len(items)} message(s) of step {step_id} did not render, e.g. "
            f"for {contact_id}: {error}"
        )
    return found


def _rule(result: dict[str, Any]) -> dict[str, Any]:
    """One invariant's line of the report."""
    return {
        "name": result["name"],
        "kind": result["kind"],
        "where": result["declared_at"],
        "journey": result["journey"],
        "checked": result["checked"],
        "violations": result["broken"],
        "contacts": result["contacts"],
        "examples": result["examples"],
    }


def _by_local_hour(
    session: Session, journey_ids: list[str], default_timezone: str
) -> dict[str, dict[str, list[int]]]:
    """Messages sent, by journey and channel, per hour of the recipient's own day."""
    rows = session.exec(
        select(Message.journey_id, Message.channel, Message.sent_at, Contact.timezone)
        .join(Contact, col(Contact.id) == col(Message.contact_id), isouter=True)
        .where(col(Message.sent_at).is_not(None), col(Message.journey_id).in_(journey_ids))
    ).all()
    found: dict[str, dict[str, list[int]]] = {j: {} for j in journey_ids}
    for journey_id, channel, sent_at, zone in rows:
        assert isinstance(sent_at, datetime)
        hour = sent_at.astimezone(zone_of(zone, default_timezone)).hour
        found[journey_id].setdefault(channel, [0] * 24)[hour] += 1
    return {j: dict(sorted(by_channel.items())) for j, by_channel in found.items()}


def _samples(session: Session, journey_ids: list[str]) -> list[dict[str, Any]]:
    """One rendered message per journey, step, channel and locale: the first contact's."""
    rows = session.exec(
        select(Message, col(Message.locale))
        .where(col(Message.sent_at).is_not(None), col(Message.journey_id).in_(journey_ids))
        .order_by(col(Message.journey_id), col(Message.step_id), col(Message.contact_id))
    ).all()
    taken: set[tuple[str, str, str, str]] = set()
    samples = []
    for message, locale in rows:
        key = (message.journey_id or "", message.step_id or "", message.channel, locale or "")
        if key in taken or not message.content:
            continue
        taken.add(key)
        codes = session.exec(
            select(Coupon.code).where(Coupon.contact_id == message.contact_id)
        ).all()
        samples.append(
            {
                "journey": message.journey_id,
                "step": message.step_id,
                "channel": message.channel,
                "locale": locale,
                "contact": message.contact_id,
                "content": {
                    part: _masked(value, message.id, codes)
                    for part, value in sorted(message.content.items())
                    if part != "links"
                },
            }
        )
    journey_order = {j: n for n, j in enumerate(journey_ids)}
    samples.sort(key=lambda s: (journey_order.get(s["journey"], 0), s["step"], s["channel"]))
    return samples


def _masked(value: Any, message_id: str, codes: list[str]) -> Any:
    """The value (text, or texts inside lists and mappings) with what differs from run
    to run replaced: the message id, our links' tokens, and promo codes (their prefix
    kept, in any case)."""
    if isinstance(value, dict):
        return {k: _masked(v, message_id, codes) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, message_id, codes) for v in value]
    if not isinstance(value, str):
        return value
    text = value.replace(message_id, "<message-id>")
    for code in sorted(codes, key=len, reverse=True):
        prefix = code.split("-")[0] if "-" in code else code[:3]
        text = re.sub(re.escape(code), f"{prefix}-XXXXXX", text, flags=re.IGNORECASE)
    return _LINK_TOKEN.sub(lambda m: f"{m.group(1)}/<token>", text)


def scenario_label(path: Path | None, root: Path) -> str:
    if path is None:
        return "default"
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def _unsimulated_trigger(trigger: Any) -> str | None:
    """What starts a journey the storefront simulator cannot start, or None."""
    if trigger.date is not None:
        return "a date trigger"
    if trigger.audience is not None:
        return "an audience"
    if trigger.schedule is not None:
        return "a campaign schedule"
    return None
