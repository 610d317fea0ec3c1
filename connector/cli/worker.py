"""``connector poll``: the worker (polls, deliveries, retention), the Procfile's ``worker:``."""

from __future__ import annotations

import signal
import threading

import click

from ..manifests import ManifestError
from ..services import build_services
from ..store.migrate import SchemaError
from ..trigger.worker import run_worker
from .base import load_settings


@click.command("poll")
@click.option("--once", is_flag=True, help="One pass (poll due watches, deliver due webhooks, prune), then exit.")
def poll_command(once):
    """Poll due watches for new followers and deliver webhooks (the Procfile's worker)."""
    settings = load_settings()
    try:
        svc = build_services(settings)
    except (ManifestError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Polling every {settings.poll_interval}s per watch"
               + (" (one pass)" if once else "; Ctrl-C stops"), err=True)
    try:
        run_worker(svc, once=once, stop=stop)
    finally:
        svc.close()
