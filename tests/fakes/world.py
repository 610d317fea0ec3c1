"""The shared data model behind every fake upstream.

A :class:`FakeWorld` holds TikTok accounts (:class:`FakeAccount`), each with a profile
(a :class:`FakeUser`) and two relation lists, ``followers`` and ``following``. Every list
is a list of ``(FakeUser, followed_at)`` pairs kept NEWEST FIRST, with strictly
decreasing timestamps (unix seconds). One world can back several fake servers at once,
so a test can ask two providers about the same account and compare.

Everything is deterministic: user number *k* of a world with seed *s* is always the same
person (id, handle, secUid, counts), and timestamps come from a world clock that starts
at ``start_time`` and only moves forward, by a pseudo-random 1-90 s per event. New
followers, re-follows and the like therefore always get a timestamp newer than anything
already in the world, and two events never share a timestamp.

Account ``status`` says what an upstream can see:

``"ok"``       profile and lists are visible
``"private"``  a private account: profile visible (``private`` is True), lists are not
``"hidden"``   a public account that hides its follower/following lists
``"missing"``  the account does not exist (same as a handle the world never heard of)

Upstreams cap how deep a list can be walked: :attr:`FakeWorld.depth_cap` (default 5000)
items from the top are reachable, anything deeper is never returned by :meth:`FakeWorld.page`.
Totals (``len(account.followers)``) are not capped.

All mutation goes through the world's methods, which hold one lock, so tests may change
the world while a fake server is answering requests on other threads.
"""

from __future__ import annotations

import bisect
import random
import re
import string
import threading
from dataclasses import dataclass, field

STATUSES = ("ok", "private", "hidden", "missing")
LISTS = ("followers", "following")
SEC_UID_PREFIX = "MS4wLjABAAAA"
USERNAME_RE = re.compile(r"^@?[A-Za-z0-9_.]{1,64}$")  # what upstreams accept as a handle

_ADJECTIVES = (
    "sunny", "lazy", "pixel", "cosmic", "salty", "tiny", "mellow", "neon", "quiet", "wild",
    "rusty", "lucky", "fuzzy", "brave", "golden", "frosty", "spicy", "velvet", "misty", "zesty",
)
_NOUNS = (
    "mango", "otter", "comet", "taco", "falcon", "pickle", "lotus", "badger", "noodle", "panda",
    "maple", "cactus", "walrus", "biscuit", "raven", "kiwi", "marble", "pepper", "sparrow", "yeti",
)
_BIOS = (
    "", "", "just vibes", "dog mom | coffee", "NYC 🗽", "making things", "link below ⬇️",
    "dance • travel • food", "not an influencer", "business: hello@example.com",
)
_SEC_UID_ALPHABET = string.ascii_letters + string.digits + "-_"


@dataclass
class FakeUser:
    """One TikTok user as the upstreams describe it; ``id`` and ``sec_uid`` never change."""

    id: str  # 19-digit numeric string
    sec_uid: str
    handle: str  # TikTok's uniqueId, lower case, no @
    nickname: str
    avatar: str
    bio: str
    verified: bool
    private: bool
    follower_count: int
    following_count: int
    heart_count: int
    video_count: int
    digg_count: int
    created_at: int = 1_500_000_000  # account creation, unix seconds
    bio_link: str | None = None

    @classmethod
    def generate(cls, seed: int | str, handle: str | None = None, serial: int | None = None) -> FakeUser:
        """A pseudo-random but reproducible user: the same seed gives the same user.

        ``serial`` ends the generated handle, which makes handles unique within a world.
        """
        rng = random.Random(str(seed))
        adjective, noun = rng.choice(_ADJECTIVES), rng.choice(_NOUNS)
        user_id = str(rng.randrange(6_700_000_000_000_000_000, 7_400_000_000_000_000_000))
        return cls(
            id=user_id,
            sec_uid=SEC_UID_PREFIX + "".join(rng.choices(_SEC_UID_ALPHABET, k=64)),
            handle=handle or f"{adjective}_{noun}{rng.randrange(10_000) if serial is None else serial}",
            nickname=(handle or f"{adjective.title()} {noun.title()}"),
            avatar=f"https://p16-sign-va.tiktokcdn.test/avatar/{user_id}.jpeg",
            bio=rng.choice(_BIOS),
            verified=rng.random() < 0.05,
            private=rng.random() < 0.1,
            follower_count=min(int(rng.paretovariate(1.1) * 40) - 40, 50_000_000),
            following_count=rng.randrange(0, 2_500),
            heart_count=rng.randrange(0, 5_000_000),
            video_count=rng.randrange(0, 800),
            digg_count=rng.randrange(0, 20_000),
            created_at=rng.randrange(1_450_000_000, 1_650_000_000),
            bio_link=rng.choice((None, None, None, f"https://linktr.ee/{adjective}{noun}")),
        )

    def avatar_urls(self) -> dict[str, str]:
        """Avatar at the three sizes the upstreams expose (large, medium, thumb)."""
        base = self.avatar.removesuffix(".jpeg")
        return {
            "large": f"{base}~c5_1080x1080.jpeg",
            "medium": f"{base}~c5_720x720.jpeg",
            "thumb": f"{base}~c5_100x100.jpeg",
        }


@dataclass
class FakeAccount:
    """A watched account: its own profile plus its two relation lists (newest first)."""

    user: FakeUser
    followers: list[tuple[FakeUser, int]] = field(default_factory=list)
    following: list[tuple[FakeUser, int]] = field(default_factory=list)
    status: str = "ok"

    @property
    def handle(self) -> str:
        return self.user.handle

    def relation(self, which: str) -> list[tuple[FakeUser, int]]:
        if which not in LISTS:
            raise ValueError(f"which must be one of {LISTS}, not {which!r}")
        return self.followers if which == "followers" else self.following


def normalize_handle(handle: str) -> str:
    """World keys are lower case without a leading @ (TikTok handles are case-insensitive)."""
    return handle.strip().removeprefix("@").lower()


class FakeWorld:
    """Thread-safe set of accounts plus a monotonic clock; see the module docstring."""

    def __init__(self, seed: int = 0, *, depth_cap: int = 5000, start_time: int = 1_600_000_000):
        self.seed = seed
        self.depth_cap = depth_cap
        self.lock = threading.RLock()
        self._accounts: dict[str, FakeAccount] = {}
        self._users_made = 0
        self._rng = random.Random(f"clock:{seed}")
        self._clock = start_time

    # -- building blocks -------------------------------------------------------------------

    def new_user(self, handle: str | None = None) -> FakeUser:
        """The world's next deterministic user (user number k of this seed)."""
        with self.lock:
            self._users_made += 1
            return FakeUser.generate(f"{self.seed}:{self._users_made}", handle, serial=self._users_made)

    def _tick(self) -> int:
        self._clock += self._rng.randint(1, 90)
        return self._clock

    @property
    def now(self) -> int:
        """The newest timestamp handed out so far (world time, unix seconds)."""
        return self._clock

    def get(self, handle: str) -> FakeAccount | None:
        """The account, or None when the world has no such handle."""
        with self.lock:
            return self._accounts.get(normalize_handle(handle))

    def __getitem__(self, handle: str) -> FakeAccount:
        account = self.get(handle)
        if account is None:
            raise KeyError(handle)
        return account

    def __contains__(self, handle: str) -> bool:
        return self.get(handle) is not None

    def _sync(self, account: FakeAccount) -> None:
        account.user.follower_count = len(account.followers)
        account.user.following_count = len(account.following)
        account.user.private = account.status == "private"

    # -- mutations --------------------------------------------------------------------------

    def add_account(
        self, handle: str, followers: int = 0, following: int = 0, *, status: str = "ok"
    ) -> FakeAccount:
        """Create an account with ``followers``/``following`` generated users."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        key = normalize_handle(handle)
        with self.lock:
            if key in self._accounts:
                raise ValueError(f"account {key!r} already exists")
            account = FakeAccount(user=self.new_user(handle=key), status=status)
            self._accounts[key] = account
            self._prepend(account, "followers", [self.new_user() for _ in range(followers)])
            self._prepend(account, "following", [self.new_user() for _ in range(following)])
            return account

    def _prepend(self, account: FakeAccount, which: str, users: list[FakeUser]) -> None:
        """Put ``users`` on top of the list; users[0] ends up newest."""
        stamped = [(user, self._tick()) for user in reversed(users)]
        stamped.reverse()
        account.relation(which)[:0] = stamped
        self._sync(account)

    def add_followers(self, handle: str, n: int, which: str = "followers") -> list[FakeUser]:
        """``n`` new users follow ``handle`` now; returned newest first, as listed."""
        with self.lock:
            users = [self.new_user() for _ in range(n)]
            self._prepend(self[handle], which, users)
            return users

    def add_following(self, handle: str, n: int) -> list[FakeUser]:
        """``handle`` starts following ``n`` new users (newest first)."""
        return self.add_followers(handle, n, which="following")

    def unfollow(self, handle: str, user_id: str, which: str = "followers") -> FakeUser | None:
        """Remove the user with ``user_id`` from the list; returns them (None if absent)."""
        with self.lock:
            account = self[handle]
            entries = account.relation(which)
            for index, (user, _) in enumerate(entries):
                if user.id == user_id:
                    del entries[index]
                    self._sync(account)
                    return user
            return None

    def refollow(self, handle: str, user: FakeUser, which: str = "followers") -> int:
        """(Re-)add ``user`` at the top with a fresh newest timestamp, which is returned."""
        with self.lock:
            self.unfollow(handle, user.id, which)
            account = self[handle]
            followed_at = self._tick()
            account.relation(which).insert(0, (user, followed_at))
            self._sync(account)
            return followed_at

    def set_status(self, handle: str, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self.lock:
            account = self[handle]
            account.status = status
            self._sync(account)

    def rename(self, handle: str, user_id: str, new_handle: str) -> FakeUser:
        """Give a user a new handle (``uniqueId``); id and secUid stay.

        ``user_id`` may be a follower/followee of ``handle`` or the account itself, in
        which case the account is re-keyed under its new handle.
        """
        with self.lock:
            account = self[handle]
            if account.user.id == user_id:
                del self._accounts[normalize_handle(handle)]
                account.user.handle = normalize_handle(new_handle)
                self._accounts[account.user.handle] = account
                return account.user
            for user, _ in account.followers + account.following:
                if user.id == user_id:
                    user.handle = normalize_handle(new_handle)  # users are shared across lists
                    return user
            raise KeyError(f"{user_id} is not related to {handle}")

    # -- reading ----------------------------------------------------------------------------

    def page(
        self,
        handle: str,
        which: str = "followers",
        before: int | None = None,
        count: int = 30,
    ) -> tuple[list[tuple[FakeUser, int]], int | None, bool]:
        """One page of a list: ``(items, next_cursor, has_more)``.

        ``items`` are the first ``count`` entries with ``followed_at < before`` (strictly;
        ``None`` means from the top), newest first, never deeper than ``depth_cap``.
        ``next_cursor`` is the ``followed_at`` of the last item (None for an empty page):
        pass it back as ``before`` for the next page, without overlap or gap.
        The account's ``status`` is not checked here; the fakes do that.
        """
        with self.lock:
            visible = self[handle].relation(which)[: self.depth_cap]
            start = 0
            if before is not None:
                # The list is sorted by decreasing time: find the first item older than before.
                start = bisect.bisect_right(visible, -before, key=lambda entry: -entry[1])
            items = visible[start : start + max(count, 0)]
            has_more = start + len(items) < len(visible)
            return items, (items[-1][1] if items else None), has_more
