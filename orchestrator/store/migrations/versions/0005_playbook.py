"""The playbook: orders and their lines, the loyalty ledger, coupons, segments and members.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("campaign", sa.String(length=63), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("minimum_order", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(length=500), nullable=False),
        sa.Column("journey_id", sa.String(length=63), nullable=True),
        sa.Column("workflow_id", sa.String(length=400), nullable=True),
        sa.Column("entry_seq", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_order_id", sa.String(length=255), nullable=True),
        sa.Column("redeemed_revenue", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_coupons")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_coupons_idempotency_key")),
    )
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.create_index("ix_coupons_campaign", ["campaign"], unique=False)
        batch_op.create_index("ix_coupons_contact", ["contact_id"], unique=False)

    op.create_table(
        "loyalty_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=500), nullable=False),
        sa.Column("journey_id", sa.String(length=63), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loyalty_entries")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_loyalty_entries_idempotency_key")),
    )
    with op.batch_alter_table("loyalty_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_loyalty_contact_created", ["contact_id", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_loyalty_entries_order_id"), ["order_id"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("image_url", sa.String(length=2000), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_index("ix_order_lines_contact", ["contact_id"], unique=False)
        batch_op.create_index("ix_order_lines_order", ["order_id"], unique=False)
        batch_op.create_index("ix_order_lines_product", ["product_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=True),
        sa.Column("total", sa.Float(), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("coupon", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("order_id", name=op.f("uq_orders_order_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_contact_placed", ["contact_id", "placed_at"], unique=False)

    op.create_table(
        "segment_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=63), nullable=False),
        sa.Column("contact_id", sa.String(length=255), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("exited_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_members")),
    )
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.create_index("ix_segment_members_contact", ["contact_id"], unique=False)
        batch_op.create_index(
            "ix_segment_members_current", ["segment", "exited_at", "contact_id"], unique=False
        )
    # One open stay per (segment, contact): a refresh racing a merge cannot make two.
    op.create_index(
        "uq_segment_members_open",
        "segment_members",
        ["segment", "contact_id"],
        unique=True,
        sqlite_where=sa.text("exited_at IS NULL"),
        postgresql_where=sa.text("exited_at IS NULL"),
    )

    op.create_table(
        "segments",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("source_path", sa.String(length=1024), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_segments")),
    )


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_index("uq_segment_members_open", table_name="segment_members")
    with op.batch_alter_table("segment_members", schema=None) as batch_op:
        batch_op.drop_index("ix_segment_members_current")
        batch_op.drop_index("ix_segment_members_contact")

    op.drop_table("segment_members")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_contact_placed")

    op.drop_table("orders")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_index("ix_order_lines_product")
        batch_op.drop_index("ix_order_lines_order")
        batch_op.drop_index("ix_order_lines_contact")

    op.drop_table("order_lines")
    with op.batch_alter_table("loyalty_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loyalty_entries_order_id"))
        batch_op.drop_index("ix_loyalty_contact_created")

    op.drop_table("loyalty_entries")
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_contact")
        batch_op.drop_index("ix_coupons_campaign")

    op.drop_table("coupons")
