"""Message counters: each message counts once per status it reaches and once per
engagement kind (unique opens, unique clicks…), at its send step, by channel.

A click implies an open and a delivery, an open or a reply a delivery: a mail client
that blocks images still clicks, and a funnel must never show more clicks than opens.
"""

from __future__ import annotations

from sqlmodel import Session

from ..store.tables import Message
from .counts import bump, cohort_of_run

# Statuses a send ends in (or passes through, `unknown`), counted when reached.
SEND_OUTCOMES = frozenset({"sent", "failed", "suppressed", "skipped", "unknown"})
ENGAGEMENTS = ("delivered", "opened", "clicked", "bounced", "complained", "unsubscribed", "replied")
IMPLIES = {"clicked": ("opened", "delivered"), "opened": ("delivered",), "replied": ("delivered",)}


def metric(kind: str) -> str:
    return f"message:{kind}"


def count_status(session: Session, message: Message, status: str, check: str | None = None) -> None:
    if status in SEND_OUTCOMES:
        _bump(session, message, status)
    if status in ("suppressed", "skipped", "failed"):  # and why: a short, fixed word
        _bump(session, message, f"{status}:{not_sent_reason(status, check, message.error)}")


def not_sent_reason(status: str, check: str | None, detail: str | None) -> str:
    if status == "skipped":
        return "frequency_cap" if check == "frequency_cap" else "deferred_too_often"
    if status == "failed":
        return _failure(check, detail or "")
    return "suppression_list" if "suppression list" in (detail or "") else "consent"


def _failure(check: str | None, detail: str) -> str:
    """Why a send failed, in a word: no address on any channel it may use, a template
    that did not render, the provider refused or failed, or the contact was erased."""
    if check == "render":
        return "template"
    if check == "provider":
        return "provider"
    if "no longer exists" in detail or "does not exist" in detail:
        return "contact_erased"
    if check == "channel" and "address" in detail:
        return "no_address"
    if check == "channel":
        return "no_channel"
    return "delivery"


def count_deferral(session: Session, message: Message, check: str) -> None:
    """The first deferral of a message, by what deferred it (quiet hours, a cap)."""
    earlier = [e for e in message.timeline[:-1] if e.get("status") == "deferred"]
    if not earlier:
        _bump(session, message, f"deferred:{check}")


def count_engagement(session: Session, message: Message, kind: str) -> list[str]:
    """Count `kind` (and what it implies) unless already counted; returns what it implied
    for the timeline entry, so later reports know it was counted."""
    counted: set[str] = set()
    for entry in message.timeline:
        if "event_id" in entry:
            counted.add(str(entry.get("status")))
            counted.update(entry.get("implies") or ())
    implied = [k for k in IMPLIES.get(kind, ()) if k not in counted]
    new = [kind, *implied] if kind not in counted else implied
    cohort = cohort_of_run(session, message.workflow_id, message.entry_seq) if new else None
    if cohort is not None:  # looked up once: an open is two counters, a click three
        for each in new:
            bump(session, cohort, metric(each), message.step_id, channel=message.channel)
    return implied


def _bump(session: Session, message: Message, kind: str) -> None:
    cohort = cohort_of_run(session, message.workflow_id, message.entry_seq)
    if cohort is not None:
        bump(session, cohort, metric(kind), message.step_id, channel=message.channel)
