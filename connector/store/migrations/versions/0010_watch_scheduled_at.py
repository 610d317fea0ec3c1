"""``watches.scheduled_at``: when the watch's own schedule makes it due next.

A read now (``POST /api/v1/hooks/<id>/poll``) brings ``next_poll_at`` forward and leaves
``scheduled_at`` alone, so the poll that follows knows whether the watch was due anyway (a
regular poll, paid by every paying key) or only because keys asked (paid by them alone, see
``connector/trigger/billing.py``). Existing watches start from their ``next_poll_at``.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("watches", sa.Column("scheduled_at", sa.Float(), nullable=True))
    op.execute("UPDATE watches SET scheduled_at = next_poll_at")


def downgrade() -> None:
    with op.batch_alter_table("watches") as batch:
        batch.drop_column("scheduled_at")
