"""Schema migrations (Alembic): which revision a database is at, and bringing it to the newest.

A database is in one of four states:

- ``empty``: no tables. It is created from the migrations (safe to do unasked).
- ``legacy``: tables made by a release before migrations existed (``create_all``), with no
  ``alembic_version``. It is stamped as the baseline, then upgraded like any other.
- ``outdated``: at an older revision. Only ``connector db upgrade`` (or the demo) upgrades
  it; ``serve`` and ``poll`` refuse to start and say so.
- ``current``, or ``ahead``: made by a newer release, which this one cannot use.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
UPGRADE_COMMAND = "connector db upgrade"


class SchemaError(RuntimeError):
    """The database's schema is not the one this release uses; the message says what to run."""


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _state(conn) -> str:
    names = set(sa.inspect(conn).get_table_names())
    if "alembic_version" not in names:
        return "legacy" if "api_keys" in names else "empty"
    current = MigrationContext.configure(conn).get_current_revision()
    if current == head():
        return "current"
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    return "outdated" if current is None or current in known else "ahead"


def state(engine: sa.Engine) -> str:
    """``empty``, ``legacy``, ``outdated``, ``current`` or ``ahead`` (see the module docstring)."""
    with engine.connect() as conn:
        return _state(conn)


@contextlib.contextmanager
def _exclusive(conn):
    """One migrator at a time (several processes may start at once on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(727000001)"))
    yield


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns ``(before, after)`` (``before``
    None for an empty database, ``legacy`` for one made before migrations)."""
    with engine.begin() as conn, _exclusive(conn):
        before_state = _state(conn)
        if before_state == "ahead":
            raise SchemaError(f"The database is at revision {MigrationContext.configure(conn).get_current_revision()}, "
                              f"newer than this release ({head()}): it was upgraded by a newer release.")
        before = {"legacy": "legacy", "empty": None}.get(
            before_state, MigrationContext.configure(conn).get_current_revision())
        config = _config(conn)
        if before_state == "legacy":
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
    return before, head()


def ensure(engine: sa.Engine, *, allow_upgrade: bool) -> None:
    """Make sure the schema is current: an empty database is created; an older one is
    upgraded only when ``allow_upgrade``; otherwise :class:`SchemaError` names the command."""
    current = state(engine)
    if current == "current":
        return
    if current == "empty" or allow_upgrade:
        try:
            upgrade(engine)
        except sa.exc.DBAPIError:
            if state(engine) != "current":   # (another process created it at the same moment: fine)
                raise
        return
    if current == "ahead":
        raise SchemaError(f"The database is at revision {revision(engine)}, newer than this release "
                          f"({head()}). Run the release that upgraded it.")
    at = "made before schema migrations" if current == "legacy" else f"at revision {revision(engine)}"
    raise SchemaError(f"The database schema is out of date ({at}; this release needs {head()}). "
                      f"Back it up, then run `{UPGRADE_COMMAND}` with the same CONNECTOR_DATABASE_URL.")
