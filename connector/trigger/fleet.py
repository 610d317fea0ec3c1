"""A fleet file (``connector simulate --fleet FILE``, contract section 5b), read and checked.

``{"start": <unix s>, "days": D, "watches": [{"handle", "initialFollowers": N,
"followers": [s, ...]}]}``: each number the second after ``start`` at which one new follower
arrives, ascending. :func:`load_fleet` turns it into :class:`Fleet`, each watch's follow
times in unix seconds (the initial followers one a minute before ``start``), or raises
:class:`FleetError` naming what is wrong and where.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

INITIAL_SPACING = 60.0   # seconds between two initial followers (they followed before the start)


class FleetError(ValueError):
    """The fleet file cannot be replayed; the message names the field."""


@dataclass
class FleetWatch:
    handle: str
    initial: int
    times: list[float]       # every follower's follow time (unix s), ascending: the initial ones first

    @property
    def new(self) -> list[float]:
        return self.times[self.initial:]


@dataclass
class Fleet:
    start: float
    days: float
    watches: list[FleetWatch]

    @property
    def end(self) -> float:
        return self.start + self.days * 86400

    def timelines(self) -> dict[str, list[float]]:
        return {w.handle: w.times for w in self.watches}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_fleet(text: str | bytes, name: str = "the fleet file") -> Fleet:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FleetError(f"{name} is not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise FleetError(f"{name} must be a JSON object with start, days and watches.")
    start, days, watches = data.get("start"), data.get("days"), data.get("watches")
    if not _number(start) or start < 0:
        raise FleetError(f"{name}: start must be unix seconds (a number at least 0), got {start!r}.")
    if not _number(days) or days <= 0:
        raise FleetError(f"{name}: days must be a number above 0, got {days!r}.")
    if not isinstance(watches, list) or not watches:
        raise FleetError(f"{name}: watches must be a non-empty list (the fleet has no watches).")
    out, handles = [], set()
    for n, watch in enumerate(watches):
        where = f"{name}: watches[{n}]"
        if not isinstance(watch, dict):
            raise FleetError(f"{where} must be an object with handle, initialFollowers and followers.")
        handle, initial, followers = watch.get("handle"), watch.get("initialFollowers", 0), watch.get("followers")
        if not isinstance(handle, str) or not handle.strip():
            raise FleetError(f"{where}.handle must be a non-empty string.")
        if handle in handles:
            raise FleetError(f"{where}.handle {handle!r} appears twice.")
        handles.add(handle)
        if not isinstance(initial, int) or isinstance(initial, bool) or initial < 0:
            raise FleetError(f"{where}.initialFollowers must be a whole number at least 0, got {initial!r}.")
        if not isinstance(followers, list):
            raise FleetError(f"{where}.followers must be a list of seconds after start.")
        previous = 0.0
        for i, second in enumerate(followers):
            if not _number(second):
                raise FleetError(f"{where}.followers[{i}] must be a number of seconds, got {second!r}.")
            if second < 0:
                raise FleetError(f"{where}.followers[{i}] is negative ({second!r}): times are seconds after start.")
            if second < previous:
                raise FleetError(f"{where}.followers[{i}] ({second!r}) comes before the one above it "
                                 f"({previous!r}): times must be ascending.")
            previous = second
        times = [start - INITIAL_SPACING * (initial - i) for i in range(initial)]
        times.extend(start + s for s in followers)
        out.append(FleetWatch(handle, initial, times))
    return Fleet(float(start), float(days), out)
