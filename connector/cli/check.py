"""``connector check``: the settings in force, the database and its schema, and whether each
configured provider answers. Secrets are never shown, only whether they are set; the
database URL is shown without its password. Exits 1 when something needs fixing."""

from __future__ import annotations

import dataclasses
import time

import click
import sqlalchemy as sa

from ..config import Settings, WorkerSettings
from ..errors import UpstreamError, redact
from ..providers import PROVIDERS
from ..store import migrate
from .base import NO_PROVIDER, PROVIDER_VARIABLES, database_url, load_settings, upstream_words, version

# Settings fields and the variables they are read from (fields not listed are not variables).
VARIABLES = {
    "provider": "CONNECTOR_PROVIDER", "dumpling_api_key": "DUMPLING_API_KEY",
    "dumpling_base_url": "DUMPLING_BASE_URL", "socialfetch_api_key": "SOCIALFETCH_API_KEY",
    "socialfetch_base_url": "SOCIALFETCH_BASE_URL", "tiktok_client_key": "TIKTOK_CLIENT_KEY",
    "tiktok_client_secret": "TIKTOK_CLIENT_SECRET", "tiktok_base_url": "TIKTOK_BASE_URL",
    "database_url": "CONNECTOR_DATABASE_URL", "api_keys": "CONNECTOR_API_KEYS",
    "secret_key": "CONNECTOR_SECRET_KEY", "allow_private_targets": "CONNECTOR_ALLOW_PRIVATE_TARGETS",
    "poll_interval": "CONNECTOR_POLL_INTERVAL", "webhook_retry_schedule": "CONNECTOR_WEBHOOK_RETRY_SCHEDULE",
    "default_rate_limit": "CONNECTOR_DEFAULT_RATE_LIMIT", "max_body_bytes": "CONNECTOR_MAX_BODY_BYTES",
    "upstream_deadline": "CONNECTOR_UPSTREAM_DEADLINE", "max_hooks_per_key": "CONNECTOR_MAX_HOOKS_PER_KEY",
    "max_handles_per_key": "CONNECTOR_MAX_HANDLES_PER_KEY", "delivery_timeout": "CONNECTOR_DELIVERY_TIMEOUT",
    "delivery_per_host": "CONNECTOR_DELIVERY_PER_HOST", "delivery_per_key": "CONNECTOR_DELIVERY_PER_KEY",
    "max_requests_in_flight_per_key": "CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY",
    "hook_disable_after": "CONNECTOR_HOOK_DISABLE_AFTER_DAYS", "retention": "CONNECTOR_RETENTION_DAYS",
    "poll_subscription_ttl": "CONNECTOR_POLL_SUBSCRIPTION_TTL_DAYS", "manifests_dir": "CONNECTOR_MANIFESTS_DIR",
    "log_level": "CONNECTOR_LOG_LEVEL", "provider_key": "CONNECTOR_PROVIDER_KEY",
    "metrics_token": "CONNECTOR_METRICS_TOKEN", "admin_key": "CONNECTOR_ADMIN_KEY",
}
WORKER_VARIABLES = {
    "page_budget": "CONNECTOR_POLL_PAGE_BUDGET", "lease_seconds": "CONNECTOR_POLL_LEASE_SECONDS",
    "poll_threads": "CONNECTOR_POLL_THREADS", "delivery_threads": "CONNECTOR_DELIVERY_THREADS",
    "idle_sleep": "CONNECTOR_POLL_IDLE_SLEEP",
}
# Fields whose values are credentials: shown as set or not set, never as values.
SECRET_FIELDS = frozenset({"dumpling_api_key", "socialfetch_api_key", "tiktok_client_key", "tiktok_client_secret",
                           "api_keys", "secret_key", "provider_key", "metrics_token", "admin_key"})
DAYS = frozenset({"hook_disable_after", "retention", "poll_subscription_ttl"})
PROBE_HANDLE = "tiktok"          # an account every provider knows
PROBE_TIMEOUT = 5.0


def masked_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def _shown(name: str, value, default) -> str:
    if name in SECRET_FIELDS:
        if not value:
            return "not set"
        return f"set ({len(value)} keys)" if isinstance(value, tuple) else "set"
    if name == "database_url":
        return masked_url(value) if value else "not set (the SQLite file in the instance folder)"
    mark = " (default)" if value == default else ""
    if value is None:
        return "not set" + mark
    if name in DAYS and isinstance(value, (int, float)):
        value = f"{value / 86400:g} days"
    elif isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"{value}{mark}"


def settings_lines(settings: Settings) -> list[str]:
    defaults = Settings()
    lines = []
    for f in dataclasses.fields(Settings):
        if f.name in VARIABLES:
            lines.append(f"  {VARIABLES[f.name]:<40} {_shown(f.name, getattr(settings, f.name), getattr(defaults, f.name))}")
    worker_defaults = WorkerSettings()
    for f in dataclasses.fields(WorkerSettings):
        if f.name in WORKER_VARIABLES:
            lines.append(f"  {WORKER_VARIABLES[f.name]:<40} "
                         f"{_shown(f.name, getattr(settings.worker, f.name), getattr(worker_defaults, f.name))}")
    return lines


def database_lines(url: str) -> tuple[list[str], bool]:
    lines = [f"  {masked_url(url)}"]
    engine = sa.create_engine(url, hide_parameters=True)
    try:
        state, current = migrate.state(engine), migrate.revision(engine)
    except Exception as exc:   # unreachable, refused, not a database: say so, never a traceback
        detail = getattr(exc, "orig", None) or exc
        return lines + [f"  unreachable: {redact(str(detail).splitlines()[0] if str(detail) else type(exc).__name__)}"], False
    finally:
        engine.dispose()
    words = {
        "current": f"schema current (revision {current})",
        "empty": f"empty: the schema (revision {migrate.head()}) is created at the first start",
        "legacy": f"made before schema migrations: run `{migrate.UPGRADE_COMMAND}` after a backup",
        "outdated": f"schema at revision {current}, this release needs {migrate.head()}: "
                    f"run `{migrate.UPGRADE_COMMAND}` after a backup",
        "ahead": f"schema at revision {current}, newer than this release ({migrate.head()}): run the newer release",
    }
    return lines + [f"  {words[state]}"], state in ("current", "empty")


def probe(settings: Settings, name: str) -> tuple[bool, str]:
    """One cheap real call (a profile) with a short deadline and no retry."""
    quick = settings.replace(upstream_deadline=PROBE_TIMEOUT, upstream_read_timeout=PROBE_TIMEOUT,
                             upstream_connect_timeout=min(PROBE_TIMEOUT, settings.upstream_connect_timeout),
                             upstream_max_attempts=1)
    provider = PROVIDERS[name].from_settings(quick)
    started = time.monotonic()
    try:
        provider.get_profile(PROBE_HANDLE)
    except UpstreamError as exc:
        ms = (time.monotonic() - started) * 1000
        if exc.kind in ("not_found", "could_not_process", "reported_issue"):
            return True, f"answers ({ms:.0f} ms; it refused the test account @{PROBE_HANDLE}: {exc.kind})"
        words = upstream_words(exc.kind, name, exc.kind.replace("_", " "))
        return False, f"{words} ({redact(exc.detail, provider.secrets())})"
    except Exception as exc:   # a bug in a provider must not hide the other answers
        return False, f"failed: {redact(f'{type(exc).__name__}: {exc}', provider.secrets())}"
    finally:
        provider.close()
    return True, f"answers ({(time.monotonic() - started) * 1000:.0f} ms)"


@click.command("check")
@click.option("--no-providers", is_flag=True, help="Do not call the providers (no upstream credits spent).")
def check(no_providers):
    """Report the settings in force (secrets masked), the database and its schema, and
    whether each configured provider answers. Exits 1 when something needs fixing."""
    settings = load_settings()
    problems = 0
    click.echo(f"tiktok-connector {version()}")
    click.echo("Settings in force (credentials are shown only as set or not set):")
    for line in settings_lines(settings):
        click.echo(line)
    click.echo("Database:")
    lines, ok = database_lines(database_url(settings))
    problems += not ok
    for line in lines:
        click.echo(line)
    click.echo("Providers:")
    configured = [n for n in PROVIDERS if n != "demo" and settings.has_credentials(n)]
    if settings.provider == "demo" or not configured:
        configured.append("demo")
    default = settings.default_provider
    if default is None:
        problems += 1
        click.echo(f"  none configured. {NO_PROVIDER}")
    for name in configured if default is not None else []:
        if no_providers:
            click.echo(f"  {name}: not called (--no-providers)")
            continue
        ok, words = probe(settings, name)
        problems += not ok
        mark = " (default)" if name == default else ""
        click.echo(f"  {name}{mark}: {words}")
        if not ok and name in PROVIDER_VARIABLES:
            click.echo(f"    check {PROVIDER_VARIABLES[name]} and its base URL")
    if problems:
        raise click.ClickException(f"{problems} problem{'s' if problems > 1 else ''} found; see above.")
    click.echo("All good.")
