"""Credit leases: blocks of a key's credits taken by one process, so that spending a credit
is not a database write (``connector/store/keys.py``).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_leases",
        sa.Column("holder", sa.String(length=40), primary_key=True),
        sa.Column("key_id", sa.String(length=32), primary_key=True),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.CheckConstraint("credits >= 0", name="leased_credits_not_negative"),
    )
    op.create_index("ix_credit_leases_key", "credit_leases", ["key_id"])


def downgrade() -> None:
    # Leased credits that were not spent go back to their keys first.
    op.execute("UPDATE api_keys SET credits = credits + (SELECT COALESCE(SUM(l.credits), 0) FROM credit_leases l "
               "WHERE l.key_id = api_keys.id) WHERE credits IS NOT NULL")
    op.drop_index("ix_credit_leases_key", table_name="credit_leases")
    op.drop_table("credit_leases")
