"""Reporting: each run's trail of decisions, counters kept on write, and conversions that
no longer need the run alive.

- `run_trail`: entered or refused (why), each step reached, each branch case, split
  variant, wait outcome, send outcome and exit, with the reason, for `journeys explain`.
- `journey_counts`: counters per (journey, version, entry day, step, metric, channel),
  so `journeys stats` reads a few hundred rows however many runs there were.
- `journey_runs.conversion_event_id`: which goal event converted the run; unique per
  journey, so one order converts one run.

Runs and messages from before this revision have no trail and are not in the counters:
their numbers start at the upgrade (docs/analytics.md says so).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_trail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=700), nullable=False),
        sa.Column("workflow_id", sa.String(length=400), nullable=False),
        sa.Column("entry_seq", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_run_trail"),
        sa.UniqueConstraint("key", name="uq_run_trail_key"),
    )
    op.create_index("ix_run_trail_contact", "run_trail", ["contact_id", "at"])
    op.create_index("ix_run_trail_run", "run_trail", ["workflow_id", "entry_seq"])
    op.create_table(
        "journey_counts",
        sa.Column("journey_id", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("metric", sa.String(length=250), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("amount_sq", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "journey_id",
            "version",
            "day",
            "step_id",
            "metric",
            "channel",
            "shard",
            name="pk_journey_counts",
        ),
    )
    op.create_index(
        "ix_journey_counts_step_day", "journey_counts", ["journey_id", "step_id", "day"]
    )
    with op.batch_alter_table("journey_runs") as batch:
        batch.add_column(sa.Column("conversion_event_id", sa.Integer(), nullable=True))
        batch.create_unique_constraint(
            "uq_journey_runs_journey_id_conversion_event_id", ["journey_id", "conversion_event_id"]
        )
    op.create_index(
        "ix_runs_journey_active_step",
        "journey_runs",
        ["journey_id", "status", "entered_at", "current_step"],
    )


def downgrade() -> None:
    op.drop_index("ix_runs_journey_active_step", table_name="journey_runs")
    with op.batch_alter_table("journey_runs") as batch:
        batch.drop_constraint("uq_journey_runs_journey_id_conversion_event_id", type_="unique")
        batch.drop_column("conversion_event_id")
    op.drop_table("journey_counts")
    op.drop_table("run_trail")
