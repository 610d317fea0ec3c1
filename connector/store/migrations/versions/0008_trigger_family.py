"""A family of triggers: a watch is keyed by what it reads, subscriptions have inputs.

- ``watches.operation`` (what is read; existing watches read followers) joins the watch's
  unique target, and ``watches.state`` holds a detection strategy's own state;
- ``events.event`` names each event's trigger (existing ones are ``new_follower``);
- ``subscriptions.inputs`` (filters, ``every``...), ``subscriptions.state`` and
  ``subscriptions.poll_requested_at``.

Nothing else changes: watch ids and event ids of existing watches are computed as before,
so their seen followers, events, pending deliveries and inboxes carry on as they were.

On SQLite the unique constraint is changed by rebuilding ``watches`` (batch mode). The
migration connection runs with foreign keys off (see ``connector/store/migrate.py``), so
dropping the old table cascades to nothing; the migration refuses to run otherwise.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _check_no_cascade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("rebuilding the watches table with foreign keys on would delete its events")


def upgrade() -> None:
    _check_no_cascade()
    op.add_column("events", sa.Column("event", sa.String(length=40), nullable=False,
                                      server_default="new_follower"))
    for column in (sa.Column("inputs", sa.Text(), nullable=True), sa.Column("state", sa.Text(), nullable=True),
                   sa.Column("poll_requested_at", sa.Float(), nullable=True)):
        op.add_column("subscriptions", column)
    with op.batch_alter_table("watches") as batch:
        batch.add_column(sa.Column("operation", sa.String(length=40), nullable=False,
                                   server_default="list_followers"))
        batch.add_column(sa.Column("state", sa.Text(), nullable=True))
        batch.drop_constraint("uq_watches_target", type_="unique")
        batch.create_unique_constraint("uq_watches_target", ["provider", "cred_hash", "handle", "operation"])


def downgrade() -> None:
    # Watches of anything but followers (and all they hold) cannot be kept by the older release.
    _check_no_cascade()
    # Foreign keys are off here: their rows are deleted table by table.
    gone = "SELECT id FROM watches WHERE operation <> 'list_followers'"
    subs = f"SELECT id FROM subscriptions WHERE watch_id IN ({gone})"
    for table, where in (("delivery_attempts", f"subscription_id IN ({subs})"),
                         ("deliveries", f"subscription_id IN ({subs})"), ("inbox", f"subscription_id IN ({subs})"),
                         ("subscriptions", f"watch_id IN ({gone})"), ("seen_followers", f"watch_id IN ({gone})"),
                         ("events", f"watch_id IN ({gone})"), ("watches", "operation <> 'list_followers'")):
        op.execute(f"DELETE FROM {table} WHERE {where}")
    with op.batch_alter_table("watches") as batch:
        batch.drop_constraint("uq_watches_target", type_="unique")
        batch.create_unique_constraint("uq_watches_target", ["provider", "cred_hash", "handle"])
        batch.drop_column("state")
        batch.drop_column("operation")
    with op.batch_alter_table("subscriptions") as batch:
        for column in ("poll_requested_at", "state", "inputs"):
            batch.drop_column(column)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("event")
