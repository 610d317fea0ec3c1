"""``connector serve``: the web service under gunicorn; with ``--demo``, the whole product.

``--demo`` serves the demo provider with the worker too: a ``connector poll`` child process,
started once gunicorn listens and stopped with it, polling demo watches every 30 s
(``CONNECTOR_POLL_INTERVAL`` still overrides) and delivering to loopback and private
receivers (``CONNECTOR_ALLOW_PRIVATE_TARGETS`` on, for the demo only). It prints a caller key
and the next steps, ending in a signed delivery on the user's own receiver
(``connector receive``).

Why a child process for the worker rather than threads: it is the very command production
runs (the Procfile's ``worker:``), gunicorn may fork, time out and restart web workers
without taking polls or deliveries with them, and polling never competes with requests
for one interpreter lock. It dies with the server: ``on_exit`` stops it, and the kernel
sends it SIGTERM if the server is killed outright (``PR_SET_PDEATHSIG``).

The app is built here, before gunicorn forks its workers, so that a bad setting or manifest
stops the command with a message; its database pool is emptied before the fork and each
worker opens its own connections (never one shared between processes).

Every run: the port comes from ``--port``, else ``PORT`` (as the Procfile's), else 8000, and
a port already taken is a plain error; gunicorn's control socket lives in the instance
folder, one per port, not in a home folder that two services would share; metrics of all
workers (and the demo's poller) add up through a multiprocess folder per port
(:mod:`connector.metrics`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import sqlalchemy as sa
from gunicorn.app.base import BaseApplication

from .. import metrics
from ..app import create_app
from ..config import ConfigError, credential_words, either
from ..manifests import ManifestError
from ..services import instance_path
from ..store.migrate import SchemaError
from ..trigger.tables import watches
from . import running
from .base import database_url, load_settings

DEFAULT_PORT = 8000
DEMO_POLL_INTERVAL = running.DEMO_POLL_INTERVAL
DEMO_SECRET_KEY_FILE = "demo-secret-key"   # the demo's CONNECTOR_SECRET_KEY, when none is set
DEMO_HANDLE = "stoolpresidente"   # a demo account that gains a follower every 23 s
MAX_UNIX_SOCKET_PATH = 100        # sun_path holds 108 bytes


def resolve_port(port: int | None, environ=os.environ) -> int:
    """``--port``, else ``PORT``, else 8000; a CLI error naming the source when it is not a port."""
    if port is not None:
        return port
    raw = (environ.get("PORT") or "").strip()
    if not raw:
        return DEFAULT_PORT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 65535:
        raise click.ClickException(f"PORT must be a port number from 1 to 65535, got {raw[:40]!r}; "
                                   "fix it or pass --port.")
    return int(raw)


def check_port_free(host: str, port: int) -> None:
    """Fail early, in words, where gunicorn would retry for five seconds and then give up."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        raise click.ClickException(f"--host {host[:100]!r} is not an address of this machine; use e.g. "
                                   "127.0.0.1 (this machine only) or 0.0.0.0 (every interface).") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as gunicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise click.ClickException(
                    f"Port {port} on {host} is already in use (another `connector serve`?). "
                    f"Stop that process, or choose a free port with --port {port + 1 if port < 65535 else 8080}."
                ) from None
            if exc.errno == errno.EACCES:
                raise click.ClickException(f"Port {port} needs administrator rights; choose one above 1023 "
                                           "with --port.") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise click.ClickException(f"--host {host} is not an address of this machine; use e.g. "
                                           "127.0.0.1 or 0.0.0.0.") from None
            raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None


def control_socket(port: int) -> Path | None:
    """Where gunicorn's control socket goes: the instance folder, one per port (None: off,
    when that path is too long for a Unix socket)."""
    path = instance_path() / f"gunicorn-{port}.ctl"
    if len(str(path)) > MAX_UNIX_SOCKET_PATH:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def demo_secret_key() -> str:
    """The demo's ``CONNECTOR_SECRET_KEY`` (it encrypts webhook secrets), made once and kept in the
    instance folder beside the demo's database, as the demo keeps its caller key."""
    path = instance_path() / DEMO_SECRET_KEY_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):          # another demo may be writing it this very moment
                key = path.read_text().strip()
                if key:
                    return key
                time.sleep(0.02)
            raise click.ClickException(f"{path} is empty: delete it, or set CONNECTOR_SECRET_KEY.") from None
        key = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        return key
    except OSError as exc:
        raise click.ClickException(f"Cannot keep the demo's secret key in {path}: {exc.strerror}; "
                                   "set CONNECTOR_SECRET_KEY instead.") from None


def _die_with_parent() -> None:   # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: on_exit still stops it
        pass


def start_poller(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "connector.cli", "poll"], env=env,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def stop_poller(proc: subprocess.Popen | None, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _demo_next_steps(url: str, key: str | None) -> list[str]:
    key_line = ([f"  export KEY={key}"] if key else
                ["  (use a key you have: export KEY=...; `connector keys create --name demo` makes one)"])
    hook = ('{"event": "new_follower", "handle": "' + DEMO_HANDLE + '", "targetUrl": "http://127.0.0.1:9000/"}')
    return [
        *key_line,
        "",
        "Try an action:",
        f"  curl -s {url}/api/v1/get-tiktok-user-followers -H \"Authorization: Bearer $KEY\" "
        f"-d '{{\"handle\": \"{DEMO_HANDLE}\", \"count\": 3}}'",
        "",
        "See new followers arrive as signed webhooks (the worker runs in this process tree):",
        "  1. Create a hook to a receiver on port 9000; the answer's \"secret\" signs every delivery:",
        f"       curl -s {url}/api/v1/hooks -H \"Authorization: Bearer $KEY\" -d '{hook}'",
        "  2. In another terminal, run a receiver that prints each delivery and checks its signature:",
        "       connector receive --port 9000 --secret whsec_...   (the secret from step 1)",
        f"  @{DEMO_HANDLE} gains a follower every 23 s and demo watches are polled every "
        f"{DEMO_POLL_INTERVAL} s: the first delivery arrives within about a minute.",
        f"Metrics: curl -s {url}/metrics    Settings in force: connector check",
    ]


def worker_words(svc) -> str:
    """The banner's line on the worker, which this command does not run (--demo aside): whether
    one is polling this database (a poll committed within a lease) and what to start if not."""
    with svc.store.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(watches.c.last_poll_at))).scalar()
    lease = svc.settings.worker.lease_seconds
    ago = svc.clock() - last if last is not None else None
    if ago is not None and ago <= lease:
        return f"A worker is polling this database (a poll committed {ago:.0f} s ago): hooks fire."
    when = "ever" if ago is None else f"in the last {lease:.0f} s"
    return ("No worker is running: this command serves requests only, and no poll has committed "
            f"{when}, so hooks will not fire. Start the worker in another terminal: connector poll "
            "(or run `connector serve --demo`, which runs both).")


@click.command()
@click.option("--demo", is_flag=True, help="The whole product on the built-in demo provider (no upstream keys): "
              "web service and worker, watches polled every 30 s, local webhook receivers allowed.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on  [default: PORT, else 8000]")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(min=1), help="Threads per worker.")
def serve(demo, host, port, workers, threads):
    """Run the web service (gunicorn) on HOST:PORT; with --demo, the worker too."""
    port = resolve_port(port)
    settings = load_settings()
    if demo:
        settings = running.demo_settings(settings)
        if not settings.secret_key:
            settings = settings.replace(secret_key=demo_secret_key())
    check_port_free(host, port)
    folder = Path(os.environ.get(metrics.MULTIPROC_ENV) or instance_path() / "metrics" / str(port))
    try:
        metrics.use_multiprocess_dir(folder, wipe=metrics.MULTIPROC_ENV not in os.environ)
    except OSError as exc:
        raise click.ClickException(f"Cannot use {folder} for metrics: {exc.strerror}; set "
                                   f"{metrics.MULTIPROC_ENV} to a writable folder.") from None
    try:
        app = create_app(settings)
    except (ManifestError, ConfigError, SchemaError) as exc:
        raise click.ClickException(str(exc)) from None
    svc = app.extensions["connector"]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    if settings.default_provider is None:
        click.echo(f"No provider is configured: set {either(credential_words('/'))}, or run with --demo.", err=True)
    click.echo(f"Serving on http://{host}:{port} with provider {settings.default_provider or '(none)'}"
               + (f"; the worker polls every {settings.poll_interval} s" if demo else ""))
    if not demo:
        click.echo(worker_words(svc))
    if demo:
        key = None
        if settings.api_keys:
            click.echo("Caller keys come from CONNECTOR_API_KEYS; use one of them.")
        elif any(not k["revoked_at"] for k in svc.keys.list()):
            click.echo("Caller keys exist already (`connector keys list`); use one of them, or make "
                       "another with `connector keys create --name NAME`.")
        else:
            key, _ = svc.keys.create(name="demo")
            click.echo("No caller keys were configured, so a demo key was created (shown once):")
        for line in _demo_next_steps(url, key):
            click.echo(line)
    sys.stdout.flush()

    poller_env = None
    if demo:
        poller_env = dict(os.environ, CONNECTOR_PROVIDER="demo", CONNECTOR_ALLOW_PRIVATE_TARGETS="1",
                          CONNECTOR_SECRET_KEY=settings.secret_key,
                          CONNECTOR_POLL_INTERVAL=str(settings.poll_interval),
                          CONNECTOR_POLL_MIN_INTERVAL=str(settings.poll_min_interval),
                          CONNECTOR_DATABASE_URL=database_url(settings))
    ctl = control_socket(port)
    state: dict = {}

    def when_ready(_server):
        state["record"] = running.record(port, settings.default_provider, database_url(settings))   # for `connector check`
        if poller_env is not None:
            state["poller"] = start_poller(poller_env)

    def on_exit(_server):
        stop_poller(state.get("poller"))
        if "record" in state:
            running.forget(state["record"])

    def child_exit(_server, worker):
        metrics.mark_dead(worker.pid)

    def post_fork(_server, _worker):
        svc.store.dispose(close=False)   # a worker opens its own connections (see connector.store)

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", "-")
            self.cfg.set("when_ready", when_ready)
            self.cfg.set("on_exit", on_exit)
            self.cfg.set("child_exit", child_exit)
            self.cfg.set("post_fork", post_fork)
            if "control_socket" in self.cfg.settings:    # gunicorn 24+
                if ctl is None:
                    self.cfg.set("control_socket_disable", True)
                else:
                    self.cfg.set("control_socket", str(ctl))

        def load(self):
            return app

    svc.store.dispose()   # the workers are forked from here: none of them inherits a connection
    Server().run()
