"""The *snapshot* strategy: whole follower lists compared (Lost Follower).

A read is a *full walk*: every page of the list, paid page by page by each paying key (so a
walk costs each key ``creditsPerCheck``, the pages of one walk at the current count), on the
watch's own schedule (the smallest ``checkEveryHours`` of its subscriptions), or at the next
pass after ``POST /hooks/<id>/poll``. A poll reads at most its page budget (a polling
request's is small: Zapier waits 30 s), so a walk may take several polls: the watch stays due
until it is complete, and only the keys that paid every page of it receive what it finds.
A walk made early for a read now is paid by the keys that asked (:mod:`.billing`); its
losses also go to the keys it is *shared* with, those paid up when it started, at no cost
to them (they leave the state once told: a later walk would not find them again).
A walk cut short (an error, nobody paying) compares nothing: only full walks count.

The watch's state (``watches.state``) is the last full walk: each follower's fields as last
seen, when it was last seen, and in how many full walks since it has been missing; and the
walk under way, if any (the cursors read so far, the last one where it goes on, its pages,
the followers' keys it saw, the keys that paid all of it, and for a read now's walk the keys
it is shared with)::

    {"total", "pageSize", "perCheck", "walks", "followers": {key: [fields, lastSeenAt, misses]},
     "walk": {"cursors", "pages", "seen", "payers", ["sharers"]}}

A follower missing from two full walks in a row fires once and leaves the state; one missing
walk is not enough (a follower back in the next walk starts from zero again). The first full
walk is the baseline: nothing can be lost before it. An event's id is a pure function of the
watch, the follower and when it was last seen, so a re-follow and a second loss is a new
event. An account above ``CONNECTOR_LOST_FOLLOWER_MAX`` followers is refused at subscribe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import BadRequest
from .events import dumps, event_id, follower_fields, iso, subject_key

MISSING_WALKS = 2      # full walks a follower must be missing from to be lost
SAMPLE = "sample"      # the subject of a watch's sample (a real loss's is a follower key and a time)
HOUR = 3600.0


def pages_for(total: int, page_size: int) -> int:
    return max(1, -(-total // max(1, page_size)))


def too_many(settings, total: int) -> BadRequest:
    limit = settings.lost_follower_max
    return BadRequest(f"This account has {total:,} followers, more than Lost Follower can watch "
                      f"(CONNECTOR_LOST_FOLLOWER_MAX = {limit:,}): each check reads the whole list.")


def load(raw: str | None) -> dict:
    state = json.loads(raw) if raw else {}
    state.setdefault("followers", {})
    state.setdefault("walks", 0)
    return state


def initial_snapshot(settings, page, cost: int) -> str:
    """A new watch's state from its first page (nothing seen yet: its first full walk is the
    baseline); :class:`BadRequest` naming the limit above ``CONNECTOR_LOST_FOLLOWER_MAX``."""
    total = page.total if isinstance(page.total, int) else len(page.records)
    if total > settings.lost_follower_max:
        raise too_many(settings, total)
    size = max(1, len(page.records))
    return json.dumps({"total": total, "pageSize": size, "perCheck": pages_for(total, size) * cost,
                       "walks": 0, "followers": {}})


def check_limit(settings, watch) -> None:
    """Refuse a subscriber of an existing snapshot watch whose account grew above the limit."""
    total = load(watch.get("state")).get("total")
    if isinstance(total, int) and total > settings.lost_follower_max:
        raise too_many(settings, total)


def credits_per_check(watch) -> int | None:
    return load(watch.get("state") if watch is not None else None).get("perCheck")


def check_every(manifest, sub) -> float:
    """A subscription's ``checkEveryHours``, in seconds."""
    inputs = json.loads(sub["inputs"]) if sub["inputs"] else {}
    default = next(s["default"] for s in manifest.inputs if s["key"] == "checkEveryHours")
    return float(inputs.get("checkEveryHours") or default) * HOUR


def next_walk(manifest, subs, now: float, silent=()) -> float:
    """When the watch's next full walk is due: its most frequent subscription's schedule."""
    periods = [check_every(manifest, sub) for sub in subs
               if sub["event"] == manifest.event and sub["status"] not in silent]
    return now + (min(periods) if periods else 24 * HOUR)


def sample_event(manifest, watch, now: float) -> dict:
    """The ``events`` row of a first polling call's sample (never delivered): the manifest's
    sample about this watch. No follower is lost before two full walks, and Zapier and Make
    map their fields from a first call's results."""
    subject = subject_key(manifest.event, SAMPLE)
    payload = {**manifest.sample, "id": event_id(watch["id"], subject), "handle": watch["handle"],
               "detectedAt": iso(now), "provider": watch["provider"]}
    return {"id": payload["id"], "watch_id": watch["id"], "follower_key": subject, "event": manifest.event,
            "payload": dumps(payload), "detected_at": now, "baseline": True}


@dataclass
class Walked:
    """What one poll read of a walk: its records ``[(key, record)]``, its pages, the keys that
    paid every one of them, the cursors of the walk so far when it goes on at the next poll
    (None: the walk is complete), the walk it continued (None: it started one), and the keys
    a read now's walk is shared with (None: a regular walk)."""
    read: list
    pages: int
    payers: frozenset
    cursors: list | None = None
    so_far: dict | None = None
    sharers: frozenset | None = None


def walk_under_way(state: dict, watch) -> dict | None:
    """The walk a poll continues: the one saved by the watch's last poll, unless that poll
    failed or nobody could pay it (a walk cut short is dropped; the next one starts over)."""
    return state.get("walk") if watch["last_error"] is None else None


def snapshot_events(manifest, watch, subs, walked: Walked, now: float, silent=()):
    """Add what a poll read to the walk under way; once the walk is complete, compare it with
    the stored one. Returns the lost followers' events (oldest loss first), their recipients
    ``[(hook_ids, poll_ids)]`` and the watch's new state."""
    state = load(watch.get("state"))
    state.pop("walk", None)
    so_far = walked.so_far or {"cursors": [], "pages": 0, "seen": [], "payers": None}
    followers = state["followers"]
    for key, record in walked.read:     # seen: not missing, even if this walk is never finished
        followers[key] = [follower_fields(record), now, 0]
    seen = so_far["seen"] + [key for key, _ in walked.read]
    payers = walked.payers if so_far["payers"] is None else walked.payers & frozenset(so_far["payers"])
    pages = so_far["pages"] + walked.pages
    if walked.cursors is not None:
        state["walk"] = {"cursors": walked.cursors, "pages": pages, "seen": seen, "payers": sorted(payers)}
        if walked.sharers is not None:
            state["walk"]["sharers"] = sorted(walked.sharers)
        return [], [], json.dumps(state, separators=(",", ":"))
    seen, lost = set(seen), []
    for key, (fields, at, misses) in list(followers.items()):
        if key in seen:
            continue
        if misses + 1 >= MISSING_WALKS:
            lost.append((key, fields, at))
            del followers[key]
        else:
            followers[key][2] = misses + 1
    total = len(seen)
    size = state.get("pageSize") or max(1, -(-total // max(1, pages)))
    new_state = {"total": total, "pageSize": size, "perCheck": pages_for(total, size) * manifest.cost,
                 "walks": state["walks"] + 1, "followers": followers}
    targets = ([], [])
    receivers = payers | (walked.sharers or frozenset())
    for sub in subs:
        if sub["event"] == manifest.event and sub["key_id"] in receivers and sub["status"] not in silent:
            (targets[0] if sub["kind"] == "hook" else targets[1]).append(sub["id"])
    rows = []
    for key, fields, at in sorted(lost, key=lambda item: (item[2], item[0])):
        subject = subject_key(manifest.event, f"{key}:{at}")
        payload = {"id": event_id(watch["id"], subject), "event": manifest.event, "handle": watch["handle"],
                   manifest.subject: fields, "lastSeenAt": iso(at), "detectedAt": iso(now),
                   "provider": watch["provider"]}
        rows.append({"id": payload["id"], "watch_id": watch["id"], "follower_key": subject, "event": manifest.event,
                     "payload": dumps(payload), "detected_at": now, "baseline": False})
    return rows, [(list(targets[0]), list(targets[1])) for _ in rows], json.dumps(new_state, separators=(",", ":"))
