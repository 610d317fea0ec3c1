"""``connector poll``: the worker (polls, deliveries, retention), the Procfile's ``worker:``."""

from __future__ import annotations

import gc
import signal
import threading

import click

from .. import metrics, metrics_server
from ..config import ConfigError
from ..manifests import ManifestError
from ..services import build_services
from ..store.migrate import SchemaError
from ..trigger.hook_secrets import check_at_start
from ..trigger.worker import run_worker
from .base import load_settings


@click.command("poll")
@click.option("--once", is_flag=True, help="One pass (poll due watches, deliver due webhooks, prune), then exit.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve this worker's GET /metrics on this port (where it shares no PROMETHEUS_MULTIPROC_DIR "
                   "with the web service).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
def poll_command(once, metrics_port, metrics_host):
    """Poll due watches for new followers and deliver webhooks (the Procfile's worker)."""
    settings = load_settings()
    try:
        metrics.check_multiprocess_dir()
        svc = build_services(settings)
        try:
            check_at_start(svc.store, settings.secret_key)   # deliveries need CONNECTOR_SECRET_KEY
        except ConfigError:
            svc.close()
            raise
    except (ManifestError, SchemaError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    if metrics_port is not None:
        try:
            metrics_server.serve_in_thread(metrics_host, metrics_port, settings.metrics_token, svc.store, settings)
        except OSError as exc:
            svc.close()
            raise click.ClickException(f"Cannot serve metrics on {metrics_host}:{metrics_port}: "
                                       f"{exc.strerror or exc}; choose another --metrics-port.") from None
        click.echo(f"Metrics on http://{metrics_host}:{metrics_port}/metrics", err=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.poll_policy == "fixed":
        cadence = f"Polling every {settings.poll_interval}s per watch"
    else:
        cadence = (f"Polling every {settings.poll_interval}s per watch at first, then every "
                   f"{settings.poll_min_interval}-{settings.poll_max_interval}s as each watch needs (adaptive)")
    click.echo(cadence + (" (one pass)" if once else "; Ctrl-C stops"), err=True)
    if not once:
        # What start-up made (modules, manifests, the app) lives as long as the process: kept out
        # of the collector's full passes, which otherwise stop every thread for 60-150 ms each
        # (bench/RESULTS.md, "Issue 17: isolation").
        gc.freeze()
    try:
        run_worker(svc, once=once, stop=stop)
    finally:
        svc.close()
