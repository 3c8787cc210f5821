"""Feedback into the store: provider reports (events, suppressions and consent in one
transaction), inbound SMS, and survey answers and link clicks from our own pages.

The webhook answers 2xx only after this commits, so a report is either stored with
everything it implies or not at all (and the provider retries). Replays are found
by the dedupe key in `events.message_id`, in our own namespace (`origin = internal`:
no client messageId can take one); a replay changes nothing, not even consent: a
STOP delivered again after a START must not opt the person out again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ..rendering.safe_links import link_problem
from ..services.links import TRACKED_LINKS
from ..services.policy import normalize_address
from ..services.privacy import is_erased
from ..store.consent import lift_channel_opt_out
from ..store.db import session_scope
from ..store.identity import load_contact
from ..store.suppressions import opt_out, suppress, unsuppress
from ..store.tables import ORIGIN_INTERNAL, Contact, Event, Message, utcnow
from .twilio_events import InboundSms
from .types import Feedback, Outcome

CHUNK = 500  # ids per IN (...) query: well under every database's parameter limit
# An SMS reply counts as a reply to the last SMS we sent that number this recently.
REPLY_WINDOW = timedelta(days=7)
# Messages that reached (or may have reached) the phone: a reply can answer them.
ANSWERABLE = ("sent", "delivered", "opened", "clicked", "replied")
# A dedupe receipt for a STOP/START from a number no contact has: stored as already
# routed (nothing to deliver), it only makes a replay of that request a no-op.
RECEIPT = "feedback"
SURVEY_ANSWERED = "Survey Answered"
# What a click on a tracked link (`/c/<token>`) records, per channel of the message.
LINK_CLICKED = {
    "email": "Email Link Clicked",
    "sms": "SMS Link Clicked",
    "push": "Push Link Clicked",
}
NUMBER_REPLY = re.compile(r"\d{1,9}")  # a longer run of digits is no answer (a phone number?)

T = TypeVar("T")


def _with_retry(engine: Engine, work: Callable[[Session], T]) -> T:
    """Commit `work`; a concurrent delivery of the same report loses the unique-key race,
    and its retry then sees the winner's rows as duplicates."""
    for attempt in range(3):
        try:
            with session_scope(engine) as session:
                return work(session)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def record_message_feedback(engine: Engine, items: Sequence[Feedback], channel: str) -> Outcome:
    """Store reports about our messages on `channel`; reports about others are ignored."""
    return _with_retry(engine, lambda session: _record(session, items, channel))


def _record(session: Session, items: Sequence[Feedback], channel: str) -> Outcome:
    outcome = Outcome()
    seen = _existing_keys(session, [i.dedupe_key for i in items])
    messages = _messages(session, items, channel)
    received_at = utcnow()
    for item in items:
        if item.dedupe_key in seen:
            outcome.duplicates += 1
            continue
        message = messages.get(item.message_id or "") or messages.get(
            f"provider:{item.provider_message_id}"
        )
        if message is None or is_erased(message.contact_id):
            # Not ours (another system on the account), forgotten, or its contact was
            # erased: a late report must not bring personal data back.
            outcome.ignored += 1
            continue
        seen.add(item.dedupe_key)
        properties = {**item.properties, "message_id": message.id}
        _add_event(
            session,
            item.dedupe_key,
            item.name,
            message.contact_id,
            properties,
            item.timestamp or received_at,
            received_at,
            channel,
        )
        _apply(session, item, message, channel)
        outcome.stored += 1
    return outcome


def _apply(session: Session, item: Feedback, message: Message, channel: str) -> None:
    source = str(item.properties.get("provider") or channel)
    address = message.recipient
    if item.suppress and address:
        suppress(session, channel, address, item.suppress, source, item.detail)
    if item.opt_out:
        opt_out(session, message.contact_id, channel, marketing_only=item.opt_out == "marketing")


def record_inbound_sms(engine: Engine, sms: InboundSms) -> Outcome:
    """An inbound SMS: keywords change consent and the suppression list; any other text
    becomes "SMS Received" for every contact with that number."""
    return _with_retry(engine, lambda session: _record_inbound(session, sms))


def _record_inbound(session: Session, sms: InboundSms) -> Outcome:
    key = f"twilio:{sms.message_sid}"
    if _existing_keys(session, [key]):
        return Outcome(duplicates=1)
    contacts = contacts_with_phone(session, sms.sender)
    source = "twilio"
    if sms.kind == "stop":
        suppress(session, "sms", sms.sender, "unsubscribed", source, f"replied {sms.keyword}")
        for contact in contacts:
            opt_out(session, contact.id, "sms")
    elif sms.kind == "start":
        unsuppress(session, "sms", sms.sender)
        for contact in contacts:
            lift_channel_opt_out(session, contact.id, "sms")
    received_at = utcnow()
    properties: dict[str, Any] = {"provider": source, "message_sid": sms.message_sid}
    if sms.kind == "message":
        properties["body"] = sms.body
        number = bare_number(sms.body)
        if number is not None:
            properties["number"] = number
        if sms.num_media:
            properties["num_media"] = sms.num_media
    else:
        properties["keyword"] = sms.keyword
    if not contacts:
        if sms.kind in ("stop", "start"):
            _add_event(
                session,
                key,
                sms.event_name,
                "",
                properties,
                received_at,
                received_at,
                "sms",
                kind=RECEIPT,
                routed_at=received_at,
            )
            return Outcome(stored=1)
        return Outcome(ignored=1)
    for index, contact in enumerate(contacts):
        own = dict(properties)
        if sms.kind == "message":
            replied_to = _last_sms_to(session, contact.id, sms.sender, received_at)
            if replied_to:
                own["message_id"] = replied_to  # the reply engages the message it answers
        # One row per contact; the first carries the request's key, which dedupes replays.
        row_key = key if index == 0 else f"{key}:{_short_hash(contact.id)}"
        _add_event(
            session, row_key, sms.event_name, contact.id, own, received_at, received_at, "sms"
        )
    return Outcome(stored=len(contacts))


def bare_number(body: str | None) -> int | None:
    """A reply that is just a whole number ("9", " 10 ", "9."): a survey or menu answer.

    Any script's digits count (an Arabic "٩" is 9); signs, decimals and words do not.
    """
    text = (body or "").strip().removesuffix(".").strip()
    if not NUMBER_REPLY.fullmatch(text):
        return None
    return int(text)


def asks_question(message: Message, survey_link: str) -> bool:
    """Whether the message asks for a survey answer: its content carries its own survey
    link (`/s/<token>`, what a template gets as `message.survey_url`). Every message's
    links hold the same signed token, so the token alone does not make one a survey."""
    parts = (message.content or {}).values()
    return any(isinstance(part, str) and survey_link in part for part in parts)


def survey_key(message_id: str) -> str:
    """The dedupe key of a message's survey answer: one answer per message, the first."""
    return f"survey:{message_id}"


def survey_answer(session: Session, message_id: str) -> int | None:
    """The score already recorded for this message's survey, if any."""
    key = survey_key(message_id)
    query = select(Event).where(Event.origin == ORIGIN_INTERNAL, Event.message_id == key)
    row = session.exec(query).first()
    return None if row is None else int((row.properties or {}).get("score", 0))


def record_survey_answer(
    engine: Engine, message_id: str, score: int, survey_link: str
) -> tuple[bool, int] | None:
    """Store `Survey Answered` for the message's contact, unless the message was answered.

    `survey_link` is the message's own survey link (`/s/<token>`), which its content must
    carry (`asks_question`). Returns (stored now, the score that counts), or None when
    the message or its contact is gone, or the message asks no question. The event is
    routed like any other (journeys can wait for it).
    """
    return _with_retry(
        engine, lambda session: _record_survey(session, message_id, score, survey_link)
    )


def _record_survey(
    session: Session, message_id: str, score: int, survey_link: str
) -> tuple[bool, int] | None:
    message = session.get(Message, message_id)
    if message is None or not asks_question(message, survey_link):
        return None
    first = survey_answer(session, message_id)
    if first is not None:
        return False, first
    if session.get(Contact, message.contact_id) is None:
        return None
    properties = {
        "score": score,
        "message_id": message.id,
        "template": message.template,
        "channel": message.channel,
        "journey_id": message.journey_id,
    }
    now = utcnow()
    _add_event(
        session,
        survey_key(message.id),
        SURVEY_ANSWERED,
        message.contact_id,
        properties,
        now,
        now,
        message.channel,
        source="survey-page",
    )
    return True, score


@dataclass(frozen=True)
class Click:
    """Where a tracked link leads, and whether following it stored a click now."""

    url: str
    stored: bool


# Clicks on one link of one message within this many seconds are one click (one event):
# reports count unique clicks anyway, and an unauthenticated link must not let a loop
# store an event (and route a signal) per request.
CLICK_WINDOW = 3600


def click_key(message_id: str, index: int, at: datetime) -> str:
    """The dedupe key of a click: one per link of a message per `CLICK_WINDOW`."""
    return f"click:{message_id}:{index}:{int(at.timestamp()) // CLICK_WINDOW}"


def follow_click(engine: Engine, message_id: str, index: int, count: bool) -> Click | None:
    """The URL of link `index` of a message, recording the click when `count` (a GET)
    as `Email Link Clicked` / `SMS Link Clicked` / `Push Link Clicked` for its contact.

    None when the message is gone, has no such link, or the link stored there is not an
    absolute http(s) URL (checked again here: nothing else is ever redirected to). The
    click of an erased contact's message is followed and not recorded.
    """
    return _with_retry(engine, lambda session: _follow(session, message_id, index, count))


def _follow(session: Session, message_id: str, index: int, count: bool) -> Click | None:
    message = session.get(Message, message_id)
    links = (message.content or {}).get(TRACKED_LINKS) if message is not None else None
    if message is None or not isinstance(links, list) or not 0 <= index < len(links):
        return None
    stored = links[index]
    url = link_problem(stored)[0] if isinstance(stored, str) else None
    if url is None:
        return None
    name = LINK_CLICKED.get(message.channel)
    if not count or name is None or is_erased(message.contact_id):
        return Click(url, stored=False)
    if load_contact(session, message.contact_id) is None:  # erased, or never stored
        return Click(url, stored=False)
    now = utcnow()
    key = click_key(message.id, index, now)
    if _existing_keys(session, [key]):
        return Click(url, stored=False)
    properties = {
        "message_id": message.id,
        "url": url,
        "link_index": index,
        "channel": message.channel,
        "source": "redirect",
        "journey_id": message.journey_id,
        "template": message.template,
    }
    _add_event(
        session,
        key,
        name,
        message.contact_id,
        properties,
        now,
        now,
        message.channel,
        source="click-redirect",
    )
    return Click(url, stored=True)


def contacts_with_phone(session: Session, phone: str) -> list[Contact]:
    """Contacts whose phone is `phone` once both are normalized, sorted by id.

    Phones are stored as given, so the SQL only narrows (the number's characters in
    order, any separators between) and `normalize_address` decides.
    """
    wanted = normalize_address("sms", phone)
    if not wanted:
        return []
    pattern = "%" + "%".join(_like_escape(ch) for ch in wanted) + "%"
    query = select(Contact).where(col(Contact.phone).like(pattern, escape="\\"))
    found = [
        c
        for c in session.exec(query.order_by(col(Contact.id)))
        if c.phone and normalize_address("sms", c.phone) == wanted
    ]
    return found


# --- helpers ------------------------------------------------------------------------


def _existing_keys(session: Session, keys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(set(keys))):
        query = select(Event.message_id).where(
            Event.origin == ORIGIN_INTERNAL, col(Event.message_id).in_(chunk)
        )
        found.update(session.exec(query))
    return found


def _messages(session: Session, items: Sequence[Feedback], channel: str) -> dict[str, Message]:
    """Our messages the reports name: by our id, and by the provider's as `provider:<id>`."""
    ours = sorted({i.message_id for i in items if i.message_id})
    theirs = sorted({i.provider_message_id for i in items if i.provider_message_id})
    found: dict[str, Message] = {}
    for chunk in _chunks(ours):
        for row in session.exec(select(Message).where(col(Message.id).in_(chunk))):
            if row.channel == channel:
                found[row.id] = row
    for chunk in _chunks(theirs):
        query = select(Message).where(col(Message.provider_message_id).in_(chunk))
        for row in session.exec(query):
            if row.channel == channel and row.provider_message_id:
                found[f"provider:{row.provider_message_id}"] = row
    return found


def _last_sms_to(session: Session, contact_id: str, phone: str, now: datetime) -> str | None:
    """Our latest SMS to this contact at this number within REPLY_WINDOW, if any."""
    wanted = normalize_address("sms", phone)
    query = (
        select(Message)
        .where(
            Message.contact_id == contact_id,
            Message.channel == "sms",
            col(Message.status).in_(ANSWERABLE),
            col(Message.sent_at) >= now - REPLY_WINDOW,
        )
        .order_by(col(Message.created_at).desc())
        .limit(20)
    )
    for row in session.exec(query):
        if row.recipient and normalize_address("sms", row.recipient) == wanted:
            return row.id
    return None


def _add_event(
    session: Session,
    key: str,
    name: str,
    contact_id: str,
    properties: dict[str, Any],
    timestamp: datetime,
    received_at: datetime,
    channel: str,
    kind: str = "track",
    routed_at: datetime | None = None,
    source: str | None = None,
) -> None:
    session.add(
        Event(
            message_id=key[:255],
            origin=ORIGIN_INTERNAL,
            type=kind,
            name=name,
            contact_id=contact_id,
            properties=properties,
            context={"source": source or f"{properties.get('provider', channel)}-webhook"},
            timestamp=timestamp,
            received_at=received_at,
            routed_at=routed_at,
        )
    )
    session.flush()  # a concurrent duplicate fails here, inside the retry


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _like_escape(ch: str) -> str:
    return "\\" + ch if ch in "%_\\" else ch


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start : start + CHUNK])
