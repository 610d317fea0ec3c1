"""Drop ``api_keys.last_used_at``: nothing ever wrote it (``key_usage`` keeps when a key was used).

``ALTER TABLE ... DROP COLUMN`` directly (SQLite 3.35+ and PostgreSQL): Alembic's batch
mode would rebuild the SQLite table and lose its CHECK that credits never go negative.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.dialect.dbapi.sqlite_version_info < (3, 35):
        raise RuntimeError("this migration needs SQLite 3.35 or newer (ALTER TABLE ... DROP COLUMN); "
                           f"this Python's SQLite is {bind.dialect.dbapi.sqlite_version}")
    op.execute("ALTER TABLE api_keys DROP COLUMN last_used_at")


def downgrade() -> None:
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
