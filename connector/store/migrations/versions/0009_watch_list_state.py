"""``watches.resume_cursor`` becomes ``watches.list_state``: it keeps a newest-first watch's
unread gaps (where each continues and when it opened) and the mark its gap estimates start
from (``connector/trigger/watches.py``), not one cursor. The values are kept as they are; a
value written before (a bare list of cursors, or gaps without a mark) reads as before.

Revision ID: 0009
Revises: 0005
"""

from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... RENAME COLUMN: PostgreSQL, and SQLite since 3.25, rename in place.
    op.alter_column("watches", "resume_cursor", new_column_name="list_state")


def downgrade() -> None:
    op.alter_column("watches", "list_state", new_column_name="resume_cursor")
