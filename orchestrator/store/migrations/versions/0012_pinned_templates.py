"""Templates pinned per journey version, and rollbacks.

- `template_blobs`: each template file's content once, by its sha256;
- `journey_versions.templates`: `{path: sha256}` of the files a version renders with
  (`{}` for versions deployed before: they keep reading the templates folder);
- `journey_versions.rolled_back_at`: set on the version `journeys deploy --rollback`
  made current.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "template_blobs",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    with op.batch_alter_table("journey_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("templates", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("rolled_back_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journey_versions", schema=None) as batch_op:
        batch_op.drop_column("rolled_back_at")
        batch_op.drop_column("templates")
    op.drop_table("template_blobs")
