"""Poller throughput: one full cycle of ``poll_due_watches`` over many due watches.

Each watch has a hook subscription of one key with credits (so every page is paid for)
and a baseline of the steady page served by a private nginx
(:func:`bench.steady_upstream.nginx_upstream`), which answers in ``BENCH_LATENCY`` (0.1 s):
a steady-state poll reads one page and finds nothing new. Watches are inserted in bulk the
way ``create_watch`` stores them (the baseline's sample events, which polls never read,
are left out). Pollers run as separate processes (``python -m bench.poller --child``), so
CPU time and peak RSS are theirs alone; they are started, made ready, then released
together. Beside them the table shows the CPU nginx used and how busy the whole machine
was (pollers, PostgreSQL, nginx and anything else running), and checks that every watch
was polled exactly once in the cycle (``pages_read`` went up by one, even with two pollers).
"""

from __future__ import annotations

import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time

from . import common
from .steady_upstream import API_KEY, STEADY, follower_ids, nginx_upstream

READY_TIMEOUT = 60.0


def seed(database_url: str, count: int) -> None:
    """``count`` watches of handles ``fan_0``… with baseline and one paying hook each."""
    import sqlalchemy as sa

    from connector.store import Store
    from connector.store.keys import KeyStore
    from connector.trigger.crypto import credential_hash
    from connector.trigger.tables import seen_followers, subscriptions, watches
    from connector.trigger.watches import watch_id

    store = Store(database_url)
    _, key = KeyStore(store).create(name="bench", credits=10**12)
    now = time.time()
    cred_hash = credential_hash(None)
    chunk = 1000
    try:
        for start in range(0, count, chunk):
            handles = [f"fan_{i}" for i in range(start, min(count, start + chunk))]
            ids = [watch_id("dumpling", cred_hash, h) for h in handles]
            with store.begin() as conn:
                conn.execute(watches.insert(), [
                    {"id": wid, "provider": "dumpling", "cred_hash": cred_hash, "credentials_enc": None,
                     "handle": h, "status": "active", "last_poll_at": now, "next_poll_at": now + 300,
                     "credits_spent": 1, "pages_read": 1, "created_at": now} for wid, h in zip(ids, handles)])
                conn.execute(seen_followers.insert(), [
                    {"watch_id": wid, "follower_key": f"id:{fid}"} for wid in ids for fid in follower_ids(STEADY)])
                conn.execute(subscriptions.insert(), [
                    {"id": f"hook_{wid[2:]}", "watch_id": wid, "key_id": key["id"], "kind": "hook",
                     "event": "new_follower", "target_url": "http://127.0.0.1:9/hook", "secret": "whsec_AAAA",
                     "request_source": "API", "status": "active", "credits_spent": 1, "created_at": now,
                     "last_called_at": None} for wid in ids])
        with store.begin() as conn:
            conn.execute(sa.text("ANALYZE"))  # fresh planner statistics for the claim query
    finally:
        store.dispose()


def make_all_due(database_url: str, limit: int | None = None) -> dict[str, int]:
    """Every watch (or the first ``limit``) due now; returns each due watch's ``pages_read``."""
    import sqlalchemy as sa

    from connector.store import Store
    from connector.trigger.tables import watches

    store = Store(database_url)
    try:
        with store.begin() as conn:
            chosen = sa.select(watches.c.id).order_by(watches.c.id)
            if limit is not None:
                chosen = chosen.limit(limit)
            ids = list(conn.execute(chosen).scalars())
            for start in range(0, len(ids), 1000):
                conn.execute(watches.update().where(watches.c.id.in_(ids[start:start + 1000]))
                             .values(next_poll_at=0, lease_owner=None, lease_expires_at=None))
            return dict(conn.execute(sa.select(watches.c.id, watches.c.pages_read)
                                     .where(watches.c.next_poll_at == 0)).all())
    finally:
        store.dispose()


def polled_twice(database_url: str, before: dict[str, int]) -> tuple[int, int]:
    """(watches read more than once, watches not read) in the cycle, from ``pages_read``."""
    import sqlalchemy as sa

    from connector.store import Store
    from connector.trigger.tables import watches

    store = Store(database_url)
    try:
        with store.connect() as conn:
            after = dict(conn.execute(sa.select(watches.c.id, watches.c.pages_read)).all())
    finally:
        store.dispose()
    twice = sum(1 for wid, n in before.items() if after.get(wid, n) - n > 1)
    missed = sum(1 for wid, n in before.items() if after.get(wid, n) - n < 1)
    return twice, missed


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"poller child gave no answer within {timeout:.0f}s")
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"poller child exited with {proc.wait()}")
    return line


def cycle(database_url: str, upstream, *, pollers: int = 1, threads: int | None = None, due: int | None = None,
          timeout: float = 600.0) -> dict:
    """Make every watch (or ``due`` of them) due and time one ``poll_due_watches`` per
    poller process, released together."""
    before = make_all_due(database_url, due)
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "BENCH_DB": database_url, "BENCH_UPSTREAM": upstream.url}
    if threads:
        env["CONNECTOR_POLL_THREADS"] = str(threads)
    procs = [subprocess.Popen([sys.executable, "-m", "bench.poller", "--child"], env=env, cwd=common.ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(pollers)]
    try:
        for proc in procs:
            assert _readline(proc, READY_TIMEOUT).strip() == "ready"
        busy_before, total_before = _cpu_times()
        nginx_before = upstream.cpu_seconds()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(_readline(proc, timeout)) for proc in procs]
        busy_after, total_after = _cpu_times()
        nginx_cpu = upstream.cpu_seconds() - nginx_before
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    watches = sum(r["watches"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    twice, missed = polled_twice(database_url, before)
    return {"pollers": pollers, "threads": threads or results[0]["threads"], "watches": watches,
            "errors": sum(r["errors"] for r in results), "pages": sum(r["pages"] for r in results),
            "wall_s": wall, "polls_per_s": watches / wall if wall else 0.0,
            "cpu_ms_per_poll": cpu * 1000 / watches if watches else float("nan"),
            "rss_mb": max(r["rss_kb"] for r in results) / 1024, "twice": twice, "missed": missed,
            "upstream_cpu_ms": nginx_cpu * 1000 / watches if watches else float("nan"),
            "poller_cpu": [r["cpu_s"] / max(r["end"] - r["start"], 1e-9) for r in results],
            # Everything on the machine (pollers, database, fake upstream, other users): 100 % = all cores.
            "machine_busy": (busy_after - busy_before) / max(total_after - total_before, 1)}


def child() -> None:
    """One poller process: build the services, say ``ready``, wait for ``go``, run one cycle."""

    from connector.services import build_services
    from connector.config import Settings, WorkerSettings
    from connector.trigger.worker import poll_due_watches

    worker = WorkerSettings(poll_threads=int(os.environ.get("CONNECTOR_POLL_THREADS") or WorkerSettings.poll_threads))
    settings = Settings(provider="dumpling", dumpling_api_key=API_KEY, dumpling_base_url=os.environ["BENCH_UPSTREAM"],
                        database_url=os.environ["BENCH_DB"], poll_interval=300, worker=worker)
    svc = build_services(settings)
    print("ready", flush=True)
    sys.stdin.readline()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time()
    stats = poll_due_watches(svc)
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_SELF)
    svc.keys.flush_usage()
    svc.providers.close()
    svc.store.dispose()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"start": start, "end": end, "watches": stats.watches, "errors": stats.errors,
                      "pages": stats.pages, "cpu_s": cpu, "rss_kb": after.ru_maxrss,
                      "threads": settings.worker.poll_threads}), flush=True)


def run(quick: bool = False) -> dict:
    count = 200 if quick else 10_000
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, nginx_upstream() as upstream:
        sqlite_url = f"sqlite:///{tmp}/poller.db"
        seed(sqlite_url, count)
        rows["SQLite, 1 poller"] = cycle(sqlite_url, upstream)
        with common.pg_schema() as pg_url:
            if pg_url is None:
                return {"count": count, "rows": rows, "note": f"PostgreSQL unreachable at {common.PG_URL}"}
            seed(pg_url, count)
            rows["PostgreSQL, 1 poller"] = cycle(pg_url, upstream)
            rows["PostgreSQL, 2 pollers"] = cycle(pg_url, upstream, pollers=2)
            # Where the CPU is not the limit: 8 threads each, so a poller waits on the upstream
            # (at most 80 polls/s at 100 ms) and uses a fraction of a core; two should double it.
            if not quick:
                rows["PostgreSQL, 1 poller, 8 threads"] = cycle(pg_url, upstream, threads=8, due=count // 5)
                rows["PostgreSQL, 2 pollers, 8 threads"] = cycle(pg_url, upstream, pollers=2, threads=8,
                                                                 due=count // 5)
    for name, row in rows.items():   # the leases' promise: no watch read twice in one interval
        if row["twice"] or row["missed"]:
            raise AssertionError(f"{name}: {row['twice']} watches polled twice and {row['missed']} not "
                                 f"polled in one cycle")
    one, two = rows["PostgreSQL, 1 poller"], rows["PostgreSQL, 2 pollers"]
    results = {"count": count, "rows": rows, "scaling": two["polls_per_s"] / one["polls_per_s"]}
    if not quick:
        one_io, two_io = rows["PostgreSQL, 1 poller, 8 threads"], rows["PostgreSQL, 2 pollers, 8 threads"]
        results["scaling_io"] = two_io["polls_per_s"] / one_io["polls_per_s"]
    return results


def report(results: dict) -> str:
    rows = [[name, r["watches"], r["threads"], r["errors"], r["twice"], f"{r['wall_s']:.1f}",
             f"{r['polls_per_s']:,.0f}", f"{r['cpu_ms_per_poll']:.2f}",
             " + ".join(f"{c:.0%}" for c in r["poller_cpu"]), f"{r['upstream_cpu_ms']:.2f}", f"{r['rss_mb']:.0f}",
             f"{r['machine_busy']:.0%}"] for name, r in results["rows"].items()]
    text = (f"### Poller: one cycle of {results['count']:,} due watches, nginx upstream answering in "
            f"{float(os.environ.get('BENCH_LATENCY', '0.1')) * 1000:.0f} ms\n\n"
            + common.table(["database, pollers", "watches polled", "threads each", "errors", "polled twice",
                            "cycle s", "polls/s", "CPU ms/poll", "each poller's CPU (1 core = 100 %)",
                            "nginx CPU ms/poll", "peak RSS MB", f"machine CPU busy ({os.cpu_count()} cores)"], rows))
    if results.get("scaling"):
        text += f"\n\nTwo pollers on PostgreSQL: **{results['scaling']:.2f}×** one with 32 threads each"
        if results.get("scaling_io"):
            text += (f", **{results['scaling_io']:.2f}×** one with 8 threads each (a poller then waits on the "
                     "upstream rather than on its CPU; these rows poll a fifth of the watches)")
        text += (". Whether the CPU was the limit shows in the columns of each poller's own CPU use (a poller "
                 "is one Python process, so about 100 % is its ceiling) and of the whole machine's.")
    if results.get("note"):
        text += f"\n\n{results['note']}"
    return text


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        print(report(run(quick="--quick" in sys.argv)))
