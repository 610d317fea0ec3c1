"""One tenant's bad receivers cost only its own hooks: a real ``connector poll`` process,
receivers that hang, drip, stream without end or never answer, and another key's healthy
receiver."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.fakes import FakeDumpling, FakeWorld
from tests.test_trigger_worker import log_of, start_worker, subscribe, wait_for, worker_env
from connector.store import Store
from connector.trigger.deliver import claim_due_deliveries
from connector.trigger.tables import deliveries, events, subscriptions, watches
from tests.trigger_kit import (BadReceiver, NeverAnswers, Receiver, make_due, peak_rss_mb, trigger_settings,
                               verify)

TIMEOUT = 6      # CONNECTOR_DELIVERY_TIMEOUT of the worker under test (s)


@pytest.fixture
def bad():
    receivers = {mode: BadReceiver(mode) for mode in ("drip_headers", "drip_body", "endless")}
    yield receivers
    for receiver in receivers.values():
        receiver.close()


def test_a_dripping_or_endless_receiver_stalls_nobody_else(serve, sqlite_url, tmp_path, bad):
    world = FakeWorld(seed=21)
    world.add_account("brand", followers=40)
    healthy = Receiver()
    with FakeDumpling(world) as fake:
        live = serve(trigger_settings(fake, sqlite_url))
        svc = live.services
        hostile, _ = svc.keys.create(name="hostile")
        careful, _ = svc.keys.create(name="careful")
        with live.client(hostile) as http:
            hooks = {mode: subscribe(http, "brand", receiver.url) for mode, receiver in bad.items()}
        with live.client(careful) as http:
            subscribe(http, "brand", healthy.url)
        env = worker_env(fake, sqlite_url, tmp_path, CONNECTOR_DELIVERY_TIMEOUT=str(TIMEOUT),
                         CONNECTOR_DELIVERY_CONCURRENCY="4", CONNECTOR_DELIVERY_PER_HOST="2",
                         CONNECTOR_DELIVERY_PER_KEY="2", CONNECTOR_POLL_IDLE_SLEEP="0.1")
        first = world.add_followers("brand", 10)
        make_due(svc)
        worker = start_worker(env)
        try:
            wait_for(lambda: len(healthy.delivered()) == 10, 30, "the healthy hook's first burst")
            hanging = bad["drip_headers"]
            assert hanging.connections and hanging.connections[0][1] is None   # its first attempt still hangs

            # A poll while the hostile key's attempts hang: polling never waits for a receiver.
            second = world.add_followers("brand", 5)
            open_then = [c for c in hanging.connections if c[1] is None]
            make_due(svc)
            wait_for(lambda: len(healthy.delivered()) == 15, 30, "the healthy hook's second burst")
            assert any(c[1] is None for c in open_then), "the healthy hook waited for a hanging attempt"
            assert {b["follower"]["id"] for b in healthy.delivered()} == {u.id for u in first + second}

            # Never more than the per-host cap at once to the hanging receiver. The receiver
            # notices a close only at its next drip, so a span ends at the attempt's deadline.
            spans = [(opened, min(closed or opened + TIMEOUT, opened + TIMEOUT))
                     for opened, closed in list(hanging.connections)]
            assert all(sum(1 for o, c in spans if o <= t < c) <= 2 for t, _ in spans)
            # The endless body and the dripped 1 MB body were cut short: the answers counted, the
            # connections closed, the worker's memory stayed small.
            wait_for(lambda: bad["endless"].open_connections() == 0 and bad["drip_body"].open_connections() == 0,
                     3 * TIMEOUT, "the sender to close the streaming connections")
            assert bad["endless"].connections and bad["drip_body"].connections
            assert peak_rss_mb(worker.pid) < 250, log_of(worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            code = worker.wait(TIMEOUT + 15)
            healthy.close()
        assert code == 0, log_of(worker)
        with live.client(hostile) as http:
            views = {mode: http.get(f"/api/v1/hooks/{hook['id']}").json() for mode, hook in hooks.items()}
        assert {d["statusCode"] for d in views["endless"]["recentDeliveries"]} == {200}
        assert {d["statusCode"] for d in views["drip_body"]["recentDeliveries"]} == {200}
        assert views["drip_headers"]["lastDeliveryError"] == f"timed out after {TIMEOUT} s"


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


HOSTILE_KEYS, HOOKS_EACH, CAPACITY, HANG = 10, 20, 100, 60


def test_ten_keys_whose_receivers_never_answer_leave_a_healthy_key_its_latency(serve, database_url, tmp_path):
    """Ten keys, each with 20 hooks to receivers that never answer (127.0.0.2 to 127.0.0.11)
    on an account of its own that gains followers before each of the healthy key's, beside one
    healthy key, in one ``connector poll`` worker whose capacity (100 attempts at once) is
    smaller than what the hanging hooks alone would hold: the healthy hook's p99
    from detection to receipt stays under 2 s and within 2x of its p99 alone, and the
    worker's memory stays bounded. Every delivery's signature is checked."""
    world = FakeWorld(seed=17)
    world.add_account("brand", followers=40)
    noisy = [f"noisy{i}" for i in range(HOSTILE_KEYS)]      # the account each hostile key watches
    for handle in noisy:
        world.add_account(handle, followers=40)
    healthy = Receiver()
    hostile = [NeverAnswers(f"127.0.0.{2 + i}", HOOKS_EACH) for i in range(HOSTILE_KEYS)]
    with FakeDumpling(world, rate_limit=10**9) as fake:
        live = serve(trigger_settings(fake, database_url))
        svc = live.services
        careful, _ = svc.keys.create(name="careful")
        with live.client(careful) as http:
            secret = subscribe(http, "brand", healthy.url)["secret"]

        def count(table) -> int:
            with svc.store.connect() as conn:
                return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()

        def due(*handles: str) -> None:
            with svc.store.begin() as conn:
                conn.execute(watches.update().where(watches.c.handle.in_(handles)).values(next_poll_at=0))

        env = worker_env(fake, database_url, tmp_path, CONNECTOR_DELIVERY_TIMEOUT=str(HANG),
                         CONNECTOR_DELIVERY_CONCURRENCY=str(CAPACITY), CONNECTOR_DELIVERY_PER_KEY="2",
                         CONNECTOR_POLL_IDLE_SLEEP="0.1", CONNECTOR_WEBHOOK_RETRY_SCHEDULE="0,0,0,0,0",
                         PYTHONFAULTHANDLER="1")

        def latencies(hostile_handles: list[str], rounds: int = 7, burst: int = 5) -> list[float]:
            """Detection to receipt of the healthy hook's bursts. Each round first gives the
            hostile keys' hooks new deliveries (polled and committed), then the healthy key
            its burst. The first round of a phase warms up (the watches' first polls, the
            hostile connections opening) and is not counted."""
            seen = []
            for round in range(rounds):
                first = len(healthy.requests)
                if hostile_handles:
                    before = count(deliveries)
                    for handle in hostile_handles:
                        world.add_followers(handle, burst)
                    due(*hostile_handles)
                    wait_for(lambda: count(deliveries) >= before + len(hostile_handles) * HOOKS_EACH * burst, 60,
                             "the hostile keys' deliveries")
                world.add_followers("brand", burst)
                due("brand")
                wait_for(lambda: len(healthy.requests) >= first + burst, 60, "the healthy hook's burst")
                arrived = {r.headers["webhook-id"]: r.at for r in healthy.requests[first:]}
                with svc.store.connect() as conn:
                    detected = dict(conn.execute(sa.select(events.c.id, events.c.detected_at)
                                                 .where(events.c.id.in_(list(arrived)))).all())
                if round:
                    seen += [arrived[i] - detected[i] for i in arrived]
                time.sleep(0.3)
            return seen

        worker = start_worker(env)
        try:
            time.sleep(1)
            alone = latencies([])
            hooks = []
            for i, receivers in enumerate(hostile):
                key, _ = svc.keys.create(name=f"hostile{i}")
                with live.client(key) as http:
                    hooks += [subscribe(http, noisy[i], url)["id"] for url in receivers.urls]
            beside = latencies(noisy)
            with svc.store.connect() as conn:    # the hostile keys' attempts were open meanwhile
                hanging = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.subscription_id.in_(hooks), deliveries.c.claimed_until.is_not(None))).scalar_one()
            rss = peak_rss_mb(worker.pid)
        finally:
            for receivers in hostile:             # (their connections reset: the attempts end now)
                receivers.close()
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.send_signal(signal.SIGABRT)      # (its threads' stacks go to its log)
                worker.wait(10)
                code = f"still running 30 s after SIGTERM: {log_of(worker)}"
            healthy.close()
        assert code == 0, log_of(worker)
        assert HOSTILE_KEYS * 2 <= hanging <= 2 * CAPACITY, hanging   # they held slots (claims: 2x capacity at most)
        assert len(alone) == len(beside) == 30
        # Within 2x of alone, alone counted as at least 0.25 s: on a loaded machine a scheduler
        # hiccup of a few hundred ms is noise beside a 50 ms baseline (bench/isolation.py gives
        # the figures); without the fair share the healthy hook would wait out HANG (60 s).
        assert p99(beside) < 2.0 and p99(beside) <= 2 * max(p99(alone), 0.25), (p99(alone), p99(beside))
        assert rss < 250, rss
        for received in healthy.requests:
            assert verify(secret, received.headers, received.body)["id"] == received.headers["webhook-id"]
        assert len({r.headers["webhook-id"] for r in healthy.requests}) == len(healthy.requests) == 70


# -- claims: what one claim hands out beside thousands of due rows, and never twice ----------

def _due_rows(store, hooks: dict[str, tuple[str, int]], due_at: dict[str, float]) -> None:
    """Subscriptions ``id -> (key, rows due)`` on receivers of their own (host ``<id>:80``), and
    their rows due at ``due_at[id]`` (oldest first within a hook)."""
    with store.begin() as conn:
        conn.execute(watches.insert().values(id="w", provider="dumpling", cred_hash="", handle="h",
                                             status="active", next_poll_at=0, created_at=0))
        conn.execute(subscriptions.insert(), [
            dict(id=sub, watch_id="w", key_id=key, kind="hook", event="new_follower", target_url=f"http://{sub}/",
                 target_host=f"{sub}:80", request_source="zapier", status="active", created_at=0)
            for sub, (key, _) in hooks.items()])
        most = max(n for _, n in hooks.values())
        conn.execute(events.insert(), [dict(id=f"e{i}", watch_id="w", follower_key=f"f{i}", payload="{}",
                                            detected_at=0) for i in range(most)])
        conn.execute(deliveries.insert(), [
            dict(subscription_id=sub, event_id=f"e{i}", status="pending", attempts=0,
                 next_attempt_at=due_at[sub] + i / 1000, created_at=0)
            for sub, (_, n) in hooks.items() for i in range(n)])


@pytest.fixture
def store(database_url):
    store = Store(database_url, upgrade=True)
    yield store
    store.dispose()


def test_a_claim_beside_thousands_of_due_rows_hands_each_host_and_key_its_slots_left(store):
    """3,000 rows of ten hostile keys due for minutes, their 300 receivers partly busy; a
    careful key's rows just due: the first claim carries the careful key's rows (as many as
    its receiver has slots), never more for a host or key than its slots left, none for a
    host or key already full, more for a host that answers quickly (a negative busy count)."""
    hooks = {f"h{k}-{i}": (f"hostile{k}", 10) for k in range(10) for i in range(30)}
    hooks.update({"careful": ("careful", 20), "fast": ("quick", 40)})
    _due_rows(store, hooks, {sub: (999.0 if sub in ("careful", "fast") else 100.0) for sub in hooks})
    busy_hosts = {f"{sub}:80": 5 for sub in hooks if sub.startswith("h")}       # 3 slots left each
    busy_hosts.update({"h0-0:80": 8, "h1-0:80": 9, "careful:80": 2, "fast:80": -8})
    busy_keys = {f"hostile{k}": 60 for k in range(1, 9)}                         # 16 slots left each
    busy_keys.update({"hostile9": 76, "quick": -100})                            # (hostile0: none running)
    claimed = claim_due_deliveries(store, now=1000.0, lease=60.0, limit=400, due_before=1000.0,
                                   busy_hosts=busy_hosts, busy_keys=busy_keys, per_host=8, per_key=76)
    hosts, keys = Counter(c.receiver for c in claimed), Counter(c.key_id for c in claimed)
    assert keys["careful"] == 6 and hosts["fast:80"] == 16, keys       # 8 - 2 running; 8 + 8 for a fast host
    assert keys["hostile9"] == 0 and hosts["h0-0:80"] == hosts["h1-0:80"] == 0
    assert keys["hostile0"] == 76 and all(keys[f"hostile{k}"] == 16 for k in range(1, 9)), keys
    assert max(n for host, n in hosts.items() if host.startswith("h")) == 3
    assert all(c.row is not None and c.row.target_url for c in claimed)   # loaded with the claim
    again = claim_due_deliveries(store, now=1000.0, lease=60.0, limit=400, due_before=1000.0, per_host=8, per_key=76)
    assert not {c.id for c in claimed} & {c.id for c in again}           # leased: not handed out twice


def test_two_senders_on_postgresql_never_claim_the_same_delivery(store):
    """Two senders claim the same due rows at once: one stops between choosing its rows and
    leasing them while the other claims and commits them; then eight claim together until
    nothing is due. No delivery is claimed twice, none is left out."""
    if store.dialect != "postgresql":
        pytest.skip("one SQLite process writes one transaction at a time (Store.write)")
    hooks = {f"r{i}": (f"key{i % 4}", 25) for i in range(40)}
    _due_rows(store, hooks, dict.fromkeys(hooks, 100.0))
    claim = dict(now=1000.0, lease=60.0, due_before=1000.0, per_host=25, per_key=1000)
    other: list = []

    def let_the_other_claim_first(picked):
        other.extend(claim_due_deliveries(store, limit=1000, **claim))   # another connection, committed
        return {i for i, _, _ in picked}

    first = claim_due_deliveries(store, limit=1000, trim=let_the_other_claim_first, **claim)
    assert len(other) == 1000 and first == []
    later = dict(claim, now=2000.0, due_before=2000.0)                  # the leases are over: all due again
    with ThreadPoolExecutor(8) as pool:
        def claim_until_none(_):
            got = []
            while batch := claim_due_deliveries(store, limit=37, **later):
                got += [c.id for c in batch]
            return got
        ids = [i for got in pool.map(claim_until_none, range(8)) for i in got]
    assert len(ids) == len(set(ids)) == 1000
