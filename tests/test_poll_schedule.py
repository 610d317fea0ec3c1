"""The adaptive schedule (connector/trigger/schedule.py): pure estimator tests with a moved
clock, then the real worker on a real database: intervals follow what watches see, the state
survives a restart, and the hook view shows them."""

from __future__ import annotations

import pytest

from connector.services import build_services
from connector.trigger.schedule import Observation, Policy, dump_state, plan, rate_per_day
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import HANDLE, dumpling, trigger_settings, world  # noqa: F401

POLICY = Policy()            # the defaults: adaptive, 300 s reference, 60..1800
START = 1_700_000_000.0      # 22:13 UTC


def run(found_at, polls: int, policy=POLICY, state=None, now=START):
    """``polls`` polls, each at the time the previous one chose; ``found_at(since, now)`` is
    how many new followers it finds. Returns (intervals, state, now)."""
    intervals, since = [], now - policy.reference
    for _ in range(polls):
        p = plan(state, Observation(since=since, found=found_at(since, now)), now, policy)
        intervals.append(p.interval)
        state, since, now = p.state, now, p.next_poll_at
    return intervals, state, now


def poisson_like(per_day):
    """Deterministic arrivals at ``per_day``: the count of multiples of the gap in (since, now]."""
    gap = 86400 / per_day
    return lambda since, now: int(now // gap) - int(since // gap)


def test_a_new_watch_starts_at_the_reference_interval():
    first = plan(None, Observation(since=START - 300, found=0), START, POLICY)
    assert first.interval == 300 and first.next_poll_at == START + 300


def test_a_quiet_watch_drifts_to_the_maximum_and_never_beyond():
    intervals, state, _ = run(lambda since, now: 0, polls=12)
    assert intervals[:3] == [300, 300, 300]                     # cold start
    assert all(b >= a for a, b in zip(intervals, intervals[1:]))  # drifts, never jumps down
    assert all(b <= 2 * a for a, b in zip(intervals, intervals[1:]))
    assert intervals[-1] == 1800 and max(intervals) == 1800
    assert rate_per_day(state) < 10


def test_a_busy_watch_is_polled_faster_than_the_reference():
    intervals, state, _ = run(poisson_like(2000), polls=40)
    assert intervals[-1] < 200 and min(intervals) >= 60
    assert 1500 < rate_per_day(state) < 2500


def test_a_burst_brings_a_quiet_watch_down_within_one_poll():
    _, state, now = run(lambda since, now: 0, polls=12)
    burst = plan(state, Observation(since=now - 1800, found=100, full_page=True), now, POLICY)
    assert burst.interval == 60 and burst.next_poll_at == now + 60
    # Without a full page: many times what was expected is a burst too.
    burst = plan(state, Observation(since=now - 1800, found=20), now, POLICY)
    assert burst.interval <= 120


def test_the_time_of_day_profile_is_learnt_over_days():
    """Followers only between 12:00 and 15:00 UTC (300 an hour): after four days the
    schedule is fast in those hours and slow at night."""
    def afternoons(since, now):
        return sum(1 for t in range(int(since) + 1, int(now) + 1, 12) if 12 <= (t // 3600) % 24 < 15)
    state, now, since = None, START, START - 300
    by_hour: dict[int, list] = {}
    while now < START + 4 * 86400:
        p = plan(state, Observation(since=since, found=afternoons(since, now)), now, POLICY)
        if now > START + 3 * 86400:
            by_hour.setdefault(int(now // 3600) % 24, []).append(p.interval)
        state, since, now = p.state, now, p.next_poll_at
    assert max(by_hour[13]) <= 120
    assert min(by_hour[3]) >= 1200


def test_follow_times_put_followers_in_the_hour_they_followed():
    """A poll covering 11:30-12:00 that finds 10 who all followed at 11:31: hour 11 gets them."""
    noon = 1_700_049_600.0    # 12:00 UTC
    state = plan(None, Observation(since=noon - 1800, found=10, times=[noon - 1740] * 10), noon, POLICY).state
    assert state["c"][11] == 10 and state["c"][12] == 0
    counted = plan(None, Observation(since=noon - 1800, found=10), noon, POLICY).state
    assert counted["c"][11] == 10      # (the whole window was in hour 11 either way)


def test_a_backlog_is_read_again_at_once_and_a_failed_poll_keeps_the_interval():
    _, state, now = run(lambda since, now: 0, polls=12)
    assert plan(state, Observation(since=now - 1800, found=500, backlog=True), now, POLICY).next_poll_at == now
    failed = plan(state, None, now, POLICY)
    assert failed.interval == 1800 and failed.state == state


def test_fixed_polls_every_reference_interval_and_still_estimates():
    fixed = Policy(name="fixed")
    intervals, state, _ = run(poisson_like(2000), polls=20, policy=fixed)
    assert set(intervals) == {300}
    assert 1500 < rate_per_day(state) < 2500
    intervals, _, _ = run(lambda since, now: 0, polls=20, policy=fixed)
    assert set(intervals) == {300}


def test_the_state_is_the_same_after_a_round_trip_through_the_database_text():
    _, state, now = run(poisson_like(300), polls=30)
    obs = Observation(since=now - 200, found=1)
    assert plan(dump_state(state), obs, now, POLICY).interval == pytest.approx(plan(state, obs, now, POLICY).interval,
                                                                               rel=1e-3)


def test_the_bounds_come_from_the_settings():
    tight = Policy(reference=10, minimum=2, maximum=40)
    intervals, _, _ = run(lambda since, now: 0, polls=12, policy=tight)
    assert intervals[-1] == 40
    intervals, _, _ = run(poisson_like(86400 * 50), polls=12, policy=tight)
    assert intervals[-1] == 2


# -- the real worker, a real database, a moved clock --------------------------------------

QUIET = "quiet_account"
ADMIN = "operator-secret-0123456789"


@pytest.fixture
def two_watches(world, dumpling, database_url, serve):  # noqa: F811
    """The service with a hook on a busy account (HANDLE) and one on a quiet one."""
    world.add_account(QUIET, followers=40)
    clock = ManualClock(START)
    settings = trigger_settings(dumpling, database_url, poll_interval=300, clock=clock, admin_key=ADMIN)
    live = serve(settings)
    raw, _ = live.services.keys.create(name="sched")
    http = live.client(raw)
    hooks = {}
    for handle in (HANDLE, QUIET):
        r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": handle,
                                             "targetUrl": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        hooks[handle] = r.json()["id"]
    yield live, http, hooks, clock, settings
    http.close()


def advance(live, world, clock, until: float, busy_per_hour: int = 600) -> int:  # noqa: F811
    """Move the clock from due watch to due watch until ``until``, the busy account gaining
    followers as time passes; returns how many polls ran."""
    svc, polls = live.services, 0
    gap = 3600 / busy_per_hour
    while True:
        from connector.trigger.tables import watches
        import sqlalchemy as sa
        with svc.store.connect() as conn:
            due = conn.execute(sa.select(sa.func.min(watches.c.next_poll_at))).scalar_one()
        if due > until:
            return polls
        world.add_followers(HANDLE, int(due // gap) - int(clock.now // gap))
        clock.now = max(clock.now, due)
        polls += poll_due_watches(svc).watches


def test_the_worker_polls_a_busy_watch_more_often_than_a_quiet_one_and_shows_it(two_watches, world):  # noqa: F811
    live, http, hooks, clock, _ = two_watches
    advance(live, world, clock, START + 3 * 3600)
    busy = http.get(f"/api/v1/hooks/{hooks[HANDLE]}").json()
    quiet = http.get(f"/api/v1/hooks/{hooks[QUIET]}").json()
    assert quiet["pollIntervalSeconds"] == 1800
    assert busy["pollIntervalSeconds"] <= 120
    listed = {h["id"]: h for h in http.get("/api/v1/hooks").json()["hooks"]}
    assert listed[hooks[QUIET]]["pollIntervalSeconds"] == 1800
    from datetime import datetime
    due = datetime.fromisoformat(quiet["nextPollAt"].replace("Z", "+00:00")).timestamp()
    last = datetime.fromisoformat(quiet["lastPollAt"].replace("Z", "+00:00")).timestamp()
    assert due - last == pytest.approx(1800, abs=1)


def test_the_console_and_metrics_show_intervals_and_what_fixed_would_spend(two_watches, world):  # noqa: F811
    import re

    from tests.test_console import sign_in, text

    live, http, hooks, clock, _ = two_watches
    advance(live, world, clock, START + 3 * 3600)
    client = live.app.test_client()
    sign_in(client, ADMIN)
    page = text(client.get("/console/watches"))
    assert "Interval" in page and "1,800 s" in page and "New a day (est.)" in page
    quiet_row = page[page.index(f"@{QUIET}"):].split("</tr>")[0]
    assert "1,800 s" in quiet_row
    busy_row = page[page.index(f"@{HANDLE}"):].split("</tr>")[0]
    assert "14,400" in busy_row or "14," in busy_row     # ~600 an hour: about 14,400 a day
    overview = text(client.get("/console/"))
    assert "Polls a day at the current intervals" in overview and "of a fixed 300 s" in overview
    metrics = http.get(live.url + "/metrics").text
    current = float(re.search(r'connector_watch_polls_per_day\{policy="current"\} (\S+)', metrics).group(1))
    fixed = float(re.search(r'connector_watch_polls_per_day\{policy="fixed"\} (\S+)', metrics).group(1))
    assert fixed == 2 * 288
    busy = http.get(f"/api/v1/hooks/{hooks[HANDLE]}").json()["pollIntervalSeconds"]
    assert current == pytest.approx(86400 / busy + 86400 / 1800)
    followers = float(re.search(r"^connector_watch_followers_per_day (\S+)", metrics, re.M).group(1))
    assert 10_000 < followers < 20_000


def test_the_schedule_survives_a_restart(two_watches, world):  # noqa: F811
    live, http, hooks, clock, settings = two_watches
    advance(live, world, clock, START + 3 * 3600)
    svc = build_services(settings)          # a new process on the same database
    try:
        from tests.trigger_kit import make_due
        make_due(svc)
        clock.advance(60)
        poll_due_watches(svc)
    finally:
        svc.close()
    quiet = http.get(f"/api/v1/hooks/{hooks[QUIET]}").json()
    busy = http.get(f"/api/v1/hooks/{hooks[HANDLE]}").json()
    assert quiet["pollIntervalSeconds"] == 1800          # not back to the cold start's 300
    assert busy["pollIntervalSeconds"] < 300


# -- a real `connector poll` process against the fake upstream ------------------------------

def test_connector_poll_reads_a_busy_account_more_often_than_a_quiet_one(world, dumpling, serve, tmp_path):  # noqa: F811
    """Seconds instead of minutes (CONNECTOR_POLL_INTERVAL 2, bounds 1-16): the quiet watch
    drifts to 16 s between polls while the busy one, gaining ten followers a second, is read
    every second or two; the hook view shows both, and the upstream saw the difference."""
    import threading
    import time

    from tests.test_trigger_worker import log_of, start_worker, worker_env

    world.add_account(QUIET, followers=40)
    url = f"sqlite:///{tmp_path / 'poll.db'}"
    live = serve(trigger_settings(dumpling, url, poll_interval=2))
    raw, _ = live.services.keys.create(name="sched", rate_limit=100_000)   # (it asks twice a second)
    http = live.client(raw)
    hooks = {}
    for handle in (HANDLE, QUIET):
        r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": handle,
                                             "targetUrl": "http://127.0.0.1:9/hook"})
        hooks[handle] = r.json()["id"]
    stop = threading.Event()

    def gain():
        while not stop.wait(0.1):
            world.add_followers(HANDLE, 1)

    feeder = threading.Thread(target=gain, daemon=True)
    feeder.start()
    worker = start_worker(worker_env(dumpling, url, tmp_path, CONNECTOR_POLL_INTERVAL="2",
                                     CONNECTOR_POLL_MIN_INTERVAL="1", CONNECTOR_POLL_MAX_INTERVAL="16",
                                     CONNECTOR_POLL_LEASE_SECONDS="30"))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            views = {h: http.get(f"/api/v1/hooks/{hooks[h]}").json() for h in hooks}
            if views[QUIET]["pollIntervalSeconds"] == 16:
                break
            assert worker.poll() is None, log_of(worker)
            time.sleep(0.5)
        else:
            raise AssertionError(f"the quiet watch never drifted to 16 s: {views}; {log_of(worker)}")
        assert views[HANDLE]["pollIntervalSeconds"] <= 2
        assert views[HANDLE]["nextPollAt"] is not None
        reads = {h: sum(1 for r in dumpling.requests if r.endpoint == "followers"
                        and (r.json or {}).get("handle", "").lstrip("@").lower() == h) for h in hooks}
        assert reads[HANDLE] > 2 * reads[QUIET], reads
    finally:
        stop.set()
        worker.terminate()
        worker.wait(15)
        http.close()
