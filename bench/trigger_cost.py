"""Trigger cost and correctness: upstream pages per poll, and missed or repeated events.

Runs in-process against the test fake (``tests.fakes.FakeDumpling`` over a ``FakeWorld``,
real HTTP on loopback; pages counted from ``fake.requests``) with the connector's own
trigger code: hooks are created through the API (baseline included), then
``poll_due_watches`` and ``deliver_due_webhooks`` run pass by pass, as ``connector poll``
does. Every burst of N new followers is polled until its watch has no backlog left and
delivered to a local receiver; the followers added are compared with those delivered.
Ideal pages: ceil(N / page size) + 1 (the pages holding the burst, plus the one that
shows the frontier); fewer is possible when the frontier shares the burst's last page.
"""

from __future__ import annotations

import json
import math
import tempfile
import time

import sqlalchemy as sa

from . import common

PAGE_SIZE = 30          # Dumpling's default page, which the trigger reads
OLD_FOLLOWERS = 100     # followers each account has before its hook is created
MAX_PASSES = 500


def _followers_pages(fake) -> int:
    return sum(1 for r in fake.requests if r.endpoint == "followers")


def run(quick: bool = False) -> dict:
    from connector.app import create_app
    from connector.config import Settings
    from connector.trigger.tables import events, watches
    from connector.trigger.sender import deliver_due_webhooks
    from connector.trigger.worker import poll_due_watches
    from tests.fakes import FakeDumpling, FakeWorld

    bursts = [1, 50] if quick else [1, 50, 500, 5000]
    # Deep enough that the largest burst's frontier stays reachable (the fake caps depth at 5,000).
    world = FakeWorld(seed=6, depth_cap=20_000)
    handles = {n: f"burst{n}" for n in bursts}
    for handle in handles.values():
        world.add_account(handle, followers=OLD_FOLLOWERS)
    results: dict = {"bursts": {}}
    with tempfile.TemporaryDirectory() as tmp, common.Receiver() as receiver, \
            FakeDumpling(world, rate_limit=10**9) as fake:
        settings = Settings(provider="dumpling", dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                            database_url=f"sqlite:///{tmp}/cost.db", allow_private_targets=True,
                            poll_interval=300, secret_key="bench-secret-key")
        app = create_app(settings)
        svc = app.extensions["connector"]
        results["page_budget"] = settings.worker.page_budget
        raw, _ = svc.keys.create(name="bench", credits=10**9)
        http = app.test_client()
        auth = {"Authorization": f"Bearer {raw}"}
        for handle in handles.values():
            r = http.post("/api/v1/hooks", headers=auth,
                          json={"event": "new_follower", "handle": handle, "targetUrl": receiver.url})
            assert r.status_code == 201, r.get_data(as_text=True)

        def make_due(handle: str | None = None) -> None:
            with svc.store.begin() as conn:
                stmt = watches.update().values(next_poll_at=0)
                if handle is not None:
                    stmt = stmt.where(watches.c.handle == handle)
                conn.execute(stmt)

        # Steady state: every watch polled once, nobody new.
        fake.reset_log()
        make_due()
        stats = poll_due_watches(svc)
        results["steady"] = {"polls": stats.watches, "pages": _followers_pages(fake), "events": stats.events}

        for n, handle in handles.items():
            added = {u.id for u in world.add_followers(handle, n)}
            fake.reset_log()
            received_before = len(receiver.received)
            make_due(handle)
            polls, started = 0, time.perf_counter()
            for _ in range(MAX_PASSES):
                polls += poll_due_watches(svc).watches
                with svc.store.connect() as conn:
                    status = conn.execute(sa.select(watches.c.status).where(watches.c.handle == handle)).scalar()
                if status != "backlog":
                    break
            poll_seconds = time.perf_counter() - started
            pages = _followers_pages(fake)
            for _ in range(MAX_PASSES):
                if not deliver_due_webhooks(svc):
                    break
            with svc.store.connect() as conn:
                stored = conn.execute(sa.select(sa.func.count()).select_from(events.join(watches))
                                      .where(watches.c.handle == handle, events.c.baseline.is_(False))).scalar()
            delivered = [json.loads(body)["follower"]["id"] for _, body in receiver.received[received_before:]]
            results["bursts"][n] = {
                "polls": polls, "pages": pages, "ideal": math.ceil(n / PAGE_SIZE) + 1, "stored": stored,
                "delivered": len(delivered), "missed": len(added - set(delivered)),
                "duplicates": len(delivered) - len(set(delivered)), "unexpected": len(set(delivered) - added),
                "poll_s": poll_seconds, "status": status}
        svc.providers.close()
        svc.store.dispose()
    return results


def report(results: dict) -> str:
    steady = results["steady"]
    rows = [["0 (steady state)", steady["polls"], f"{steady['pages']} ({steady['pages'] / steady['polls']:.2f} per poll)",
             "1 per poll", "—", steady["events"], "—", "—", "—"]]
    for n, r in results["bursts"].items():
        rows.append([f"{n:,}", r["polls"], r["pages"], r["ideal"], f"{r['pages'] - r['ideal']:+d}", r["stored"],
                     r["delivered"], r["missed"], r["duplicates"]])
    return (f"### Trigger cost: upstream pages (= credits) for N new followers, page size {PAGE_SIZE}, "
            f"page budget {results['page_budget']} per poll\n\n"
            + common.table(["new followers", "polls", "upstream pages", "ideal ceil(N/30)+1", "vs ideal",
                            "events stored", "delivered", "missed", "duplicates"], rows))


if __name__ == "__main__":
    import sys

    print(report(run(quick="--quick" in sys.argv)))
