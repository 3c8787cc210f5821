"""`journeys preview`: exactly what a contact would receive, before anyone receives it.

Inputs are what marketers and developers already have at hand: a contact id
from the store, or a JSON file holding a Segment `identify` call (or just a
traits object); a JSON file holding a Segment `track` call (or just its
properties). Whatever is not given comes from the message's sample data.

A contact from the store brings what its real send would use: the run of a journey
that sends the message (its trigger event, and the values its steps kept: points,
coupon code…), else its latest trigger event. What still comes from `sample.yaml`
is said on stderr, so a preview is never taken for the real message by mistake.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from ..store.context import (
    EventKind,
    cart_context,
    cart_from_events,
    contact_context,
    event_context,
    latest_cart_event,
    latest_event,
    products_of,
)
from ..store.db import session_scope
from ..store.identity import aliases_of, load_contact
from ..store.recommendations import recommendations
from ..store.tables import Event, JourneyRun, utcnow
from . import locales
from .catalog import CHANNELS, SAMPLE_FILE
from .renderer import PUSH_MAX_BYTES, Rendered, Renderer
from .samples import sample_context

PREVIEW_MESSAGE_ID = "00000000-0000-0000-0000-00000000beef"


class PreviewInputError(ValueError):
    """A --contact / --event / --journey input that cannot be used, and how to fix it."""


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PreviewInputError(f"{what} {path}: cannot read it ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PreviewInputError(f"{what} {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PreviewInputError(f"{what} {path}: expected a JSON object")
    return data


def contact_from_call(data: dict[str, Any]) -> dict[str, Any]:
    """A Segment identify call, or a bare traits object, as the template `contact`."""
    is_call = data.get("type") == "identify" or "traits" in data or "userId" in data
    traits = dict(data.get("traits") or {}) if is_call else dict(data)
    context = (data.get("context") or {}) if is_call else {}
    first = traits.get("first_name") or traits.get("firstName")
    last = traits.get("last_name") or traits.get("lastName")
    return {
        "id": (data.get("userId") or data.get("anonymousId") or "preview")
        if is_call
        else "preview",
        "email": traits.get("email"),
        "phone": traits.get("phone"),
        "locale": context.get("locale") or traits.get("locale"),
        "timezone": context.get("timezone") or traits.get("timezone"),
        "traits": traits,
        "first_name": first,
        "last_name": last,
        "name": traits.get("name") or " ".join(p for p in (first, last) if p) or None,
        "consent": dict(traits.get("consent") or {}),
        "orders": 0,  # a contact from a file: no orders in the store
        "last_order_at": None,
    }


def event_from_call(data: dict[str, Any], default_name: str) -> dict[str, Any]:
    """A Segment track call, or just its properties, as the template `event`."""
    is_call = data.get("type") == "track" or ("event" in data and "properties" in data)
    properties = dict(data.get("properties") or {}) if is_call else dict(data)
    return {
        "id": None,
        "name": data.get("event") if is_call else default_name,
        "type": "track",
        "properties": properties,
        "context": dict(data.get("context") or {}) if is_call else {},
        "timestamp": data.get("timestamp") if is_call else None,
        "products": products_of(properties),
    }


@dataclass(frozen=True)
class PreviewInputs:
    """The template context, and where its event and journey values came from, in words
    (None: nothing to say)."""

    context: dict[str, Any]
    event_note: str | None = None
    journey_note: str | None = None

    @property
    def notes(self) -> list[str]:
        return [n for n in (self.event_note, self.journey_note) if n]


def preview_context(
    renderer: Renderer,
    message: str,
    contact: str | None = None,
    event_file: Path | None = None,
    journey_file: Path | None = None,
    engine: Engine | None = None,
    trigger_event: str | None = None,
    trigger_kind: EventKind | None = None,
    senders: list[str] | None = None,
) -> PreviewInputs:
    """The template context for a preview; `contact` is a file path or a contact id.

    A contact from the store brings its latest run of a journey that sends the message
    (`senders`: their ids), as its send would: the run's trigger event and the journey
    values its steps kept, over the sample's. Without such a run, its own latest trigger
    event (`trigger_kind`: what the journey sending the message starts on), or the
    sample event when it has none. `event_file` and `journey_file` win over both.
    """
    base = sample_context(renderer.message(message), trigger_event, journey_id="preview")
    event = base["event"]
    if event_file is not None:
        event = event_from_call(read_json(event_file, "--event"), event["name"])
    store_cart = None
    store_suggestions = None
    note = None
    run: JourneyRun | None = None
    if contact is None:
        person = base["contact"]
    elif Path(contact).is_file():
        person = contact_from_call(read_json(Path(contact), "--contact"))
    else:
        if engine is None:
            raise PreviewInputError(
                f"--contact {contact}: no such file, and no database to look the id up in"
            )
        with session_scope(engine) as session:
            row = load_contact(session, contact)  # an alias finds the merged contact
            if row is None:
                raise PreviewInputError(
                    f"--contact {contact}: no such file, and no contact with that id in the "
                    "store (pass a contact id, or a JSON file with an identify call or traits)"
                )
            person = contact_context(row, session)
            ids = [row.id, *aliases_of(session, row.id)]
            run = latest_run(session, ids, senders or [])
            if run is not None:
                session.expunge(run)
            trigger = None
            if event_file is None:
                if run is not None and run.trigger_event_id is not None:
                    trigger = session.get(Event, run.trigger_event_id)
                    note = _run_event_note(run, trigger) if trigger is not None else None
                if trigger is None and trigger_kind is not None:
                    trigger = latest_event(session, ids, trigger_kind)
                    note = _event_note(contact, trigger_kind, trigger)
            if trigger is not None:
                event = event_context(trigger)
            cart_event = trigger or latest_cart_event(session, row.id)
            store_cart = cart_context(session, row.id, cart_event)
            store_suggestions = recommendations(session, row.id, store_cart["products"], utcnow())
    cart_id = (event.get("properties") or {}).get("cart_id")
    if store_cart is not None and event_file is None:
        cart = store_cart
    else:
        cart = cart_from_events([event], cart_id)
    journey = base["journey"]
    journey_note = None
    if journey_file is not None:
        journey = {**read_json(journey_file, "--journey"), "id": "preview", "step": "preview"}
    elif contact is not None:
        journey, journey_note = _journey_values(renderer, message, journey, contact, run, senders)
    context = {
        "contact": person,
        "event": event,
        "cart": cart,
        "journey": journey,
        "recommendations": store_suggestions or base["recommendations"],
    }
    return PreviewInputs(context, note, journey_note)


def latest_run(session: Session, contact_ids: list[str], journeys: list[str]) -> JourneyRun | None:
    """The contact's (or an alias's) most recent run of one of `journeys`."""
    if not journeys:
        return None
    query = (
        select(JourneyRun)
        .where(
            col(JourneyRun.contact_id).in_(contact_ids),
            col(JourneyRun.journey_id).in_(journeys),
        )
        .order_by(col(JourneyRun.entered_at).desc(), col(JourneyRun.id).desc())
    )
    return session.exec(query.limit(1)).first()


def _journey_values(
    renderer: Renderer,
    message: str,
    sample: dict[str, Any],
    contact: str,
    run: JourneyRun | None,
    senders: list[str] | None,
) -> tuple[dict[str, Any], str | None]:
    """The run's values over the sample's, and a note saying which are which."""
    own = dict(run.data or {}) if run is not None else {}
    journey = {**sample, **own}
    if run is not None:
        journey["id"] = run.journey_id
    sampled = [k for k in sample if k not in ("id", "step") and k not in own]
    real = f"{', '.join(own)} from {_run_name(run)}" if run is not None and own else None
    if not sampled:
        return journey, f"journey: {real}" if real else None
    samples = f"samples from {renderer.message(message).folder / SAMPLE_FILE}"
    if real:
        return journey, f"journey: {real}; {samples}: {', '.join(sampled)}"
    if run is not None:
        why = f"{_run_name(run)} has not kept them yet"
    elif Path(contact).is_file():
        why = "a contact from a file has no runs"
    elif senders:
        why = f"contact {contact} has no run of {' or '.join(senders)}"
    else:
        why = f"no journey in the journeys folder sends {message}"
    return journey, f"journey: {samples}, not real values ({why}): {', '.join(sampled)}"


def _run_name(run: JourneyRun) -> str:
    when = run.entered_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"run {run.journey_id} #{run.entry_seq} of {run.contact_id} (entered {when})"


def _run_event_note(run: JourneyRun, found: Event) -> str:
    when = found.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    what = found.name or f"{found.type} call"
    return (
        f"event: {what} of {when} (message id {found.message_id}), the trigger of {_run_name(run)}"
    )


def _event_note(contact: str, kind: EventKind, found: Event | None) -> str:
    if found is None:
        return f"event: sample data (contact {contact} has no {kind.describe()} event stored)"
    when = found.timestamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"event: {kind.describe()} of {when} (message id {found.message_id}), "
        f"the latest of contact {contact}"
    )


def render_all(
    renderer: Renderer,
    message: str,
    context: dict[str, Any],
    links: dict[str, str],
    channels: list[str] | None = None,
    locale: str | None = None,
) -> list[Rendered]:
    """Every channel the message has (or those asked for), as the send activity renders it."""
    found = renderer.message(message)
    if not found.exists():
        raise PreviewInputError(f"no message {message!r}: {found.missing()}")
    available = found.channels()
    wanted = channels or available
    for channel in wanted:
        if channel not in available:
            raise PreviewInputError(
                f"message {message!r} has no complete {channel} version "
                f"(it has: {', '.join(available) or 'none'})"
            )
    out = []
    for channel in (c for c in CHANNELS if c in wanted):
        ctx = {**context, "message": {"id": PREVIEW_MESSAGE_ID, "channel": channel, **links}}
        out.append(renderer.render(message, channel, ctx, locale))
    return out


def describe(rendered: Rendered, html_out: Path | None = None) -> str:
    """A terminal report of one rendered channel."""
    parts = rendered.parts
    # The locale as folders and docs write it (sr-Latn), not Babel's sr_Latn.
    lines = [f"== {rendered.template} · {rendered.channel} · {locales.language(rendered.locale)}"]
    if rendered.channel == "email":
        lines.append(f"Subject:   {parts['subject']}")
        if parts.get("preheader"):
            lines.append(f"Preheader: {parts['preheader']}")
        lines += ["", parts.get("text", ""), ""]
        if parts.get("html"):
            size = len(parts["html"].encode())
            where = f"written to {html_out}" if html_out else "(--out file.html to open it)"
            lines.append(f"HTML: {size / 1024:.1f} KB {where}")
    elif rendered.channel == "sms":
        assert rendered.sms is not None
        lines += [parts["body"], "", f"Length: {rendered.sms.describe()}"]
    else:
        lines.append(f"Title: {parts['title']}")
        lines.append(f"Body:  {parts['body']}")
        for part in ("image", "link"):
            if parts.get(part):
                lines.append(f"{part.capitalize()}: {parts[part]}")
        lines.append(f"Payload: {rendered.push_bytes} of {PUSH_MAX_BYTES} bytes")
    if rendered.dropped_links:
        lines += ["", "Dropped links (only absolute http and https links reach a message):"]
        lines += [f"  {d.path} = {d.value!r}: {d.reason}" for d in rendered.dropped_links]
    return "\n".join(lines)
