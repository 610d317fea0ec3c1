"""Webhook delivery: events/s to a local receiver, and latency from commit to receipt.

The worker is ``connector poll`` in its own process, running continuously (its default
1 s idle sleep between passes), on SQLite. The receiver is a threaded HTTP server on
127.0.0.1 answering 204 that notes when each webhook arrives. Two sources of events:

- *worker's own poll*: N followers are added to the fake upstream and the watch is made
  due; the worker polls it, commits the events and delivers them in the same pass.
  Latency starts at the event's ``detected_at`` (the start of that poll, so the poll's
  page reads are included).
- *committed elsewhere*: events and their outbox rows are committed by another process
  (as a web process does when a hook created on an existing watch polls it, or a second
  worker's poll); the worker sees them at its next pass. Latency starts at the commit.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time

import sqlalchemy as sa

from . import common

DEADLINE = 60.0      # seconds one burst may take to arrive in full


def _wait_for(receiver: common.Receiver, count: int, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    if len(receiver.received) < count:
        raise RuntimeError(f"only {len(receiver.received)} of {count} webhooks arrived within {timeout:.0f}s")


def run(quick: bool = False) -> dict:
    from connector.app import create_app
    from connector.config import Settings
    from connector.trigger.tables import events, subscriptions, watches
    from connector.trigger.outbox import store_events
    from tests.fakes import FakeDumpling, FakeWorld

    bursts = [1, 20] if quick else [1, 50, 500]
    singles = 3 if quick else 10          # lone events committed at random moments, for the latency spread
    handle = "stream"
    world = FakeWorld(seed=8)
    world.add_account(handle, followers=100)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}   # (source, burst) -> [(commit, receipt)]
    with tempfile.TemporaryDirectory() as tmp, common.Receiver() as receiver, \
            FakeDumpling(world, rate_limit=10**9) as fake:
        database_url = f"sqlite:///{tmp}/delivery.db"
        settings = Settings(provider="dumpling", dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                            database_url=database_url, allow_private_targets=True, poll_interval=300)
        app = create_app(settings)
        svc = app.extensions["connector"]
        raw, _ = svc.keys.create(name="bench", credits=10**9)
        r = app.test_client().post("/api/v1/hooks", headers={"Authorization": f"Bearer {raw}"},
                                   json={"event": "new_follower", "handle": handle, "targetUrl": receiver.url})
        assert r.status_code == 201, r.get_data(as_text=True)
        with svc.store.connect() as conn:
            wid, sub_id = conn.execute(sa.select(watches.c.id, subscriptions.c.id)
                                       .join(subscriptions, subscriptions.c.watch_id == watches.c.id)).one()

        def detected(ids: list[str]) -> dict[str, float]:
            with svc.store.connect() as conn:
                return dict(conn.execute(sa.select(events.c.id, events.c.detected_at)
                                         .where(events.c.id.in_(ids))).all())

        def collect(source: str, n: int, first: int) -> None:
            _wait_for(receiver, first + n)
            arrived = {json.loads(body)["id"]: at for at, body in receiver.received[first:first + n]}
            commits = detected(list(arrived))
            samples.setdefault((source, n), []).extend((commits[i], at) for i, at in arrived.items())

        env = dict(fake.env, CONNECTOR_PROVIDER="dumpling", CONNECTOR_DATABASE_URL=database_url,
                   CONNECTOR_ALLOW_PRIVATE_TARGETS="1", CONNECTOR_POLL_INTERVAL="300", CONNECTOR_LOG_LEVEL="WARNING")
        rng = random.Random(8)
        serial = 0
        with common.process([sys.executable, "-m", "connector.cli", "poll"], env=env):
            time.sleep(1.5)   # the worker is up and idling
            for n in bursts:
                first = len(receiver.received)
                world.add_followers(handle, n)
                with svc.store.begin() as conn:
                    conn.execute(watches.update().where(watches.c.id == wid).values(next_poll_at=0))
                collect("worker's own poll", n, first)
            for n in [1] * singles + bursts[1:]:
                time.sleep(rng.uniform(0, 1.0))   # land anywhere in the worker's idle sleep
                first = len(receiver.received)
                records = []
                for _ in range(n):
                    serial += 1
                    records.append((f"id:9{serial:018d}", {"user": {"id": f"9{serial:018d}",
                                                                      "uniqueId": f"elsewhere_{serial}"},
                                                             "stats": {}}))
                with svc.store.write() as conn:
                    store_events(conn, svc.store.dialect, wid, handle, "dumpling", records, time.time(),
                                 baseline=False, recipients=[([sub_id], [])] * len(records))
                collect("committed elsewhere", n, first)
        svc.providers.close()
        svc.store.dispose()
    rows = {}
    for (source, n), pairs in samples.items():
        latencies = [(got - commit) * 1000 for commit, got in pairs]
        spread = max(got for _, got in pairs) - min(commit for commit, _ in pairs)
        rows[(source, n)] = {"events": len(pairs), "p50": common.percentile(latencies, 50),
                             "p99": common.percentile(latencies, 99), "max": max(latencies),
                             "rate": len(pairs) / spread if n > 1 and spread > 0 else None}
    return {"rows": rows}


def report(results: dict) -> str:
    rows = []
    for (source, n), r in results["rows"].items():
        rows.append([source, f"{n:,}", r["events"], f"{r['rate']:,.0f}" if r["rate"] else "—",
                     f"{r['p50']:.0f}", f"{r['p99']:.0f}", f"{r['max']:.0f}"])
    return ("### Webhook delivery: `connector poll` running, receiver on 127.0.0.1 answering 204 (SQLite)\n\n"
            + common.table(["events from", "burst", "events", "events/s", "p50 ms", "p99 ms", "max ms"], rows))


if __name__ == "__main__":
    print(report(run(quick="--quick" in sys.argv)))
