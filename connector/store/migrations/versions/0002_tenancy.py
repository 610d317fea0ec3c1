"""Tenancy: hooks deduplicated and capped per host, disabled hooks, claimed deliveries,
the inbox of polling subscriptions, indexes for retention.

Existing rows are filled in: each hook's receiver host and (for the first of identical
hooks) its dedupe key; each polling subscription's inbox gets the events of its watch,
which it could read before this release.

Revision ID: 0002
Revises: 0001
"""

import hashlib
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _receiver(url: str) -> str:
    parts = urlsplit(url or "")
    return f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("target_host", sa.String(length=300), nullable=True))
    op.add_column("subscriptions", sa.Column("dedupe_key", sa.String(length=64), nullable=True))
    op.add_column("subscriptions", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column("subscriptions", sa.Column("failing_since", sa.Float(), nullable=True))
    op.add_column("deliveries", sa.Column("claimed_until", sa.Float(), nullable=True))
    op.create_table(
        "inbox",
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["seq"], ["events.seq"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("subscription_id", "seq"),
    )
    op.create_index("ix_inbox_created", "inbox", ["created_at"], unique=False)
    op.create_index("ix_events_detected", "events", ["detected_at"], unique=False)
    op.create_index("ix_deliveries_created", "deliveries", ["created_at"], unique=False)
    op.create_index("ix_delivery_attempts_at", "delivery_attempts", ["attempted_at"], unique=False)

    conn = op.get_bind()
    subs = sa.table("subscriptions", sa.column("id"), sa.column("key_id"), sa.column("watch_id"),
                    sa.column("kind"), sa.column("event"), sa.column("target_url"), sa.column("created_at"),
                    sa.column("target_host"), sa.column("dedupe_key"))
    hooks = conn.execute(sa.select(subs.c.id, subs.c.key_id, subs.c.watch_id, subs.c.event, subs.c.target_url)
                         .where(subs.c.kind == "hook").order_by(subs.c.created_at, subs.c.id)).all()
    taken = set()
    for hook in hooks:
        dedupe = hashlib.sha256(f"{hook.key_id}\n{hook.watch_id}\n{hook.event}\n{hook.target_url}".encode()).hexdigest()
        values = {"target_host": _receiver(hook.target_url)}
        if dedupe not in taken:       # later copies of the same hook keep working, undeduplicated
            taken.add(dedupe)
            values["dedupe_key"] = dedupe
        conn.execute(subs.update().where(subs.c.id == hook.id).values(**values))
    op.create_index("uq_subscriptions_dedupe", "subscriptions", ["dedupe_key"], unique=True)
    conn.execute(sa.text(
        "INSERT INTO inbox (subscription_id, seq, created_at) "
        "SELECT s.id, e.seq, e.detected_at FROM subscriptions s JOIN events e ON e.watch_id = s.watch_id "
        "WHERE s.kind = 'poll'"))


def downgrade() -> None:
    op.drop_index("uq_subscriptions_dedupe", table_name="subscriptions")
    for name, table in (("ix_delivery_attempts_at", "delivery_attempts"), ("ix_deliveries_created", "deliveries"),
                        ("ix_events_detected", "events")):
        op.drop_index(name, table_name=table)
    op.drop_table("inbox")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("claimed_until")
    with op.batch_alter_table("subscriptions") as batch:
        for column in ("failing_since", "status_reason", "dedupe_key", "target_host"):
            batch.drop_column(column)
