"""The web tier under load from several processes and hostile keys: `connector serve --workers N`
never shares a database connection between its workers, and one key with a slow upstream
cannot hold every web thread (the per-key cap on requests in flight)."""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from connector.api.inflight import SETTING, InFlight
from connector.errors import RATE_LIMITED, RateLimited
from connector.store import Store
from connector.store.keys import KeyStore
from tests.fakes import FakeDumpling, FakeSocialFetch, FakeWorld
from tests.processes import CLI, clean_env, free_port, run, wait_up


def _start(env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, "serve", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out


def _created_key(env: dict, *args: str) -> str:
    done = run(env, "keys", "create", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(300)
def test_two_workers_answer_32_concurrent_first_requests_without_a_5xx(database_url, tmp_path):
    """Each fresh start: both workers' first requests at once. The app is built before gunicorn
    forks; a connection the parent opened must never be used by two processes."""
    # (one key sends all 32: its in-flight cap, tested below, is raised out of the way)
    env = clean_env(database_url, CONNECTOR_PROVIDER="demo", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m"),
                    CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY="64")
    key = _created_key(env, "--rate-limit", "100000")
    for start in range(3):
        port = free_port()
        proc = _start(env, "--workers", "2", "--threads", "8", "--port", str(port))
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up_until_listening(url, proc)
            barrier = threading.Barrier(32)

            def first(i: int) -> int:
                barrier.wait(30)
                with httpx.Client(timeout=60) as http:   # a connection of its own: both workers get some
                    answer = http.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": f"user{i}"},
                                       headers={"Authorization": f"Bearer {key}"})
                    return answer.status_code if answer.status_code == 200 else (answer.status_code, answer.text)

            with ThreadPoolExecutor(32) as pool:
                statuses = list(pool.map(first, range(32)))
        finally:
            out = _stop(proc)
        assert all(s == 200 or s[0] < 500 for s in statuses), (start, statuses, out[-3000:])
        assert statuses == [200] * 32, (start, statuses)
        assert "Traceback" not in out, out[-3000:]


def wait_up_until_listening(url: str, proc: subprocess.Popen) -> None:
    """Wait for the port to accept connections without sending a request through the app (the
    test's 32 requests must be the workers' first)."""
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not listen within 60 s")


SLOW_UPSTREAM = 8.0   # seconds the hostile key's upstream takes per answer (under its 25 s deadline)


@pytest.mark.timeout(240)
def test_a_key_with_a_slow_upstream_holds_at_most_its_cap_and_others_keep_their_latency(sqlite_url, tmp_path):
    """20 requests at once from one key to an upstream that takes 8 s, on a process with 8
    threads: 4 are served, 16 get 429 at once; meanwhile another key's 19 requests to a
    healthy upstream are each answered well within 5 s (without the cap they queued behind
    the slow ones and timed out)."""
    world = FakeWorld(seed=3)
    world.add_account("slowpoke", followers=30)
    world.add_account("healthy", followers=30)
    with FakeDumpling(world) as fast, FakeSocialFetch(world, latency=SLOW_UPSTREAM) as slow:
        env = clean_env(sqlite_url, **fast.env, **slow.env, CONNECTOR_PROVIDER="dumpling",
                        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m"))
        hostile, healthy = _created_key(env, "--name", "hostile"), _created_key(env, "--name", "healthy")
        port = free_port()
        proc = _start(env, "--workers", "1", "--threads", "8", "--port", str(port))
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(f"{url}/healthz", proc)
            results: list = []

            def slow_request(_i):
                with httpx.Client(timeout=60) as http:
                    answer = http.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "slowpoke"},
                                       headers={"Authorization": f"Bearer {hostile}", "X-Provider": "socialfetch"})
                    results.append(answer)

            with ThreadPoolExecutor(20) as pool:
                futures = [pool.submit(slow_request, i) for i in range(20)]
                time.sleep(1.0)       # the hostile requests are in (each other key's request stands alone)
                latencies = []
                with httpx.Client(timeout=5) as http:   # a request slower than 5 s fails the test
                    for _ in range(19):
                        started = time.monotonic()
                        answer = http.post(f"{url}/api/v1/get-tiktok-profile", json={"handle": "healthy"},
                                           headers={"Authorization": f"Bearer {healthy}"})
                        latencies.append(time.monotonic() - started)
                        assert answer.status_code == 200, answer.text
                for future in futures:
                    future.result()
        finally:
            out = _stop(proc)
    refused = [a for a in results if a.status_code == 429]
    served = [a for a in results if a.status_code == 200]
    assert len(served) == 4 and len(refused) == 16, ([a.status_code for a in results], out[-2000:])
    for answer in refused:
        assert answer.headers["Retry-After"] == "1"
        message = answer.json()["error"]
        assert message.startswith(RATE_LIMITED) and "4 requests in progress" in message and SETTING in message
    print(f"healthy key beside a hostile one: max {max(latencies):.3f} s over {len(latencies)} requests")


def test_in_flight_slots_are_per_key_and_given_back():
    inflight = InFlight(2)
    inflight.enter("a")
    inflight.enter("a")
    with pytest.raises(RateLimited) as refused:
        inflight.enter("a")
    assert refused.value.retry_after == 1 and "2 requests in progress" in refused.value.message
    inflight.enter("b")              # another key is not affected
    inflight.leave("a")
    inflight.enter("a")              # a slot given back is usable again
    inflight.leave("a"), inflight.leave("a"), inflight.leave("b")
    assert inflight.held("a") == inflight.held("b") == 0 and inflight._held == {}


def test_in_flight_slot_is_given_back_after_errors_and_429s(demo):
    """Requests that fail (400, 404, rate limit) give their slot back: a key never locks itself out."""
    inflight = demo.live.app.extensions["connector.inflight"]
    for _ in range(10):
        assert demo.post("/api/v1/get-tiktok-profile", {"nope": 1}).status_code == 400
        assert demo.http.get("/api/v1/hooks/hook_missing").status_code == 404
    assert demo.post("/api/v1/get-tiktok-profile", {"handle": "stoolpresidente"}).status_code == 200
    assert inflight._held == {}


@pytest.mark.parametrize("limit", [120, 40])
def test_concurrent_first_requests_of_a_minute_are_not_refused_below_the_limit(database_url, limit):
    """32 threads' first requests of a minute, under the key's limit: all allowed (each thread
    used to take a lease of its own, counting up to 32 blocks of limit/20 against the minute)."""
    store = Store(database_url)
    try:
        keys = KeyStore(store)
        _raw, row = keys.create(name="burst", rate_limit=limit)
        caller = keys.authenticate(_raw)
        barrier = threading.Barrier(32)

        def one(_i):
            barrier.wait(10)
            return keys.hit(caller, "profile", "API").allowed

        with ThreadPoolExecutor(32) as pool:
            allowed = list(pool.map(one, range(32)))
        assert all(allowed), allowed.count(False)
        over = [keys.hit(caller, "profile", "API").allowed for _ in range(limit)]
        assert over.count(True) == limit - 32     # and never beyond the limit
    finally:
        store.dispose()
