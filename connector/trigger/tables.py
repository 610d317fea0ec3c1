"""The trigger's tables, on the shared :data:`connector.store.schema.metadata`.

Times are unix seconds (floats): they compare the same way on SQLite and PostgreSQL.
The database is built and changed by the migrations in ``connector/store/migrations``;
a change here needs a migration there (``tests/test_migrations.py`` compares the two).
What a key may see is written down per subscription: a hook's ``deliveries`` and a polling
subscription's ``inbox`` hold only events from pages that key paid for.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..store.schema import metadata

# SQLite only autoincrements an INTEGER PRIMARY KEY.
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

WATCH_STATUSES = ("active", "backlog", "paused_credits", "not_found", "auth_failed", "error")
# active: paid and served; paused_credits: its key could not pay the last page; key_revoked;
# disabled: a hook whose deliveries failed for days (its owner re-enables it); paused: by its owner.
SUBSCRIPTION_STATUSES = ("active", "paused_credits", "key_revoked", "disabled", "paused")

watches = sa.Table(
    "watches", metadata,
    sa.Column("id", sa.String(40), primary_key=True),              # deterministic, see watch_id()
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("cred_hash", sa.String(64), nullable=False),        # sha256 of the caller's provider key, "" = operator's
    sa.Column("credentials_enc", sa.Text, nullable=True),         # Fernet token of the caller's provider key
    sa.Column("handle", sa.String(200), nullable=False),
    # What is read: a manifest operation (list_followers, list_following, get_profile).
    sa.Column("operation", sa.String(40), nullable=False, server_default="list_followers"),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("last_poll_at", sa.Float, nullable=True),
    sa.Column("next_poll_at", sa.Float, nullable=False),
    # When its own schedule makes it due; a read now brings only next_poll_at forward (NULL: as next_poll_at).
    sa.Column("scheduled_at", sa.Float, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_error_kind", sa.String(32), nullable=True),
    sa.Column("list_state", sa.Text, nullable=True),              # JSON: unread gaps and the mark, see load_gaps
    sa.Column("lease_owner", sa.String(80), nullable=True),
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    sa.Column("credits_spent", sa.BigInteger, nullable=False, default=0),
    sa.Column("pages_read", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    # The adaptive schedule (connector/trigger/schedule.py): the interval chosen at the last
    # poll, the estimated followers a day, the estimator's state (JSON).
    sa.Column("poll_interval", sa.Float, nullable=True),
    sa.Column("rate_per_day", sa.Float, nullable=True),
    sa.Column("schedule_state", sa.Text, nullable=True),
    sa.Column("state", sa.Text, nullable=True),                   # JSON: a detection strategy's own state
    sa.UniqueConstraint("provider", "cred_hash", "handle", "operation", name="uq_watches_target"),
    sa.Index("ix_watches_due", "next_poll_at"),
)

seen_followers = sa.Table(
    "seen_followers", metadata,
    sa.Column("watch_id", sa.String(40), sa.ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("follower_key", sa.String(220), primary_key=True),
)

events = sa.Table(
    "events", metadata,
    sa.Column("seq", AutoId, primary_key=True, autoincrement=True),  # order of detection
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("watch_id", sa.String(40), sa.ForeignKey("watches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("follower_key", sa.String(220), nullable=False),    # the event's subject, see events.subject_key
    sa.Column("event", sa.String(40), nullable=False, server_default="new_follower"),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("baseline", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("watch_id", "follower_key", name="uq_events_follower"),
    sa.Index("ix_events_detected", "detected_at"),                  # retention
)

subscriptions = sa.Table(
    "subscriptions", metadata,
    sa.Column("id", sa.String(40), primary_key=True),             # hook_… or poll_…
    sa.Column("watch_id", sa.String(40), sa.ForeignKey("watches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),              # hook | poll
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("target_url", sa.Text, nullable=True),
    sa.Column("target_host", sa.String(300), nullable=True),      # host:port, for per-host delivery caps
    sa.Column("dedupe_key", sa.String(64), nullable=True),      # hooks: sha256 of key, watch, event, URL, inputs
    sa.Column("secret", sa.String(80), nullable=True),            # plain: rows from before 0005 only
    sa.Column("secret_enc", sa.Text, nullable=True),              # Fernet token of the whsec_ secret
    sa.Column("previous_secret_enc", sa.Text, nullable=True),     # a rotated hook's previous secret...
    sa.Column("previous_secret_until", sa.Float, nullable=True),  # ...signing beside the new one until then
    sa.Column("inputs", sa.Text, nullable=True),                  # JSON: its own inputs (filters, every...)
    sa.Column("state", sa.Text, nullable=True),                   # JSON: what it has received (a milestone's mark)
    sa.Column("poll_requested_at", sa.Float, nullable=True),      # last POST /hooks/<id>/poll
    sa.Column("request_source", sa.String(32), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),           # see SUBSCRIPTION_STATUSES
    sa.Column("status_reason", sa.Text, nullable=True),           # why disabled, in words for its owner
    sa.Column("failing_since", sa.Float, nullable=True),          # first failed delivery since the last success
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("credits_spent", sa.BigInteger, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_called_at", sa.Float, nullable=True),         # poll: last request; hook: last delivery
    sa.Index("ix_subscriptions_watch", "watch_id"),
    sa.Index("ix_subscriptions_key", "key_id"),
    sa.Index("uq_subscriptions_dedupe", "dedupe_key", unique=True),
)

deliveries = sa.Table(
    "deliveries", metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(40), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_id", sa.String(40), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),           # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),       # also the claim lease while sending
    sa.Column("claimed_until", sa.Float, nullable=True),          # set while a sender holds it
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("subscription_id", "event_id", name="uq_deliveries_once"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_created", "created_at"),                # retention
)

# The events a polling subscription may read: those of the pages its key paid for (and the
# samples of its first call). The primary key is the polling route's index: newest first.
inbox = sa.Table(
    "inbox", metadata,
    sa.Column("subscription_id", sa.String(40), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("seq", sa.BigInteger, sa.ForeignKey("events.seq", ondelete="CASCADE"), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_inbox_created", "created_at"),                     # retention
)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", AutoId, primary_key=True, autoincrement=True),
    sa.Column("subscription_id", sa.String(40), sa.ForeignKey("subscriptions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("attempted_at", sa.Float, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Index("ix_delivery_attempts_sub", "subscription_id", "id"),
    sa.Index("ix_delivery_attempts_at", "attempted_at"),            # retention
)
