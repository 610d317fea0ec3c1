"""The database: one engine, SQLite by default, PostgreSQL by URL.

``Store(url)`` creates the engine and the tables. Queries live beside the tables they use
(``keys.py`` for caller keys, credits and rate limits).
"""

from __future__ import annotations

import contextlib
import threading

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .schema import metadata

__all__ = ["Store", "metadata", "upsert", "insert_ignore"]


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    def __init__(self, url: str):
        self.url = url
        if url.startswith("sqlite"):
            self.engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                           pool_size=20, max_overflow=20)
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.dialect = self.engine.dialect.name
        # SQLite lets one writer in at a time and makes the others sleep-poll (1, 2, 5, 10 ms…);
        # queueing this process's writers on a lock instead keeps short writes short.
        self._write_lock = threading.Lock() if self.dialect == "sqlite" else None
        self.create_tables()

    def create_tables(self) -> None:
        # Import the modules that define tables on the shared metadata.
        from . import schema  # noqa: F401
        from ..trigger import tables  # noqa: F401
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Add the nullable columns a newer release defined to tables an older one created
        (``create_all`` never alters a table), with their indexes."""
        inspector = sa.inspect(self.engine)
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:
                have = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name in have or not column.nullable:
                        continue
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
                    if column.unique:
                        conn.execute(sa.text(f'CREATE UNIQUE INDEX IF NOT EXISTS uq_{table.name}_{column.name} '
                                             f'ON {table.name} ("{column.name}")'))
            for table in metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

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

    def dispose(self) -> None:
        self.engine.dispose()


def upsert(dialect: str, table: sa.Table, values: dict, keys: list[str], updates: dict):
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET updates`` for SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table).values(**values)
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


def insert_ignore(dialect: str, table: sa.Table, values: dict):
    """``INSERT ... ON CONFLICT DO NOTHING`` for SQLite and PostgreSQL."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).values(**values).on_conflict_do_nothing()
