"""Shared benchmark plumbing: free ports, server processes, a threaded load generator."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.processes import stop

ROOT = Path(__file__).resolve().parent.parent

# The Procfile's web settings (WEB_CONCURRENCY=2, WEB_THREADS=8, gthread).
GUNICORN_WEB = ["--workers", "2", "--threads", "8", "--worker-class", "gthread", "--timeout", "60"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def process(args: list[str], env: dict | None = None, port: int | None = None, quiet: bool = True):
    """Run a child process (optionally waiting for its port); always stopped on exit."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=out, stderr=out)
    try:
        if port is not None:
            wait_for_port(port)
        yield proc
    finally:
        stop(proc, 15)


# The Procfile's web settings: its config module (for the connector) and these flags.
PROCFILE_CONFIG = "connector.gunicorn_conf"

# A gunicorn config that also says when a worker has loaded the app (a file named by its pid),
# so a benchmark starts once every worker serves, not while one is still importing.
_READY_HOOK = """import os
{base}
def post_worker_init(worker):
    open(os.path.join(os.environ["BENCH_READY_DIR"], str(worker.pid)), "w").close()
"""


@contextmanager
def gunicorn(app: str, port: int, extra: list[str] | None = None, env: dict | None = None, *,
             config: str | None = None, timeout: float = 120.0):
    """gunicorn serving ``app`` on 127.0.0.1:``port`` (the Procfile's flags unless ``extra``;
    ``config`` names a settings module such as :data:`PROCFILE_CONFIG`), yielded once every
    worker has loaded the app. With a config module, its metrics folder is a temporary one."""
    import tempfile

    settings = extra or GUNICORN_WEB
    workers = int(settings[settings.index("--workers") + 1]) if "--workers" in settings else 1
    with tempfile.TemporaryDirectory(prefix="bench-gunicorn-") as ready:
        hook = Path(ready) / "ready_hook.py"
        hook.write_text(_READY_HOOK.format(base=f"from {config} import *  # noqa: F401,F403" if config else ""))
        args = [sys.executable, "-m", "gunicorn", *settings, "--bind", f"127.0.0.1:{port}",
                "--log-level", "warning", "--config", str(hook), app]
        extra_env = {"BENCH_READY_DIR": ready, "PORT": str(port)}
        if config:
            (Path(ready) / "metrics").mkdir()
            extra_env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(ready) / "metrics")
        with process(args, env={**(env or {}), **extra_env}, port=port) as proc:
            deadline = time.monotonic() + timeout
            while sum(1 for f in Path(ready).iterdir() if f.name.isdigit()) < workers:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn {app} did not start {workers} workers")
                time.sleep(0.05)
            yield proc


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies_ms, 99)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")


def load(url: str, *, json_body: dict, headers: dict | None = None, total: int = 2000,
         concurrency: int = 16, warmup: int = 100) -> LoadResult:
    """POST ``json_body`` ``total`` times from ``concurrency`` threads with keep-alive clients."""
    lock = threading.Lock()
    remaining = [warmup]
    latencies: list[float] = []
    errors = [0]

    def worker(record: bool):
        with httpx.Client(headers=headers or {}, timeout=30) as client:
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                started = time.perf_counter()
                try:
                    ok = client.post(url, json=json_body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1000
                if record:
                    with lock:
                        latencies.append(elapsed)
                        errors[0] += 0 if ok else 1

    def run(record: bool) -> float:
        threads = [threading.Thread(target=worker, args=(record,)) for _ in range(concurrency)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - started

    run(False)
    remaining[0] = total
    seconds = run(True)
    return LoadResult(requests=total, errors=errors[0], seconds=seconds, latencies_ms=latencies)


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# PostgreSQL for the multi-process figures: BENCH_DATABASE_URL, else the tests' URL, else the local default.
PG_URL = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("CONNECTOR_TEST_DATABASE_URL")
          or "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema():
    """A URL on a fresh PostgreSQL schema, dropped on exit; None when PostgreSQL cannot be reached."""
    import uuid

    import sqlalchemy as sa

    schema = "bench_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError:
        engine.dispose()
        yield None
        return
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


class Receiver:
    """A webhook receiver on 127.0.0.1 answering 204; records ``(receive time, body)`` per POST."""

    def __init__(self):
        self.received: list[tuple[float, bytes]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as a real receiver would

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                with lock:
                    received.append((at, body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
