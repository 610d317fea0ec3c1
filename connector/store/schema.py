"""Tables, shared by SQLite and PostgreSQL (SQLAlchemy Core)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("credits", sa.BigInteger, nullable=True),       # NULL: no credit limit
    sa.Column("rate_limit", sa.Integer, nullable=True),       # requests a minute; NULL: the default
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("credits IS NULL OR credits >= 0", name="credits_not_negative"),
)

# Fixed one-minute windows per key; rows older than the previous window are pruned.
rate_windows = sa.Table(
    "rate_windows", metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# Requests per key, action and requestSource (the seed's requestSource is recorded per key).
key_usage = sa.Table(
    "key_usage", metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("action", sa.String(64), primary_key=True),
    sa.Column("request_source", sa.String(32), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("credits_spent", sa.BigInteger, nullable=False, default=0),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
)

# Console sessions (connector/console/auth.py): the cookie carries a random id, stored here as its
# SHA-256 with the session's CSRF token and a fingerprint of the admin key it was opened with.
console_sessions = sa.Table(
    "console_sessions", metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("admin_fingerprint", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_console_sessions_expires", "expires_at"),
)

# Blocks of a key's credits held by one process (``holder``), spent from memory; ``credits``
# is what is left of the block as that process last reported it. See store/keys.py.
credit_leases = sa.Table(
    "credit_leases", metadata,
    sa.Column("holder", sa.String(40), primary_key=True),
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("credits", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),        # unix seconds
    sa.CheckConstraint("credits >= 0", name="leased_credits_not_negative"),
    sa.Index("ix_credit_leases_key", "key_id"),
)
