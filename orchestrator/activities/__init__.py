"""Everything a journey asks the world to do, bound to one engine and channel set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from channels.base import Channel

from ..links import MessageLinks
from ..rendering import Renderer
from .contacts import ContactActivities
from .runs import RunActivities
from .sending import SendActivities


def journey_activities(
    engine: Engine, renderer: Renderer, adapters: dict[str, Channel], links: MessageLinks
) -> list[Callable[..., Any]]:
    runs = RunActivities(engine)
    contacts = ContactActivities(engine)
    sends = SendActivities(engine, renderer, adapters, links)
    return [
        runs.enter_run,
        runs.record_step,
        runs.finish_run,
        runs.record_conversion,
        contacts.check_condition,
        contacts.next_local_time,
        contacts.update_contact,
        sends.send_message,
    ]
