"""Lost Follower (the snapshot strategy): full walks of the follower list, a loss after two
missing walks, the account size limit, credits per walk, checkEveryHours and a read now.
Real service, fake Dumpling and webhook receivers on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from connector.trigger.events import iso
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import watches
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import (HANDLE, Receiver, dumpling, make_due, receiver,  # noqa: F401
                               trigger_settings, verify, world)

HOOKS = "/api/v1/hooks"
ROUTE = "/api/v1/triggers/lost-follower"


def walk(svc, passes: int = 1) -> None:
    """Worker passes with every watch due (time moved past checkEveryHours)."""
    for _ in range(passes):
        make_due(svc)
        poll_due_watches(svc)
        deliver_due_webhooks(svc)


def pages(fake) -> int:
    return sum(1 for r in fake.requests if r.endpoint == "followers")


@pytest.fixture
def live(serve, dumpling, database_url):  # noqa: F811
    return serve(trigger_settings(dumpling, database_url))


@pytest.fixture
def key(live):
    return live.services.keys.create(name="lost", credits=10_000)


@pytest.fixture
def http(live, key):
    with live.client(key[0]) as client:
        yield client


def subscribe(http, receiver, **extra) -> dict:
    r = http.post(HOOKS, json={"event": "lost_follower", "handle": HANDLE, "targetUrl": receiver.url, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def lost_ids(r: Receiver) -> list[str]:
    return [b["follower"]["id"] for b in r.delivered()]


def test_a_follower_missing_from_two_full_walks_fires_once(live, http, world, dumpling, receiver):  # noqa: F811
    svc = live.services
    followers = len(world[HANDLE].followers)
    hook = subscribe(http, receiver)
    assert hook["creditsPerCheck"] >= 2 and hook["checkEveryHours"] == 24 if "checkEveryHours" in hook \
        else hook["creditsPerCheck"] >= 2
    samples = http.post(ROUTE, json={"handle": HANDLE}).json()["events"]        # polling too
    assert [e["follower"]["uniqueId"] for e in samples] == ["coffee.and.cameras"]   # the manifest's sample
    walk(svc)                                                   # the baseline walk: nothing can be lost
    assert receiver.delivered() == []
    gone_user, _ = world[HANDLE].followers[7]
    blip_user, _ = world[HANDLE].followers[3]
    world.unfollow(HANDLE, gone_user.id)
    world.unfollow(HANDLE, blip_user.id)
    walk(svc)                                                   # missing once: not enough
    assert receiver.delivered() == []
    world.refollow(HANDLE, blip_user)                            # back before a second missing walk
    walk(svc)
    assert lost_ids(receiver) == [gone_user.id]                  # missing twice: lost, once
    event = verify(hook["secret"], receiver.requests[0].headers, receiver.requests[0].body)
    assert event["event"] == "lost_follower" and event["handle"] == HANDLE
    assert event["follower"]["uniqueId"] == gone_user.handle and event["lastSeenAt"] <= event["detectedAt"]
    walk(svc, 2)
    assert lost_ids(receiver) == [gone_user.id]                  # never again, and the blip never
    assert len(world[HANDLE].followers) == followers - 1

    world.refollow(HANDLE, gone_user)                            # a re-follow, then a second loss
    walk(svc)
    world.unfollow(HANDLE, gone_user.id)
    walk(svc, 3)
    ids = Counter(b["id"] for b in receiver.delivered())
    assert lost_ids(receiver) == [gone_user.id, gone_user.id] and len(ids) == 2 and max(ids.values()) == 1

    *polled, sample = http.post(ROUTE, json={"handle": HANDLE}).json()["events"]
    assert [e["follower"]["id"] for e in polled] == [gone_user.id, gone_user.id]     # newest first
    assert [e["id"] for e in polled] == [b["id"] for b in reversed(receiver.delivered())]
    assert sample == samples[0]                                  # the sample stays last, never delivered


def test_a_first_polling_call_returns_a_sample_to_map_fields_from(live, http, key, dumpling, receiver):  # noqa: F811
    svc = live.services
    manifest = svc.manifests["lost_follower"]
    balance = svc.keys.balance(key[1]["id"])
    first = http.post(ROUTE, json={"handle": HANDLE, "checkEveryHours": 12})
    assert first.status_code == 200, first.text
    [sample] = first.json()["events"]
    assert sample["id"].startswith("evt_") and sample["event"] == "lost_follower"
    assert sample["handle"] == HANDLE and sample["provider"] == "dumpling" and sample["detectedAt"].endswith("Z")
    assert sample["follower"] == manifest.sample["follower"] and sample["lastSeenAt"] == manifest.sample["lastSeenAt"]
    assert set(sample) - {"seq"} == set(manifest.sample)          # every field a Zap maps
    assert svc.keys.balance(key[1]["id"]) == balance - 1           # the first page, read to start the watch
    again = http.post(ROUTE, json={"handle": HANDLE, "checkEveryHours": 12}, headers={"X-Request-Source": "ZAPIER"})
    assert [e["id"] for e in again.json()] == [sample["id"]]        # Zapier: a bare array, the same id
    subscribe(http, receiver)
    walk(svc, 3)
    assert receiver.delivered() == []                             # a sample is never delivered


def test_credits_per_check_are_charged_to_each_key_per_walk(live, http, key, world, dumpling, receiver):  # noqa: F811
    svc = live.services
    raw2, row2 = svc.keys.create(name="second", credits=10_000)
    hook = subscribe(http, receiver)
    per_check = hook["creditsPerCheck"]
    with live.client(raw2) as other:
        r = other.post(HOOKS, json={"event": "lost_follower", "handle": HANDLE, "targetUrl": receiver.url,
                                    "checkEveryHours": 6})
        assert r.status_code == 201 and r.json()["creditsPerCheck"] == per_check, r.text
    assert http.get(f"{HOOKS}/{hook['id']}").json()["creditsPerCheck"] == per_check
    assert [h["creditsPerCheck"] for h in http.get(HOOKS).json()["hooks"]] == [per_check]
    before = (svc.keys.balance(key[1]["id"]), svc.keys.balance(row2["id"]), pages(dumpling))
    walk(svc)
    read = pages(dumpling) - before[2]
    assert read == per_check >= 2                                  # one full walk, all of its pages
    assert svc.keys.balance(key[1]["id"]) == before[0] - per_check
    assert svc.keys.balance(row2["id"]) == before[1] - per_check
    with svc.store.connect() as conn:
        w = conn.execute(sa.select(watches).where(watches.c.operation == "followers_snapshot")).mappings().one()
    assert w["next_poll_at"] == pytest.approx(w["last_poll_at"] + 6 * 3600)   # the most frequent schedule


def test_a_walk_is_not_shared_with_new_follower(live, http, world, dumpling, receiver):  # noqa: F811
    subscribe(http, receiver)
    r = http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url})
    assert r.status_code == 201, r.text
    with live.services.store.connect() as conn:
        ops = sorted(conn.execute(sa.select(watches.c.operation)).scalars())
    assert ops == ["followers_snapshot", "list_followers"]


def test_an_account_above_the_limit_is_refused_naming_it(serve, dumpling, database_url, world, receiver):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url, lost_follower_max=50))
    raw, row = live.services.keys.create(name="big", credits=100)
    assert len(world[HANDLE].followers) > 50
    with live.client(raw) as http:
        r = http.post(HOOKS, json={"event": "lost_follower", "handle": HANDLE, "targetUrl": receiver.url})
        assert 400 <= r.status_code < 500 and "CONNECTOR_LOST_FOLLOWER_MAX" in r.json()["error"], r.text
        r = http.post(ROUTE, json={"handle": HANDLE})
        assert 400 <= r.status_code < 500 and "CONNECTOR_LOST_FOLLOWER_MAX" in r.json()["error"], r.text
        assert http.get(HOOKS).json() == {"hooks": []}
    assert live.services.keys.balance(row["id"]) == 100              # the refused read is given back


@pytest.mark.parametrize("extra, fragment", [({"checkEveryHours": 0}, "'checkEveryHours'"),
                                             ({"checkEveryHours": 169}, "'checkEveryHours'"),
                                             ({"checkEveryHours": "x"}, "'checkEveryHours'"),
                                             ({"checkEveryHour": 2}, "checkEveryHour")])
def test_bad_inputs_are_4xx_naming_the_field(live, http, receiver, extra, fragment):  # noqa: F811
    r = http.post(HOOKS, json={"event": "lost_follower", "handle": HANDLE, "targetUrl": receiver.url, **extra})
    assert 400 <= r.status_code < 500 and fragment in r.json()["error"], r.text
    r = http.post(ROUTE, json={"handle": HANDLE, **extra})
    assert 400 <= r.status_code < 500 and fragment in r.json()["error"], r.text


def test_a_read_now_is_a_full_walk_at_the_next_pass(live, http, world, dumpling, receiver):  # noqa: F811
    svc = live.services
    hook = subscribe(http, receiver, checkEveryHours=168)
    walk(svc)                                                    # the baseline
    gone_user, _ = world[HANDLE].followers[0]
    world.unfollow(HANDLE, gone_user.id)
    before = pages(dumpling)
    poll_due_watches(svc)                                        # not due for a week: nothing is read
    assert pages(dumpling) == before
    for _ in range(2):
        assert http.post(f"{HOOKS}/{hook['id']}/poll").status_code == 202
        poll_due_watches(svc)                                    # the next pass walks the whole list
        deliver_due_webhooks(svc)
        assert pages(dumpling) - before == hook["creditsPerCheck"]
        before = pages(dumpling)
        with svc.store.begin() as conn:                          # a minute later it may ask again
            from connector.trigger.tables import subscriptions
            conn.execute(subscriptions.update().values(poll_requested_at=svc.clock() - 61))
    assert lost_ids(receiver) == [gone_user.id]


class _AsksMidRead:
    """A provider whose first read, once ``armed``, first asks for a read now over HTTP: the
    request arrives while a poll of the watch holds its lease and reads."""

    def __init__(self, provider, ask):
        self.provider, self.ask = provider, ask

    def __getattr__(self, name):
        return getattr(self.provider, name)

    def operation(self, *args):
        read = self.provider.operation(*args)

        def reading(*a, **kw):
            self.ask()
            return read(*a, **kw)
        return reading


def test_a_read_now_asked_during_a_poll_is_not_lost_to_its_commit(live, http, world, dumpling, receiver,  # noqa: F811
                                                                   monkeypatch):
    svc = live.services
    clock = ManualClock(svc.clock())
    monkeypatch.setattr(svc, "clock", clock)
    hook = subscribe(http, receiver, checkEveryHours=168)
    walk(svc)                                                    # the baseline; the next walk is in a week
    asked = []

    def ask():
        if not asked:
            clock.advance(1)
            asked.append(http.post(f"{HOOKS}/{hook['id']}/poll"))
    real_get = svc.providers.get
    monkeypatch.setattr(svc.providers, "get", lambda *a: _AsksMidRead(real_get(*a), ask))
    make_due(svc)
    poll_due_watches(svc)                                        # a poll; the read now arrives while it reads
    assert [r.status_code for r in asked] == [202]
    clock.advance(1)
    assert http.get(f"{HOOKS}/{hook['id']}").json()["nextPollAt"] <= iso(clock())
    before = pages(dumpling)
    poll_due_watches(svc)                                        # the next pass: a full walk, as asked
    assert pages(dumpling) - before == hook["creditsPerCheck"]
    before = pages(dumpling)
    poll_due_watches(svc)                                        # then the schedule again: a week
    assert pages(dumpling) == before


def test_a_walk_inside_polling_requests_reads_the_request_budget_and_goes_on(serve, dumpling, database_url,  # noqa: F811
                                                                              world):  # noqa: F811
    clock = ManualClock()
    live = serve(trigger_settings(dumpling, database_url, clock=clock, worker={"request_page_budget": 1}))
    svc = live.services
    raw, row = svc.keys.create(name="zap", credits=1_000)
    assert len(world[HANDLE].followers) == 75                    # three pages of 30: three requests a walk
    read = []

    def call() -> list[dict]:
        before = pages(dumpling)
        r = http.post(ROUTE, json={"handle": HANDLE}, headers={"X-Request-Source": "ZAPIER"})
        assert r.status_code == 200, r.text
        read.append(pages(dumpling) - before)
        return [e for e in r.json() if e["follower"]["uniqueId"] != "coffee.and.cameras"]   # (the sample)

    def day() -> list[dict]:                                     # a day later, Zapier polls every few minutes
        clock.advance(24 * 3600 + 60)
        return [call() for _ in range(4)][-1]

    with live.client(raw) as http:
        call()                                                   # starts the watch: its first page
        assert [call() for _ in range(4)] == [[]] * 4             # the baseline walk, a page a request
        assert read == [1, 1, 1, 1, 0]                            # then the watch waits for its schedule
        gone_user, _ = world[HANDLE].followers[40]                # on the second page
        world.unfollow(HANDLE, gone_user.id)
        assert day() == [] and read[-4:] == [1, 1, 1, 0]          # missing from one full walk: not enough
        clock.advance(24 * 3600 + 60)
        call()
        world.add_followers(HANDLE, 31)                          # the list grows while it is walked
        assert call() == []                                      # (not complete yet: nothing compared)
        lost = [call() for _ in range(2)][-1]
        assert [e["follower"]["id"] for e in lost] == [gone_user.id]   # two full walks: lost, once
        assert [e["follower"]["id"] for e in day()] == [gone_user.id]
    assert max(read) == 1                                        # never more than the budget in a request
    assert svc.keys.balance(row["id"]) == 1_000 - sum(read)       # each page read charged once


def test_a_key_that_subscribes_during_a_walk_pays_from_the_next_one(serve, dumpling, database_url, world,  # noqa: F811
                                                                     receiver):  # noqa: F811
    live = serve(trigger_settings(dumpling, database_url, worker={"page_budget": 1}))
    svc = live.services
    (raw1, row1), (raw2, row2) = svc.keys.create(name="first", credits=1_000), svc.keys.create(name="second",
                                                                                                credits=1_000)
    with live.client(raw1) as http:
        hook = subscribe(http, receiver)
    per_check = hook["creditsPerCheck"]
    assert per_check == 3
    assert poll_due_watches(svc).pages == 1                      # a worker poll reads its budget: one page
    with live.client(raw2) as http:
        subscribe(http, receiver)
    assert [poll_due_watches(svc).pages for _ in range(3)] == [1, 1, 0]   # the walk goes on, then waits
    assert svc.keys.balance(row1["id"]) == 1_000 - 1 - per_check          # the first page, then the walk
    assert svc.keys.balance(row2["id"]) == 1_000                          # nothing of a walk it joined late
    gone_user, _ = world[HANDLE].followers[0]
    world.unfollow(HANDLE, gone_user.id)
    for _ in range(2):                                          # two full walks, three passes each
        make_due(svc)
        assert [poll_due_watches(svc).pages for _ in range(3)] == [1, 1, 1]
    deliver_due_webhooks(svc)
    assert lost_ids(receiver) == [gone_user.id] * 2              # once to each hook
    assert svc.keys.balance(row1["id"]) == 1_000 - 1 - 3 * per_check
    assert svc.keys.balance(row2["id"]) == 1_000 - 2 * per_check
