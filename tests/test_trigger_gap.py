"""``gap_detected``: followers arrived faster than anyone can read them (the backlog sank below
the depth the upstream lets anyone walk). Each subscriber of the watch is told once, with an
estimate, and detection goes on from the top. Real service, fake Dumpling with a shallow depth
cap and webhook receivers on loopback, SQLite and PostgreSQL; the rule itself as pure
functions."""

from __future__ import annotations

import json
import random
from collections import Counter

import jsonschema
import pytest
import sqlalchemy as sa

from connector.trigger.detect import Walk, out_of_reach
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import watches
from connector.trigger.watches import missed_estimate, next_mark, unread_above
from connector.trigger.worker import poll_due_watches
from tests.fakes import FakeDumpling, FakeWorld
from tests.test_console import ADMIN, sign_in
from tests.trigger_kit import HANDLE, Receiver, make_due, receivers, trigger_settings, verify  # noqa: F401

HOOKS = "/api/v1/hooks"
CAP = 150           # how deep the fake lets anyone walk a list (5 pages of 30)


def cycle(svc, passes: int = 1) -> None:
    for _ in range(passes):
        make_due(svc)
        poll_due_watches(svc)
        deliver_due_webhooks(svc)


def gaps(receiver: Receiver) -> list[dict]:
    return [body for body in receiver.delivered() if body["event"] == "gap_detected"]


def followers(receiver: Receiver) -> Counter:
    return Counter(body["follower"]["id"] for body in receiver.delivered() if body["event"] == "new_follower")


@pytest.fixture
def shallow():
    world = FakeWorld(seed=5, depth_cap=CAP)
    world.add_account(HANDLE, followers=75)
    world.add_following(HANDLE, 40)
    with FakeDumpling(world) as fake:
        yield world, fake


@pytest.mark.parametrize("budget", [10, 2], ids=["found-from-the-top", "found-draining-a-backlog"])
def test_a_burst_deeper_than_the_list_is_told_once_to_each_subscriber(serve, database_url, shallow, receivers,
                                                                       budget):
    world, fake = shallow
    live = serve(trigger_settings(fake, database_url, worker={"page_budget": budget}, admin_key=ADMIN))
    raw, _ = live.services.keys.create(name="gaps")
    everyone, picky, following = receivers(), receivers(), receivers()
    with live.client(raw) as http:
        hooks = {}
        for name, receiver, extra in (("everyone", everyone, {}), ("picky", picky, {"minFollowerCount": 10**9}),
                                      ("following", following, {"event": "new_following"})):
            r = http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url,
                                       **extra})
            assert r.status_code == 201, r.text
            hooks[name] = r.json()
        assert http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE}).status_code == 200

        burst = world.add_followers(HANDLE, 400)          # 400 new, and only the newest 150 can be read
        cycle(live.services, 4)

        told = gaps(everyone)
        assert len(told) == 1, told
        gap = told[0]
        assert set(gap) == {"id", "event", "handle", "trigger", "missedEstimate", "detectedAt"}
        assert gap["handle"] == HANDLE and gap["trigger"] == "new_follower"
        assert gap["missedEstimate"] == 400 - CAP            # the list grew by 400; 150 were read
        # Every follower that could be read arrives once; none of those below the cap does.
        got = followers(everyone)
        assert set(got) == {u.id for u in burst[:CAP]} and max(got.values()) == 1
        # A filter decides which accounts a subscription gets, not whether it learns of a gap.
        assert followers(picky) == Counter() and [b["id"] for b in gaps(picky)] != []
        assert gaps(picky)[0]["missedEstimate"] == gap["missedEstimate"]
        assert following.delivered() == []                   # another watch: nothing was lost there
        for hook_name, receiver in (("everyone", everyone), ("picky", picky)):
            for received in receiver.requests:
                verify(hooks[hook_name]["secret"], received.headers, received.body)   # signed as any event

        # The operator's console shows the gap as one, not as a follower, and counts no follower for it.
        console = live.app.test_client()
        assert sign_in(console).status_code == 303
        with live.services.store.connect() as conn:
            wid = conn.execute(sa.select(watches.c.id).where(watches.c.operation == "list_followers")).scalar_one()
        page = console.get(f"/console/watches/{wid}").get_data(as_text=True)
        assert "About 250 followers arrived faster than the list can be read" in page
        assert page.count('class="gap"') == 1 and f"{CAP} new followers detected" in page

        # A polling subscription of the watch finds it among its events.
        polled = http.post("/api/v1/triggers/new-follower", json={"handle": HANDLE, "limit": 100}).json()["events"]
        told_polling = [e for e in polled if e["event"] == "gap_detected"]
        assert [{k: v for k, v in e.items() if k != "seq"} for e in told_polling] == [gap]
        # ... as the OpenAPI document says it may.
        doc = http.get("/openapi.json").json()
        jsonschema.validate(gap, doc["components"]["schemas"]["GapDetected"])
        items = json.dumps(doc["paths"]["/api/v1/triggers/new-follower"]["post"]["responses"]["200"])
        assert "#/components/schemas/GapDetected" in items

        # Detection goes on from the top, and the gap is never told again.
        after = world.add_followers(HANDLE, 7)
        cycle(live.services, 3)
        assert len(gaps(everyone)) == 1 and len(gaps(picky)) == 1
        got = followers(everyone)
        assert set(got) == {u.id for u in burst[:CAP] + after} and max(got.values()) == 1


def test_a_small_account_whose_followers_all_left_is_no_gap(serve, database_url, receivers):
    world = FakeWorld(seed=6, depth_cap=CAP)
    world.add_account(HANDLE, followers=5)
    with FakeDumpling(world) as fake:
        live = serve(trigger_settings(fake, database_url))
        raw, _ = live.services.keys.create(name="small")
        receiver = receivers()
        with live.client(raw) as http:
            assert http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE,
                                          "targetUrl": receiver.url}).status_code == 201
        for user, _ in list(world[HANDLE].followers):
            world.unfollow(HANDLE, user.id)
        arrived = world.add_followers(HANDLE, 3)          # the list holds only them now: read to its end
        cycle(live.services, 2)
        assert gaps(receiver) == []
        assert set(followers(receiver)) == {u.id for u in arrived}


def test_the_rule_for_a_list_read_to_its_end():
    end = Walk(reason="end", pages=5, depth=150, total=550, tail_seen=0)
    assert out_of_reach(end, from_top=True, knows_enough=lambda: False)       # the list is longer than read
    assert not out_of_reach(Walk(reason="end", pages=1, depth=3, total=3), from_top=True,
                            knows_enough=lambda: True)                          # read to its real end
    assert not out_of_reach(Walk(reason="end", pages=5, depth=150, total=550, tail_seen=2), from_top=True,
                            knows_enough=lambda: True)                          # known accounts at the end
    assert not out_of_reach(Walk(reason="budget", pages=5, depth=150, total=550), from_top=True,
                            knows_enough=lambda: True)                          # a backlog, still readable
    assert not out_of_reach(Walk(reason="frontier", pages=2, depth=40, total=550), from_top=True,
                            knows_enough=lambda: True)
    # Where the upstream does not tell the list's length (TikTok Research), what the watch knows decides.
    untold = Walk(reason="end", pages=5, depth=150, total=None)
    assert out_of_reach(untold, from_top=True, knows_enough=lambda: True)
    assert not out_of_reach(untold, from_top=True, knows_enough=lambda: False)
    assert not out_of_reach(Walk(reason="end", pages=1, depth=0, total=None), from_top=True,
                            knows_enough=lambda: True)                          # an empty list: nobody arrived
    # From a gap's cursor, the end of the list is below every unread account of the gap.
    assert out_of_reach(Walk(reason="end", pages=1, depth=0, total=9000), from_top=False, knows_enough=lambda: False)


def test_the_estimate_of_what_a_gap_held():
    mark = {"at": 1000.0, "total": 5000, "read": 120}
    assert missed_estimate(mark, 5900, 150, 2000.0, None) == 5900 - 5000 - 120 - 150
    assert missed_estimate(mark, 5100, 150, 2000.0, None) == 1          # unfollows hid it: at least one
    # No length told: the arrival rate over the same time.
    assert missed_estimate({"at": 0.0, "total": None, "read": 0}, None, 100, 86400.0, 1000.0) == 900
    assert missed_estimate(None, 5900, 150, 2000.0, 10.0) == 1           # nothing to compare with
    # Accounts still to be read above (from the top, or the gap the top walk left) are not lost.
    mark = {"at": 1000.0, "total": 5000, "read": 120, "top": 5600}
    assert unread_above(mark, 5900, 60) == 240 and unread_above(mark, 5900, None) == 300
    assert missed_estimate(mark, 5900, 150, 2000.0, None, unread=240) == 5900 - 5000 - 120 - 150 - 240
    # ... and are counted off the next estimate's reads once they are read.
    assert next_mark(mark, now=3000.0, total=5900, top_total=5900, found=150, caught_up=True, unread=240) \
        == {"at": 3000.0, "total": 5900, "read": -240, "top": 5900}
    assert next_mark(mark, now=3000.0, total=5900, top_total=None, found=7, caught_up=False) \
        == {**mark, "read": 127}


@pytest.mark.parametrize("seed", range(4))
def test_random_bursts_a_gap_is_told_exactly_when_followers_were_lost(serve, sqlite_url, receivers, seed):
    """Bursts of every size, against budgets of 2, 3 and 10 pages: each follower that could be
    read arrives once; a gap is told if and only if followers were lost; and the estimates add
    up to how many were (each at least 1, so within one a gap)."""
    rng = random.Random(seed)
    world = FakeWorld(seed=seed, depth_cap=CAP)
    world.add_account(HANDLE, followers=rng.choice([0, 2, 40, 200]))
    receiver = receivers()
    with FakeDumpling(world) as fake:
        live = serve(trigger_settings(fake, sqlite_url, worker={"page_budget": rng.choice([2, 3, 10])}))
        raw, _ = live.services.keys.create(name="bursts")
        with live.client(raw) as http:
            assert http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE,
                                          "targetUrl": receiver.url}).status_code == 201
        added = []
        for _ in range(25):
            added += world.add_followers(HANDLE, rng.choice([0, 0, 3, 30, 61, 100, 160, 400]))
            cycle(live.services)
        cycle(live.services, 20)                                   # every backlog read to its end
    ids = Counter(body["id"] for body in receiver.delivered())
    assert max(ids.values()) == 1
    got = set(followers(receiver))
    lost = {u.id for u in added} - got
    told = gaps(receiver)
    assert got <= {u.id for u in added} and bool(told) == bool(lost)
    assert len(lost) <= sum(g["missedEstimate"] for g in told) <= len(lost) + len(told)
