"""Privacy: client messageIds and our own dedupe keys in separate namespaces.

`events.message_id` was unique on its own, so a client could send one of our keys
(`survey:<message id>`, `sendgrid:<event id>`…) as its messageId and take it: the
real survey answer or provider report was then dropped as a "retry". Keys are now
unique per `events.origin` (`client` or `internal`).

Rows stored before this revision are all the client's unless one of our producers
made them; those are recognized by the exact shape each producer writes (key
prefix, event name, context), so existing keys keep deduplicating in their own
namespace: a provider's retry of an old report, an answered survey, a client's retry.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 5000
# Key prefixes of our producers: provider reports and inbound SMS, survey answers,
# journey `track` actions, segment entries and exits.
OURS = ("sendgrid:", "twilio:", "survey:", "journey:", "segment:")
JOURNEY_TRACK_KEY = re.compile(r"journey:[0-9a-f]{40}")

events = sa.table(
    "events",
    sa.column("id", sa.Integer()),
    sa.column("message_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("context", sa.JSON()),
    sa.column("origin", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="client")
        )
    _mark_ours(op.get_bind())
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_message_id", type_="unique")
        batch.create_unique_constraint("uq_events_origin_message_id", ["origin", "message_id"])


def downgrade() -> None:
    bind = op.get_bind()
    shared = bind.execute(
        sa.select(events.c.message_id)
        .group_by(events.c.message_id)
        .having(sa.func.count() > 1)
        .limit(5)
    ).scalars()
    clashes = list(shared)
    if clashes:
        raise RuntimeError(
            "cannot downgrade below 0008: these messageIds are both a client's and "
            f"one of our keys ({', '.join(map(repr, clashes))}, ...); delete or rename the "
            "client's rows (events with origin 'client') first"
        )
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_origin_message_id", type_="unique")
        batch.create_unique_constraint("uq_events_message_id", ["message_id"])
        batch.drop_column("origin")


def _mark_ours(bind: sa.Connection) -> None:
    """Set `origin = internal` on the rows our producers wrote, a page of ids at a time."""
    candidates = sa.or_(*(events.c.message_id.like(prefix + "%") for prefix in OURS))
    last = 0
    while True:
        page = bind.execute(
            sa.select(events.c.id, events.c.message_id, events.c.name, events.c.context)
            .where(events.c.id > last, candidates)
            .order_by(events.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            return
        last = page[-1].id
        ours = [row.id for row in page if _ours(row.message_id, row.name, row.context)]
        if ours:
            bind.execute(sa.update(events).where(events.c.id.in_(ours)).values(origin="internal"))


def _ours(key: str, name: str | None, context: Any) -> bool:
    """Whether a stored key is one our own code wrote (with the context it writes)."""
    context = context if isinstance(context, dict) else {}
    source = context.get("source")
    if key.startswith(("sendgrid:", "twilio:")):
        return isinstance(source, str) and source.endswith("-webhook")
    if key.startswith("survey:"):
        return name == "Survey Answered" and source == "survey-page"
    if key.startswith("journey:"):
        return bool(JOURNEY_TRACK_KEY.fullmatch(key)) and isinstance(context.get("journey"), dict)
    if key.startswith("segment:"):
        return name in ("Segment Entered", "Segment Exited") and context == {}
    return False
