"""Fake upstream HTTP servers for tests and benchmarks.

Each fake speaks one provider's documented wire format over real HTTP on 127.0.0.1 and
reads its data from a shared :class:`FakeWorld`::

    from tests.fakes import FakeWorld, FakeDumpling

    world = FakeWorld(seed=1)
    world.add_account("stoolpresidente", followers=120)
    with FakeDumpling(world) as dumpling:
        monkeypatch.setenv(...)   # dumpling.env has the key and base URL
        ...
        world.add_followers("stoolpresidente", 3)   # the fake sees it at once

Modules: ``world`` (data model), ``server`` (HTTP harness, request log, failure
injection), ``dumpling``, ``socialfetch``, ``tiktok_research`` (one fake each).
Run one by hand with ``python -m tests.fakes --help``.
"""

from .dumpling import FakeDumpling
from .server import FakeServer, RecordedRequest
from .socialfetch import FakeSocialFetch
from .tiktok_research import FakeTikTokResearch
from .world import FakeAccount, FakeUser, FakeWorld

FAKES = {"dumpling": FakeDumpling, "socialfetch": FakeSocialFetch, "tiktok_research": FakeTikTokResearch}

__all__ = [
    "FAKES",
    "FakeAccount",
    "FakeDumpling",
    "FakeServer",
    "FakeSocialFetch",
    "FakeTikTokResearch",
    "FakeUser",
    "FakeWorld",
    "RecordedRequest",
]
