"""Campaigns: a journey sent to a segment's members on a schedule.

- `campaigns`: an operator's pause or cancel of a campaign journey;
- `campaign_dispatches`: each time a campaign was due, its waves and recipients;
- `campaign_slots`: a dispatch's throttle per channel (the next free moment).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("journey_id", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("journey_id"),
    )
    op.create_table(
        "campaign_dispatches",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("journey_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=63), nullable=False),
        sa.Column("due", sa.String(length=16), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=True),
        sa.Column("throttle", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("waves", sa.Integer(), nullable=False),
        sa.Column("waves_done", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_campaign_dispatches_journey", "campaign_dispatches", ["journey_id", "started_at"]
    )
    op.create_table(
        "campaign_slots",
        sa.Column("dispatch_id", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dispatch_id", "channel"),
    )


def downgrade() -> None:
    op.drop_table("campaign_slots")
    op.drop_index("ix_campaign_dispatches_journey", table_name="campaign_dispatches")
    op.drop_table("campaign_dispatches")
    op.drop_table("campaigns")
