"""The database: one engine, SQLite by default, PostgreSQL by URL.

``Store(url)`` creates the engine and checks the schema (:mod:`.migrate`): an empty database
is created, an out-of-date one is refused unless ``upgrade=True``. Queries live beside the
tables they use (``keys.py`` for caller keys, credits and rate limits). SQL parameters never
appear in error messages (``hide_parameters``): they may hold keys and webhook secrets.

A pooled connection belongs to the process that opened it: a forked child (gunicorn's
workers, when the app was built before the fork) never uses one of its parent's, it opens
its own (SQLAlchemy's "pooling with os.fork()" recipe), so two processes never talk over one
database socket.
"""

from __future__ import annotations

import contextlib
import os
import threading

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import migrate
from .engine import create_engine, reachable
from .schema import metadata

__all__ = ["Store", "metadata", "upsert", "insert_ignore"]


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _remember_pid(_dbapi_connection, record):
    record.info["pid"] = os.getpid()


def _refuse_inherited(_dbapi_connection, record, proxy):
    """A connection opened by another process (this one's parent) is dropped from this
    process's pool without being closed (the parent may still use it) and a new one opened."""
    if record.info.get("pid") != os.getpid():
        record.dbapi_connection = proxy.dbapi_connection = None
        raise sa.exc.DisconnectionError("connection opened by another process")


class Store:
    def __init__(self, url: str, *, upgrade: bool = False):
        self.url = url
        if url.startswith("sqlite"):
            self.engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                           pool_size=20, max_overflow=20, hide_parameters=True)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                                           hide_parameters=True)
        sa.event.listen(self.engine, "connect", _remember_pid)
        sa.event.listen(self.engine, "checkout", _refuse_inherited)
        self.dialect = self.engine.dialect.name
        # SQLite lets one writer in at a time and makes the others sleep-poll (1, 2, 5, 10 ms…);
        # queueing this process's writers on a lock instead keeps short writes short.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        try:
            with reachable(url):
                migrate.ensure(self.engine, allow_upgrade=upgrade)
        except BaseException:
            self.engine.dispose()
            raise

    def begin(self):
        return self.engine.begin()

    @contextlib.contextmanager
    def write(self):
        """A short write transaction (serialised within this process on SQLite)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def connect(self):
        return self.engine.connect()

    def dispose(self, *, close: bool = True) -> None:
        """Drop the pool's connections (``close=False`` in a forked child: leave the parent's
        connections open for the parent, and start an empty pool)."""
        self.engine.dispose(close=close)


def upsert(dialect: str, table: sa.Table, values: dict, keys: list[str], updates: dict):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET updates`` for SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


def insert_ignore(dialect: str, table: sa.Table, values: dict):
    """``INSERT ... ON CONFLICT DO NOTHING`` for SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).values(**values).on_conflict_do_nothing()
