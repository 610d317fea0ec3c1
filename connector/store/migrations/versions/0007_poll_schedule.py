"""Adaptive polling: each watch's schedule estimate (``connector/trigger/schedule.py``), on its row.

``poll_interval`` is the interval the schedule chose at the last poll, ``rate_per_day`` the
estimated followers a day (the console and /metrics read both), ``schedule_state`` the
estimator's state (JSON). All three are written by the poll's one commit, so every poller
shares them and they survive restarts.

Revision ID: 0007
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("poll_interval", "rate_per_day", "schedule_state")


def upgrade() -> None:
    op.add_column("watches", sa.Column("poll_interval", sa.Float(), nullable=True))
    op.add_column("watches", sa.Column("rate_per_day", sa.Float(), nullable=True))
    op.add_column("watches", sa.Column("schedule_state", sa.Text(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN directly (SQLite 3.35+), as 0003 does.
    for column in COLUMNS:
        op.execute(f"ALTER TABLE watches DROP COLUMN {column}")
