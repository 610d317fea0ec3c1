"""The ``connector`` command: serve, keys, manifests (and poll, export, followers)."""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from .config import ConfigError, Settings
from .manifests import ManifestError, load_manifests


def load_settings(**overrides) -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings.replace(**overrides) if overrides else settings


def open_keys(settings: Settings):
    from flask import Flask

    from .app import default_database_url
    from .store import Store
    from .store.keys import KeyStore

    url = settings.database_url or default_database_url(Flask("connector.app", instance_relative_config=True).instance_path)
    return KeyStore(Store(url), settings.api_keys, settings.default_rate_limit)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """tiktok-connector: TikTok follower data for Zapier, Make.com and webhooks."""
    logging.basicConfig(level=os.environ.get("CONNECTOR_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; webhook URLs (Zapier's hook URLs) are capabilities.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# -- serve -------------------------------------------------------------------

@main.command()
@click.option("--demo", is_flag=True, help="Serve the built-in demo provider (no upstream keys needed).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
def serve(demo, host, port, workers, threads):
    """Run the web service (gunicorn) on HOST:PORT."""
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    settings = load_settings(provider="demo") if demo else load_settings()
    try:
        app = create_app(settings)
    except (ManifestError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    svc = app.extensions["connector"]
    if settings.default_provider is None:
        click.echo("No provider is configured: set DUMPLING_API_KEY, SOCIALFETCH_API_KEY or "
                   "TIKTOK_CLIENT_KEY/TIKTOK_CLIENT_SECRET, or run with --demo.", err=True)
    click.echo(f"Serving on http://{host}:{port} with provider {settings.default_provider or '(none)'}")
    existing = svc.keys.list() if demo and not settings.api_keys else []
    if demo and not settings.api_keys and any(not k["revoked_at"] for k in existing):
        click.echo("Caller keys exist already (`connector keys list`); use one of them, or make "
                   "another with `connector keys create --name NAME`.")
    elif demo and not settings.api_keys:
        raw, _ = svc.keys.create(name="demo")
        click.echo("No caller keys were configured, so a demo key was created (shown once):")
        click.echo(f"  export KEY={raw}")
        click.echo(f"  curl -s http://{host}:{port}/api/v1/get-tiktok-user-followers "
                   "-H \"Authorization: Bearer $KEY\" -d '{\"handle\": \"stoolpresidente\", \"count\": 3}'")
    sys.stdout.flush()

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", "-")

        def load(self):
            return app

    Server().run()


# -- keys --------------------------------------------------------------------

@main.group()
def keys():
    """Create, list, revoke and top up caller API keys."""


@keys.command("create")
@click.option("--name", default="", help="A label for the key (who or what uses it).")
@click.option("--credits", type=click.IntRange(min=0), default=None, help="Credit balance; omit for no limit.")
@click.option("--rate-limit", type=click.IntRange(min=1), default=None, help="Requests per minute.")
def keys_create(name, credits, rate_limit):
    """Create a key; it is printed once, alone on the last line."""
    store = open_keys(load_settings())
    raw, row = store.create(name=name, credits=credits, rate_limit=rate_limit)
    limit = rate_limit or store.default_rate_limit
    click.echo(f"Created {row['id']} ({name or 'unnamed'}): credits "
               f"{'unlimited' if credits is None else credits}, {limit} requests/minute. "
               "Store the key now; only its hash is kept:")
    click.echo(raw)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys_list(as_json):
    """List keys (never the keys themselves), with credits and requests by requestSource."""
    store = open_keys(load_settings())
    rows = store.list()
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("No keys. Create one with: connector keys create --name NAME")
        return
    click.echo(f"{'id':<17} {'prefix':<9} {'name':<20} {'credits':>9} {'rate/min':>8} {'status':<8} requests")
    for row in rows:
        status = "revoked" if row["revoked_at"] else "active"
        credits = "unlimited" if row["credits"] is None else row["credits"]
        rate = row["rate_limit"] or store.default_rate_limit
        usage = ", ".join(f"{k}={v}" for k, v in sorted(row["requests"].items())) or "-"
        click.echo(f"{row['id']:<17} {row['key_prefix']:<9} {row['name'][:20]:<20} {credits:>9} {rate:>8} "
                   f"{status:<8} {usage}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id):
    """Revoke a key by its id (see `connector keys list`)."""
    if not open_keys(load_settings()).revoke(key_id):
        raise click.ClickException(f"No active key with id {key_id}. See `connector keys list`.")
    click.echo(f"Revoked {key_id}.")


@keys.command("topup")
@click.argument("key_id")
@click.option("--credits", type=click.IntRange(min=1), required=True, help="Credits to add.")
def keys_topup(key_id, credits):
    """Add credits to a key; paused watches of the key resume at their next poll."""
    try:
        balance = open_keys(load_settings()).top_up(key_id, credits)
    except KeyError:
        raise click.ClickException(f"No key with id {key_id}. See `connector keys list`.") from None
    if balance is None:
        click.echo(f"{key_id} has no credit limit; nothing to add.")
    else:
        click.echo(f"{key_id} now has {balance} credits.")


# -- manifests ---------------------------------------------------------------

@main.group()
def manifests():
    """Check the manifests in manifests/."""


@manifests.command("check")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Folder to check (default: the service's manifests).")
def manifests_check(directory):
    """Validate every manifest against manifests/schema.json; exit 1 on the first error."""
    settings = load_settings()
    try:
        loaded = load_manifests(directory or settings.manifests_dir)
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from None
    for key, manifest in loaded.items():
        click.echo(f"ok  {manifest.path.name:<22} {manifest.kind:<8} {manifest.route}")
    click.echo(f"{len(loaded)} manifests valid.")


# -- commands that live beside what they drive --------------------------------

from .export.cli import export  # noqa: E402
from .trigger.worker import poll_command  # noqa: E402
from .walk import followers_command  # noqa: E402

for command in (poll_command, export, followers_command):
    main.add_command(command)


if __name__ == "__main__":
    main()
