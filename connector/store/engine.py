"""Opening the database: setup mistakes as one sentence that says what to change.

``create_engine(url)`` is SQLAlchemy's, with the mistakes a new deployment makes worded
(``postgres://``, the PostgreSQL driver not installed, a URL that is not one);
``reachable(url)`` words a database that cannot be connected to, naming its host and port
(never its password). Both raise :class:`DatabaseSetupError`, a :class:`SchemaError`, so every
command that already says "the database cannot be used as it is" says these too.
"""

from __future__ import annotations

import contextlib

import sqlalchemy as sa

from ..errors import redact
from .migrate import SchemaError

POSTGRES_EXTRA = "pip install -e '.[postgres]'"
URL_EXAMPLE = "postgresql+psycopg://user:password@host:5432/dbname"
NAMES = {"postgresql": "PostgreSQL"}


class DatabaseSetupError(SchemaError):
    """The database cannot be opened as configured; the message says what to change."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def create_engine(url: str, **options) -> sa.Engine:
    scheme = _scheme(url)
    if scheme == "postgres" or scheme.startswith("postgres+"):
        raise DatabaseSetupError(f"CONNECTOR_DATABASE_URL starts with {scheme}://, which SQLAlchemy does not "
                                 f"know: write postgresql+psycopg:// instead (e.g. {URL_EXAMPLE}).")
    try:
        return sa.create_engine(url, **options)
    except ModuleNotFoundError as exc:
        if exc.name == "psycopg":
            raise DatabaseSetupError(f"PostgreSQL needs the psycopg driver, which is not installed: run "
                                     f"{POSTGRES_EXTRA} (or pip install 'psycopg[binary]').") from None
        if exc.name == "psycopg2":
            raise DatabaseSetupError(f"CONNECTOR_DATABASE_URL asks for the psycopg2 driver, which is not "
                                     f"installed: write postgresql+psycopg:// (e.g. {URL_EXAMPLE}) and run "
                                     f"{POSTGRES_EXTRA}.") from None
        raise DatabaseSetupError(f"CONNECTOR_DATABASE_URL needs the Python module {exc.name}, which is not "
                                 f"installed; this service supports postgresql+psycopg:// and sqlite:///.") from None
    except sa.exc.NoSuchModuleError:
        raise DatabaseSetupError(f"CONNECTOR_DATABASE_URL names a database this service does not support "
                                 f"({scheme or 'none'}); use postgresql+psycopg:// or sqlite:///.") from None
    except sa.exc.ArgumentError:
        raise DatabaseSetupError(f"CONNECTOR_DATABASE_URL is not a database URL; write e.g. {URL_EXAMPLE} "
                                 "or sqlite:////path/to/connector.db.") from None


def where(url: str) -> str:
    """The database as a person names it: PostgreSQL at host:port, or the SQLite file."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"the SQLite database {parsed.database or '(in memory)'}"
    port = parsed.port or (5432 if backend == "postgresql" else None)
    host = parsed.host or "localhost"
    return f"the {NAMES.get(backend, backend)} database at {host}{f':{port}' if port else ''}"


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    lowered = text.lower()
    for needle, words in (("connection refused", "connection refused"), ("timeout", "timed out"),
                          ("timed out", "timed out"), ("could not translate host name", "unknown host name"),
                          ("name or service not known", "unknown host name"),
                          ("temporary failure in name resolution", "unknown host name"),
                          ("password authentication failed", "password authentication failed"),
                          ("unable to open database file", "the file cannot be opened")):
        if needle in lowered:
            return words
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return redact(first)[:200]


@contextlib.contextmanager
def reachable(url: str):
    """Around a first connection: a database that cannot be reached is a DatabaseSetupError."""
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        what = ("that its folder exists and is writable" if _scheme(url).startswith("sqlite")
                else "that the database server is running")
        raise DatabaseSetupError(f"Cannot reach {where(url)} ({_reason(exc)}): check CONNECTOR_DATABASE_URL "
                                 f"and {what}.") from None
