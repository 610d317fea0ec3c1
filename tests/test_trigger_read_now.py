"""A read now (``POST /api/v1/hooks/<id>/poll``) spends only the credits of the keys that asked.

Key A and key B each have hooks on one watch (same handle, the service's own provider). A
read A asks for before the watch's schedule is paid by A alone, page by page; B receives
what it finds, once, for nothing, and pays for its own scheduled reads as before. A read now
of a watch due anyway is a regular poll. Real service, fake Dumpling and webhook receivers
on loopback, SQLite and PostgreSQL; time moves through the service's clock.
"""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from connector.errors import NO_CREDITS
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import watches
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import (HANDLE, dumpling, follower_pages, make_due, receivers,  # noqa: F401
                               trigger_settings, world)

HOOKS = "/api/v1/hooks"
POLL = "/api/v1/triggers/new-follower"
HOUR = 3600


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def live(serve, dumpling, database_url, clock):  # noqa: F811
    # Watches are read every hour, so a read now a minute later is well before the schedule.
    return serve(trigger_settings(dumpling, database_url, clock=clock, poll_policy="fixed", poll_interval=HOUR,
                                  worker={"page_budget": 2}))


@pytest.fixture
def tenants(live):
    """Keys A and B with 1,000 credits each, and an HTTP client for each."""
    svc = live.services
    (a_raw, a), (b_raw, b) = svc.keys.create(name="A", credits=1000), svc.keys.create(name="B", credits=1000)
    with live.client(a_raw) as http_a, live.client(b_raw) as http_b:
        yield http_a, http_b, lambda: (svc.keys.balance(a["id"]), svc.keys.balance(b["id"]))


def subscribe(http, receiver, event="new_follower", **extra) -> dict:
    r = http.post(HOOKS, json={"event": event, "handle": HANDLE, "targetUrl": receiver.url, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def pages(fake, endpoint: str = "followers") -> int:
    return sum(1 for r in fake.requests if r.endpoint == endpoint)


def passes(svc, clock) -> None:
    """Worker passes a second apart until nothing is due (a walk longer than the page budget
    goes on over several), then deliveries."""
    for _ in range(10):
        clock.advance(1)
        if not poll_due_watches(svc).watches:
            break
    deliver_due_webhooks(svc)


def once_each(receiver, field: str = "follower") -> Counter:
    return Counter(body[field]["id"] if isinstance(body[field], dict) else body[field]
                   for body in receiver.delivered())


def test_a_read_now_is_paid_by_the_key_that_asked_and_shared_with_the_others(  # noqa: F811
        live, clock, tenants, world, dumpling, receivers):  # noqa: F811
    svc = live.services
    http_a, http_b, balances = tenants
    a_receivers, b_receiver = [receivers(), receivers()], receivers()
    a_hooks = [subscribe(http_a, r)["id"] for r in a_receivers]
    subscribe(http_b, b_receiver)
    a, b = balances()
    found = []
    # A asks as fast as it may: through either hook, each once a minute.
    for burst, hook in ((3, a_hooks[0]), (40, a_hooks[1]), (1, a_hooks[0])):
        found += world.add_followers(HANDLE, burst)
        r = http_a.post(f"{HOOKS}/{hook}/poll")
        assert r.status_code == 202, r.text
        assert http_a.post(f"{HOOKS}/{hook}/poll").status_code == 429
        before = pages(dumpling)
        passes(svc, clock)
        read = pages(dumpling) - before
        assert read == (2 if burst == 40 else 1)                       # 40 new followers: two pages
        a -= read
        assert balances() == (a, b)                                    # A paid every page; B nothing
        clock.advance(60)
    assert once_each(b_receiver) == {u.id: 1 for u in found}            # B received them all, once each
    for r in a_receivers:
        assert once_each(r) == {u.id: 1 for u in found}

    later = world.add_followers(HANDLE, 2)                              # B's next scheduled poll
    clock.advance(HOUR)
    before = pages(dumpling)
    passes(svc, clock)
    read = pages(dumpling) - before
    assert read == 1 and balances() == (a - read, b - read)             # a regular poll: both pay
    assert once_each(b_receiver) == {u.id: 1 for u in found + later}
    a, b = a - read, b - read

    last = world.add_followers(HANDLE, 1)                               # due anyway: a read now is a regular poll
    clock.advance(HOUR)
    assert http_a.post(f"{HOOKS}/{a_hooks[1]}/poll").status_code == 202
    before = pages(dumpling)
    passes(svc, clock)
    read = pages(dumpling) - before
    assert read == 1 and balances() == (a - read, b - read)
    assert once_each(b_receiver) == {u.id: 1 for u in found + later + last}


def test_keys_that_ask_together_each_pay_and_a_polling_caller_shares_the_read(live, clock, tenants, world,  # noqa: F811
                                                                             dumpling, receivers):  # noqa: F811
    svc = live.services
    http_a, http_b, balances = tenants
    c_raw, c = svc.keys.create(name="C", credits=1000)
    with live.client(c_raw) as http_c:
        a_hook = subscribe(http_a, receivers())["id"]
        c_hook = subscribe(http_c, receivers())["id"]
        assert len(http_b.post(POLL, json={"handle": HANDLE}).json()["events"]) == 30    # B polls: its samples
        (a, b), c_left = balances(), svc.keys.balance(c["id"])
        new = world.add_followers(HANDLE, 3)
        for http, hook in ((http_a, a_hook), (http_c, c_hook)):
            assert http.post(f"{HOOKS}/{hook}/poll").status_code == 202
        clock.advance(1)
        before = pages(dumpling)
        polled = http_b.post(POLL, json={"handle": HANDLE}).json()["events"]      # the read, inside B's call
        assert pages(dumpling) - before == 1
        assert {e["follower"]["id"] for e in polled[:3]} == {u.id for u in new}      # B's, for nothing
        assert balances() == (a - 1, b) and svc.keys.balance(c["id"]) == c_left - 1   # A and C paid the page


def test_a_milestone_read_now_is_paid_by_the_key_that_asked(live, clock, tenants, world, dumpling,  # noqa: F811
                                                            receivers):  # noqa: F811
    svc = live.services
    http_a, http_b, balances = tenants
    a_receiver, b_receiver = receivers(), receivers()
    a_hook = subscribe(http_a, a_receiver, "follower_milestone", every=10)["id"]
    subscribe(http_b, b_receiver, "follower_milestone", every=10)
    a, b = balances()
    assert len(world[HANDLE].followers) == 75
    for _ in range(2):                                                  # 85, then 95
        world.add_followers(HANDLE, 10)
        assert http_a.post(f"{HOOKS}/{a_hook}/poll").status_code == 202
        before = pages(dumpling, "profile")
        passes(svc, clock)
        assert pages(dumpling, "profile") - before == 1
        a -= 2                                                          # one profile read: 2 credits
        assert balances() == (a, b)
        clock.advance(60)
    assert once_each(b_receiver, "milestone") == {80: 1, 90: 1}         # shared with B, once each
    assert once_each(a_receiver, "milestone") == {80: 1, 90: 1}

    world.add_followers(HANDLE, 10)                                     # 105, at B's scheduled read
    clock.advance(HOUR)
    passes(svc, clock)
    assert balances() == (a - 2, b - 2)
    assert once_each(b_receiver, "milestone") == {80: 1, 90: 1, 100: 1}


def test_a_lost_follower_read_now_walk_is_paid_by_the_key_that_asked(  # noqa: F811
        live, clock, tenants, world, dumpling, receivers):  # noqa: F811
    svc = live.services
    http_a, http_b, balances = tenants
    a_receiver, b_receiver = receivers(), receivers()
    a_hooks = [subscribe(http_a, a_receiver, "lost_follower", checkEveryHours=24)["id"]]
    a_hooks.append(subscribe(http_a, a_receiver, "lost_follower", checkEveryHours=48)["id"])
    per_check = subscribe(http_b, b_receiver, "lost_follower", checkEveryHours=24)["creditsPerCheck"]
    assert per_check == 3                                               # 75 followers: 3 pages, 2 a poll
    make_due(svc)
    passes(svc, clock)                                                  # the baseline walk, over two polls
    a, b = balances()
    gone, _ = world[HANDLE].followers[5]
    world.unfollow(HANDLE, gone.id)
    for hook in a_hooks:                                                # two full walks A asks for
        assert http_a.post(f"{HOOKS}/{hook}/poll").status_code == 202
        before = pages(dumpling)
        clock.advance(1)
        polled = poll_due_watches(svc)                                  # two polls: the budget is 2 pages
        assert (polled.watches, polled.pages) == (2, per_check) and pages(dumpling) - before == per_check
        deliver_due_webhooks(svc)
        a -= per_check
        assert balances() == (a, b)                                     # each page of both polls: A's
    assert once_each(b_receiver) == {gone.id: 1}                        # the loss, shared with B
    assert once_each(a_receiver) == {gone.id: 2}                        # (A's two hooks)

    clock.advance(24 * HOUR)                                            # B's own walk, on its schedule
    before = pages(dumpling)
    passes(svc, clock)
    assert pages(dumpling) - before == per_check and balances() == (a - per_check, b - per_check)


def _deletes(http, hook, world):
    assert http.delete(f"{HOOKS}/{hook}").status_code == 204


def _pauses(http, hook, world):
    assert http.patch(f"{HOOKS}/{hook}", json={"enabled": False}).status_code == 200


def _spends_its_credits(http, hook, world):
    world.add_account("elsewhere", followers=5)
    r = http.post(HOOKS, json={"event": "new_follower", "handle": "elsewhere", "targetUrl": "http://127.0.0.1:9/x"})
    assert r.status_code == 201, r.text                                 # its last credit


@pytest.mark.parametrize("then", [_deletes, _pauses, _spends_its_credits])
def test_a_read_now_its_asker_cannot_pay_is_not_made_at_the_others_cost(  # noqa: F811
        serve, dumpling, database_url, clock, world, receivers, then):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url, clock=clock, poll_policy="fixed", poll_interval=HOUR))
    svc = live.services
    a_raw, a = svc.keys.create(name="A", credits=2)
    b_raw, b = svc.keys.create(name="B", credits=1000)
    with live.client(a_raw) as http_a, live.client(b_raw) as http_b:
        hook = subscribe(http_a, receivers())["id"]                     # A's baseline: 1 credit left
        subscribe(http_b, receivers())
        world.add_followers(HANDLE, 3)
        b_left = svc.keys.balance(b["id"])
        assert http_a.post(f"{HOOKS}/{hook}/poll").status_code == 202
        then(http_a, hook, world)
        before = pages(dumpling)
        passes(svc, clock)
        passes(svc, clock)
        assert pages(dumpling) == before and svc.keys.balance(b["id"]) == b_left   # nothing read, B unspent
        with svc.store.connect() as conn:
            watch = conn.execute(sa.select(watches).where(watches.c.handle == HANDLE)).mappings().one()
        assert watch["next_poll_at"] == watch["scheduled_at"] > clock()  # back on its schedule
        clock.advance(HOUR)
        passes(svc, clock)                                              # which B pays, as before
        assert pages(dumpling) == before + 1 and svc.keys.balance(b["id"]) == b_left - 1


def test_a_read_now_is_refused_to_a_key_that_cannot_pay_for_it(live, clock, dumpling, receivers):  # noqa: F811
    svc = live.services
    raw, _ = svc.keys.create(name="poor", credits=1)
    with live.client(raw) as http:
        hook = subscribe(http, receivers())["id"]                       # its last credit
        queued = http.get(f"{HOOKS}/{hook}").json()["nextPollAt"]
        r = http.post(f"{HOOKS}/{hook}/poll")
        assert r.status_code == 403 and r.json() == {"error": NO_CREDITS}
        assert http.get(f"{HOOKS}/{hook}").json()["nextPollAt"] == queued     # nothing was queued


def test_a_paused_hook_is_told_to_enable_itself_before_asking(live, clock, dumpling, receivers):  # noqa: F811
    """A paused hook would receive nothing from a read: asking is a 400 that says what to do,
    and nothing is queued."""
    raw, _ = live.services.keys.create(name="pauser", credits=100)
    with live.client(raw) as http:
        hook = subscribe(http, receivers())["id"]
        assert http.patch(f"{HOOKS}/{hook}", json={"enabled": False}).status_code == 200
        queued = http.get(f"{HOOKS}/{hook}").json()["nextPollAt"]
        r = http.post(f"{HOOKS}/{hook}/poll")
        assert r.status_code == 400
        assert r.json() == {"error": f"This hook is paused: a read now would deliver nothing to it. Enable it first "
                                     f'(PATCH /api/v1/hooks/{hook} with {{"enabled": true}}), then ask again.'}
        assert http.get(f"{HOOKS}/{hook}").json()["nextPollAt"] == queued     # nothing was queued
        assert http.patch(f"{HOOKS}/{hook}", json={"enabled": True}).status_code == 200
        assert http.post(f"{HOOKS}/{hook}/poll").status_code == 202
