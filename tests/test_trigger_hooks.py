"""REST hooks end to end: real service, fake Dumpling and webhook receivers on loopback."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from connector.trigger.events import event_id
from connector.trigger.tables import deliveries, events, watches
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.worker import poll_due_watches
from tests.trigger_kit import (HANDLE, Receiver, dumpling, follower_pages, make_due, receiver,  # noqa: F401
                               trigger_settings, verify, watch_row, world)


@dataclass
class Env:
    live: object
    http: httpx.Client
    world: object
    fake: object
    receiver: Receiver
    key_id: str

    @property
    def svc(self):
        return self.live.services

    def subscribe(self, handle=HANDLE, **extra) -> dict:
        r = self.http.post("/api/v1/hooks", json={"event": "new_follower", "handle": handle,
                                                  "targetUrl": self.receiver.url, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def cycle(self, passes: int = 1):
        """Worker passes: poll whatever is due (made due now), then deliver."""
        for _ in range(passes):
            make_due(self.svc)
            poll_due_watches(self.svc)
            deliver_due_webhooks(self.svc)

    def hook(self, hook_id: str) -> dict:
        r = self.http.get(f"/api/v1/hooks/{hook_id}")
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def env(serve, dumpling, world, receiver, database_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url))
    raw, row = live.services.keys.create(name="hooks")
    with live.client(raw) as http:
        yield Env(live, http, world, dumpling, receiver, row["id"])


def delivered_ids(env: Env) -> Counter:
    return Counter(body["id"] for body in env.receiver.delivered())


def expected_ids(env: Env, users) -> set[str]:
    wid = watch_row(env.svc)["id"]
    return {event_id(wid, f"id:{u.id}") for u in users}


@pytest.mark.parametrize("burst", [1, 31, 300])
def test_bursts_are_delivered_once_each(env, burst):
    hook = env.subscribe()
    assert hook["id"].startswith("hook_") and hook["secret"].startswith("whsec_")
    assert set(hook) == {"id", "event", "handle", "targetUrl", "secret", "createdAt"}
    new = env.world.add_followers(HANDLE, burst)
    env.cycle()
    if burst > 10 * 30 - 3:     # beyond one poll's page budget: the rest comes with the next poll
        assert watch_row(env.svc)["status"] == "backlog"
        env.cycle()
    assert watch_row(env.svc)["status"] == "active"
    got = delivered_ids(env)
    assert set(got) == expected_ids(env, new)
    assert max(got.values()) == 1
    for received in env.receiver.requests:
        body = verify(hook["secret"], received.headers, received.body)
        assert received.headers["webhook-id"] == body["id"]
    # the follower fields are flattened from the record
    newest = env.world[HANDLE].followers[0][0]
    sample = next(b for b in env.receiver.delivered() if b["follower"]["id"] == newest.id)
    assert sample["event"] == "new_follower" and sample["handle"] == HANDLE and sample["provider"] == "dumpling"
    assert sample["follower"]["profileUrl"] == f"https://www.tiktok.com/@{newest.handle}"
    assert sample["follower"]["followerCount"] == newest.follower_count
    assert sample["detectedAt"].endswith("Z")
    # nothing new: nothing more
    env.cycle()
    assert sum(delivered_ids(env).values()) == burst


def test_steady_state_reads_exactly_one_page(env):
    env.subscribe()
    assert follower_pages(env.fake) == 1            # the baseline
    for polls in range(1, 4):
        env.cycle()
        assert follower_pages(env.fake) == 1 + polls
    env.world.add_followers(HANDLE, 2)
    env.cycle()
    assert follower_pages(env.fake) == 5
    assert len(env.receiver.delivered()) == 2


def test_unfollow_and_refollow_at_the_top(env):
    env.subscribe()
    account = env.world[HANDLE]
    newest_known = account.followers[0][0]
    env.world.unfollow(HANDLE, newest_known.id)        # the newest known follower leaves
    first = env.world.add_followers(HANDLE, 1)
    env.cycle()
    assert set(delivered_ids(env)) == expected_ids(env, first)

    env.world.refollow(HANDLE, newest_known)           # comes back on top: must not fire again
    second = env.world.add_followers(HANDLE, 1)
    old = account.followers[5][0]
    env.world.refollow(HANDLE, old)                    # an older known follower re-follows too
    env.cycle()
    assert set(delivered_ids(env)) == expected_ids(env, first + second)

    third = env.world.add_followers(HANDLE, 2)         # and detection does not stall
    env.cycle()
    got = delivered_ids(env)
    assert set(got) == expected_ids(env, first + second + third) and max(got.values()) == 1


def test_receiver_failing_then_recovering(env):
    hook = env.subscribe()
    calls = []
    env.receiver.respond = lambda received: calls.append(1) or (500 if len(calls) <= 2 else 204)
    new = env.world.add_followers(HANDLE, 1)
    env.cycle()                                      # 500
    deliver_due_webhooks(env.svc)                    # 500, retried after 0 s
    view = env.hook(hook["id"])
    assert view["pendingDeliveries"] == 1 and view["lastDeliveryError"] == "HTTP 500"
    assert [a["statusCode"] for a in view["recentDeliveries"]] == [500, 500]
    deliver_due_webhooks(env.svc)                    # 204
    assert set(delivered_ids(env)) == expected_ids(env, new)
    ids = {r.headers["webhook-id"] for r in env.receiver.requests}
    assert len(env.receiver.requests) == 3 and len(ids) == 1       # same id on every retry
    view = env.hook(hook["id"])
    assert view["pendingDeliveries"] == 0 and view["recentDeliveries"][0]["statusCode"] == 204


def test_delivery_fails_after_the_schedule(env):
    env.subscribe()
    env.receiver.respond = lambda received: 503
    env.world.add_followers(HANDLE, 1)
    env.cycle()
    deliver_due_webhooks(env.svc)
    deliver_due_webhooks(env.svc)
    with env.svc.store.connect() as conn:
        row = conn.execute(sa.select(deliveries)).mappings().one()
    assert row["status"] == "pending" and row["attempts"] == 3
    with env.svc.store.begin() as conn:   # the last wait of (0, 0, 1) is a second: skip it
        conn.execute(deliveries.update().values(next_attempt_at=0))
    deliver_due_webhooks(env.svc)
    with env.svc.store.connect() as conn:
        row = conn.execute(sa.select(deliveries)).mappings().one()
    assert row["status"] == "failed" and row["attempts"] == 4 and row["last_status"] == 503


class Crash(BaseException):
    """The sender's process dies (nothing inside it catches this)."""


def test_a_crash_after_the_posts_and_before_their_outcomes_commit_sends_them_again(env, monkeypatch):
    from connector.trigger import sender

    env.subscribe()
    new = env.world.add_followers(HANDLE, 5)
    make_due(env.svc)
    poll_due_watches(env.svc)

    def die(*args, **kwargs):
        raise Crash()
    monkeypatch.setattr(sender, "record_robustly", die)     # the batch of outcomes never commits
    with pytest.raises(Crash):
        deliver_due_webhooks(env.svc)
    monkeypatch.undo()
    first = [r.headers["webhook-id"] for r in env.receiver.requests]
    assert first and set(first) <= expected_ids(env, new)     # POSTed before the crash ...
    deliver_due_webhooks(env.svc)
    # ... and stay claimed until their lease ends: none is sent again yet. (A row the crashed pass
    # had not claimed yet, its capacity being full, may go out now, once.)
    between = [r.headers["webhook-id"] for r in env.receiver.requests[len(first):]]
    assert not set(between) & set(first) and len(between) == len(set(between))
    later = env.svc.clock() + env.svc.settings.delivery_lease + 1
    env.svc.clock = lambda: later
    deliver_due_webhooks(env.svc)
    again = [r.headers["webhook-id"] for r in env.receiver.requests[len(first):]]
    assert sorted(again) == sorted(expected_ids(env, new))     # all sent (again), with the same webhook-ids
    with env.svc.store.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.status, deliveries.c.attempts)).all()
    assert sorted(rows) == [("delivered", 1)] * 5             # the recorded attempt counts once


def test_one_batch_records_each_outcome_on_its_own_hook(env):
    good = env.subscribe()
    failing = Receiver()
    try:
        failing.respond = lambda received: (500, {"Retry-After": "120"})
        bad = env.subscribe(targetUrl=failing.url)
        new = env.world.add_followers(HANDLE, 3)
        env.cycle()                                            # six attempts, outcomes recorded together
        assert set(delivered_ids(env)) == expected_ids(env, new)
        assert len(failing.requests) == 3
        good_view, bad_view = env.hook(good["id"]), env.hook(bad["id"])
        assert good_view["pendingDeliveries"] == 0 and good_view["lastDeliveryError"] is None
        assert [a["statusCode"] for a in good_view["recentDeliveries"]] == [200] * 3
        assert bad_view["pendingDeliveries"] == 3 and bad_view["lastDeliveryError"] == "HTTP 500"
        assert [a["statusCode"] for a in bad_view["recentDeliveries"]] == [500] * 3
        with env.svc.store.connect() as conn:
            retry_at = conn.execute(sa.select(deliveries.c.next_attempt_at).where(
                deliveries.c.status == "pending")).scalars().all()
        assert len(retry_at) == 3 and min(retry_at) >= env.svc.clock() + 100   # Retry-After honoured each
    finally:
        failing.close()


def test_receiver_answering_410_removes_the_subscription(env):
    hook = env.subscribe()
    env.receiver.respond = lambda received: 410
    env.world.add_followers(HANDLE, 3)
    env.cycle()
    assert env.http.get(f"/api/v1/hooks/{hook['id']}").status_code == 404
    with env.svc.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar_one() == 0
    assert env.http.get("/api/v1/hooks").json() == {"hooks": []}
    env.world.add_followers(HANDLE, 1)
    env.cycle()
    assert len(env.receiver.requests) <= 3           # nothing after the 410s


def test_private_account_shows_in_hook_status_within_one_poll(env):
    hook = env.subscribe()
    env.world.set_status(HANDLE, "private")
    env.cycle()
    view = env.hook(hook["id"])
    assert view["status"] == "not_found"
    assert view["lastError"] == f"Followers list not found for user: {HANDLE}"
    r = env.http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE})
    assert r.status_code == 404 and r.json() == {"error": f"Followers list not found for user: {HANDLE}"}
    env.world.set_status(HANDLE, "ok")
    new = env.world.add_followers(HANDLE, 2)
    env.cycle()
    assert env.hook(hook["id"])["status"] == "active"
    assert set(delivered_ids(env)) == expected_ids(env, new)


def test_two_hooks_share_one_watch_and_one_page(env):
    first = env.subscribe()
    other = Receiver()
    try:
        r = env.http.post("/api/v1/hooks", json={"event": "new_follower", "handle": "@" + HANDLE.upper(),
                                                 "targetUrl": other.url})
        assert r.status_code == 201
        pages = follower_pages(env.fake)
        new = env.world.add_followers(HANDLE, 2)
        env.cycle()
        assert follower_pages(env.fake) == pages + 1
        assert {b["id"] for b in other.delivered()} == {b["id"] for b in env.receiver.delivered()} \
            == expected_ids(env, new)
        assert env.http.delete(f"/api/v1/hooks/{first['id']}").status_code == 204
        assert env.http.delete(f"/api/v1/hooks/{first['id']}").status_code == 404
        assert [h["id"] for h in env.http.get("/api/v1/hooks").json()["hooks"]] == [r.json()["id"]]
    finally:
        other.close()


def test_followers_present_at_subscribe_time_never_fire(env):
    env.subscribe()
    before = env.world.add_followers(HANDLE, 2)       # arrive before the second hook exists
    other = Receiver()
    try:
        r = env.http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE,
                                                 "targetUrl": other.url})
        assert r.status_code == 201
        after = env.world.add_followers(HANDLE, 1)
        env.cycle()
        assert {b["id"] for b in other.delivered()} == expected_ids(env, after)
        assert set(delivered_ids(env)) == expected_ids(env, before + after)
    finally:
        other.close()


def test_event_rows_are_never_duplicated(env):
    env.subscribe()
    env.world.add_followers(HANDLE, 40)
    env.cycle(2)
    with env.svc.store.connect() as conn:
        rows = conn.execute(sa.select(events.c.id, events.c.follower_key)).all()
    assert len(rows) == len({r.id for r in rows}) == len({r.follower_key for r in rows}) == 30 + 40


def test_a_key_running_out_mid_poll_gets_the_pages_it_paid_for(env):
    """Page 1 is paid by both keys, page 2 by one: the other's hook gets page 1's followers
    and shows paused_credits; while paused it gets nothing of what others paid for."""
    env.subscribe()
    raw, row = env.svc.keys.create(name="small", credits=2)
    other = Receiver()
    try:
        with env.live.client(raw) as small:
            r = small.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": other.url})
            assert r.status_code == 201, r.text
            hook = r.json()
            assert env.svc.keys.balance(row["id"]) == 1              # the catch-up page
            burst = env.world.add_followers(HANDLE, 40)              # two pages: 30, then 10
            env.cycle()
            assert set(delivered_ids(env)) == expected_ids(env, burst)
            assert {b["id"] for b in other.delivered()} == expected_ids(env, burst[:30])
            view = small.get(f"/api/v1/hooks/{hook['id']}").json()
            assert view["status"] == "paused_credits" and view["creditsSpent"] == 2   # catch-up + page 1

            while_paused = env.world.add_followers(HANDLE, 2)
            env.cycle()
            assert set(delivered_ids(env)) == expected_ids(env, burst + while_paused)
            assert len(other.delivered()) == 30                      # not paid for: not delivered

            env.svc.keys.top_up(row["id"], 5)
            after = env.world.add_followers(HANDLE, 1)
            env.cycle()
            assert small.get(f"/api/v1/hooks/{hook['id']}").json()["status"] == "active"
            assert {b["id"] for b in other.delivered()} == expected_ids(env, burst[:30] + after)
    finally:
        other.close()


@pytest.mark.parametrize("route", ["/api/v1/hooks", "/api/v1/triggers/new-follower"])
def test_a_watch_deleted_while_subscribing_is_opened_again(env, monkeypatch, route):
    from connector.trigger import subscriptions
    from connector.trigger.watches import delete_subscription

    first = env.subscribe()
    opened = []

    def open_then_lose_the_watch(svc, *args):
        with svc.store.connect() as conn:
            existed = conn.execute(sa.select(sa.func.count()).select_from(watches)).scalar_one() > 0
        row, spent, samples = open_watch(svc, *args)
        if not opened:   # the last subscription is deleted (and the watch with it) right now
            with env.svc.store.write() as conn:
                delete_subscription(conn, first["id"], row["id"])
        opened.append(not existed)
        return row, spent, samples
    open_watch = subscriptions._open
    monkeypatch.setattr(subscriptions, "_open", open_then_lose_the_watch)
    r = env.http.post(route, json={"event": "new_follower", "handle": HANDLE,
                                   "targetUrl": env.receiver.url + "?second"}
                      if route == "/api/v1/hooks" else {"handle": HANDLE})
    assert r.status_code in (200, 201), r.text
    assert opened == [False, True]                                   # opened again, with a fresh baseline
    if route == "/api/v1/hooks":
        new = env.world.add_followers(HANDLE, 1)
        env.cycle()
        assert set(delivered_ids(env)) == expected_ids(env, new)


def test_receiver_answering_410_removes_an_unused_watch(env):
    env.subscribe()
    env.receiver.respond = lambda received: 410
    env.world.add_followers(HANDLE, 1)
    env.cycle()
    assert watch_row(env.svc) is None                                # nobody needs it any more
    env.receiver.respond = lambda received: 200
    env.subscribe()                                                  # a fresh baseline
    new = env.world.add_followers(HANDLE, 1)
    env.cycle()
    assert {b["id"] for b in env.receiver.delivered()} == expected_ids(env, new)


def test_a_new_hook_gets_nothing_from_an_older_backlog(env):
    env.subscribe()
    backlog = env.world.add_followers(HANDLE, 800)                   # 27 pages: more than two polls read
    env.cycle()
    assert watch_row(env.svc)["status"] == "backlog"
    late = Receiver()
    try:
        r = env.http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": late.url})
        assert r.status_code == 201
        assert watch_row(env.svc)["status"] == "backlog"
        env.cycle(2)
        assert watch_row(env.svc)["status"] == "active"
        assert set(delivered_ids(env)) == expected_ids(env, backlog)   # the first hook gets all of it
        assert late.delivered() == []                                  # they followed before it existed
        new = env.world.add_followers(HANDLE, 1)
        env.cycle()
        assert {b["id"] for b in late.delivered()} == expected_ids(env, new)
    finally:
        late.close()


def test_a_large_burst_costs_the_ideal_number_of_pages(env):
    """While a backlog drains, polls do not re-read the top: 900 new followers (30 pages) cost
    30 pages plus the one that meets the frontier, however many polls it takes."""
    env.subscribe()
    before = follower_pages(env.fake)
    new = env.world.add_followers(HANDLE, 900)
    polls = 0
    while polls == 0 or watch_row(env.svc)["status"] == "backlog":
        env.cycle()
        polls += 1
        assert polls <= 5
    assert follower_pages(env.fake) - before == 900 // 30 + 1
    got = delivered_ids(env)
    assert set(got) == expected_ids(env, new) and max(got.values()) == 1
