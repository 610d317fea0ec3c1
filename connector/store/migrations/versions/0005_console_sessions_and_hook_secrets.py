"""Console sessions kept on the server, and webhook secrets kept encrypted (with a previous
secret during a rotation).

``console_sessions``: one row per signed-in browser, found by the SHA-256 of the random id its
cookie carries; signing out deletes it, and a row made under another admin key is refused.
``subscriptions.secret_enc`` / ``previous_secret_enc``: Fernet tokens under
``CONNECTOR_SECRET_KEY``; ``previous_secret_until``: when the previous secret stops signing.
The plain ``secret`` column stays for rows written before this revision: the first process
started with ``CONNECTOR_SECRET_KEY`` encrypts them and empties it
(:func:`connector.trigger.hook_secrets.seal_plain_secrets`), so upgrading needs no key.

Revision ID: 0005
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), primary_key=True),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("admin_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_console_sessions_expires", "console_sessions", ["expires_at"])
    op.add_column("subscriptions", sa.Column("secret_enc", sa.Text(), nullable=True))
    op.add_column("subscriptions", sa.Column("previous_secret_enc", sa.Text(), nullable=True))
    op.add_column("subscriptions", sa.Column("previous_secret_until", sa.Float(), nullable=True))


def downgrade() -> None:
    # Encrypted secrets cannot be written back in plain text without the key: a downgrade
    # keeps only rows that still have a plain secret signing.
    op.drop_column("subscriptions", "previous_secret_until")
    op.drop_column("subscriptions", "previous_secret_enc")
    op.drop_column("subscriptions", "secret_enc")
    op.drop_index("ix_console_sessions_expires", table_name="console_sessions")
    op.drop_table("console_sessions")
