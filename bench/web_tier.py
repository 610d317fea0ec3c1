"""The web tier under hostile load (issue 17): several worker processes, and one slow key.

``python -m bench.web_tier [--code PATH] [--starts N]`` runs the connector from ``PATH``
(default: this checkout; give an older checkout to compare) and prints:

- **fork**: ``connector serve --workers 2`` on PostgreSQL (``CONNECTOR_TEST_DATABASE_URL`` or
  ``BENCH_DATABASE_URL``), N fresh starts, each answering 32 concurrent first requests: how many
  were 5xx, and how many got no answer within 30 s.
- **in flight**: ``connector serve --threads 8`` (SQLite); a healthy key's 19 requests (a fresh
  start, one at a time, 10 s deadline) alone, then while a hostile key has 20 requests at once
  to an upstream that answers in 8 s (Social Fetch's fake with latency; the healthy key reads
  Dumpling's fake): latencies, failures, and what the hostile key was answered.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa

from tests.fakes import FakeDumpling, FakeSocialFetch, FakeWorld
from tests.processes import clean_env, free_port, stop

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("CONNECTOR_TEST_DATABASE_URL")


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=env["PYTHONPATH"])   # (python -m puts the working folder first)


def listening(port: int, proc: subprocess.Popen) -> None:
    """Wait for the port without sending a request (the measured ones must be the first)."""
    for _ in range(600):
        assert proc.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not listen within 60 s")


def pg_url() -> str:
    """A fresh schema on the PostgreSQL server (left behind: a benchmark, not a test)."""
    schema = "bench_web_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{PG}{'&' if '?' in PG else '?'}options=-csearch_path%3D{schema}"


def fork(code: str, starts: int) -> list[tuple[int, int]]:
    env = clean_env(pg_url(), PYTHONPATH=code, CONNECTOR_PROVIDER="demo", CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY="64",
                    PROMETHEUS_MULTIPROC_DIR=f"/tmp/bench-web-m-{uuid.uuid4().hex[:6]}")
    key = run(env, "keys", "create", "--rate-limit", "100000").stdout.strip().splitlines()[-1]
    per_start = []
    for _ in range(starts):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "serve", "--workers", "2", "--port", str(port)],
                                env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            listening(port, proc)
            barrier = threading.Barrier(32)

            def first(i):
                barrier.wait(30)
                with httpx.Client(timeout=30) as h:
                    try:
                        return h.post(f"http://127.0.0.1:{port}/api/v1/get-tiktok-profile", json={"handle": f"u{i}"},
                                      headers={"Authorization": f"Bearer {key}"}).status_code
                    except httpx.HTTPError:
                        return 999    # no answer within 30 s
            with ThreadPoolExecutor(32) as pool:
                codes = list(pool.map(first, range(32)))
        finally:
            stop(proc, 30)
        per_start.append((sum(500 <= c < 999 for c in codes), codes.count(999)))
    return per_start


def in_flight(code: str) -> str:
    world = FakeWorld(seed=3)
    world.add_account("slowpoke", followers=30)
    world.add_account("healthy", followers=30)
    with FakeDumpling(world) as fast, FakeSocialFetch(world, latency=8.0) as slow:
        env = clean_env(f"sqlite:////tmp/bench-web-{uuid.uuid4().hex[:6]}.db", PYTHONPATH=code, **fast.env,
                        **slow.env, CONNECTOR_PROVIDER="dumpling",
                        PROMETHEUS_MULTIPROC_DIR=f"/tmp/bench-web-m-{uuid.uuid4().hex[:6]}")
        hostile = run(env, "keys", "create").stdout.strip().splitlines()[-1]
        healthy = run(env, "keys", "create").stdout.strip().splitlines()[-1]
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "connector.cli", "serve", "--threads", "8", "--port", str(port)],
                                env=env, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            listening(port, proc)

            def healthy_round(n=19):
                lat, fails = [], 0
                with httpx.Client(timeout=10) as h:
                    for _ in range(n):
                        t = time.monotonic()
                        try:
                            ok = h.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "healthy"},
                                        headers={"Authorization": f"Bearer {healthy}"}).status_code == 200
                        except httpx.TimeoutException:
                            ok = False
                        lat.append(time.monotonic() - t)
                        fails += not ok
                return lat, fails
            alone, alone_fails = healthy_round()
            codes = []

            def slow_one(_):
                with httpx.Client(timeout=60) as h:
                    codes.append(h.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "slowpoke"},
                                        headers={"Authorization": f"Bearer {hostile}",
                                                 "X-Provider": "socialfetch"}).status_code)
            with ThreadPoolExecutor(20) as pool:
                futures = [pool.submit(slow_one, i) for i in range(20)]
                time.sleep(1.0)
                beside, fails = healthy_round()
                for future in futures:
                    future.result()
        finally:
            stop(proc, 30)
    ms = lambda s: f"{s * 1000:.0f} ms"   # noqa: E731
    return (f"| {19 - alone_fails}/19 ok, p50 {ms(statistics.median(alone))}, max {ms(max(alone))} "
            f"| {19 - fails}/19 ok, p50 {ms(statistics.median(beside))}, max {ms(max(beside))} "
            f"| {codes.count(200)} served, {codes.count(429)} × 429 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose connector runs (default: this one)")
    parser.add_argument("--starts", type=int, default=4, help="fresh starts of serve --workers 2")
    args = parser.parse_args()
    print(f"code: {args.code}")
    if PG:
        print(f"serve --workers 2 on PostgreSQL, 32 concurrent first requests, (5xx, no answer in 30 s) per "
              f"fresh start: {fork(args.code, args.starts)}")
    else:
        print("(fork figures need CONNECTOR_TEST_DATABASE_URL or BENCH_DATABASE_URL)")
    print("| healthy key alone | beside a hostile key (20 at once, 8 s upstream) | hostile key's 20 |")
    print("|---|---|---|")
    print(in_flight(args.code))


if __name__ == "__main__":
    main()
