"""The upgrade to the family of triggers (migration 0008) loses nothing: a database the
previous release wrote, with a watch mid-life (seen followers, delivered and pending
deliveries, a polling inbox), carries on after ``connector db upgrade``: the pending
delivery goes out under its old id, a follower already delivered never fires again, new
followers fire once, and the new triggers work beside the old watch. Proved in process, then
with real processes (``connector db upgrade``, ``connector poll`` killed mid-poll and restarted)."""

from __future__ import annotations

import time
from collections import Counter

import sqlalchemy as sa

from connector.store.keys import hash_key
from connector.trigger.events import dumps, event_id, event_payload
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import watches
from tests.fakes import FakeDumpling
from tests.test_migrations import cli, previous_id, previous_release_schema
from tests.test_trigger_family_processes import (WAIT, all_delivered, hook, kill_mid_poll, received,  # noqa: F401
                                                 receivers, workers)
from tests.test_trigger_worker import wait_for
from tests.trigger_kit import (HANDLE, dumpling, make_due, receiver, trigger_settings, verify,  # noqa: F401
                               world)
from connector.trigger.worker import poll_due_watches

RAW_KEY = "tc_previous_release_key_9876543210"
SECRET = "whsec_" + "A" * 32


def fill(url: str, world, target: str) -> dict:
    """What the previous release wrote after reading the top page of HANDLE's followers: 30
    seen followers, their events (the newest two detected by a poll, the rest baseline), the
    newest delivered to a hook, the second still pending, and a polling subscription."""
    now = time.time()
    wid = previous_id("w_", "dumpling", "", HANDLE)
    top = [user for user, _ in world[HANDLE].followers[:30]]
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    ids = []
    with engine.begin() as conn:
        conn.execute(t["api_keys"].insert().values(id="key_prev", name="agency", key_hash=hash_key(RAW_KEY),
                                                   key_prefix=RAW_KEY[:8], credits=100, rate_limit=None,
                                                   created_at=sa.func.now()))
        conn.execute(t["watches"].insert().values(
            id=wid, provider="dumpling", cred_hash="", handle=HANDLE, status="active", last_poll_at=now,
            next_poll_at=now + 3600, credits_spent=2, pages_read=2, created_at=now - 3600))
        for n, user in enumerate(reversed(top)):           # oldest first, as a commit stores them
            key = f"id:{user.id}"
            record = {"user": {"id": user.id, "uniqueId": user.handle}, "stats": {}}
            payload = {**event_payload(wid, key, record, handle=HANDLE, provider="dumpling", detected_at=now - 60),
                       "id": previous_id("evt_", wid, key)}
            ids.append(payload["id"])
            conn.execute(t["seen_followers"].insert().values(watch_id=wid, follower_key=key))
            conn.execute(t["events"].insert().values(id=payload["id"], watch_id=wid, follower_key=key,
                                                     payload=dumps(payload), detected_at=now - 60,
                                                     baseline=n < 28))
        conn.execute(t["subscriptions"].insert().values(
            id="hook_old", watch_id=wid, key_id="key_prev", kind="hook", event="new_follower", target_url=target,
            secret=SECRET, request_source="ZAPIER", status="active", credits_spent=2, created_at=now - 3000))
        conn.execute(t["subscriptions"].insert().values(
            id=previous_id("poll_", wid, "key_prev"), watch_id=wid, key_id="key_prev", kind="poll",
            event="new_follower", request_source="MAKE_DOT_COM", status="active", credits_spent=1,
            created_at=now - 3600, last_called_at=now - 30))
        newest, second = ids[-1], ids[-2]
        conn.execute(t["deliveries"].insert().values(subscription_id="hook_old", event_id=newest, status="delivered",
                                                     attempts=1, next_attempt_at=now, created_at=now - 50,
                                                     delivered_at=now - 50))
        conn.execute(t["deliveries"].insert().values(subscription_id="hook_old", event_id=second, status="pending",
                                                     attempts=1, next_attempt_at=now - 1, created_at=now - 50))
    engine.dispose()
    return {"watch": wid, "top": top, "events": ids, "delivered": newest, "pending": second}


def test_the_upgrade_keeps_watches_hooks_inboxes_and_pending_deliveries(database_url, serve, dumpling, world,  # noqa: F811
                                                                        receiver):  # noqa: F811
    previous_release_schema(database_url)
    before = fill(database_url, world, receiver.url)
    upgraded = cli(database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    live = serve(trigger_settings(dumpling, database_url))
    svc = live.services
    with svc.store.connect() as conn:
        row = conn.execute(sa.select(watches)).mappings().one()
    assert (row["id"], row["operation"]) == (before["watch"], "list_followers")
    # Ids are computed as they were: the old rows are the ones the code finds.
    assert event_id(row["id"], f"id:{before['top'][0].id}") == before["delivered"]

    deliver_due_webhooks(svc)                                   # the pending delivery goes out as it was
    assert [r.headers["webhook-id"] for r in receiver.requests] == [before["pending"]]
    assert verify(SECRET, receiver.requests[0].headers, receiver.requests[0].body)["id"] == before["pending"]

    # The newest known follower leaves and comes back (on top, with new ones): not again.
    account = world[HANDLE]
    world.unfollow(HANDLE, before["top"][0].id)
    world.refollow(HANDLE, before["top"][0])
    new = world.add_followers(HANDLE, 35)
    make_due(svc)
    poll_due_watches(svc)
    deliver_due_webhooks(svc)
    got = Counter(body["id"] for body in receiver.delivered())
    assert max(got.values()) == 1 and before["delivered"] not in got
    assert {b["follower"]["id"] for b in receiver.delivered()[1:]} == {u.id for u in new}
    assert account.followers[35][0].id == before["top"][0].id   # (it came back under the new ones)

    with live.client(RAW_KEY) as http:
        same = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url})
        assert same.status_code == 200 and same.json()["id"] == "hook_old"
        polled = http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE, "limit": 100}).json()["events"]
        assert [e["follower"]["id"] for e in polled[:35]] == [u.id for u in new]
        assert {e["id"] for e in polled[35:37]} == {before["delivered"], before["pending"]}
        following = http.post("/api/v1/hooks", json={"event": "new_following", "handle": HANDLE,
                                                     "targetUrl": receiver.url})
        assert following.status_code == 201, following.text
    with svc.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(watches)).scalar_one() == 2


def test_the_upgrade_with_real_processes_a_worker_killed_mid_poll(database_url, serve, world, receivers,  # noqa: F811
                                                                   workers, tmp_path):
    """The same upgrade as users run it: ``connector db upgrade`` and ``connector poll`` are
    processes, the worker is killed with SIGKILL in the first poll after the upgrade (a burst
    of four pages) and started again."""
    old, following = receivers(), receivers()
    previous_release_schema(database_url)
    before = fill(database_url, world, old.url)
    upgraded = cli(database_url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    world.add_following(HANDLE, 30)                                  # there when the new hook subscribes
    with FakeDumpling(world, latency=0.2) as fake:
        crew = workers(fake, database_url, tmp_path)
        worker = crew.start()                                        # the worker first, then the service
        wait_for(lambda: crew.alive(worker) and old.requests, WAIT, "the pending delivery")
        (first,) = old.requests                                      # it goes out as it was, once
        assert first.headers["webhook-id"] == before["pending"]
        assert verify(SECRET, first.headers, first.body)["follower"]["id"] == before["top"][1].id
        live = serve(trigger_settings(fake, database_url))
        svc = live.services

        with live.client(RAW_KEY) as http:
            same = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": old.url})
            assert same.status_code == 200 and same.json()["id"] == "hook_old"
            new_hook = hook(http, "new_following", HANDLE, following)
            # The newest known follower leaves and comes back on top, under 90 new ones.
            world.unfollow(HANDLE, before["top"][0].id)
            world.refollow(HANDLE, before["top"][0])
            new = world.add_followers(HANDLE, 90)
            followed = world.add_following(HANDLE, 150)              # read beside it, a page longer
            worker = kill_mid_poll(svc, fake, crew, worker, "followers", 2)
            crew.stop(worker)
            assert crew.kills == 1

            # Each new follower once, under the id the previous release would have given it (a
            # Zap deduplicates by id); the pending one not again, the delivered one never.
            got = received(old, {"secret": SECRET, "event": "new_follower"})
            assert got[0]["id"] == before["pending"]
            assert {b["id"] for b in got[1:]} == {previous_id("evt_", before["watch"], f"id:{u.id}") for u in new}
            assert {b["follower"]["id"] for b in got[1:]} == {u.id for u in new}
            assert {b["followed"]["id"] for b in received(following, new_hook)} == {u.id for u in followed}
            all_delivered(svc)

            polled = http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE, "limit": 100})
            polled = polled.json()["events"]
            assert [e["follower"]["id"] for e in polled[:90]] == [u.id for u in new]
            assert [e["id"] for e in polled[90:]] == before["events"][::-1][:10]
