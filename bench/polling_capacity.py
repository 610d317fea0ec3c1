"""Issue 21 capacity: the real worker polling 10,000 watches of the simulator's fleet shape on PostgreSQL.

``python -m bench.polling_capacity [--watches 10000] [--cycles 3]``. The fleet is
:mod:`bench.fleet`'s (seed 1, six hours), served by the fleet provider (registered for the
run) at a moved clock, so an upstream read costs no network: what is measured is the
poller's and the database's work per poll. The watches are stored as ``create_watch``
stores them (a baseline page seen, one hook of a key without a credit limit), in a database
of their own (``bench_i21``), so its commit counter (``pg_stat_database.xact_commit``) is the
run's alone. Each cycle moves the clock 5 minutes on, makes every watch due and runs one
``poll_due_watches`` (32 threads) in this process: the table shows polls a second, the
poller's CPU per poll (this process), the CPU of the PostgreSQL server (from /proc: its
processes and the backends that exited) and the transactions per poll (``xact_commit``: read-only ones count too).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import sqlalchemy as sa

from . import common
from .fleet import generate

DB = "bench_i21"


def _postgres_cpu() -> float:
    """CPU seconds the local PostgreSQL server has used: every ``postgres`` process's own, plus
    what the postmaster's exited children (backends that closed) used. The whole server: a
    backend that opens and closes within a cycle counts, and so does anyone else's work on
    the same server (the machine is shared: read it as an upper bound)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat:
                head, _, rest = stat.read().rpartition(")")
        except OSError:
            continue
        if not head.endswith("(postgres"):
            continue
        fields = rest.split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick   # utime stime cutime cstime
    return total


def _commits(conn, database: str) -> int:
    conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
    return conn.execute(sa.text("SELECT xact_commit FROM pg_stat_database WHERE datname = :d"),
                        {"d": database}).scalar_one()


def seed_watches(svc, fleet, start: float) -> None:
    from connector.providers.fleet import FleetProvider
    from connector.trigger.crypto import credential_hash
    from connector.trigger.detect import keyed
    from connector.trigger.tables import seen_followers, subscriptions, watches
    from connector.trigger.watches import watch_id

    _, key = svc.keys.create(name="bench")
    provider = FleetProvider(fleet.timelines(), clock=lambda: start)
    cred = credential_hash(None)
    batch = 500
    for first in range(0, len(fleet.watches), batch):
        chunk = fleet.watches[first:first + batch]
        ids = [watch_id("fleet", cred, w.handle) for w in chunk]
        with svc.store.begin() as conn:
            conn.execute(watches.insert(), [
                {"id": wid, "provider": "fleet", "cred_hash": cred, "credentials_enc": None, "handle": w.handle,
                 "status": "active", "last_poll_at": start, "next_poll_at": start + 300, "credits_spent": 1,
                 "pages_read": 1, "created_at": start, "poll_interval": 300} for wid, w in zip(ids, chunk)])
            conn.execute(seen_followers.insert(), [
                {"watch_id": wid, "follower_key": k} for wid, w in zip(ids, chunk)
                for k, _ in keyed(provider.list_followers(w.handle).records)])
            conn.execute(subscriptions.insert(), [
                {"id": f"hook_{wid[2:]}", "watch_id": wid, "key_id": key["id"], "kind": "hook",
                 "event": "new_follower", "target_url": "http://127.0.0.1:9/hook", "secret": "whsec_AAAA",
                 "request_source": "API", "status": "active", "credits_spent": 1, "created_at": start,
                 "last_called_at": None} for wid in ids])
    with svc.store.begin() as conn:
        conn.execute(sa.text("ANALYZE"))


def run(watches: int = 10_000, cycles: int = 3) -> dict:
    from connector.config import Settings
    from connector.providers import PROVIDERS
    from connector.providers.fleet import FleetProvider
    from connector.services import build_services
    from connector.trigger.fleet import load_fleet
    from connector.trigger.tables import watches as table
    from connector.trigger.worker import poll_due_watches
    import json

    admin = sa.create_engine(common.PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DB}"))
        conn.execute(sa.text(f"CREATE DATABASE {DB}"))
    url = sa.engine.make_url(common.PG_URL).set(database=DB).render_as_string(hide_password=False)
    data = generate(1, watches, 0.25)
    fleet = load_fleet(json.dumps(data))
    clock = [fleet.start]
    FleetProvider.timelines = fleet.timelines()
    PROVIDERS["fleet"] = FleetProvider
    rows = []
    svc = build_services(Settings(provider="fleet", database_url=url, clock=lambda: clock[0]), upgrade=True)
    try:
        seed_watches(svc, fleet, fleet.start)
        with admin.connect() as conn:
            for cycle in range(cycles):
                clock[0] += 300
                with svc.store.begin() as db:
                    db.execute(table.update().values(next_poll_at=0))
                commits, backend = _commits(conn, DB), _postgres_cpu()
                before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
                stats = poll_due_watches(svc)
                wall, after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_SELF)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                commits, backend = _commits(conn, DB) - commits, _postgres_cpu() - backend
                rows.append({"cycle": cycle + 1, "polls": stats.watches, "pages": stats.pages, "events": stats.events,
                             "errors": stats.errors, "wall": wall, "polls_per_s": stats.watches / wall,
                             "cpu_ms": cpu * 1000 / stats.watches, "pg_cpu_ms": backend * 1000 / stats.watches,
                             "commits_per_poll": commits / stats.watches, "commits_per_s": commits / wall})
    finally:
        svc.close()
        PROVIDERS.pop("fleet", None)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)"))
        admin.dispose()
    return {"watches": watches, "rows": rows, "load": os.getloadavg()}


def report(results: dict) -> str:
    rows = [[r["cycle"], f"{r['polls']:,}", f"{r['pages']:,}", f"{r['events']:,}", r["errors"], f"{r['wall']:.1f}",
             f"{r['polls_per_s']:.0f}", f"{r['cpu_ms']:.2f}", f"{r['pg_cpu_ms']:.2f}", f"{r['commits_per_poll']:.2f}",
             f"{r['commits_per_s']:.0f}"] for r in results["rows"]]
    return (f"### The real worker on {results['watches']:,} watches of the fleet's shape, PostgreSQL, one poller "
            f"(32 threads), upstream in process\n\n"
            + common.table(["cycle", "polls", "pages", "new events", "errors", "wall s", "polls/s",
                            "poller CPU ms/poll", "PostgreSQL server CPU ms/poll", "transactions/poll", "transactions/s"], rows)
            + f"\n\nLoad average at the end: {' '.join(f'{x:.1f}' for x in results['load'])} (the machine is shared).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watches", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args()
    print(report(run(args.watches, args.cycles)))
