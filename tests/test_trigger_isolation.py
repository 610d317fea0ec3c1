"""One tenant's bad receivers cost only its own hooks: a real ``connector poll`` process,
receivers that hang, drip or stream without end, and another key's healthy receiver."""

from __future__ import annotations

import signal

import pytest

from tests.fakes import FakeDumpling, FakeWorld
from tests.test_trigger_worker import log_of, start_worker, subscribe, wait_for, worker_env
from tests.trigger_kit import BadReceiver, Receiver, make_due, peak_rss_mb, trigger_settings

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
