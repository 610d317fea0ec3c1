"""Schema migrations (Alembic): which revision a database is at, and bringing it to the newest.

A database is in one of five states:

- ``empty``: no tables. It is created from the migrations (safe to do unasked).
- ``legacy``: tables made by the release before migrations existed (``create_all``), with
  no version table. It is stamped as the baseline, then upgraded like any other.
- ``outdated``: at an older revision. Only ``connector db upgrade`` (or the demo) upgrades
  it; ``serve`` and ``poll`` refuse to start and say so.
- ``current``; or ``ahead``: made by a newer release, which this one cannot use.

Migrating runs in ONE transaction that holds the database alone: an advisory lock on
PostgreSQL, ``BEGIN EXCLUSIVE`` on SQLite (whose Python driver would otherwise commit each
``CREATE TABLE`` by itself). Several processes starting at once on an empty database
therefore create it once, and a migration that fails leaves the database as it was. The
revision lives in ``connector_alembic_version``, so another Alembic app's table in the same
PostgreSQL schema does not mislead us.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..errors import redact

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
VERSION_TABLE = "connector_alembic_version"
UPGRADE_COMMAND = "connector db upgrade"


class SchemaError(RuntimeError):
    """The database's schema is not the one this release uses; the message says what to run."""


def _config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _context(conn) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def head() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return _context(conn).get_current_revision()


def _state(conn) -> str:
    names = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        return "legacy" if "api_keys" in names else "empty"
    current = _context(conn).get_current_revision()
    if current == head():
        return "current"
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    return "outdated" if current is None or current in known else "ahead"


def state(engine: sa.Engine) -> str:
    """``empty``, ``legacy``, ``outdated``, ``current`` or ``ahead`` (see the module docstring)."""
    with engine.connect() as conn:
        return _state(conn)


@contextlib.contextmanager
def _alone(engine: sa.Engine):
    """A connection in a transaction no other migrator shares (see the module docstring)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727000001)"))
            yield conn
        return
    exclusive = sa.create_engine(engine.url, connect_args={"timeout": 60}, poolclass=sa.pool.NullPool)

    @sa.event.listens_for(exclusive, "connect")
    def _own_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None        # the driver begins and commits nothing by itself

    @sa.event.listens_for(exclusive, "begin")
    def _begin_exclusive(conn):
        conn.exec_driver_sql("BEGIN EXCLUSIVE")

    try:
        with exclusive.begin() as conn:
            yield conn
    finally:
        exclusive.dispose()


def upgrade(engine: sa.Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision; returns ``(before, after)`` (``before``
    None for an empty database, ``legacy`` for one made before migrations)."""
    try:
        with _alone(engine) as conn:
            before_state = _state(conn)
            current = _context(conn).get_current_revision() if before_state not in ("empty", "legacy") else None
            if before_state == "ahead":
                raise SchemaError(f"The database is at revision {current}, newer than this release ({head()}): "
                                  "it was upgraded by a newer release. Run that release instead.")
            config = _config(conn)
            if before_state == "legacy":
                command.stamp(config, BASELINE)
            command.upgrade(config, "head")
    except SchemaError:
        raise
    except (sa.exc.DBAPIError, RuntimeError) as exc:
        detail = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig else exc
        raise SchemaError(f"Upgrading the database schema failed, and nothing was changed: "
                          f"{redact(str(detail))}") from None
    return {"legacy": "legacy", "empty": None}.get(before_state, current), head()


def ensure(engine: sa.Engine, *, allow_upgrade: bool) -> None:
    """Make sure the schema is current: an empty database is created; an older one is
    upgraded only when ``allow_upgrade``; otherwise :class:`SchemaError` names the command."""
    current = state(engine)
    if current == "current":
        return
    if current == "ahead":
        raise SchemaError(f"The database is at revision {revision(engine)}, newer than this release "
                          f"({head()}). Run the release that upgraded it.")
    if current == "empty" or allow_upgrade:
        upgrade(engine)     # (it checks again, alone: another process may have done it meanwhile)
        return
    at = "made before schema migrations" if current == "legacy" else f"at revision {revision(engine)}"
    raise SchemaError(f"The database schema is out of date ({at}; this release needs {head()}). "
                      f"Back it up, then run `{UPGRADE_COMMAND}` with the same CONNECTOR_DATABASE_URL.")
