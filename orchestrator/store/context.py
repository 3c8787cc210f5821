"""Rows as the plain dicts that conditions and templates see."""

from __future__ import annotations

from typing import Any

from .tables import Contact, Event


def contact_context(contact: Contact | None) -> dict[str, Any]:
    if contact is None:
        return {}
    # Keys starting with "_" are our bookkeeping (e.g. applied increments), not traits.
    traits = {k: v for k, v in (contact.traits or {}).items() if not k.startswith("_")}
    return {
        "id": contact.id,
        "email": contact.email,
        "phone": contact.phone,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "traits": traits,
        "first_name": traits.get("first_name") or traits.get("firstName"),
        "consent": dict(contact.consent or {}),
    }


def event_context(event: Event | None) -> dict[str, Any]:
    if event is None:
        return {}
    return {
        "id": event.id,
        "name": event.name,
        "type": event.type,
        "properties": dict(event.properties or {}),
        "context": dict(event.context or {}),
        "timestamp": event.timestamp.isoformat() if event.timestamp else None,
    }
