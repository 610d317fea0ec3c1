"""The record shapes every provider returns, whatever its upstream gives.

Follower/following records and profiles follow the Dumpling seed documents. A field a
provider does not give is ``None``, never invented: build records with these helpers so
the field set is always complete and always in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FOLLOWER_USER_FIELDS = ("id", "uniqueId", "nickname", "avatarThumb", "signature", "verified",
                        "secUid", "privateAccount")
FOLLOWER_STATS_FIELDS = ("followerCount", "followingCount", "heartCount", "videoCount", "diggCount")

PROFILE_USER_FIELDS = ("id", "shortId", "uniqueId", "nickname", "avatarLarger", "avatarMedium",
                       "avatarThumb", "signature", "createTime", "verified", "secUid",
                       "privateAccount", "bioLink", "region", "language")
PROFILE_STATS_FIELDS = ("followerCount", "followingCount", "heart", "heartCount", "videoCount",
                        "diggCount", "friendCount")


def as_text(value: Any) -> str | None:
    """An upstream value that must be a string, else ``None`` (never coerced or invented)."""
    return value if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    """An upstream value that must be an integer (not a bool), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pick(source: dict | None, names: tuple[str, ...]) -> dict:
    if type(source) is dict and tuple(source) == names:   # already the record's shape: copy it whole
        return source.copy()
    source = source or {}
    return {name: source.get(name) for name in names}


def user_record(user: dict | None, stats: dict | None) -> dict:
    """One entry of a followers or following list: ``{"user": {...}, "stats": {...}}``."""
    return {"user": _pick(user, FOLLOWER_USER_FIELDS), "stats": _pick(stats, FOLLOWER_STATS_FIELDS)}


def user_records(entries: list) -> list[dict] | None:
    """:func:`user_record` of every ``{"user": {...}, "stats": {...}}`` entry of an upstream
    list, in one loop; ``None`` when an entry is not an object with a ``user`` object (a
    ``stats`` that is not an object counts as absent)."""
    out = []
    for entry in entries:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            return None
        stats = entry.get("stats")
        out.append({"user": _pick(user, FOLLOWER_USER_FIELDS),
                    "stats": _pick(stats if isinstance(stats, dict) else None, FOLLOWER_STATS_FIELDS)})
    return out


def profile_record(user: dict | None, stats: dict | None, items: list | None = None) -> dict:
    return {"user": _pick(user, PROFILE_USER_FIELDS), "stats": _pick(stats, PROFILE_STATS_FIELDS),
            "itemList": list(items or [])}


@dataclass
class Page:
    """One page of a followers or following list, newest first.

    ``next_cursor`` is what the caller passes back as ``minTime`` (the response's
    ``minCursor``); ``max_cursor`` marks the newest record of the page.
    """

    records: list[dict]
    next_cursor: Any = None
    max_cursor: Any = None
    has_more: bool = False
    total: int | None = None
    meta: dict = field(default_factory=dict)

    def to_response(self, list_key: str) -> dict:
        return {list_key: self.records, "maxCursor": self.max_cursor, "minCursor": self.next_cursor,
                "hasMore": self.has_more, "total": self.total}


def follower_key(record: dict) -> str:
    """The stable identity of a follower: ``id``, else ``secUid``, else the handle."""
    user = record.get("user") or {}
    value = user.get("id")
    if value is not None and value != "":   # (the usual case first: every walk keys every record)
        return f"id:{value}"
    for prefix, name in (("sec", "secUid"), ("h", "uniqueId")):
        value = user.get(name)
        if value not in (None, ""):
            return f"{prefix}:{str(value).lower() if name == 'uniqueId' else value}"
    raise ValueError("follower record has no id, secUid or uniqueId")
