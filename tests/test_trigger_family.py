"""The family of triggers: New Following, per-subscription filters, one read per watch for
every subscription on it, and a trigger added by a manifest alone. Real service, fake
Dumpling and webhook receivers on loopback, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.config import MANIFESTS_DIR
from connector.export import make, openapi, zapier
from connector.manifests import load_manifests
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import events, subscriptions, watches
from connector.trigger.worker import poll_due_watches
from tests.trigger_kit import (HANDLE, Receiver, dumpling, make_due, receiver, receivers,  # noqa: F401
                               trigger_settings, verify, world)

HOOKS = "/api/v1/hooks"


def cycle(svc, passes: int = 1) -> None:
    for _ in range(passes):
        make_due(svc)
        poll_due_watches(svc)
        deliver_due_webhooks(svc)


def pages(fake, endpoint: str) -> int:
    return sum(1 for r in fake.requests if r.endpoint == endpoint)


def subscribe(http, receiver, event="new_follower", **extra) -> dict:
    r = http.post(HOOKS, json={"event": event, "handle": HANDLE, "targetUrl": receiver.url, **extra})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def live(serve, dumpling, database_url):  # noqa: F811
    return serve(trigger_settings(dumpling, database_url))


@pytest.fixture
def http(live):
    raw, _ = live.services.keys.create(name="family")
    with live.client(raw) as client:
        yield client


def test_new_following_fires_once_each_and_apart_from_followers(live, http, world, dumpling, receivers):  # noqa: F811
    world.add_following(HANDLE, 40)
    following_hook, follower_hook = receivers(), receivers()
    hook = subscribe(http, following_hook, "new_following")
    assert hook["event"] == "new_following"
    subscribe(http, follower_hook)
    polled = http.post("/api/v1/triggers/new-following", json={"handle": HANDLE}).json()["events"]
    top = [user.id for user, _ in world[HANDLE].following[:30]]
    assert [e["followed"]["id"] for e in polled] == top                    # samples: the top page
    assert {e["event"] for e in polled} == {"new_following"}

    followed = world.add_following(HANDLE, 75)                              # a burst bigger than two pages
    new_followers = world.add_followers(HANDLE, 2)
    cycle(live.services, 2)
    got = Counter(body["followed"]["id"] for body in following_hook.delivered())
    assert set(got) == {u.id for u in followed} and max(got.values()) == 1
    for received in following_hook.requests:
        body = verify(hook["secret"], received.headers, received.body)
        assert body["event"] == "new_following" and "follower" not in body
        assert body["followed"]["profileUrl"].startswith("https://www.tiktok.com/@")
    assert {b["follower"]["id"] for b in follower_hook.delivered()} == {u.id for u in new_followers}

    polled = http.post("/api/v1/triggers/new-following", json={"handle": HANDLE, "limit": 100}).json()["events"]
    assert [e["followed"]["id"] for e in polled[:75]] == [u.id for u in followed]   # newest first
    with live.services.store.connect() as conn:
        reads = dict(conn.execute(sa.select(watches.c.operation, sa.func.count()).group_by(watches.c.operation)).all())
    assert reads == {"list_followers": 1, "list_following": 1}

    # An account followed again (unfollowed, then followed anew) is not new; detection goes on.
    again = world[HANDLE].following[10][0]
    world.unfollow(HANDLE, again.id, "following")
    world.refollow(HANDLE, again, "following")
    last = world.add_following(HANDLE, 1)
    cycle(live.services)
    got = Counter(body["followed"]["id"] for body in following_hook.delivered())
    assert set(got) == {u.id for u in followed + last} and max(got.values()) == 1


def test_filters_apply_per_subscription_on_one_read(live, http, world, dumpling, receivers):  # noqa: F811
    everyone, popular, verified, both = receivers(), receivers(), receivers(), receivers()
    subscribe(http, everyone)
    hook = subscribe(http, popular, minFollowerCount=1000)
    assert hook["minFollowerCount"] == 1000
    subscribe(http, verified, verifiedOnly=True)
    subscribe(http, both, minFollowerCount="1000", verifiedOnly="true")     # as Zapier sends them
    polled = http.post("/api/v1/triggers/new-follower",
                       json={"handle": HANDLE, "verifiedOnly": True, "requestSource": "ZAPIER"}).json()
    assert isinstance(polled, list), polled
    assert all(e["follower"]["verified"] for e in polled)

    new = world.add_followers(HANDLE, 40)
    for n, user in enumerate(new):
        user.follower_count = 5000 if n % 3 == 0 else 10
        user.verified = n % 4 == 0
    before = pages(dumpling, "followers")
    cycle(live.services)
    assert pages(dumpling, "followers") - before == 2          # one read of two pages serves every hook

    def ids(r):
        got = Counter(body["follower"]["id"] for body in r.delivered())
        assert not got or max(got.values()) == 1
        return set(got)
    assert ids(everyone) == {u.id for u in new}
    assert ids(popular) == {u.id for u in new if u.follower_count >= 1000}
    assert ids(verified) == {u.id for u in new if u.verified}
    assert ids(both) == {u.id for u in new if u.verified and u.follower_count >= 1000} != set()
    with live.services.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(watches)).scalar_one() == 1

    # The same subscription again is the same hook; other inputs make another one.
    again = http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": popular.url,
                                   "minFollowerCount": 1000})
    assert again.status_code == 200 and again.json()["id"] == hook["id"]
    # A polling subscription with filters reads only what passes them.
    polled = http.post("/api/v1/triggers/new-follower",
                       json={"handle": HANDLE, "verifiedOnly": True, "limit": 100}).json()["events"]
    assert {e["follower"]["id"] for e in polled} >= ids(verified)
    assert all(e["follower"]["verified"] for e in polled)


@pytest.mark.parametrize("body, fragment", [
    ({"event": "new_follower", "minFollowerCount": -1}, "'minFollowerCount' must be a whole number from 0"),
    ({"event": "new_follower", "minFollowerCount": "many"}, "'minFollowerCount' must be a whole number"),
    ({"event": "new_following", "verifiedOnly": "yes"}, "'verifiedOnly' must be true or false"),
    ({"event": "new_following", "limit": 5}, "Unknown field 'limit'"),
    ({"event": ["new_follower"]}, "'event' must be one of: follower_milestone, lost_follower, new_follower, new_following"),
    ({"event": "gap_detected"}, "gap_detected is not subscribed to on its own: every hook of new_follower, "
                                "new_following receives it."),
])
def test_bad_trigger_inputs_are_4xx_naming_the_field(live, http, receiver, body, fragment):  # noqa: F811
    r = http.post(HOOKS, json={"handle": HANDLE, "targetUrl": receiver.url, **body})
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


@pytest.mark.parametrize("body, fragment", [
    ({"handle": HANDLE, "minFollowerCount": 1.5}, "'minFollowerCount' must be a whole number"),
    ({"handle": HANDLE, "verifiedOnly": 1}, "'verifiedOnly' must be true or false"),
    ({"handle": HANDLE, "every": 10}, "Unknown field 'every'"),
])
def test_bad_polling_inputs_are_4xx_naming_the_field(live, http, body, fragment):
    r = http.post("/api/v1/triggers/new-following", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


# -- a trigger by manifest alone -------------------------------------------------------------

def manifests_with_new_fan(folder: Path) -> Path:
    """The shipped manifests plus ``new_fan``: New Follower's manifest with another key, label,
    route and event, nothing else."""
    shutil.copytree(MANIFESTS_DIR, folder)
    data = json.loads((folder / "new_follower.json").read_text())
    data.update(key="new_fan", label="New Fan", route="/api/v1/triggers/new-fan")
    data["hooks"]["event"] = "new_fan"
    data["sample"]["event"] = "new_fan"
    (folder / "new_fan.json").write_text(json.dumps(data, indent=2))
    return folder


def test_a_trigger_added_by_a_manifest_alone_is_served_polled_delivered_and_exported(
        serve, dumpling, world, database_url, receivers, tmp_path):  # noqa: F811
    folder = manifests_with_new_fan(tmp_path / "manifests")
    live = serve(trigger_settings(dumpling, database_url, manifests_dir=folder))
    raw, _ = live.services.keys.create(name="fan")
    fan, follower = receivers(), receivers()
    with live.client(raw) as http:
        assert "/api/v1/triggers/new-fan" in http.get("/openapi.json").json()["paths"]
        first = http.post("/api/v1/triggers/new-fan", json={"handle": HANDLE})
        assert first.status_code == 200, first.text
        assert {e["event"] for e in first.json()["events"]} == {"new_fan"}
        hook = subscribe(http, fan, "new_fan", minFollowerCount=0)
        subscribe(http, follower)
        new = world.add_followers(HANDLE, 35)
        cycle(live.services)
        got = Counter(body["id"] for body in fan.delivered())
        assert len(got) == 35 and max(got.values()) == 1
        assert {b["follower"]["id"] for b in fan.delivered()} == {u.id for u in new}
        assert {b["event"] for b in fan.delivered()} == {"new_fan"}
        verify(hook["secret"], fan.requests[0].headers, fan.requests[0].body)
        # New Follower on the same watch keeps its own events and ids.
        assert {b["follower"]["id"] for b in follower.delivered()} == {u.id for u in new}
        assert not set(got) & {b["id"] for b in follower.delivered()}
        polled = http.post("/api/v1/triggers/new-fan", json={"handle": HANDLE, "limit": 100}).json()["events"]
        assert [e["follower"]["id"] for e in polled[:35]] == [u.id for u in new]
    with live.services.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(watches)).scalar_one() == 1
        assert set(conn.execute(sa.select(subscriptions.c.event).distinct()).scalars()) == {"new_fan", "new_follower"}
        assert conn.execute(sa.select(sa.func.count()).select_from(events)
                            .where(events.c.event == "new_fan", events.c.baseline.is_(False))).scalar_one() == 35

    loaded = load_manifests(folder)
    definition = zapier.build(loaded)
    assert {"new_fan", "new_fan_instant"} <= set(definition["triggers"])
    assert definition["triggers"]["new_fan_instant"]["operation"]["performSubscribe"]["body"]["event"] == "new_fan"
    modules = make.build(loaded)["makecomapp.json"]["components"]["module"]
    assert modules["watchNewFan"]["moduleType"] == "trigger"
    assert modules["watchNewFanInstant"]["moduleType"] == "instant_trigger"
    document = openapi.build(loaded)
    assert "/api/v1/triggers/new-fan" in document["paths"]
    bodies = document["paths"]["/api/v1/hooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ["new_fan"] in [b["properties"]["event"]["enum"] for b in bodies["oneOf"]]


def test_reads_at_the_same_instant_schedule_without_dividing_by_zero():
    """Catch-up reads of several subscribers can close polls of a watch within one clock tick:
    the schedule then has polls but no time watched (this was a ZeroDivisionError, a 500)."""
    from connector.trigger.schedule import Observation, Policy, plan, dump_state

    state, now = None, 1_700_000_000.0
    for _ in range(6):
        result = plan(state, Observation(since=now, found=0, times=None, full_page=False, backlog=False), now,
                      Policy())
        state = dump_state(result.state)
        assert result.next_poll_at >= now


# -- Follower Milestone ------------------------------------------------------------------------

def milestones(r: Receiver, every: int | None = None) -> list[int]:
    return [b["milestone"] for b in r.delivered()]


def test_milestones_fire_once_each_in_order_on_one_profile_read(live, http, world, dumpling, receivers):  # noqa: F811
    tens, quarters = receivers(), receivers()
    assert len(world[HANDLE].followers) == 75
    hook = subscribe(http, tens, "follower_milestone", every=10)
    assert hook["every"] == 10
    subscribe(http, quarters, "follower_milestone", every="25")
    first = http.post("/api/v1/triggers/follower-milestone", json={"handle": HANDLE, "every": 10}).json()["events"]
    assert [(e["milestone"], e["followerCount"]) for e in first] == [(70, 75)]     # the sample: the last passed

    world.add_followers(HANDLE, 37)                                              # 112: four tens at once
    before = pages(dumpling, "profile")
    cycle(live.services)
    assert pages(dumpling, "profile") - before == 1                  # one read serves every subscription
    assert sorted(milestones(tens)) == [80, 90, 100, 110] and sorted(milestones(quarters)) == [100]
    assert {b["followerCount"] for b in tens.delivered()} == {112}
    for received in tens.requests:
        assert verify(hook["secret"], received.headers, received.body)["event"] == "follower_milestone"

    for user, _ in list(world[HANDLE].followers[:5]):                            # falls to 107 ...
        world.unfollow(HANDLE, user.id)
    cycle(live.services)
    world.add_followers(HANDLE, 5)                                               # ... and rises to 112 again
    cycle(live.services)
    assert sorted(milestones(tens)) == [80, 90, 100, 110]                        # nothing twice
    world.add_followers(HANDLE, 10)                                              # 122
    cycle(live.services)
    got = Counter(b["id"] for b in tens.delivered())
    assert sorted(milestones(tens)) == [80, 90, 100, 110, 120] and max(got.values()) == 1
    with live.services.store.connect() as conn:
        wid = conn.execute(sa.select(watches.c.id).where(watches.c.operation == "get_profile")).scalar_one()
    from connector.trigger.events import event_id, subject_key
    assert event_id(wid, subject_key("follower_milestone", "10:120")) in got        # a milestone and its every

    polled = http.post("/api/v1/triggers/follower-milestone", json={"handle": HANDLE, "every": 10}).json()["events"]
    assert [e["milestone"] for e in polled] == [120, 110, 100, 90, 80, 70]        # newest first, in order


@pytest.mark.parametrize("every, fragment", [(5, "'every' must be a whole number from 10"),
                                             ("x", "'every' must be a whole number"),
                                             (True, "'every' must be a whole number")])
def test_a_bad_every_is_a_4xx_naming_it(live, http, receiver, every, fragment):  # noqa: F811
    r = http.post(HOOKS, json={"event": "follower_milestone", "handle": HANDLE, "targetUrl": receiver.url,
                               "every": every})
    assert r.status_code == 400 and fragment in r.json()["error"], r.text
    r = http.post("/api/v1/triggers/follower-milestone", json={"handle": HANDLE, "every": every})
    assert r.status_code == 400 and fragment in r.json()["error"], r.text


# -- a read now -------------------------------------------------------------------------------

def test_a_hook_asks_for_a_read_now_at_most_once_a_minute(live, http, world, receiver):  # noqa: F811
    svc = live.services
    hook = subscribe(http, receiver)
    new = world.add_followers(HANDLE, 3)
    poll_due_watches(svc)                                       # not due yet: nothing is read
    deliver_due_webhooks(svc)
    assert receiver.delivered() == []
    r = http.post(f"{HOOKS}/{hook['id']}/poll")
    assert r.status_code == 202, r.text
    assert r.json()["id"] == hook["id"] and r.json()["queued"] is True
    poll_due_watches(svc)                                       # the next pass reads it
    deliver_due_webhooks(svc)
    assert {b["follower"]["id"] for b in receiver.delivered()} == {u.id for u in new}

    again = http.post(f"{HOOKS}/{hook['id']}/poll", json={})
    assert again.status_code == 429 and 1 <= int(again.headers["Retry-After"]) <= 60
    assert "less than a minute ago" in again.json()["error"]
    with svc.store.begin() as conn:                              # a minute later it may ask again
        conn.execute(subscriptions.update().values(poll_requested_at=svc.clock() - 61))
    assert http.post(f"{HOOKS}/{hook['id']}/poll").status_code == 202


@pytest.mark.parametrize("hook_id, body, status, fragment", [
    ("hook_nothere", None, 404, "No hook with id hook_nothere"),
    (None, {"now": True}, 400, "Unknown field 'now'"),
    (None, [1], 400, "must be a JSON object"),
])
def test_bad_read_now_requests_are_4xx(live, http, receiver, hook_id, body, status, fragment):  # noqa: F811
    hook_id = hook_id or subscribe(http, receiver)["id"]
    r = http.post(f"{HOOKS}/{hook_id}/poll", json=body) if body is not None else http.post(f"{HOOKS}/{hook_id}/poll")
    assert r.status_code == status and fragment in r.json()["error"], r.text
