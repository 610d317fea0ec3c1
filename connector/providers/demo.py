"""The demo provider: no network, no keys, deterministic synthetic accounts.

Any valid handle is an account. Its followers arrive at a steady, handle-specific pace
(one every 20-110 s) since 2025-01-01, so a New Follower trigger on a demo account fires
every minute or two. Follower ``i`` of an account is always the same person, so results
are reproducible. Lists are newest first and, like real upstreams, only the newest 5,000
can be walked.

Reserved handles exercise each error path:

================== ===========================================
``demo_private``    a private account (404)
``demo_missing``    an account that does not exist (404)
``demo_ratelimited`` the upstream's rate limit (503)
``demo_unavailable`` the upstream is down (502)
``demo_invalid``    the upstream sends malformed data (502)
``demo_authfail``   the operator's credentials are refused (500)
``demo_unprocessable`` the upstream refuses the handle (400)
================== ===========================================
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any, Callable

from ..config import Settings
from ..errors import UpstreamError
from ..records import Page, profile_record, user_record
from .base import Provider

EPOCH = 1735689600  # 2025-01-01T00:00:00Z
DEPTH_CAP = 5000
DEFAULT_COUNT = 30

RESERVED = {
    "demo_private": ("not_found", "account is private"),
    "demo_missing": ("not_found", "account does not exist"),
    "demo_ratelimited": ("rate_limited", "demo upstream rate limit"),
    "demo_unavailable": ("unavailable", "demo upstream is down"),
    "demo_invalid": ("invalid_data", "demo upstream sent malformed data"),
    "demo_authfail": ("auth_failed", "demo credentials refused"),
    "demo_unprocessable": ("could_not_process", "demo upstream refused the handle"),
}

_ADJECTIVES = ("sunny", "lazy", "brave", "quiet", "neon", "cosmic", "urban", "wild", "golden", "lucky",
               "salty", "misty", "rapid", "velvet", "pixel", "honest")
_NOUNS = ("otter", "falcon", "maple", "comet", "panda", "river", "ember", "cactus", "lagoon", "tiger",
          "waffle", "nomad", "cookie", "orbit", "fern", "mango")
_BIOS = ("Coffee first.", "Dancing through life", "Plant parent | Travel", "Making stuff with my hands",
         "Gym, food, repeat", "Sharing small joys", "Cat videos only", "", "Student. Dreamer.",
         "Just here for the recipes")


def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def _encode_cursor(ts: int) -> str:
    return "dm_" + base64.urlsafe_b64encode(str(ts).encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int | None:
    """The time a cursor stands for (None: the newest page); ValueError when it is not ours."""
    if cursor is None:
        return None
    if isinstance(cursor, int) and not isinstance(cursor, bool):
        return cursor
    if isinstance(cursor, str) and cursor.startswith("dm_"):
        raw = cursor[3:]
        return int(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode())
    raise ValueError(f"not a demo cursor: {str(cursor)[:40]!r}")


class DemoProvider(Provider):
    name = "demo"
    cursor_form = "a string starting with dm_"

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "DemoProvider":
        return cls(clock=settings.clock)

    def accepts_cursor(self, cursor: Any) -> bool:
        try:
            _decode_cursor(cursor)
        except ValueError:
            return False
        return True

    # -- the synthetic world -----------------------------------------------------

    @staticmethod
    def _check(handle: str) -> None:
        if handle in RESERVED:
            kind, detail = RESERVED[handle]
            raise UpstreamError(kind, detail, provider="demo")

    @staticmethod
    def _interval(handle: str, which: str) -> int:
        seed = _digest(handle, which)
        return 20 + seed % 91 if which == "followers" else 3600 * (6 + seed % 42)

    def _count(self, handle: str, which: str) -> int:
        """How many have followed (or been followed) by now."""
        return max(0, int(self.clock() - EPOCH) // self._interval(handle, which) + 1)

    def _member(self, handle: str, which: str, index: int) -> tuple[dict, int]:
        seed = _digest(handle, which, index)
        name = f"{_ADJECTIVES[seed % 16]}.{_NOUNS[(seed >> 4) % 16]}{seed % 9973}"
        followed_at = EPOCH + index * self._interval(handle, which)
        user = {
            "id": str(6_700_000_000_000_000_000 + seed % 10**18),
            "uniqueId": name,
            "nickname": name.replace(".", " ").title(),
            "avatarThumb": f"https://p16-sign-va.tiktokcdn.com/demo/{name}.jpeg",
            "signature": _BIOS[(seed >> 8) % len(_BIOS)],
            "verified": seed % 97 == 0,
            "secUid": "MS4wLjABAAAA" + base64.urlsafe_b64encode(seed.to_bytes(8, "big")).decode().rstrip("="),
            "privateAccount": seed % 7 == 0,
        }
        stats = {
            "followerCount": (seed >> 12) % 20000,
            "followingCount": (seed >> 20) % 2000,
            "heartCount": (seed >> 28) % 500000,
            "videoCount": (seed >> 36) % 400,
            "diggCount": (seed >> 44) % 10000,
        }
        return user_record(user, stats), followed_at

    def _page(self, which: str, handle: str, cursor: Any, count: int | None) -> Page:
        self._check(handle)
        count = min(max(1, count or DEFAULT_COUNT), 100)
        total = self._count(handle, which)
        interval = self._interval(handle, which)
        try:
            before = _decode_cursor(cursor)
        except ValueError:
            raise UpstreamError("reported_issue", f"unreadable demo cursor {str(cursor)[:40]!r}",
                                provider=self.name) from None
        newest = total - 1
        if before is not None:
            # Members who followed strictly before `before`.
            newest = min(newest, (before - EPOCH - 1) // interval) if before > EPOCH else -1
        oldest_visible = max(0, total - DEPTH_CAP)
        indexes = list(range(newest, max(oldest_visible, newest - count + 1) - 1, -1)) if newest >= oldest_visible else []
        members = [self._member(handle, which, i) for i in indexes]
        records = [record for record, _ in members]
        return Page(
            records=records,
            max_cursor=_encode_cursor(members[0][1]) if members else None,
            next_cursor=_encode_cursor(members[-1][1]) if members else None,
            has_more=bool(indexes) and indexes[-1] > oldest_visible,
            total=total + _digest(handle, "base") % 5000 if which == "followers" else total,
        )

    # -- actions -----------------------------------------------------------------

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        self._check(handle)
        seed = _digest(handle, "profile")
        user = {
            "id": str(6_600_000_000_000_000_000 + seed % 10**18),
            "shortId": "",
            "uniqueId": handle,
            "nickname": handle.replace("_", " ").replace(".", " ").title(),
            "avatarLarger": f"https://p16-sign-va.tiktokcdn.com/demo/{handle}-large.jpeg",
            "avatarMedium": f"https://p16-sign-va.tiktokcdn.com/demo/{handle}-medium.jpeg",
            "avatarThumb": f"https://p16-sign-va.tiktokcdn.com/demo/{handle}-thumb.jpeg",
            "signature": _BIOS[seed % len(_BIOS)],
            "createTime": EPOCH - seed % (5 * 365 * 86400),
            "verified": seed % 5 == 0,
            "secUid": "MS4wLjABAAAA" + base64.urlsafe_b64encode(seed.to_bytes(8, "big")).decode().rstrip("="),
            "privateAccount": False,
            "bioLink": None,
            "region": "US",
            "language": "en",
        }
        hearts = (seed >> 16) % 50_000_000
        stats = {
            "followerCount": self._page("followers", handle, None, 1).total,
            "followingCount": self._count(handle, "following"),
            "heart": hearts,
            "heartCount": hearts,
            "videoCount": (seed >> 8) % 900,
            "diggCount": (seed >> 24) % 20000,
            "friendCount": (seed >> 32) % 300,
        }
        return profile_record(user, stats, [])

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._page("followers", handle, cursor, count)

    def list_following(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        return self._page("following", handle, cursor, count)
