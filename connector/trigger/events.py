"""Event ids and the event shapes of CONTRACT.md section 5.

The id is a pure function of the watch and the event's *subject* (an account of a list, a
milestone and its ``every``, ...), so the same subject of the same watch always has the same
id, whichever process detects it and however often. Several triggers may read one watch
(New Follower, its filtered subscriptions, Lost Follower all read followers): each event
name has subjects of its own (:func:`subject_key`).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone

EVENT = "new_follower"
FOLLOWER_FIELDS = ("id", "uniqueId", "nickname", "avatarThumb", "signature", "verified", "secUid",
                   "privateAccount")
FOLLOWER_STATS = ("followerCount", "followingCount", "heartCount", "videoCount")


GAP = "gap_detected"      # followers arrived faster than the list can be read: some are lost


def subject_key(event: str, key: str) -> str:
    """The subject of an ``event`` about ``key`` on a watch (``events.follower_key``).

    New Follower's subjects are the follower keys themselves, as before there were other
    triggers: the ids of events already delivered stay what they were."""
    return key if event == EVENT else f"{event}:{key}"


def event_id(watch_id: str, follower_key: str) -> str:
    """The id of the event whose subject (see :func:`subject_key`) is ``follower_key``."""
    return "evt_" + hashlib.sha256(f"{watch_id}:{follower_key}".encode()).hexdigest()[:24]


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with a ``Z`` (what Zapier and Make parse)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def follower_fields(record: dict) -> dict:
    """The record's user and stats flattened, plus the profile URL."""
    user, stats = record.get("user") or {}, record.get("stats") or {}
    out = {name: user.get(name) for name in FOLLOWER_FIELDS}
    out.update({name: stats.get(name) for name in FOLLOWER_STATS})
    out["profileUrl"] = f"https://www.tiktok.com/@{user['uniqueId']}" if user.get("uniqueId") else None
    return out


def event_payload(watch_id: str, follower_key: str, record: dict, *, handle: str, provider: str,
                  detected_at: float | None = None, event: str = EVENT, subject: str = "follower") -> dict:
    """An account event (``new_follower``, ``new_following``, ...): the account's fields under
    ``subject``. ``follower_key`` is the account's key; the id is that of its subject."""
    return {
        "id": event_id(watch_id, subject_key(event, follower_key)),
        "event": event,
        "handle": handle,
        subject: follower_fields(record),
        "detectedAt": iso(time.time() if detected_at is None else detected_at),
        "provider": provider,
    }


def gap_subject(trigger: str, since: float) -> str:
    """The subject of the gap that opened at ``since`` (unix seconds), told to ``trigger``'s
    subscribers: one event per lost stretch of the list and trigger."""
    return f"{GAP}:{trigger}:{since:.3f}"


def gap_payload(watch_id: str, subject: str, *, handle: str, trigger: str, missed: int,
                detected_at: float) -> dict:
    """A ``gap_detected`` event (CONTRACT.md section 5)."""
    return {
        "id": event_id(watch_id, subject),
        "event": GAP,
        "handle": handle,
        "trigger": trigger,
        "missedEstimate": missed,
        "detectedAt": iso(detected_at),
    }


def passes(filters: list[tuple[str, str, object]], fields: dict) -> bool:
    """Whether an account's fields pass a subscription's filters ``[(field, test, value)]``."""
    for name, test, value in filters:
        have = fields.get(name)
        if test == "at_least" and not (isinstance(have, (int, float)) and have >= value):
            return False
        if test == "is_true" and value and have is not True:
            return False
    return True


def dumps(payload: dict) -> str:
    """The one serialisation: stored, delivered and signed byte for byte."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
