"""``connector simulate``: the replay agrees with the real worker, and bad fleet files are
refused with a message, exit code 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from connector.config import Settings, WorkerSettings
from connector.providers import PROVIDERS
from connector.providers.fleet import FleetProvider
from connector.services import build_services
from connector.trigger.fleet import load_fleet
from connector.trigger.simulate import simulate
from connector.trigger.subscriptions import create_hook
from connector.trigger.tables import events, watches
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.conftest import TEST_SECRET_KEY
from tests.processes import clean_env

START = 1_767_225_600


def small_fleet() -> dict:
    """Four watches over six hours: quiet, steady, busy, and one with a burst deeper than a
    poll's page budget (a backlog read over several polls)."""
    hours = 6 * 3600
    return {"start": START, "days": hours / 86400, "watches": [
        {"handle": "quiet", "initialFollowers": 40, "followers": [5000.0, 17000.5]},
        {"handle": "steady", "initialFollowers": 10, "followers": [float(t) for t in range(100, hours, 400)]},
        {"handle": "busy", "initialFollowers": 100, "followers": [t / 2 for t in range(10, 2 * hours, 45)]},
        {"handle": "burst", "initialFollowers": 5,
         "followers": sorted([float(t) for t in range(300, hours, 900)] + [7200 + i / 10 for i in range(400)])},
    ]}


def settings_for(url: str, clock, **changes) -> Settings:
    return Settings(provider="fleet", database_url=url, allow_private_targets=True, clock=clock,
                    secret_key=TEST_SECRET_KEY,
                    worker=WorkerSettings(page_budget=4, poll_threads=2), **changes)


def through_the_worker(fleet, settings, clock, monkeypatch, pollers: int = 1):
    """The real worker on a real database: one hook per watch, then ``poll_due_watches``
    with the clock moved to each next due poll, by ``pollers`` pollers at once (each its own
    services, as processes would be). Returns (pages read, events)."""
    reads = []

    class Logged(FleetProvider):
        def list_followers(self, handle, *, cursor=None, count=None, request_source="API"):
            reads.append((handle, self.clock(), cursor))
            return super().list_followers(handle, cursor=cursor, count=count, request_source=request_source)

    monkeypatch.setattr(FleetProvider, "timelines", fleet.timelines())
    monkeypatch.setitem(PROVIDERS, "fleet", Logged)
    svc = build_services(settings)
    others = [build_services(settings) for _ in range(pollers - 1)]
    try:
        raw, _ = svc.keys.create(name="sim")
        caller = svc.keys.authenticate(raw)
        for watch in fleet.watches:
            create_hook(svc, caller, svc.manifests["new_follower"], "fleet", None, handle=watch.handle, inputs={},
                        target_url="http://127.0.0.1:9/hook", request_source="API")
        while True:
            with svc.store.connect() as conn:
                due = conn.execute(sa.select(sa.func.min(watches.c.next_poll_at))).scalar_one()
            if due >= fleet.end:
                break
            clock.now = due
            if others:
                threads = [threading.Thread(target=poll_due_watches, args=(one,)) for one in others]
                for thread in threads:
                    thread.start()
            poll_due_watches(svc)
            for thread in threads if others else ():
                thread.join()
        with svc.store.connect() as conn:
            found = conn.execute(sa.select(events.c.follower_key, events.c.detected_at)
                                 .where(events.c.baseline.is_(False))).all()
    finally:
        for one in (svc, *others):
            one.close()
    return reads, found


@pytest.mark.parametrize("policy", ["adaptive", "fixed"])
def test_the_simulator_polls_and_detects_as_the_real_worker_does(policy, tmp_path, monkeypatch):
    fleet = load_fleet(json.dumps(small_fleet()))
    clock = ManualClock(START)
    settings = settings_for(f"sqlite:///{tmp_path / 'worker.db'}", clock, poll_policy=policy)
    worker_reads, worker_events = through_the_worker(fleet, settings, clock, monkeypatch)

    sim_reads: list = []
    result = simulate(fleet, settings, policy, log=sim_reads)
    sim_events = [(key, at) for w in result["_watches"].values() for key, at in w["detected"].items()
                  if at < fleet.end]

    def order(rows):
        return sorted((h, t, str(c)) for h, t, c in rows if t < fleet.end)
    assert order(sim_reads) == order(worker_reads)            # the same pages, at the same times
    assert sorted(sim_events) == sorted((k, t) for k, t in worker_events)
    assert len(worker_events) == len({k for k, _ in worker_events})
    busy = [t for h, t, c in order(sim_reads) if h == "busy" and c == "None"]
    quiet = [t for h, t, c in order(sim_reads) if h == "quiet" and c == "None"]
    if policy == "adaptive":
        assert len(busy) > 2 * len(quiet)
    else:
        assert len(busy) == len(quiet)
    assert result["missed"] == 0 and result["duplicates"] == 0
    assert result["events"] == sum(len([t for t in w.new if t < fleet.end]) for w in fleet.watches)


def test_two_pollers_on_postgresql_never_poll_one_watch_twice(tmp_path, monkeypatch):
    """Two pollers at each moved-clock step, on PostgreSQL: together they read exactly the
    pages the simulator reads (so no watch was polled twice in a cycle, none skipped), and
    every follower fires once."""
    from tests.conftest import PG_URL, _drop_pg_schema, _pg_schema_url
    if not PG_URL:
        pytest.skip("PostgreSQL tests need CONNECTOR_TEST_DATABASE_URL")
    data = small_fleet()
    data["watches"] += [{"handle": f"extra{i}", "initialFollowers": 5,
                         "followers": [float(t) for t in range(30 * i, 21600, 200 + 60 * i)]} for i in range(12)]
    fleet = load_fleet(json.dumps(data))
    url, schema = _pg_schema_url(PG_URL)
    try:
        clock = ManualClock(START)
        settings = settings_for(url, clock)
        worker_reads, worker_events = through_the_worker(fleet, settings, clock, monkeypatch, pollers=2)
    finally:
        _drop_pg_schema(PG_URL, schema)
    sim_reads: list = []
    result = simulate(fleet, settings, "adaptive", log=sim_reads)
    tops = [(h, t) for h, t, c in worker_reads if c is None]
    assert len(tops) == len(set(tops))                         # no watch's top read twice at one time
    assert sorted((h, t, str(c)) for h, t, c in worker_reads if t < fleet.end) == \
        sorted((h, t, str(c)) for h, t, c in sim_reads if t < fleet.end)
    assert len(worker_events) == len({k for k, _ in worker_events}) == \
        sum(1 for w in result["_watches"].values() for at in w["detected"].values() if at < fleet.end)


def connector(*args, **env):
    """``connector`` in its own process; the simulator never opens the database."""
    return subprocess.run([sys.executable, "-m", "connector.cli", *args], capture_output=True, text=True,
                          env=clean_env("sqlite:////nonexistent/unused.db", **env), timeout=300)


def test_simulate_prints_the_figures_of_both_policies(tmp_path):
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(small_fleet()))
    run = connector("simulate", "--fleet", str(path), "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    keys = {"upstreamRequests", "events", "missed", "duplicates", "delayMean", "delayP50", "delayP95", "delayP99",
            "worstWatchP95", "wallSeconds"}
    assert set(out) == {"fixed", "adaptive"} and set(out["fixed"]) == keys == set(out["adaptive"])
    assert out["adaptive"]["events"] == out["fixed"]["events"] > 400
    assert out["adaptive"]["delayMean"] < out["fixed"]["delayMean"]     # (its busy watch is polled faster)
    assert out["fixed"]["missed"] == out["adaptive"]["missed"] == 0
    assert out["fixed"]["delayP95"] <= 300
    run = connector("simulate", "--fleet", str(path), "--policy", "fixed")
    assert run.returncode == 0 and "upstream reads" in run.stdout and "adaptive" not in run.stdout.split("\n", 1)[1]
    # Settings come from the environment, as for `connector poll`.
    slow = json.loads(connector("simulate", "--fleet", str(path), "--json", "--policy", "fixed",
                                CONNECTOR_POLL_INTERVAL="600").stdout)
    assert slow["fixed"]["upstreamRequests"] < out["fixed"]["upstreamRequests"]


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    (json.dumps({"start": START, "days": 1, "watches": []}), "no watches"),
    (json.dumps({"start": START, "days": 1}), "no watches"),
    (json.dumps({"start": START, "days": 1, "watches": [{"handle": "a", "followers": [5, 3]}]}),
     "watches[0].followers[1] (3) comes before the one above it (5): times must be ascending"),
    (json.dumps({"start": START, "days": 1, "watches": [{"handle": "a", "followers": [-1]}]}),
     "watches[0].followers[0] is negative"),
    (json.dumps({"start": -5, "days": 1, "watches": [{"handle": "a", "followers": []}]}), "start must be"),
    (json.dumps({"start": START, "days": 0, "watches": [{"handle": "a", "followers": []}]}), "days must be"),
    (json.dumps({"start": START, "days": 1, "watches": [{"handle": "a", "followers": ["x"]}]}),
     "followers[0] must be a number"),
    (json.dumps({"start": START, "days": 1, "watches": [{"followers": []}]}), "watches[0].handle"),
])
def test_a_bad_fleet_file_is_named_with_exit_code_2(tmp_path, content, words):
    path = tmp_path / "fleet.json"
    path.write_text(content)
    run = connector("simulate", "--fleet", str(path))
    assert run.returncode == 2
    assert words in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_missing_fleet_file_is_named(tmp_path):
    run = connector("simulate", "--fleet", str(tmp_path / "nope.json"))
    assert run.returncode == 2 and "nope.json" in run.stderr and "Traceback" not in run.stderr
