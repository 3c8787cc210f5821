"""The dashboard's message log: messages searched newest first, by journey or status.

- `ix_messages_created`: every message, newest first (the log with no filter, or one by
  channel or period);
- `ix_messages_journey_created`: one journey's messages, newest first;
- `ix_messages_status_created`: one status's (failed, deferred: the health page too).

A contact's messages already have `ix_messages_contact_queued`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_created", "messages", ["created_at", "id"])
    op.create_index("ix_messages_journey_created", "messages", ["journey_id", "created_at", "id"])
    op.create_index("ix_messages_status_created", "messages", ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_status_created", table_name="messages")
    op.drop_index("ix_messages_journey_created", table_name="messages")
    op.drop_index("ix_messages_created", table_name="messages")
