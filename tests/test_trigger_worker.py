"""The ``connector poll`` worker as real processes: SIGKILL mid-poll, two pollers on PostgreSQL,
and concurrent polling of many watches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import sqlalchemy as sa

from connector.trigger.tables import deliveries, events, watches
from connector.trigger.leases import claim_watch
from connector.trigger.poll import poll_watch
from connector.trigger.watches import delete_subscription
from connector.trigger.worker import poll_due_watches
from tests.conftest import PG_URL, TEST_SECRET_KEY
from tests.fakes import FakeDumpling, FakeWorld
from tests.trigger_kit import Receiver, follower_pages, make_due, receiver, trigger_settings  # noqa: F401


def worker_env(fake: FakeDumpling, database_url: str, tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "DUMPLING_"))}
    env.update(fake.env)
    env.update({"CONNECTOR_PROVIDER": "dumpling", "CONNECTOR_DATABASE_URL": database_url,
                "CONNECTOR_ALLOW_PRIVATE_TARGETS": "1", "CONNECTOR_WEBHOOK_RETRY_SCHEDULE": "0,0,1",
                "CONNECTOR_POLL_INTERVAL": "300", "CONNECTOR_POLL_LEASE_SECONDS": "1",
                "CONNECTOR_LOG_LEVEL": "WARNING", "TRIGGER_TEST_TMP": str(tmp_path),
                "CONNECTOR_SECRET_KEY": TEST_SECRET_KEY})
    env.update(extra)
    return env


def start_worker(env: dict, *args: str) -> subprocess.Popen:
    """``connector poll`` in its own process; its log goes to ``worker.log`` (read by ``log_of``)."""
    log_path = f"{env['CONNECTOR_DATABASE_URL'].rsplit('/', 1)[-1][:20]}-{time.monotonic_ns()}.log"
    log_path = os.path.join(env["TRIGGER_TEST_TMP"], log_path)
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "connector.cli", "poll", *args], env=env,
                                  stdout=subprocess.DEVNULL, stderr=log)
    worker.log_path = log_path
    return worker


def log_of(worker: subprocess.Popen) -> str:
    with open(worker.log_path, encoding="utf-8", errors="replace") as log:
        return log.read()[-3000:]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def subscribe(http, handle: str, url: str) -> dict:
    r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": handle, "targetUrl": url})
    assert r.status_code == 201, r.text
    return r.json()


def test_poller_killed_mid_poll_loses_and_repeats_nothing(serve, sqlite_url, receiver, tmp_path):  # noqa: F811
    world = FakeWorld(seed=3)
    world.add_account("burst", followers=40)
    with FakeDumpling(world, latency=0.15) as fake:
        live = serve(trigger_settings(fake, sqlite_url))
        raw, _ = live.services.keys.create()
        with live.client(raw) as http:
            subscribe(http, "burst", receiver.url)
        new = world.add_followers("burst", 8 * 30)              # 9 pages to reach the frontier
        env = worker_env(fake, sqlite_url, tmp_path)
        killed = 0
        for _ in range(2):                                       # kill twice in the middle of the walk
            make_due(live.services)
            before = follower_pages(fake)
            worker = start_worker(env)
            wait_for(lambda: follower_pages(fake) >= before + 4, 30, "the poller to read 4 pages")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            killed += 1
            assert receiver.requests == []                      # nothing was committed, nothing sent
            with live.services.store.begin() as conn:           # the dead poller's lease has expired
                conn.execute(watches.update().values(lease_expires_at=0))
        worker = start_worker(env)
        try:
            wait_for(lambda: len(receiver.delivered()) >= len(new), 60, "every event to be delivered")
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(15) == 0, log_of(worker)
        # The worker has exited and no delivery is left to send or retry: nothing more can arrive.
        with live.services.store.connect() as conn:
            assert conn.execute(sa.select(deliveries.c.status).distinct()).scalars().all() == ["delivered"]
        got = Counter(body["id"] for body in receiver.delivered())
        assert killed == 2 and len(got) == len(new) and max(got.values()) == 1
        assert {body["follower"]["id"] for body in receiver.delivered()} == {u.id for u in new}
        with live.services.store.connect() as conn:
            rows = conn.execute(sa.select(events.c.id, events.c.follower_key)).all()
        assert len(rows) == 30 + len(new) == len({r.id for r in rows}) == len({r.follower_key for r in rows})


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL tests need CONNECTOR_TEST_DATABASE_URL")
def test_two_pollers_on_postgresql_share_the_work(serve, receiver, tmp_path):  # noqa: F811
    from tests.conftest import _drop_pg_schema, _pg_schema_url

    url, schema = _pg_schema_url(PG_URL)
    try:
        world = FakeWorld(seed=5)
        handles = [f"acct{i}" for i in range(24)]
        for handle in handles:
            world.add_account(handle, followers=35)
        with FakeDumpling(world, latency=0.05) as fake:
            live = serve(trigger_settings(fake, url))
            raw, _ = live.services.keys.create()
            with live.client(raw) as http:
                for handle in handles:
                    subscribe(http, handle, receiver.url)
            expected = set()
            for handle in handles:
                expected |= {u.id for u in world.add_followers(handle, 40)}   # two pages each
            make_due(live.services)
            fake.reset_log()
            env = worker_env(fake, url, tmp_path, CONNECTOR_POLL_LEASE_SECONDS="120", CONNECTOR_POLL_THREADS="4")
            pollers = [start_worker(env, "--once") for _ in range(2)]
            for poller in pollers:
                assert poller.wait(60) == 0, log_of(poller)
            assert follower_pages(fake) == 2 * len(handles)      # no watch was polled twice
            got = Counter(body["id"] for body in receiver.delivered())
            assert len(got) == len(expected) and max(got.values()) == 1
            assert {body["follower"]["id"] for body in receiver.delivered()} == expected
            with live.services.store.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(watches)
                                    .where(watches.c.lease_owner.is_not(None))).scalar_one() == 0
            live.services.store.dispose()
    finally:
        _drop_pg_schema(PG_URL, schema)


def test_watches_are_polled_concurrently(serve, sqlite_url):
    world = FakeWorld(seed=9)
    handles = [f"c{i}" for i in range(32)]
    for handle in handles:
        world.add_account(handle, followers=3)
    with FakeDumpling(world, latency=0.1) as fake:
        live = serve(trigger_settings(fake, sqlite_url, worker={"poll_threads": 16}))
        raw, _ = live.services.keys.create()
        receiver = Receiver()                                     # noqa: F811
        try:
            with live.client(raw) as http:
                for handle in handles:
                    subscribe(http, handle, receiver.url)
            make_due(live.services)
            started = time.monotonic()
            stats = poll_due_watches(live.services)
            elapsed = time.monotonic() - started
        finally:
            receiver.close()
        assert stats.watches == 32 and stats.pages == 32 and stats.errors == 0
        assert elapsed < 32 * 0.1 / 2, f"{elapsed:.2f}s: polls were serialised"


@pytest.fixture
def four_pages():
    """A fake Dumpling whose account "slow" has 100 followers more than its baseline will see."""
    world = FakeWorld(seed=4)
    world.add_account("slow", followers=30)
    with FakeDumpling(world) as fake:
        fake.world = world
        yield fake


def claimed_watch(serve, fake, sqlite_url, credits=None, lease=0.3):
    """A hook on "slow", then 100 new followers (4 pages), the watch claimed by "me"."""
    live = serve(trigger_settings(fake, sqlite_url, worker={"lease_seconds": lease}))
    svc = live.services
    raw, row = svc.keys.create(credits=credits)
    with live.client(raw) as http:
        hook = subscribe(http, "slow", "http://127.0.0.1:9/hook")
    fake.world.add_followers("slow", 100)
    make_due(svc)
    with svc.store.connect() as conn:
        wid = conn.execute(sa.select(watches.c.id)).scalar_one()
    assert claim_watch(svc.store, wid, "me", lease, due_only=True, now=time.time())
    return svc, wid, row["id"], hook


def test_a_long_poll_renews_its_lease(serve, four_pages, sqlite_url, monkeypatch):
    svc, wid, _, _ = claimed_watch(serve, four_pages, sqlite_url, lease=0.3)
    now = [time.time()]
    svc.clock = lambda: now[0]
    calls, taken = [], []
    reserve = svc.keys.reserve

    def slow_reserve(caller, cost):          # the poll outlasts its first lease ...
        calls.append(1)
        if len(calls) == 2:
            now[0] += 0.45
        if len(calls) == 3:                  # ... and another poller tries to take the watch
            taken.append(claim_watch(svc.store, wid, "thief", 0.3, due_only=False, now=svc.clock()))
        return reserve(caller, cost)
    monkeypatch.setattr(svc.keys, "reserve", slow_reserve)
    result = poll_watch(svc, wid, "me")
    assert taken == [False]
    assert not result.lease_lost and result.new_events == 100


@pytest.mark.parametrize("how", ["taken over", "watch deleted"])
def test_credits_are_refunded_when_the_lease_is_lost(serve, four_pages, sqlite_url, monkeypatch, how):
    svc, wid, key_id, hook = claimed_watch(serve, four_pages, sqlite_url, credits=10, lease=60)
    assert svc.keys.balance(key_id) == 9
    calls = []
    reserve = svc.keys.reserve

    def reserve_then_lose(caller, cost):
        calls.append(1)
        if len(calls) == 3:
            with svc.store.write() as conn:
                if how == "taken over":
                    conn.execute(watches.update().values(lease_owner="thief"))
                else:
                    delete_subscription(conn, hook["id"], wid)
        return reserve(caller, cost)
    monkeypatch.setattr(svc.keys, "reserve", reserve_then_lose)
    pages = follower_pages(four_pages)
    result = poll_watch(svc, wid, "me")
    assert result.lease_lost and result.new_events == 0
    assert follower_pages(four_pages) == pages + 3           # stopped at the next page
    assert svc.keys.balance(key_id) == 9                     # nothing committed, nothing charged
    with svc.store.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
    assert count == (30 if how == "taken over" else 0)       # the baseline only (or nothing: gone)
