"""``connector check``: the settings in force, the database and its schema, and whether each
configured provider answers. Secrets are never shown, only whether they are set; the
database URL is shown without its password. Exits 1 when something needs fixing.

``--demo`` (or ``--provider demo``) checks what ``connector serve --demo`` uses; with no
provider configured, a running ``serve --demo`` (:mod:`.running`) is found and checked."""

from __future__ import annotations

import time

import click

from ..config import DatabaseURL, Settings, WorkerSettings, declarations, field_declarations
from ..errors import UpstreamError, redact
from ..providers import PROVIDERS
from ..store import migrate
from ..store.engine import create_engine, reachable
from . import running
from .base import database_url, load_settings, no_provider, provider_variables, upstream_words, version

PROBE_HANDLE = "tiktok"          # an account every provider knows
PROBE_TIMEOUT = 5.0


def settings_lines(settings: Settings) -> list[str]:
    """Every declared setting and its value in force (secrets only as set or not set)."""
    worker = field_declarations(WorkerSettings)
    return [f"  {s.env:<40} {s.show(getattr(settings.worker if s in worker else settings, s.attr))}"
            for s in declarations()]


def database_lines(url: str) -> tuple[list[str], bool]:
    lines = [f"  {DatabaseURL().show(url)}"]
    try:
        engine = create_engine(url, hide_parameters=True)
    except migrate.SchemaError as exc:
        return lines + [f"  {exc}"], False
    try:
        with reachable(url):
            state, current = migrate.state(engine), migrate.revision(engine)
    except migrate.SchemaError as exc:
        return lines + [f"  {exc}"], False
    except Exception as exc:   # not a database: say so, never a traceback
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


def chosen_provider(settings: Settings, demo: bool, provider: str | None) -> tuple[Settings, str | None]:
    """The settings to check: with --demo or --provider, that provider; with none configured,
    what a running ``connector serve`` uses. Returns them and a line saying why, if any."""
    if demo or provider == "demo":
        return running.demo_settings(settings), None
    if provider:
        return settings.replace(provider=provider), None
    if settings.default_provider is None:
        for info in running.services(database_url(settings)):
            if info.get("provider") == "demo":
                return running.demo_settings(settings), (
                    f"`connector serve --demo` is running (port {info.get('port')}, pid {info.get('pid')}): "
                    "checking the demo provider it uses.")
    return settings, None


def upstream_only() -> set[str]:
    """The variables only upstream providers read: the demo uses none of them."""
    return {s.env for name, cls in PROVIDERS.items() if name != "demo" for s in cls.own_settings}


@click.command("check")
@click.option("--no-providers", is_flag=True, help="Do not call the providers (no upstream credits spent).")
@click.option("--demo", is_flag=True, help="Check what `connector serve --demo` uses: the demo provider "
              "(found by itself while one runs and no provider is configured).")
@click.option("--provider", type=click.Choice(sorted(PROVIDERS)), default=None,
              help="Check this provider only, as if CONNECTOR_PROVIDER named it.")
def check(no_providers, demo, provider):
    """Report the settings in force (secrets masked), the database and its schema, and
    whether each configured provider answers. Exits 1 when something needs fixing."""
    settings, why = chosen_provider(load_settings(), demo, provider)
    only = settings.provider if (demo or provider or why) else None
    hidden = upstream_only() if only == "demo" else set()
    problems = 0
    click.echo(f"tiktok-connector {version()}")
    if why:
        click.echo(why)
    click.echo("Settings in force (credentials are shown only as set or not set):")
    for line in settings_lines(settings):
        if line.split()[0] not in hidden:   # the demo reads no upstream: those would only mislead
            click.echo(line)
    click.echo("Database:")
    lines, ok = database_lines(database_url(settings))
    problems += not ok
    for line in lines:
        click.echo(line)
    click.echo("Providers:")
    configured = [n for n, p in PROVIDERS.items() if p.needs_credentials() and p.has_credentials(settings)]
    if settings.provider == "demo" or not configured:
        configured.append("demo")
    if only is not None:
        configured = [only]
    default = settings.default_provider
    if default is None:
        problems += 1
        click.echo(f"  none configured. {no_provider()}")
    elif not settings.has_credentials(default):
        problems += 1
        click.echo(f"  {default}: no credentials; set {provider_variables(default)}.")
        configured = []
    for name in configured if default is not None else []:
        if no_providers:
            click.echo(f"  {name}: not called (--no-providers)")
            continue
        ok, words = probe(settings, name)
        problems += not ok
        mark = " (default)" if name == default else ""
        click.echo(f"  {name}{mark}: {words}")
        if not ok and provider_variables(name):
            click.echo(f"    check {provider_variables(name)} and its base URL")
    if problems:
        raise click.ClickException(f"{problems} problem{'s' if problems > 1 else ''} found; see above.")
    click.echo("All good.")
