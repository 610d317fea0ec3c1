"""Event ids and the event shape of CONTRACT.md section 5.

The id is a pure function of the watch and the follower, so the same follower of the same
watch always has the same id, whichever process detects it and however often.
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


def event_id(watch_id: str, follower_key: str) -> str:
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
                  detected_at: float | None = None) -> dict:
    return {
        "id": event_id(watch_id, follower_key),
        "event": EVENT,
        "handle": handle,
        "follower": follower_fields(record),
        "detectedAt": iso(time.time() if detected_at is None else detected_at),
        "provider": provider,
    }


def dumps(payload: dict) -> str:
    """The one serialisation: stored, delivered and signed byte for byte."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
