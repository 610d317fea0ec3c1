"""``connector simulate``: a fleet replayed under a virtual clock through the real schedule and detection.

Each watch is polled when :func:`.schedule.plan` says, exactly as :func:`.poll.poll_watch`
and :func:`.outbox.commit_poll` do it: the baseline page at the start, then walks from the
top down to the known frontier (:func:`.detect.walk`, the same page budget and frontier
run), unread gaps kept and read on, a backlog read again at once, the schedule's state
stored as the database stores it (:func:`.schedule.dump_state`). What the database would
hold (seen followers, the schedule's state, the gaps) is held in memory instead, so a
300-watch week replays in seconds; ``tests/test_simulate.py`` runs a fleet both here and
through the real worker (``poll_due_watches`` on a database, with a moved clock) and checks
that both read the same pages at the same times and detect the same followers.

A follower is detected by the first poll that reads it; its delay is that poll's time minus
its follow time. Followers who followed before the end are counted; each watch is polled
until its first poll at or after the end, so none is left waiting unseen. ``missed``:
followers never read (deeper than the upstream shows when a backlog is read).
"""

from __future__ import annotations

import heapq
import math
import multiprocessing
import os
import time
from dataclasses import dataclass, field

from ..config import Settings
from ..providers.fleet import FleetProvider
from .detect import Walk, keyed, walk
from .fleet import Fleet
from .schedule import Observation, Policy, plan, settled

__all__ = ["simulate", "figures"]


@dataclass
class _Watch:
    handle: str
    follow_times: list[float]
    state: dict | None = None
    last_poll_at: float | None = None
    status: str = "active"
    gaps: list = field(default_factory=list)
    seen: set = field(default_factory=set)
    detected: dict = field(default_factory=dict)   # follower key -> detection time
    duplicates: int = 0
    reads: int = 0


class _Replay:
    def __init__(self, fleet: Fleet, settings: Settings, policy: Policy, log: list | None):
        self.fleet, self.settings, self.policy, self.log = fleet, settings, policy, log
        self.now = fleet.start
        self.provider = FleetProvider(fleet.timelines(), clock=lambda: self.now)
        self.opts = settings.worker
        self.requests = 0

    def fetcher(self, w: _Watch):
        def fetch(cursor):
            self.requests += 1
            w.reads += 1
            if self.log is not None:
                self.log.append((w.handle, self.now, cursor))
            return self.provider.list_followers(w.handle, cursor=cursor)
        return fetch

    def create(self, w: _Watch) -> float:
        """The watch's baseline (``create_watch``): the first page, seen, never fired."""
        page = self.fetcher(w)(None)
        w.seen.update(key for key, _ in keyed(page.records))
        w.last_poll_at = self.now
        return self.now + self.settings.poll_interval

    def poll(self, w: _Watch) -> float:
        """One poll as ``poll_watch`` makes it; returns the next poll time."""
        now, budget, run = self.now, self.opts.page_budget, self.opts.frontier_run
        fetch = self.fetcher(w)
        seen = w.seen

        def is_seen(keys):
            return {k for k in keys if k in seen}

        before, since = self.requests, w.last_poll_at
        known: set = set()
        gaps = w.gaps
        draining = bool(gaps) and w.status == "backlog" and w.last_poll_at is not None \
            and now - w.last_poll_at < self.settings.poll_interval
        top = Walk(reason="frontier") if draining else walk(fetch, is_seen, run=run, max_pages=budget, known=known)
        walks, remaining = [top], budget - top.pages
        new_gaps = [] if top.finished or top.cursor is None else [{"cursor": top.cursor, "since": now}]
        for index, gap in enumerate(gaps):
            if remaining <= 0:
                new_gaps.extend(gaps[index:])
                break
            more = walk(fetch, is_seen, start=gap["cursor"], run=run, max_pages=remaining, known=known)
            remaining -= more.pages
            walks.append(more)
            if not more.finished:
                new_gaps.append({"cursor": more.cursor, "since": gap["since"]})
        pages = self.requests - before
        found = [key for result in walks for key, _ in result.new]
        for key in found:
            if key in w.detected:
                w.duplicates += 1
            else:
                w.detected[key] = now
        seen.update(found)
        w.gaps, w.status, w.last_poll_at = new_gaps, ("backlog" if new_gaps else "active"), now
        observation = None
        if pages:
            # The follow times the pages told (Page.meta["followed_at"]), by the index in each key.
            follow = [w.follow_times[int(key.rpartition(".")[2])] for key in found]
            observation = Observation(since=since, found=len(found), times=follow,
                                      full_page=top.pages > 1 or not top.finished, backlog=bool(new_gaps))
        schedule = plan(w.state, observation, now, self.policy)
        w.state = settled(schedule.state)   # (as the database would give it back)
        return now if new_gaps else schedule.next_poll_at

    def run(self) -> list[_Watch]:
        watches = [_Watch(fw.handle, fw.times) for fw in self.fleet.watches]
        queue = []
        for n, w in enumerate(watches):
            heapq.heappush(queue, (self.create(w), n))
        end = self.fleet.end
        while queue:
            when, n = heapq.heappop(queue)
            w = watches[n]
            self.now = when
            following = self.poll(w)
            if when < end:
                heapq.heappush(queue, (following, n))
        return watches


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest rank (the smallest value with at least ``q`` of the values at or below it)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def simulate(fleet: Fleet, settings: Settings, policy: str, *, log: list | None = None) -> dict:
    """Replay ``fleet`` under ``policy`` (``adaptive`` or ``fixed``) with the other settings;
    returns the figures of contract section 5b (``log`` collects every page read as
    ``(handle, time, cursor)``)."""
    started = time.perf_counter()
    replay = _Replay(fleet, settings, Policy.from_settings(settings.replace(poll_policy=policy)), log)
    watches = replay.run()
    delays, worst, missed, duplicates = [], 0.0, 0, 0
    per_watch = {}
    for fw, w in zip(fleet.watches, watches):
        own = []
        for i, followed in enumerate(fw.times[fw.initial:], start=fw.initial):
            if followed >= fleet.end:
                break
            found = w.detected.get(f"id:{fw.handle}.{i}")
            if found is None:
                missed += 1
            else:
                own.append(found - followed)
        own.sort()
        if own:
            worst = max(worst, _percentile(own, 0.95))
        delays.extend(own)
        duplicates += w.duplicates
        per_watch[fw.handle] = {"events": len(own), "detected": w.detected, "reads": w.reads,
                                "p95": _percentile(own, 0.95), "delays": sum(own)}
    delays.sort()
    return {"upstreamRequests": replay.requests, "events": len(delays), "missed": missed, "duplicates": duplicates,
            "delayMean": sum(delays) / len(delays) if delays else 0.0, "delayP50": _percentile(delays, 0.5),
            "delayP95": _percentile(delays, 0.95), "delayP99": _percentile(delays, 0.99), "worstWatchP95": worst,
            "wallSeconds": time.perf_counter() - started, "_watches": per_watch}


def figures(result: dict) -> dict:
    """The contract's keys only (the ``--json`` object of one policy)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


_JOB: tuple = ()


def _figures_of(policy: str) -> dict:
    fleet, settings = _JOB
    return figures(simulate(fleet, settings, policy))


def simulate_policies(fleet: Fleet, settings: Settings, policies: list[str]) -> dict:
    """:func:`figures` of each policy; several are replayed at once, one process each
    (forked: the fleet is not copied), when there is more than one core."""
    global _JOB
    if len(policies) < 2 or (os.cpu_count() or 1) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: figures(simulate(fleet, settings, name)) for name in policies}
    _JOB = (fleet, settings)
    try:
        with multiprocessing.get_context("fork").Pool(len(policies)) as pool:
            return dict(zip(policies, pool.map(_figures_of, policies)))
    finally:
        _JOB = ()
