"""When a watch is polled next: one pure function from what the watch has seen to its next poll.

:func:`plan` takes the watch's estimator state (``None`` for a new watch), what this poll
saw (:class:`Observation`), the time and the :class:`Policy` (from the settings), and
returns the new state and the next poll time. ``connector poll``, polls made inside web
requests (both through :func:`.outbox.commit_poll`) and ``connector simulate`` call it alone.

What it estimates, per watch:

- the arrival rate over 24 hourly buckets (the time-of-day profile), each a decayed count of
  followers and of seconds watched (half-life :data:`PROFILE_HALF_LIFE`, so it learns over
  days). Counts over exposure is the unbiased estimate of a Poisson rate from what polls
  found (Cho and Garcia-Molina's setting, where a poll sees how many changes, not just
  whether one happened); where the provider tells follow times, each follower goes to the
  hour it followed in, else a poll's count is spread over the hours it covered. A bucket is
  shrunk toward the watch's mean rate (:data:`PRIOR_FOLLOWERS`: a quiet watch's hours stay
  near its mean, a busy watch's show its cycle) and smoothed with its neighbours, so an
  hour seen little does not swing the schedule;
- the recent rate (half-life :data:`RECENT_HALF_LIFE`), and bursts: a poll that finds many
  times what was expected, or a full page of new followers, is followed at the minimum
  interval, not after the profile learns it (that next poll measures how fast it runs).

How it chooses (the *adaptive* policy): the expected rate ``lam`` at the next poll, in
followers per reference interval ``x = lam * T``, gives the interval:

- busy watches (``x >= BUSY``) carry almost all events, so they decide the event-weighted
  delay: never slower than ``PIN * T``, and faster as ``T * sqrt(2 / x)``, the square-root
  rule that gives the least mean delay for the reads (Sia, Cho and Cho 2007);
- quiet watches carry few events, so the reads are saved there: ``T * sqrt(1 / x)``,
  at least ``T``, drifting up to the maximum. Their events are the tail that the p95 of
  the fleet allows.

Cold start: the reference interval ``T`` until :data:`COLD_POLLS` polls were seen; an
interval at most doubles from one poll to the next (a quiet watch drifts to the maximum);
it falls at once. Everything is bounded by ``[minimum, maximum]``. A poll that left a
backlog is followed at once (as under ``fixed``). The *fixed* policy polls every ``T`` and
still keeps the estimate (the console shows it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Observation", "Plan", "Policy", "plan", "interval_for", "rate_per_day", "load_state", "dump_state",
           "settled", "POLICIES"]

POLICIES = ("adaptive", "fixed")
HOUR, DAY = 3600.0, 86400.0
HOURS = 24
PROFILE_HALF_LIFE = 4 * DAY
RECENT_HALF_LIFE = 1800.0
PRIOR_FOLLOWERS = 1.0    # each hour bucket is shrunk toward the mean as if this many had been seen at the mean
COLD_POLLS = 3           # polls at the reference interval before the estimate is used
GROWTH = 2.0             # an interval at most doubles from one poll to the next
BUSY = 0.3               # expected followers per reference interval from which a watch is "busy"
PIN = 0.9                # a busy watch is never polled slower than PIN * T
BURST_FACTOR = 3.0       # a poll that finds this many times what was expected (and BURST_MIN) is a burst
BURST_MIN = 5
RECENT_MIN = 3           # followers the recent rate needs before it counts
MAX_WINDOW = DAY         # a poll after a long pause counts at most this much exposure


@dataclass(frozen=True)
class Policy:
    name: str = "adaptive"       # adaptive | fixed
    reference: float = 300.0     # CONNECTOR_POLL_INTERVAL: fixed's interval, adaptive's cold start
    minimum: float = 60.0
    maximum: float = 1800.0

    @classmethod
    def from_settings(cls, settings) -> "Policy":
        return cls(settings.poll_policy, float(settings.poll_interval), float(settings.poll_min_interval),
                   float(settings.poll_max_interval))


@dataclass(frozen=True)
class Observation:
    """What one successful poll saw: the followers it found new since the previous poll
    (``since``: when that was), their follow times when the provider tells them, whether a
    page was full of new followers, and whether it left a backlog."""
    since: float | None
    found: int = 0
    times: Sequence[float] | None = None
    full_page: bool = False
    backlog: bool = False


@dataclass(frozen=True)
class Plan:
    state: dict
    next_poll_at: float
    interval: float


def _empty() -> dict:
    return {"at": None, "c": [0.0] * HOURS, "e": [0.0] * HOURS, "rc": 0.0, "re": 0.0, "i": None, "n": 0}


def load_state(raw: str | dict | None) -> dict:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return _empty()
    try:
        state = json.loads(raw)
    except ValueError:
        return _empty()
    return state if isinstance(state, dict) and len(state.get("c") or ()) == HOURS else _empty()


def settled(state: dict) -> dict:
    """The state as the database keeps it (counts to 1/1000, seconds to 1/10): what
    :func:`dump_state` writes and :func:`load_state` reads back, without the text."""
    return {**state, "c": [round(x, 3) for x in state["c"]], "e": [round(x, 1) for x in state["e"]],
            "rc": round(state["rc"], 3), "re": round(state["re"], 1)}


def dump_state(state: dict) -> str:
    return json.dumps(settled(state), separators=(",", ":"))


def _hour(t: float) -> int:
    return int(t // HOUR) % HOURS


def _decay(state: dict, now: float) -> None:
    at = state["at"]
    if at is not None and now > at:
        p = 0.5 ** ((now - at) / PROFILE_HALF_LIFE)
        state["c"] = [x * p for x in state["c"]]
        state["e"] = [x * p for x in state["e"]]
        r = 0.5 ** ((now - at) / RECENT_HALF_LIFE)
        state["rc"] *= r
        state["re"] *= r
    state["at"] = now if at is None else max(at, now)


def _add(state: dict, obs: Observation, now: float) -> None:
    start = max(obs.since if obs.since is not None else now, now - MAX_WINDOW)
    span = max(now - start, 0.0)
    c, e = state["c"], state["e"]
    t = start
    while t < now:   # exposure (and, without follow times, the count) by the hours covered
        edge = min(now, (math.floor(t / HOUR) + 1) * HOUR)
        h = _hour(t)
        e[h] += edge - t
        if obs.times is None and obs.found:
            c[h] += obs.found * (edge - t) / span
        t = edge
    if obs.times is not None:
        for when in obs.times:
            c[_hour(min(max(when, start), now))] += 1
    elif obs.found and span == 0:
        c[_hour(now)] += obs.found
    state["rc"] += obs.found
    state["re"] += span


def mean_rate(state: dict) -> float:
    """Followers a second over the profile's memory (0 with nothing seen)."""
    exposure = sum(state["e"])
    if exposure <= 0:
        return 0.0
    return max(sum(state["c"]), 0.5) / exposure   # (half a follower: never seen one is not rate 0)


def rate_per_day(state: dict) -> float | None:
    """Estimated followers a day (None before the first poll was seen)."""
    return mean_rate(state) * DAY if sum(state["e"]) > 0 else None


def profile_rate(state: dict, t: float) -> float:
    """The expected rate at ``t`` from the time-of-day profile (followers a second)."""
    mean = mean_rate(state)
    if mean <= 0:          # polls so close together that no time was watched yet: no rate known
        return 0.0
    c, e, h = state["c"], state["e"], _hour(t)
    count = (c[h - 1] + 2 * c[h] + c[(h + 1) % HOURS]) / 4
    exposure = (e[h - 1] + 2 * e[h] + e[(h + 1) % HOURS]) / 4
    return (count + PRIOR_FOLLOWERS) / (exposure + PRIOR_FOLLOWERS / mean)


def _recent(state: dict) -> float:
    return state["rc"] / state["re"] if state["rc"] >= RECENT_MIN and state["re"] > 0 else 0.0


def interval_for(rate: float, policy: Policy) -> float:
    """The adaptive interval for an expected ``rate`` (followers a second), within the bounds."""
    T = policy.reference
    x = rate * T
    if x >= BUSY:
        interval = min(PIN * T, T * math.sqrt(2 / x))
    else:
        interval = max(T, T / math.sqrt(x)) if x > 0 else policy.maximum
    return min(max(interval, policy.minimum), policy.maximum)


def plan(state: dict | str | None, obs: Observation | None, now: float, policy: Policy) -> Plan:
    """The new state and the next poll. ``obs`` None: the poll failed (nothing was read):
    the state stays and the watch keeps its interval."""
    state = {**load_state(state)}
    state["c"], state["e"] = list(state["c"]), list(state["e"])   # (never the caller's lists)
    previous = policy.reference if policy.name == "fixed" else (state["i"] or policy.reference)
    if obs is None:
        return Plan(state, now + previous, previous)
    expected = max(profile_rate(state, now), _recent(state)) if state["n"] >= COLD_POLLS else 0.0
    _decay(state, now)
    _add(state, obs, now)
    state["n"] += 1
    if policy.name == "fixed":
        state["i"] = policy.reference
        return Plan(state, now + policy.reference, policy.reference)
    if state["n"] <= COLD_POLLS:
        interval = policy.reference
    else:
        window = now - obs.since if obs.since is not None else 0.0
        if obs.full_page or (obs.found >= BURST_MIN and obs.found > BURST_FACTOR * expected * window):
            interval = policy.minimum     # a burst: how fast it runs is what the next poll measures
        else:
            recent = _recent(state)
            interval = interval_for(max(profile_rate(state, now), recent), policy)
            # The rate half an interval ahead (a rising hour is met, not trailed).
            interval = interval_for(max(profile_rate(state, now + interval / 2), recent), policy)
            interval = min(interval, GROWTH * previous, policy.maximum)
    state["i"] = interval
    return Plan(state, now if obs.backlog else now + interval, interval)
