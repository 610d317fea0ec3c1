"""``connector serve``: the web service under gunicorn."""

from __future__ import annotations

import sys

import click
from gunicorn.app.base import BaseApplication

from ..app import create_app
from ..config import ConfigError
from ..manifests import ManifestError
from ..store.migrate import SchemaError
from .base import load_settings

@click.command()
@click.option("--demo", is_flag=True, help="Serve the built-in demo provider (no upstream keys needed).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Threads per worker.")
def serve(demo, host, port, workers, threads):
    """Run the web service (gunicorn) on HOST:PORT."""
    settings = load_settings(provider="demo") if demo else load_settings()
    try:
        app = create_app(settings)
    except (ManifestError, ConfigError, SchemaError) as exc:
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
