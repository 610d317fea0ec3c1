"""The ``connector`` command group and what its commands share: settings, the database."""

from __future__ import annotations

import logging

import click

from ..config import ConfigError, Settings
from ..errors import PROVIDER_KEY_OPTION, PROVIDER_OPTION, ConnectorError, worded
from ..services import default_database_url
from ..store import Store
from ..store.keys import KeyStore
from ..store.migrate import SchemaError


# The CLI's words for the caller's provider choice (the HTTP edge says X-Provider headers).
CLI_WORDS = {PROVIDER_OPTION: "--provider", PROVIDER_KEY_OPTION: "--provider-key"}


def fail(exc: ConnectorError, extra: str = "") -> click.ClickException:
    """A domain error as the terminal shows it: the one place the CLI words errors."""
    return click.ClickException(worded(exc.message, CLI_WORDS) + extra)


def load_settings(**overrides) -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings.replace(**overrides) if overrides else settings


def database_url(settings: Settings) -> str:
    return settings.database_url or default_database_url()


def open_store(settings: Settings, *, upgrade: bool = False):
    """The database, or a clear error when its schema is out of date."""
    try:
        return Store(database_url(settings), upgrade=upgrade)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None


def open_keys(settings: Settings):
    return KeyStore(open_store(settings), settings.api_keys, settings.default_rate_limit)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """tiktok-connector: TikTok follower data for Zapier, Make.com and webhooks."""
    logging.basicConfig(level=load_settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; webhook URLs (Zapier's hook URLs) are capabilities.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic says which dialect it uses at every start; `connector db upgrade` reports what it did.
    logging.getLogger("alembic").setLevel(logging.WARNING)
