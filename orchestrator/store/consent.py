"""A contact's consent per channel: the one place that writes the `consent` record.

The record is `{"email": {"marketing": bool, "transactional": bool}, "sms": false, ...}`
(`orchestrator.services.policy.consent_refusal` reads it). Unsubscribe links, the preference
page and provider opt-outs (a Twilio STOP) all write through `set_consent`, so the
record keeps one shape whoever changed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from ..services.policy import consent_refusal
from .identity import canonical_id
from .tables import Contact, utcnow

# The order the preference page shows them in.
CONSENT_CHANNELS = ("email", "sms", "push")


@dataclass(frozen=True)
class ChannelConsent:
    """What the contact gets on one channel now, as the send policy would decide it."""

    channel: str
    marketing: bool
    transactional: bool


def effective_consent(consent: dict[str, Any], explicit_marketing: bool) -> list[ChannelConsent]:
    """Per channel, whether marketing and service messages would be sent today.

    Read through the policy itself, so the preference page never shows a box ticked
    for messages the send pipeline would refuse (or the other way round).
    """
    return [
        ChannelConsent(
            channel,
            marketing=consent_refusal(consent, channel, "marketing", explicit_marketing) is None,
            transactional=consent_refusal(consent, channel, "transactional", explicit_marketing)
            is None,
        )
        for channel in CONSENT_CHANNELS
    ]


def set_consent(
    session: Session,
    contact_id: str,
    channel: str,
    marketing: bool | None = None,
    transactional: bool | None = None,
) -> dict[str, Any] | None:
    """Record the contact's choice on `channel`; None leaves a flag as it is.

    Returns the channel's new entry, or None when there is no such contact (an
    alias finds its contact). Refusing service messages refuses marketing too: the
    policy treats `transactional: false` as an opt-out of the whole channel, and the
    record says so instead of keeping a `marketing: true` that would never apply.
    """
    if channel not in CONSENT_CHANNELS:
        raise ValueError(
            f"unknown channel {channel!r} for consent: expected one of "
            f"{', '.join(CONSENT_CHANNELS)}"
        )
    contact = session.get(Contact, canonical_id(session, contact_id), with_for_update=True)
    if contact is None:
        return None
    consent = dict(contact.consent or {})
    entry = consent.get(channel)
    if entry is False:
        flags: dict[str, Any] = {"marketing": False, "transactional": False}
    elif entry is True:
        flags = {"marketing": True, "transactional": True}
    else:
        flags = dict(entry) if isinstance(entry, dict) else {}
    if flags.get("all") is False:  # an older spelling of a whole-channel opt-out
        flags.pop("all")
        flags.setdefault("marketing", False)
        flags.setdefault("transactional", False)
    if marketing is not None:
        flags["marketing"] = marketing
    if transactional is not None:
        flags["transactional"] = transactional
    if flags.get("transactional") is False:
        flags["marketing"] = False
    consent[channel] = flags
    contact.consent = consent
    contact.updated_at = utcnow()
    return flags


def lift_channel_opt_out(session: Session, contact_id: str, channel: str) -> None:
    """A START reply: service messages again, and marketing back to the default.

    It lifts a STOP; it is not an opt-in to marketing, so under
    JOURNEYS_MARKETING_CONSENT=explicit marketing still needs the contact's yes.
    """
    flags = set_consent(session, contact_id, channel, transactional=True)
    if flags is not None and flags.get("marketing") is False:
        contact = session.get(Contact, canonical_id(session, contact_id))
        if contact is not None:
            consent = dict(contact.consent)
            consent[channel] = {k: v for k, v in flags.items() if k != "marketing"}
            contact.consent = consent
