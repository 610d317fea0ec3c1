"""One suite, four providers: the three seed actions over real HTTP on loopback.

The service runs on 127.0.0.1 (``serve``); dumpling, socialfetch and tiktok_research talk
to their fake upstreams (``tests.fakes``), demo to its built-in synthetic world. Every
case runs against each provider and asserts what a caller sees: seed shapes and key
order, nulls where the provider gives nothing, complete paging, and the seed's status
and message for every failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from connector.providers.demo import DEPTH_CAP, EPOCH, DemoProvider
from connector.records import (FOLLOWER_STATS_FIELDS, FOLLOWER_USER_FIELDS, PROFILE_STATS_FIELDS,
                               PROFILE_USER_FIELDS, follower_key)
from tests.fakes import FAKES, FakeUser, FakeWorld

PROVIDERS = ["dumpling", "socialfetch", "tiktok_research", "demo"]
ROUTES = {"profile": "/api/v1/get-tiktok-profile", "followers": "/api/v1/get-tiktok-user-followers",
          "following": "/api/v1/get-tiktok-user-following"}
LIST_KEYS = {"followers": "followers", "following": "followingList"}
LIST_RESPONSE_KEYS = ["maxCursor", "minCursor", "hasMore", "total"]

# Fast failure: two attempts, tiny backoff, short timeouts.
FAST = dict(upstream_max_attempts=2, upstream_backoff_base=0.01, upstream_backoff_cap=0.02,
            upstream_deadline=3.0, upstream_read_timeout=0.5, upstream_connect_timeout=0.5)

# Which seed fields each provider's upstream gives for a list entry (the rest must be null).
GIVEN_USER = {
    "dumpling": set(FOLLOWER_USER_FIELDS),
    "socialfetch": set(FOLLOWER_USER_FIELDS),
    "tiktok_research": {"uniqueId", "nickname"},
}
GIVEN_STATS = {
    "dumpling": set(FOLLOWER_STATS_FIELDS),
    "socialfetch": {"followerCount", "followingCount"},
    "tiktok_research": set(),
}
DEMO_CLOCK = EPOCH + 30 * 86400  # a young demo world: ~5,000 walkable followers, ~100 following


def truth(user: FakeUser) -> dict:
    """What the upstream knows of a user, in seed field names."""
    return {"id": user.id, "uniqueId": user.handle, "nickname": user.nickname,
            "avatarThumb": user.avatar_urls()["thumb"], "signature": user.bio, "verified": user.verified,
            "secUid": user.sec_uid, "privateAccount": user.private, "followerCount": user.follower_count,
            "followingCount": user.following_count, "heartCount": user.heart_count,
            "videoCount": user.video_count, "diggCount": user.digg_count}


def credentials(fake, wrong: bool = False) -> dict:
    """Settings fields that point the service at ``fake`` (with a refused key when ``wrong``)."""
    if fake is None:
        return {}
    name = type(fake).__name__
    if name == "FakeDumpling":
        return {"dumpling_api_key": "sk_wrong" if wrong else fake.api_key, "dumpling_base_url": fake.url}
    if name == "FakeSocialFetch":
        return {"socialfetch_api_key": "sfk_wrong" if wrong else fake.api_key, "socialfetch_base_url": fake.url}
    return {"tiktok_client_key": fake.client_key, "tiktok_base_url": fake.url,
            "tiktok_client_secret": "cs_wrong" if wrong else fake.client_secret}


def caller_key(fake, wrong: bool = False) -> str:
    if type(fake).__name__ == "FakeTikTokResearch":
        return f"{fake.client_key}:{'cs_wrong' if wrong else fake.client_secret}"
    return "key_wrong_123" if wrong else fake.api_key


@dataclass
class Backend:
    """The service on one provider, plus what the test needs to arrange upstream behaviour."""

    name: str
    serve: object
    make_settings: object
    world: FakeWorld | None = None
    fake: object = None
    service: object = None
    http: object = None
    started: list = field(default_factory=list)

    ok, private, hidden, missing = "alice", "shy", "hider", "nobody_here"

    def start(self, **overrides):
        settings = self.settings(**overrides)
        live = self.serve(settings)
        raw, _ = live.services.keys.create(name="suite")
        self.service = live
        self.http = live.client(raw)
        self.started.append(self.http)
        return self

    def settings(self, **overrides):
        base = {"provider": self.name, **FAST, **credentials(self.fake)}
        if self.name == "demo":
            base["clock"] = lambda: DEMO_CLOCK
        base.update(overrides)
        return self.make_settings(**base)

    def post(self, action: str, body: dict, **headers):
        return self.http.post(ROUTES[action], json=body, headers=headers)

    def handle_for(self, situation: str) -> str:
        """The handle that shows ``situation``; on the fakes it is arranged by injection."""
        if self.name == "demo":
            return {"private": "demo_private", "hidden": "demo_private", "missing": "demo_missing",
                    "rate_limited": "demo_ratelimited", "5xx": "demo_unavailable",
                    "malformed": "demo_invalid", "bad_shape": "demo_invalid",
                    "timeout": "demo_unavailable", "reset": "demo_unavailable"}[situation]
        attempts = FAST["upstream_max_attempts"]
        if situation in ("private", "hidden", "missing"):
            return getattr(self, situation)
        if situation == "rate_limited":
            self.fake.fail_next(attempts, status=429, retry_after=0)
        elif situation == "5xx":
            self.fake.fail_next(1, status=500)
            self.fake.fail_next(1, status=502)
        elif situation in ("malformed", "bad_shape"):
            self.fake.fail_next(1, kind=situation)
        elif situation == "timeout":
            self.fake.fail_next(attempts, kind="timeout", seconds=1.5)
        elif situation == "reset":
            self.fake.fail_next(attempts, kind="reset")
        return self.ok

    def expected(self, which: str) -> list[str] | None:
        """The list's uniqueIds, newest first, as the upstream holds it (None for demo)."""
        if self.world is None:
            return None
        return [user.handle for user, _ in self.world[self.ok].relation(which)]


@pytest.fixture(params=PROVIDERS)
def backend(request, serve, make_settings):
    name = request.param
    backend = Backend(name=name, serve=serve, make_settings=make_settings)
    if name != "demo":
        world = FakeWorld(seed=11)
        world.add_account("alice", followers=95, following=23)
        world.add_account("shy", followers=4, status="private")
        world.add_account("hider", followers=4, following=4, status="hidden")
        backend.world = world
        backend.fake = FAKES[name](world).start()
    yield backend
    for client in backend.started:
        client.close()
    if backend.fake is not None:
        backend.fake.stop()


def manifest_errors(backend, action: str) -> dict:
    key = {"profile": "get_profile", "followers": "list_followers", "following": "list_following"}[action]
    return backend.service.services.manifests[key].errors


# -- shapes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["followers", "following"])
def test_list_shape_and_values(backend, which):
    backend.start()
    r = backend.post(which, {"handle": "@Alice", "count": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == [LIST_KEYS[which], *LIST_RESPONSE_KEYS]
    records = body[LIST_KEYS[which]]
    assert records, "the first page of a non-empty list is not empty"
    assert isinstance(body["hasMore"], bool) and body["hasMore"] is True
    assert body["minCursor"] is not None
    for record in records:
        assert list(record) == ["user", "stats"]
        assert list(record["user"]) == list(FOLLOWER_USER_FIELDS)
        assert list(record["stats"]) == list(FOLLOWER_STATS_FIELDS)
    if backend.world is None:  # demo gives every field
        assert all(v is not None for r in records for part in r.values() for v in part.values())
        return
    users = {user.handle: user for user, _ in backend.world["alice"].relation(which)}
    for record in records:
        known = truth(users[record["user"]["uniqueId"]])
        for part, given in (("user", GIVEN_USER[backend.name]), ("stats", GIVEN_STATS[backend.name])):
            for key, value in record[part].items():
                assert value == (known[key] if key in given else None), (backend.name, part, key)
    total = body["total"]
    assert total == (None if backend.name == "tiktok_research" else len(users))


def test_profile_shape_and_values(backend):
    backend.start()
    r = backend.post("profile", {"handle": "https://www.tiktok.com/@alice?lang=en"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["user", "stats", "itemList"]
    assert list(body["user"]) == list(PROFILE_USER_FIELDS)
    assert list(body["stats"]) == list(PROFILE_STATS_FIELDS)
    assert body["itemList"] == []
    if backend.world is None:
        assert body["user"]["uniqueId"] == "alice"
        return
    user = backend.world["alice"].user
    assert body["user"]["uniqueId"] == "alice"
    assert body["user"]["nickname"] == user.nickname
    assert body["user"]["signature"] == user.bio
    assert body["user"]["verified"] is user.verified
    assert body["stats"]["followerCount"] == 95
    assert body["stats"]["followingCount"] == 23
    assert body["stats"]["heartCount"] == user.heart_count
    assert body["stats"]["videoCount"] == user.video_count
    if backend.name == "tiktok_research":  # the Research API gives no ids, creation time or region
        assert body["user"]["id"] is None and body["user"]["secUid"] is None
        assert body["user"]["createTime"] is None and body["stats"]["diggCount"] is None
    else:
        assert body["user"]["id"] == user.id and body["user"]["secUid"] == user.sec_uid
        assert body["user"]["createTime"] == user.created_at
    assert body["user"]["region"] in (None, "US")


# -- paging -------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["followers", "following"])
def test_paging_to_the_end_without_duplicates_or_gaps(backend, which):
    backend.start()
    seen, keys, pages, cursor = [], [], 0, None
    while True:
        body = {"handle": "alice", "count": 100 if backend.name == "demo" and which == "followers" else 10}
        if cursor is not None:
            body["minTime"] = cursor
        r = backend.post(which, body)
        assert r.status_code == 200, r.text
        data = r.json()
        seen += [record["user"]["uniqueId"] for record in data[LIST_KEYS[which]]]
        keys += [follower_key(record) for record in data[LIST_KEYS[which]]]
        pages += 1
        assert pages < 100, "paging does not end"
        if not data["hasMore"]:
            break
        assert data["minCursor"] not in (None, cursor), "the cursor must move"
        cursor = data["minCursor"]
    assert len(keys) == len(set(keys)), "a record came twice"
    expected = backend.expected(which)
    if expected is None:  # demo: everyone who followed by the demo clock, once
        assert len(keys) == min(DEPTH_CAP, DemoProvider(clock=lambda: DEMO_CLOCK)._count("alice", which))
    else:
        assert seen == expected
    assert pages >= 2


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("situation", ["private", "hidden", "missing"])
@pytest.mark.parametrize("which", ["followers", "following"])
def test_unlistable_accounts_are_404_with_the_seed_message(backend, situation, which):
    backend.start()
    handle = backend.handle_for(situation)
    r = backend.post(which, {"handle": handle})
    assert r.status_code == 404, r.text
    noun = "Followers" if which == "followers" else "Following"
    assert r.json() == {"error": f"{noun} list not found for user: {handle}"}


def test_missing_profile_is_404(backend):
    backend.start()
    handle = backend.handle_for("missing")
    r = backend.post("profile", {"handle": handle})
    assert r.status_code == 404, r.text
    assert r.json() == {"error": f"TikTok profile not found for handle: {handle}"}


@pytest.mark.parametrize("situation, status, kinds", [
    ("rate_limited", 503, ["rate_limited"]),
    ("5xx", 502, ["fetch_error", "unavailable"]),
    ("malformed", 502, ["invalid_data"]),
    ("bad_shape", 502, ["invalid_data"]),
    ("timeout", 502, ["unavailable"]),
    ("reset", 502, ["unavailable"]),
])
@pytest.mark.parametrize("action", ["followers", "profile"])
def test_upstream_failures_get_the_seed_status_and_message(backend, situation, status, kinds, action):
    backend.start()
    handle = backend.handle_for(situation)
    started = time.monotonic()
    r = backend.post(action, {"handle": handle})
    assert r.status_code == status, r.text
    messages = manifest_errors(backend, action)
    # An upstream rate limit adds whose limit it is after the seed's words.
    error = r.json()["error"].split(f" This is the {backend.name} data provider's limit")[0]
    assert error in [messages[k].format(handle=handle) for k in kinds]
    if situation == "rate_limited":
        assert int(r.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 5, "failures answer inside the deadline"
    if backend.fake is not None:
        assert backend.fake.pending_failures == 0, "every injected failure was met (retries happened)"
    # The failure is not charged: the same key still gets a normal answer.
    assert backend.post(action, {"handle": backend.handle_for("missing") if backend.name == "demo" else "alice"}
                        ).status_code in (200, 404)


def test_operator_credentials_refused_is_500_auth_failed(backend):
    if backend.name == "demo":
        backend.start()
        handle = "demo_authfail"
    else:
        backend.start(**credentials(backend.fake, wrong=True))
        handle = "alice"
    for action in ("profile", "followers", "following"):
        r = backend.post(action, {"handle": handle})
        assert r.status_code == 500, r.text
        assert r.json() == {"error": "Service authentication failed. Please contact support."}
        assert "wrong" not in r.text


def test_not_configured_is_500(backend):
    if backend.name == "demo":
        pytest.skip("demo needs no configuration")
    # The operator configured nothing at all / not this provider.
    fields = {k: None for k in credentials(backend.fake) if not k.endswith("base_url")}
    backend.start(provider=None, **fields)
    r = backend.post("followers", {"handle": "alice"})
    assert (r.status_code, r.json()) == (500, {"error": "Service not configured. Please contact support."})
    r = backend.post("followers", {"handle": "alice"}, **{"X-Provider": backend.name})
    assert r.status_code == 500  # the seed's words, then that the caller may send X-Provider-Key
    assert r.json()["error"].startswith("Service not configured. Please contact support. ")
    assert "X-Provider-Key" in r.json()["error"]


def test_caller_supplied_provider_key(backend):
    if backend.name == "demo":
        pytest.skip("demo takes no key")
    fields = {k: None for k in credentials(backend.fake) if not k.endswith("base_url")}
    backend.start(provider=None, **fields)
    headers = {"X-Provider": backend.name, "X-Provider-Key": caller_key(backend.fake)}
    r = backend.post("followers", {"handle": "alice", "count": 3}, **headers)
    assert r.status_code == 200, r.text
    assert r.json()["followers"][0]["user"]["uniqueId"] == backend.expected("followers")[0]
    # A refused caller key is the caller's to fix: 401 naming the header, never a 500.
    bad = {"X-Provider": backend.name, "X-Provider-Key": caller_key(backend.fake, wrong=True)}
    for action in ("profile", "followers", "following"):
        r = backend.post(action, {"handle": "alice"}, **bad)
        assert r.status_code == 401, r.text
        assert "X-Provider-Key" in r.json()["error"] and backend.name in r.json()["error"]
        assert "wrong" not in r.text
    # A key without a provider name, on a service with no default, is a 400 that says what to send.
    r = backend.post("followers", {"handle": "alice"}, **{"X-Provider-Key": caller_key(backend.fake)})
    assert r.status_code == 400 and "X-Provider" in r.json()["error"]


def test_unknown_provider_name_is_400(backend):
    backend.start()
    r = backend.post("followers", {"handle": "alice"}, **{"X-Provider": "myspace"})
    assert r.status_code == 400
    assert "dumpling, socialfetch, tiktok_research, demo" in r.json()["error"]
