"""``connector db``: where the database schema stands, and upgrading it."""

from __future__ import annotations

import sys

import click
from ..store import migrate
from ..store.engine import create_engine, reachable
from .base import database_url, load_settings

@click.group()
def db():
    """The database schema: see where it stands, upgrade it."""


@db.command("upgrade")
def db_upgrade():
    """Migrate the database (CONNECTOR_DATABASE_URL) to this release's schema. Back it up first."""
    url = database_url(load_settings())
    try:
        engine = create_engine(url, hide_parameters=True)
    except migrate.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with reachable(url):
            migrate.state(engine)   # an unreachable database is named before anything is tried
        before, after = migrate.upgrade(engine)
    except migrate.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"The database is up to date (revision {after}).")
    else:
        click.echo(f"Upgraded the database from {before or 'nothing'} to revision {after}.")


@db.command("status")
def db_status():
    """Say whether the database's schema is the one this release needs."""
    url = database_url(load_settings())
    try:
        engine = create_engine(url, hide_parameters=True)
    except migrate.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with reachable(url):
            state, current = migrate.state(engine), migrate.revision(engine)
    except migrate.SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"{state}: the database is at {current or 'no revision'}; this release needs {migrate.head()}.")
    if state in ("outdated", "legacy"):
        click.echo(f"Run `{migrate.UPGRADE_COMMAND}` (after a backup).")
    if state in ("outdated", "legacy", "ahead"):
        sys.exit(1)
