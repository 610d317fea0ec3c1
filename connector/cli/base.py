"""The ``connector`` command group and what its commands share: settings, the database."""

from __future__ import annotations

import importlib.metadata
import logging

import click

from ..config import ConfigError, Settings, credential_words, either
from ..errors import PROVIDER_KEY_OPTION, PROVIDER_OPTION, ConnectorError, worded
from ..providers import PROVIDERS
from ..services import default_database_url
from ..store import Store
from ..store.keys import KeyStore
from ..store.migrate import SchemaError


# The CLI's words for the caller's provider choice (the HTTP edge says X-Provider headers).
CLI_WORDS = {PROVIDER_OPTION: "--provider", PROVIDER_KEY_OPTION: "--provider-key"}

# Where the seed documents tell an API caller to contact support, the CLI's user is the
# operator, who can act: these say what to do instead.
OPERATOR_MESSAGES = {
    "not_configured": "No data provider is configured: set {all_variables} (or CONNECTOR_PROVIDER), or try the "
                      "built-in demo provider with --provider demo.",
    "auth_failed": "The {provider} provider refused this server's credentials: check {variables}.",
}


def provider_variables(provider: str) -> str | None:
    """The variables holding a provider's credentials (``TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET``),
    None for a provider without any."""
    cls = PROVIDERS.get(provider)
    if cls is None or not cls.needs_credentials():
        return None
    return " and ".join(s.env for s in cls.own_settings if s.credential)


def no_provider() -> str:
    """What to do when no provider has credentials, naming every provider's variables."""
    return OPERATOR_MESSAGES["not_configured"].format(all_variables=either(credential_words()))


def upstream_words(kind: str, provider: str | None, seed_message: str) -> str:
    """A provider failure as the CLI says it: the seed's words, or the operator's where the
    seed would send a user to support."""
    if kind == "not_configured":
        return no_provider()
    template = OPERATOR_MESSAGES.get(kind)
    if template is None:
        return worded(seed_message, CLI_WORDS)
    return template.format(provider=provider or "data",
                           variables=provider_variables(provider or "") or "its credentials")


def version() -> str:
    try:
        return importlib.metadata.version("tiktok-connector")
    except importlib.metadata.PackageNotFoundError:   # a checkout that was never installed
        return "unknown (not installed)"


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
@click.version_option(version(), "--version", "-V", prog_name="connector", message="%(prog)s %(version)s")
def main():
    """tiktok-connector: TikTok follower data for Zapier, Make.com and webhooks."""
    logging.basicConfig(level=load_settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; webhook URLs (Zapier's hook URLs) are capabilities.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic says which dialect it uses at every start; `connector db upgrade` reports what it did.
    logging.getLogger("alembic").setLevel(logging.WARNING)
