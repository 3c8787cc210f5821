"""Anonymous contacts: which contacts a storefront's write key may merge into another.

`contacts.anonymous` is true for a contact only ever sent as an anonymousId. With no
email, phone or order either, a write key may fold it into a userId (the anonymous
cart following the shopper who signs in); anything else is a customer, merged only by
an explicit alias sent with an admin key.

Contacts stored before this revision count as customers: whether one was ever sent as
a userId was not recorded, and a wrong guess would let the public write key take a
customer over. The cost is bounded: a visitor browsing anonymously across the upgrade
is not merged at sign-in (its calls from then on carry both ids and go to the userId;
an admin alias still merges it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("anonymous", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("anonymous")
