"""Tenant isolation of webhook delivery: hostile keys' receivers against another key's
healthy one, in one ``connector poll`` worker (SQLite, the sender's defaults: 1,000 attempts
open at once, 8 per receiver host, a fair share between keys with work).

Key "careful" has one hook to a healthy receiver on 127.0.0.1 (answers 204, notes when each
webhook arrives). Bursts of new followers are added to the fake upstream account and the
watch is made due; latency runs from the event's commit (``events.detected_at``, the start
of the worker's poll) to its arrival at the healthy receiver. Two phases, same bursts:

- *baseline*: the careful key's hook alone;
- *with hostile keys*: key "hostile" adds three hooks on the same handle, to receivers that
  never finish the status line, drip a 1 MB body a byte every 0.5 s, or stream an endless
  chunked body (``tests.trigger_kit.BadReceiver``), and ``--hostile N`` (10) "silent" keys
  each add 20 hooks, on an account of their own that gains followers each round too, to
  receivers that accept the connection and never answer, each key on its own loopback
  address (127.0.0.2, 127.0.0.3, ...). They time out or are cut short and are retried
  (schedule 0,0,1,1,1), so they hold their shares of the sender for the whole phase.

The receivers answer locally and the upstream is an in-process fake with no rate limit, so
neither is the limit: what is measured is whether the sender keeps the careful key's
deliveries apart from the hostile key's hanging attempts, and whether the worker's memory
stays bounded while a receiver floods it. All of them share the machine with the worker.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time

import sqlalchemy as sa

from . import common
from .delivery import _wait_for
from .poller import _cpu_times

MODES = ("drip_headers", "drip_body", "endless")


def most_at_once(connections: list, timeout: float) -> int:
    """The most connections open at the same moment. The receiver notes a close only at its
    next write (up to ~1 s late), so each span is cut at the attempt's deadline: an upper bound."""
    now = time.monotonic()
    spans = [(opened, min(closed or now, opened + timeout)) for opened, closed in list(connections)]
    return max((sum(1 for o, c in spans if o <= t < c) for t, _ in spans), default=0)


def run(quick: bool = False, hostile_keys: int = 10, hooks_each: int = 20) -> dict:
    from connector.app import create_app
    from connector.config import Settings
    from connector.trigger.tables import events, watches
    from tests.fakes import FakeDumpling, FakeWorld
    from tests.trigger_kit import BadReceiver, NeverAnswers, peak_rss_mb

    rounds, burst = (1, 10) if quick else (8, 50)
    timeout = 5 if quick else 15
    handle = "contested"
    world = FakeWorld(seed=9)
    world.add_account(handle, followers=100)
    noisy = [f"noisy{i}" for i in range(hostile_keys)]     # each silent key watches an account of its own
    for account in noisy:
        world.add_account(account, followers=40)
    phases: dict[str, dict] = {}
    bad = {mode: BadReceiver(mode) for mode in MODES}
    silent = [NeverAnswers(f"127.0.0.{2 + i}", hooks_each) for i in range(hostile_keys)]
    try:
        with tempfile.TemporaryDirectory() as tmp, common.Receiver() as healthy, \
                FakeDumpling(world, rate_limit=10**9) as fake:
            database_url = f"sqlite:///{tmp}/isolation.db"
            settings = Settings(provider="dumpling", dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                                database_url=database_url, allow_private_targets=True, poll_interval=300,
                                secret_key="bench-secret-key")
            app = create_app(settings)
            svc = app.extensions["connector"]
            client = app.test_client()

            def subscribe(key: str, url: str, on: str = handle) -> None:
                r = client.post("/api/v1/hooks", headers={"Authorization": f"Bearer {key}"},
                                json={"event": "new_follower", "handle": on, "targetUrl": url})
                assert r.status_code == 201, r.get_data(as_text=True)

            careful, _ = svc.keys.create(name="careful", credits=10**9)
            hostile, _ = svc.keys.create(name="hostile", credits=10**9)
            subscribe(careful, healthy.url)

            env = dict(fake.env, CONNECTOR_PROVIDER="dumpling", CONNECTOR_DATABASE_URL=database_url,
                       CONNECTOR_SECRET_KEY="bench-secret-key",
                       CONNECTOR_ALLOW_PRIVATE_TARGETS="1", CONNECTOR_POLL_INTERVAL="300",
                       CONNECTOR_LOG_LEVEL="WARNING", CONNECTOR_DELIVERY_TIMEOUT=str(timeout),
                       CONNECTOR_WEBHOOK_RETRY_SCHEDULE="0,0,1,1,1")
            rng = random.Random(9)

            def phase(pid: int, others: list[str]) -> dict:
                pairs, spans = [], []
                busy0, total0 = _cpu_times()
                for i in range(rounds):
                    if i:
                        time.sleep(rng.uniform(1.0, 4.0))   # spread the bursts over several delivery timeouts
                    first = len(healthy.received)
                    for account in others:           # the silent keys get new deliveries each round too
                        world.add_followers(account, max(1, burst // 10))
                    world.add_followers(handle, burst)
                    with svc.store.begin() as conn:
                        conn.execute(watches.update().values(next_poll_at=0))
                    _wait_for(healthy, first + burst, timeout=60 + 2 * timeout)
                    arrived = {json.loads(body)["id"]: at for at, body in healthy.received[first:first + burst]}
                    with svc.store.connect() as conn:
                        commits = dict(conn.execute(sa.select(events.c.id, events.c.detected_at)
                                                    .where(events.c.id.in_(list(arrived)))).all())
                    got = [(commits[e], at) for e, at in arrived.items()]
                    pairs += got
                    spans.append(max(at for _, at in got) - min(c for c, _ in got))
                busy1, total1 = _cpu_times()
                latencies = [(at - c) * 1000 for c, at in pairs]
                return {"events": len(pairs), "rate": len(pairs) / sum(spans) if sum(spans) > 0 else None,
                        "p50": common.percentile(latencies, 50), "p99": common.percentile(latencies, 99),
                        "max": max(latencies), "rss_mb": peak_rss_mb(pid),
                        "busy": (busy1 - busy0) / max(total1 - total0, 1)}

            with common.process([sys.executable, "-m", "connector.cli", "poll"], env=env) as worker:
                time.sleep(1.5)   # the worker is up and idling
                phases["baseline"] = phase(worker.pid, [])
                for receiver in bad.values():
                    subscribe(hostile, receiver.url)
                for i, receivers in enumerate(silent):
                    key, _ = svc.keys.create(name=f"silent{i}", credits=10**9)
                    for url in receivers.urls:
                        subscribe(key, url, on=noisy[i])
                phases[f"with {1 + hostile_keys} hostile keys"] = phase(worker.pid, noisy)
                for receiver in [*bad.values(), *silent]:   # let the worker's hanging attempts end before it stops
                    receiver.close()
            svc.providers.close()
            svc.store.dispose()
    finally:
        for receiver in [*bad.values(), *silent]:
            receiver.close()
    hostile_rows = {mode: {"attempts": len(r.connections), "at_once": most_at_once(r.connections, timeout),
                           "sent": r.sent} for mode, r in bad.items()}
    return {"rounds": rounds, "burst": burst, "timeout": timeout, "phases": phases, "hostile": hostile_rows,
            "hostile_keys": hostile_keys, "hooks_each": hooks_each, "cpus": os.cpu_count(), "load": os.getloadavg()}


def report(results: dict) -> str:
    phases = results["phases"]
    rows = [[name, r["events"], f"{r['rate']:,.0f}" if r["rate"] else "—", f"{r['p50']:.0f}",
             f"{r['p99']:.0f}", f"{r['max']:.0f}", f"{r['rss_mb']:.0f}", f"{r['busy']:.0%}"]
            for name, r in phases.items()]
    beside = next(name for name in phases if name != "baseline")
    ratio = phases[beside]["p99"] / phases["baseline"]["p99"]
    hostile = [[mode, r["attempts"], r["at_once"], f"{r['sent']:,}"] for mode, r in results["hostile"].items()]
    load = " ".join(f"{x:.2f}" for x in results["load"])
    return (f"### Isolation: careful key's hook while a hostile key's receivers hang, drip or flood, "
            f"beside {results['hostile_keys']} keys with {results['hooks_each']} never-answering hooks each "
            f"({results['rounds']} × {results['burst']} new followers, "
            f"CONNECTOR_DELIVERY_TIMEOUT={results['timeout']}, SQLite)\n\n"
            + common.table(["careful key's hook", "events", "events/s", "p50 ms", "p99 ms", "max ms",
                            "worker peak RSS MB", f"machine CPU busy ({results['cpus']} cores)"], rows)
            + f"\n\ncareful p99 with hostile ÷ baseline: {ratio:.2f}\n\n"
            "### Isolation: the hostile key's receivers (whole run)\n\n"
            + common.table(["receiver", "attempts", "most at once", "bytes it pushed"], hostile)
            + f"\n\nLoad average at the end: {load} on {results['cpus']} CPUs; the fake upstream, the receivers "
            "and the worker all ran on this machine.")


if __name__ == "__main__":
    hostile_keys = int(sys.argv[sys.argv.index("--hostile") + 1]) if "--hostile" in sys.argv else 10
    print(report(run(quick="--quick" in sys.argv, hostile_keys=hostile_keys)))
