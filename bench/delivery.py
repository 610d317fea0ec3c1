"""Webhook delivery: deliveries/s from one worker, and latency from commit to receipt.

The worker is ``connector poll`` in its own process, running continuously (its default
0.25 s idle sleep between passes), on SQLite. The receiver is a private nginx on 127.0.0.1
(:mod:`bench.tools`) answering ``204`` and logging ``$msec`` and the ``webhook-id`` header of
each request, so the receiver is written in C and is never the limit (its CPU is reported).
Three sources of events:

- *worker's own poll*: N followers are added to the fake upstream and the watch is made
  due; the worker polls it, commits the events and wakes its sender. Latency starts at the
  event's ``detected_at`` (the start of that poll, so the poll's page reads are included).
- *committed elsewhere*: events and their outbox rows are committed by another process
  (as a web process does when a hook created on an existing watch polls it, or a second
  worker's poll); the worker's sender sees them at its next claim (within its idle sleep).
  Latency starts at the commit.
- *throughput*: a large batch committed elsewhere at once: deliveries/s from the commit to
  the last receipt, with the CPU the worker, nginx and the whole machine used meanwhile.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time

import sqlalchemy as sa

from . import common, tools

DEADLINE = 60.0      # seconds one burst may take to arrive in full


def _wait_for(receiver: common.Receiver, count: int, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    if len(receiver.received) < count:
        raise RuntimeError(f"only {len(receiver.received)} of {count} webhooks arrived within {timeout:.0f}s")


class HookLog:
    """nginx's access log of ``$msec $http_webhook_id``: when each webhook id first arrived."""

    def __init__(self, path):
        self.path = path
        self.arrived: dict[str, float] = {}
        self.requests = 0
        self._offset = 0

    def read(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode().splitlines():
            at, _, webhook_id = line.partition(" ")
            self.requests += 1
            self.arrived.setdefault(webhook_id, float(at))

    def wait(self, ids, timeout: float = DEADLINE) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            missing = [i for i in ids if i not in self.arrived]
            if not missing:
                return {i: self.arrived[i] for i in ids}
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(ids) - len(missing)} of {len(ids)} webhooks arrived "
                                   f"within {timeout:.0f}s")
            time.sleep(0.01)


def run(quick: bool = False) -> dict:
    from connector.app import create_app
    from connector.config import Settings
    from connector.trigger.outbox import account_events, store_events
    from connector.trigger.tables import events, subscriptions, watches
    from tests.fakes import FakeDumpling, FakeWorld

    bursts = [1, 20] if quick else [1, 50, 500]
    singles = 3 if quick else 10          # lone events committed at random moments, for the latency spread
    bulk = 200 if quick else 5000
    handle = "stream"
    world = FakeWorld(seed=8)
    world.add_account(handle, followers=100)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}   # (source, burst) -> [(commit, receipt)]
    server = "location / { return 204; }\naccess_log hooks.log hooks;"
    with tempfile.TemporaryDirectory() as tmp, \
            tools.nginx(server, http='log_format hooks "$msec $http_webhook_id";') as receiver, \
            FakeDumpling(world, rate_limit=10**9) as fake:
        hooks = HookLog(receiver.prefix / "hooks.log")
        database_url = f"sqlite:///{tmp}/delivery.db"
        settings = Settings(provider="dumpling", dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                            database_url=database_url, allow_private_targets=True, poll_interval=300,
                            secret_key="bench-secret-key")
        app = create_app(settings)
        svc = app.extensions["connector"]
        raw, _ = svc.keys.create(name="bench", credits=10**9)
        r = app.test_client().post("/api/v1/hooks", headers={"Authorization": f"Bearer {raw}"},
                                   json={"event": "new_follower", "handle": handle,
                                         "targetUrl": receiver.url + "/hook"})
        assert r.status_code == 201, r.get_data(as_text=True)
        with svc.store.connect() as conn:
            wid, sub_id = conn.execute(sa.select(watches.c.id, subscriptions.c.id)
                                       .join(subscriptions, subscriptions.c.watch_id == watches.c.id)).one()

        def detected(ids: list[str]) -> dict[str, float]:
            with svc.store.connect() as conn:
                return dict(conn.execute(sa.select(events.c.id, events.c.detected_at)
                                         .where(events.c.id.in_(ids))).all())

        serial = [0]

        def commit_elsewhere(n: int) -> tuple[list[str], float]:
            records = []
            for _ in range(n):
                serial[0] += 1
                fid = f"9{serial[0]:018d}"
                records.append((f"id:{fid}", {"user": {"id": fid, "uniqueId": f"elsewhere_{serial[0]}"}, "stats": {}}))
            rows = account_events({"id": wid, "handle": handle, "provider": "dumpling"}, svc.manifests["new_follower"],
                                  records, time.time(), baseline=False)
            with svc.store.write() as conn:
                store_events(conn, svc.store.dialect, rows, time.time(), recipients=[([sub_id], [])] * len(rows))
            return [row["id"] for row in rows], time.time()

        env = dict(fake.env, CONNECTOR_PROVIDER="dumpling", CONNECTOR_DATABASE_URL=database_url,
                   CONNECTOR_SECRET_KEY="bench-secret-key",
                   CONNECTOR_ALLOW_PRIVATE_TARGETS="1", CONNECTOR_POLL_INTERVAL="300", CONNECTOR_LOG_LEVEL="WARNING")
        rng = random.Random(8)
        throughput = {}
        with common.process([sys.executable, "-m", "connector.cli", "poll"], env=env) as worker:
            time.sleep(1.5)   # the worker is up and idling
            for n in bursts:
                before = set(hooks.arrived)
                world.add_followers(handle, n)
                with svc.store.begin() as conn:
                    conn.execute(watches.update().where(watches.c.id == wid).values(next_poll_at=0))
                deadline = time.monotonic() + DEADLINE
                while len(set(hooks.arrived) - before) < n and time.monotonic() < deadline:
                    time.sleep(0.01)
                    hooks.read()
                new = [i for i in hooks.arrived if i not in before]
                if len(new) < n:
                    raise RuntimeError(f"only {len(new)} of {n} webhooks of the worker's poll arrived")
                commits = detected(new)
                samples.setdefault(("worker's own poll", n), []).extend((commits[i], hooks.arrived[i]) for i in new)
            for n in [1] * singles + bursts[1:]:
                time.sleep(rng.uniform(0, 1.0))   # land anywhere in the worker's idle sleep
                ids, committed = commit_elsewhere(n)
                arrived = hooks.wait(ids)
                samples.setdefault(("committed elsewhere", n), []).extend((committed, arrived[i]) for i in ids)
            time.sleep(0.5)
            cpu_worker, cpu_nginx, machine = tools.cpu_seconds(worker.pid), receiver.cpu_seconds(), tools.machine_cpu()
            requests_before = hooks.requests
            ids, committed = commit_elsewhere(bulk)
            arrived = hooks.wait(ids, timeout=DEADLINE * 3)
            last = max(arrived.values())
            machine_after = tools.machine_cpu()
            throughput = {"deliveries": bulk, "seconds": last - committed, "rate": bulk / (last - committed),
                          "requests": hooks.requests - requests_before,
                          "worker_ms": (tools.cpu_seconds(worker.pid) - cpu_worker) * 1000 / bulk,
                          "nginx_ms": (receiver.cpu_seconds() - cpu_nginx) * 1000 / bulk,
                          "machine_busy": (machine_after[0] - machine[0]) / max(machine_after[1] - machine[1], 1e-9)}
        svc.providers.close()
        svc.store.dispose()
    rows = {}
    for (source, n), pairs in samples.items():
        latencies = [(got - commit) * 1000 for commit, got in pairs]
        spread = max(got for _, got in pairs) - min(commit for commit, _ in pairs)
        rows[(source, n)] = {"events": len(pairs), "p50": common.percentile(latencies, 50),
                             "p99": common.percentile(latencies, 99), "max": max(latencies),
                             "rate": len(pairs) / spread if n > 1 and spread > 0 else None}
    return {"rows": rows, "throughput": throughput}


def report(results: dict) -> str:
    rows = []
    for (source, n), r in results["rows"].items():
        rows.append([source, f"{n:,}", r["events"], f"{r['rate']:,.0f}" if r["rate"] else "—",
                     f"{r['p50']:.0f}", f"{r['p99']:.0f}", f"{r['max']:.0f}"])
    t = results["throughput"]
    return ("### Webhook delivery: `connector poll` running, nginx receiver on 127.0.0.1 answering 204 (SQLite)\n\n"
            + common.table(["events from", "burst", "events", "events/s", "p50 ms", "p99 ms", "max ms"], rows)
            + f"\n\nThroughput: {t['deliveries']:,} deliveries committed at once reached the receiver in "
              f"{t['seconds']:.2f} s: **{t['rate']:,.0f} deliveries/s** from one worker "
              f"({t['requests']:,} POSTs received). CPU per delivery: worker {t['worker_ms']:.2f} ms, "
              f"nginx {t['nginx_ms']:.3f} ms; the whole machine ({os.cpu_count()} cores, other users included) "
              f"was {t['machine_busy']:.0%} busy meanwhile.")


if __name__ == "__main__":
    print(report(run(quick="--quick" in sys.argv)))
