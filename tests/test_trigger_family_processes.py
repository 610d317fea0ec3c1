"""New Following (with filters), Follower Milestone, Lost Follower and a gap end to end with real
processes: the service on loopback creates the hooks, ``connector poll`` runs as a subprocess
against the fake Dumpling, is killed with SIGKILL in the middle of a poll and started again,
and receivers collect the signed deliveries. SQLite and PostgreSQL.

Time is moved by making the watches due (``make_due``) or by a read now
(``POST /api/v1/hooks/<id>/poll``); the only waits are on the worker processes.
"""

from __future__ import annotations

import signal
from collections import Counter

import pytest
import sqlalchemy as sa

from connector.trigger.tables import deliveries, events, watches
from tests.fakes import FakeDumpling, FakeWorld
from tests.test_trigger_worker import log_of, start_worker, wait_for, worker_env
from tests.trigger_kit import Receiver, make_due, receivers, trigger_settings, verify  # noqa: F401

HOOKS = "/api/v1/hooks"
WAIT = 60           # seconds: generous, the suite runs under load on two cores


class Workers:
    """The ``connector poll`` processes of one test: started, killed with SIGKILL mid-poll,
    and (whatever happens) none left running after it."""

    def __init__(self, env: dict):
        self.env, self.started, self.kills = env, [], 0

    def start(self, **extra):
        self.started.append(start_worker({**self.env, **extra}))
        return self.started[-1]

    def alive(self, worker) -> bool:
        assert worker.poll() is None, f"the worker exited ({worker.returncode}):\n{log_of(worker)}"
        return True

    def kill(self, worker) -> None:
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        self.kills += 1

    def stop(self, worker) -> None:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, log_of(worker)

    def close(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)


@pytest.fixture
def workers():
    made: list[Workers] = []

    def make(fake, database_url, tmp_path, **extra) -> Workers:
        made.append(Workers(worker_env(fake, database_url, tmp_path, **extra)))
        return made[-1]
    yield make
    for w in made:
        w.close()


def reads(fake: FakeDumpling, endpoint: str) -> int:
    return sum(1 for r in fake.requests if r.endpoint == endpoint)


def last_polls(svc) -> dict:
    with svc.store.connect() as conn:
        return dict(conn.execute(sa.select(watches.c.id, watches.c.last_poll_at)).all())


def settled(svc, before: dict) -> bool:
    """Every watch was polled since ``before`` (its ``last_poll_at`` then) and no delivery is
    left to send: nothing more can arrive until a watch is due again."""
    with svc.store.connect() as conn:
        rows = conn.execute(sa.select(watches.c.id, watches.c.last_poll_at, watches.c.lease_owner)).all()
        pending = conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                               .where(deliveries.c.status == "pending")).scalar_one()
    return pending == 0 and all(r.last_poll_at != before.get(r.id) and r.lease_owner is None for r in rows)


def poll_now(svc, workers: Workers, worker, queue=None) -> None:
    """The running worker polls every watch (made due, or queued by ``queue()``, a read now)
    and delivers what it found."""
    before = last_polls(svc)
    (queue or (lambda: make_due(svc)))()
    wait_for(lambda: workers.alive(worker) and settled(svc, before), WAIT, "the worker to poll and deliver")


def kill_mid_poll(svc, fake, workers: Workers, worker, endpoint: str, requests: int):
    """Make the watches due, SIGKILL ``worker`` once it has sent ``requests`` reads to
    ``endpoint`` of the poll, check that the poll committed nothing, and start a new worker
    (which finishes the poll); returns it."""
    before, sent = last_polls(svc), reads(fake, endpoint)
    make_due(svc)
    wait_for(lambda: workers.alive(worker) and reads(fake, endpoint) >= sent + requests, WAIT,
             f"the worker to send {requests} {endpoint} reads")
    workers.kill(worker)
    assert last_polls(svc) == before, "the poll ended before the kill: kill earlier (or slow the fake down)"
    worker = workers.start()
    wait_for(lambda: workers.alive(worker) and settled(svc, before), WAIT, "the new worker to redo the poll")
    return worker


def hook(http, event: str, handle: str, receiver: Receiver, **inputs) -> dict:
    r = http.post(HOOKS, json={"event": event, "handle": handle, "targetUrl": receiver.url, **inputs})
    assert r.status_code == 201, r.text
    return r.json()


def received(r: Receiver, created: dict, also: tuple = ()) -> list[dict]:
    """What ``r`` accepted, each checked with the official Standard Webhooks verifier against
    its hook's secret, never the same event twice, and none but the hook's own event (or
    those in ``also``)."""
    bodies = [verify(created["secret"], req.headers, req.body) for req in r.requests if 200 <= req.status < 300]
    ids = Counter(body["id"] for body in bodies)
    assert not ids or max(ids.values()) == 1, ids.most_common(3)
    assert {body["event"] for body in bodies} <= {created["event"], *also}
    return bodies


def all_delivered(svc) -> None:
    with svc.store.connect() as conn:
        assert set(conn.execute(sa.select(deliveries.c.status).distinct()).scalars()) == {"delivered"}


def test_new_following_exactly_once_through_a_kill_filters_and_refollows(
        database_url, serve, receivers, workers, tmp_path):
    world = FakeWorld(seed=21)
    world.add_account("walker", following=25)
    for n, (user, _) in enumerate(world["walker"].following):
        user.follower_count = 5000 if n % 2 else 10                  # there at subscribe time: never fires
        user.verified = n % 3 == 0
    existing = {user.id for user, _ in world["walker"].following}
    everyone, popular, blue = receivers(), receivers(), receivers()
    with FakeDumpling(world, latency=0.15) as fake:
        live = serve(trigger_settings(fake, database_url))
        svc = live.services
        raw, _ = svc.keys.create(name="e2e")
        with live.client(raw) as http:
            all_hook = hook(http, "new_following", "walker", everyone)
            min_hook = hook(http, "new_following", "walker", popular, minFollowerCount=1000)
            blue_hook = hook(http, "new_following", "walker", blue, verifiedOnly=True)
            followed = world.add_following("walker", 8 * 30)          # a burst of 9 pages to the frontier
            for n, user in enumerate(followed):
                user.follower_count = 5000 if n % 3 == 0 else 10
                user.verified = n % 4 == 0
            crew = workers(fake, database_url, tmp_path)
            worker = crew.start()
            worker = kill_mid_poll(svc, fake, crew, worker, "following", 4)
            assert crew.kills == 1

            got = received(everyone, all_hook)
            assert {b["followed"]["id"] for b in got} == {u.id for u in followed}
            big = {u.id for u in followed if u.follower_count >= 1000}
            got_big = received(popular, min_hook)
            assert {b["followed"]["id"] for b in got_big} == big and 0 < len(big) < len(followed)
            assert all(b["followed"]["followerCount"] >= 1000 for b in got_big)
            verified = {u.id for u in followed if u.verified}
            got_blue = received(blue, blue_hook)
            assert {b["followed"]["id"] for b in got_blue} == verified and 0 < len(verified) < len(followed)
            assert all(b["followed"]["verified"] is True for b in got_blue)
            assert not existing & {b["followed"]["id"] for b in got + got_big + got_blue}

            # A delivered account unfollowed, then followed again, is not new; the next one is.
            again = followed[0]
            assert again.id in big and again.id in verified
            world.unfollow("walker", again.id, "following")
            poll_now(svc, crew, worker)
            world.refollow("walker", again, "following")
            (last,) = world.add_following("walker", 1)
            last.follower_count, last.verified = 10, False            # only the unfiltered hook wants it
            poll_now(svc, crew, worker, queue=lambda: http.post(f"{HOOKS}/{all_hook['id']}/poll").raise_for_status())
            crew.stop(worker)
        got, got_big, got_blue = received(everyone, all_hook), received(popular, min_hook), received(blue, blue_hook)
        assert [b["followed"]["id"] for b in got].count(again.id) == 1
        assert {b["followed"]["id"] for b in got} == {u.id for u in followed} | {last.id}
        assert {b["followed"]["id"] for b in got_big} == big
        assert {b["followed"]["id"] for b in got_blue} == verified
        all_delivered(svc)


def test_milestones_through_a_kill_once_each_in_order_and_never_twice_after_a_fall(
        database_url, serve, receivers, workers, tmp_path):
    world = FakeWorld(seed=22)
    world.add_account("climber", followers=75)
    tens, quarters = receivers(), receivers()
    with FakeDumpling(world) as fake:
        live = serve(trigger_settings(fake, database_url))
        svc = live.services
        raw, _ = svc.keys.create(name="e2e")
        with live.client(raw) as http:
            tens_hook = hook(http, "follower_milestone", "climber", tens, every=10)   # 70 is passed already
            quarters_hook = hook(http, "follower_milestone", "climber", quarters, every=25)
        world.add_followers("climber", 37)                            # 112: four tens and a quarter at once
        # One attempt at a time to the receivers' host, so arrival order is the order of the events.
        crew = workers(fake, database_url, tmp_path, CONNECTOR_DELIVERY_PER_HOST="1")
        worker = crew.start()
        fake.fail_next(kind="timeout", seconds=30, endpoint="profile")   # the next read hangs: killed meanwhile
        worker = kill_mid_poll(svc, fake, crew, worker, "profile", 1)
        assert crew.kills == 1
        assert [(b["milestone"], b["followerCount"]) for b in received(tens, tens_hook)] == \
            [(80, 112), (90, 112), (100, 112), (110, 112)]
        assert [b["milestone"] for b in received(quarters, quarters_hook)] == [100]

        for user, _ in list(world["climber"].followers[:20]):         # falls to 92, below 100 and 110 ...
            world.unfollow("climber", user.id)
        poll_now(svc, crew, worker)
        world.add_followers("climber", 33)                            # ... and rises to 125
        poll_now(svc, crew, worker)
        crew.stop(worker)
        assert [b["milestone"] for b in received(tens, tens_hook)] == [80, 90, 100, 110, 120]
        assert [(b["milestone"], b["followerCount"]) for b in received(quarters, quarters_hook)] == \
            [(100, 112), (125, 125)]
        all_delivered(svc)


def test_lost_follower_after_two_walks_once_through_kills_never_after_one(
        database_url, serve, receivers, workers, tmp_path):
    world = FakeWorld(seed=23)
    world.add_account("quitter", followers=150)                      # a full walk is 5 pages
    lost = receivers()
    with FakeDumpling(world, latency=0.2) as fake:
        live = serve(trigger_settings(fake, database_url))
        svc = live.services
        raw, _ = svc.keys.create(name="e2e", credits=10_000)
        with live.client(raw) as http:
            lost_hook = hook(http, "lost_follower", "quitter", lost)
        assert lost_hook["creditsPerCheck"] == 5 and lost_hook["checkEveryHours"] == 24
        crew = workers(fake, database_url, tmp_path)
        worker = crew.start()
        poll_now(svc, crew, worker)                                   # the baseline walk
        with svc.store.connect() as conn:
            next_walk, last_walk = conn.execute(sa.select(watches.c.next_poll_at, watches.c.last_poll_at)).one()
        assert next_walk == pytest.approx(last_walk + 24 * 3600)      # not before a day: time is moved below

        gone, _ = world["quitter"].followers[40]
        blip, _ = world["quitter"].followers[100]
        world.unfollow("quitter", gone.id)
        world.unfollow("quitter", blip.id)
        worker = kill_mid_poll(svc, fake, crew, worker, "followers", 2)   # the first walk they miss
        assert received(lost, lost_hook) == []                        # one missing walk is not enough
        world.refollow("quitter", blip)                               # back before a second missing walk
        worker = kill_mid_poll(svc, fake, crew, worker, "followers", 2)   # the second one
        assert crew.kills == 2
        (event,) = received(lost, lost_hook)
        assert event["follower"]["id"] == gone.id and event["follower"]["uniqueId"] == gone.handle
        assert event["handle"] == "quitter" and event["lastSeenAt"] <= event["detectedAt"]

        poll_now(svc, crew, worker)                                   # a third walk: nothing again
        crew.stop(worker)
        assert [b["follower"]["id"] for b in received(lost, lost_hook)] == [gone.id]
        with svc.store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(events)
                                .where(events.c.event == "lost_follower")).scalar_one() == 1
        all_delivered(svc)


def test_a_gap_is_told_once_to_each_subscriber_through_a_kill(database_url, serve, receivers, workers, tmp_path):
    world = FakeWorld(seed=23, depth_cap=150)                        # the list reads 150 deep, 5 pages
    world.add_account("surge", followers=40)
    everyone, picky = receivers(), receivers()
    with FakeDumpling(world, latency=0.2) as fake:
        live = serve(trigger_settings(fake, database_url))
        svc = live.services
        raw, _ = svc.keys.create(name="e2e")
        with live.client(raw) as http:
            all_hook = hook(http, "new_follower", "surge", everyone)
            picky_hook = hook(http, "new_follower", "surge", picky, minFollowerCount=10**9)
        burst = world.add_followers("surge", 400)                     # 250 of them sink below the cap
        crew = workers(fake, database_url, tmp_path)
        worker = crew.start()
        worker = kill_mid_poll(svc, fake, crew, worker, "followers", 3)

        def told(r: Receiver, created: dict) -> tuple[list, list]:
            bodies = received(r, created, also=("gap_detected",))
            return ([b for b in bodies if b["event"] == "new_follower"],
                    [b for b in bodies if b["event"] == "gap_detected"])
        followers, gaps = told(everyone, all_hook)
        assert {b["follower"]["id"] for b in followers} == {u.id for u in burst[:150]}
        assert [(g["trigger"], g["handle"], g["missedEstimate"]) for g in gaps] == [("new_follower", "surge", 250)]
        assert told(picky, picky_hook) == ([], gaps)                 # the same event, whatever the filter

        after = world.add_followers("surge", 6)                       # detection goes on from the top
        poll_now(svc, crew, worker)
        followers, gaps_now = told(everyone, all_hook)
        assert {b["follower"]["id"] for b in followers} == {u.id for u in burst[:150] + after}
        assert gaps_now == gaps and crew.kills == 1
        crew.stop(worker)
        all_delivered(svc)
        with svc.store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(events)
                                .where(events.c.event == "gap_detected")).scalar_one() == 1
