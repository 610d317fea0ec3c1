"""The fake upstreams speak their providers' wire formats (real HTTP on loopback)."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes import FakeDumpling, FakeSocialFetch, FakeTikTokResearch, FakeWorld

DUMPLING_AUTH = {"Authorization": "Bearer sk_test"}
SF_AUTH = {"x-api-key": "sfk_test"}
TOKEN_FORM = {"client_key": "ck_test", "client_secret": "cs_test", "grant_type": "client_credentials"}


@pytest.fixture(scope="module")
def http():
    """One client for the module: a fresh httpx client per call costs ~30 ms."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def world() -> FakeWorld:
    world = FakeWorld(seed=7)
    world.add_account("alice", followers=95, following=12)
    world.add_account("shy", followers=5, status="private")
    world.add_account("hider", followers=5, status="hidden")
    return world


@pytest.fixture
def dumpling(world):
    with FakeDumpling(world) as fake:
        yield fake


@pytest.fixture
def socialfetch(world):
    with FakeSocialFetch(world) as fake:
        yield fake


@pytest.fixture
def research(world):
    with FakeTikTokResearch(world) as fake:
        yield fake


def ids(world: FakeWorld, handle: str, which: str = "followers") -> list[str]:
    return [user.id for user, _ in world[handle].relation(which)]


def research_token(http: httpx.Client, fake: FakeTikTokResearch) -> dict[str, str]:
    token = http.post(f"{fake.url}/v2/oauth/token/", data=TOKEN_FORM).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


# -- world ------------------------------------------------------------------------------------


def test_world_is_deterministic_newest_first_and_tracks_changes():
    a, b = FakeWorld(seed=3), FakeWorld(seed=3)
    alice = a.add_account("alice", followers=10)
    b.add_account("alice", followers=10)
    assert ids(a, "alice") == ids(b, "alice")
    user = alice.followers[0][0]
    assert len(user.id) == 19 and user.id.isdigit() and user.sec_uid.startswith("MS4wLjABAAAA")
    stamps = [ts for _, ts in alice.followers]
    assert stamps == sorted(stamps, reverse=True) and len(set(stamps)) == len(stamps)

    new = a.add_followers("alice", 2)
    assert [u for u, _ in alice.followers[:2]] == new and alice.followers[0][1] > stamps[0]
    oldest = alice.followers[-1][0]
    a.refollow("alice", oldest)
    assert alice.followers[0][0] is oldest and len(alice.followers) == 12
    a.unfollow("alice", oldest.id)
    a.rename("alice", new[0].id, "renamed")
    assert oldest.id not in ids(a, "alice") and alice.followers[0][0].handle == "renamed"
    assert alice.user.follower_count == 11

    items, cursor, has_more = a.page("alice", before=alice.followers[3][1], count=2)
    assert [u for u, _ in items] == [alice.followers[4][0], alice.followers[5][0]]
    assert cursor == alice.followers[5][1] and has_more
    a.depth_cap = 6
    assert a.page("alice", before=cursor, count=5)[0] == [] and not a.page("alice", count=6)[2]


# -- Dumpling ---------------------------------------------------------------------------------


def test_dumpling_walk_visits_every_follower_once_even_while_new_ones_arrive(http, dumpling, world):
    expected, seen, body = ids(world, "alice"), [], {"handle": "@alice", "count": 20}
    while True:
        page = http.post(f"{dumpling.url}/api/v1/get-tiktok-user-followers", json=body, headers=DUMPLING_AUTH)
        assert page.status_code == 200 and page.headers["X-RateLimit-Limit"] == "1000"
        data = page.json()
        seen += [item["user"]["id"] for item in data["followers"]]
        assert data["total"] >= 95 and set(data["followers"][0]) == {"user", "stats"}
        world.add_followers("alice", 1)  # arrives on top: must not disturb the walk
        if not data["hasMore"]:
            break
        body["minTime"] = data["minCursor"]
    assert seen == expected

    following = http.post(
        f"{dumpling.url}/api/v1/get-tiktok-user-following", json={"handle": "alice"}, headers=DUMPLING_AUTH
    ).json()
    assert [item["user"]["id"] for item in following["followingList"]] == ids(world, "alice", "following")
    assert following["hasMore"] is False and following["total"] == 12


def test_dumpling_profile_and_request_source(http, dumpling, world):
    response = http.post(
        f"{dumpling.url}/api/v1/get-tiktok-profile",
        json={"handle": "shy", "requestSource": "ZAPIER"},
        headers=DUMPLING_AUTH,
    )
    data = response.json()
    assert response.status_code == 200 and data["itemList"] == []
    assert data["user"]["uniqueId"] == "shy" and data["user"]["privateAccount"] is True
    assert data["stats"]["followerCount"] == 5
    assert dumpling.request_sources == ["ZAPIER"]


@pytest.mark.parametrize("error_form", ["string", "object"])
def test_dumpling_errors_use_the_seed_messages(http, world, error_form):
    def message(response):
        error = response.json()["error"]
        return error if error_form == "string" else error["message"]

    with FakeDumpling(world, error_form=error_form, credits=2) as fake:
        url = f"{fake.url}/api/v1/get-tiktok-user-followers"
        cases = [
            (http.post(url, json={"handle": "alice"}), 401, "API key is invalid or missing."),
            (http.post(url, content=b"{nope", headers=DUMPLING_AUTH), 400, "Invalid JSON in request body"),
            (
                http.post(url, json={"handle": ""}, headers=DUMPLING_AUTH),
                400,
                "'handle' parameter is required and must be a non-empty string.",
            ),
            (
                http.post(url, json={"handle": "https://www.tiktok.com/@alice"}, headers=DUMPLING_AUTH),
                400,
                "The followers service could not process the handle.",
            ),
        ]
        for handle in ("ghost", "shy", "hider"):
            response = http.post(url, json={"handle": handle}, headers=DUMPLING_AUTH)
            cases.append((response, 404, f"Followers list not found for user: {handle}"))
        cases.append((http.post(url, json={"handle": "alice"}, headers=DUMPLING_AUTH), 200, None))
        profile = f"{fake.url}/api/v1/get-tiktok-profile"
        cases.append(
            (http.post(profile, json={"handle": "alice"}, headers=DUMPLING_AUTH), 403,
             "Insufficient credits. Please top up your account.")
        )
        fake.fail_next(status=503, endpoint="profile")
        cases.append(
            (http.post(profile, json={"handle": "alice"}, headers=DUMPLING_AUTH), 503,
             "Rate limit exceeded with the profile service. Please try again later.")
        )
        for response, status, text in cases:
            assert response.status_code == status
            if text:
                assert message(response) == text
                assert (response.json().get("status") == "error") == (error_form == "object")


# -- Social Fetch -----------------------------------------------------------------------------


def test_socialfetch_walk_with_opaque_cursor(http, socialfetch, world):
    url, seen, params = f"{socialfetch.url}/v1/tiktok/profiles/alice/followers", [], {"trim": "true"}
    while True:
        body = http.get(url, params=params, headers=SF_AUTH).json()
        data = body["data"]
        assert data["lookupStatus"] == "found" and data["totalFollowers"] == 95
        assert body["meta"]["version"] == "v1" and body["meta"]["creditsCharged"] == 1
        assert "avatarUrls" not in data["followers"][0] and "bio" not in data["followers"][0]
        seen += [item["platformUserId"] for item in data["followers"]]
        if not data["page"]["hasMore"]:
            assert data["page"]["nextCursor"] is None
            break
        assert not data["page"]["nextCursor"].isdigit()
        params["cursor"] = data["page"]["nextCursor"]
    assert seen == ids(world, "alice") and len(socialfetch.requests) == 5  # pages of 20

    full = http.get(f"{socialfetch.url}/v1/tiktok/profiles/alice/following", headers=SF_AUTH).json()["data"]
    assert full["totalFollowing"] == 12 and set(full["accounts"][0]["avatarUrls"]) == {"large", "medium", "thumb"}
    wrong_list = http.get(
        f"{socialfetch.url}/v1/tiktok/profiles/alice/following", params={"cursor": params["cursor"]}, headers=SF_AUTH
    )
    assert wrong_list.status_code == 400 and wrong_list.json()["error"]["code"] == "bad_request"


def test_socialfetch_lookup_statuses_are_http_200(http, socialfetch):
    for handle, status in (("shy", "private"), ("hider", "hidden"), ("ghost", "not_found")):
        response = http.get(f"{socialfetch.url}/v1/tiktok/profiles/{handle}/followers", headers=SF_AUTH)
        data = response.json()["data"]
        assert response.status_code == 200 and data["lookupStatus"] == status
        assert data["followers"] == [] and data["totalFollowers"] is None
        assert data["page"] == {"nextCursor": None, "hasMore": False}

    profiles = {
        handle: http.get(f"{socialfetch.url}/v1/tiktok/profiles/{handle}", headers=SF_AUTH).json()["data"]
        for handle in ("alice", "shy", "hider", "ghost")
    }
    assert {h: p["lookupStatus"] for h, p in profiles.items()} == {
        "alice": "found", "shy": "private", "hider": "found", "ghost": "not_found"
    }
    assert profiles["alice"]["metrics"]["followers"] == 95 and profiles["shy"]["profile"]["privateAccount"]
    assert profiles["ghost"]["profile"] is None and profiles["ghost"]["metrics"] is None


def test_socialfetch_errors(http, socialfetch):
    url = f"{socialfetch.url}/v1/tiktok/profiles/alice/followers"
    unauthorized = http.get(url, headers={"x-api-key": "nope"})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "unauthorized"
    assert http.get(url, params={"cursor": "!!"}, headers=SF_AUTH).json()["error"]["code"] == "bad_request"
    socialfetch.fail_next(status=429)
    limited = http.get(url, headers=SF_AUTH)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json() == {"error": {"code": "temporarily_unavailable", "message": limited.json()["error"]["message"]}}
    socialfetch.credits = 0
    assert http.get(url, headers=SF_AUTH).json()["error"]["code"] == "insufficient_credits"


# -- TikTok Research --------------------------------------------------------------------------


def test_research_walk_without_overlap(http, research, world):
    auth, seen, body = research_token(http, research), [], {"username": "alice", "max_count": 30}
    while True:
        response = http.post(f"{research.url}/v2/research/user/followers/", json=body, headers=auth)
        payload = response.json()
        assert response.status_code == 200 and payload["error"]["code"] == "ok"
        seen += [item["username"] for item in payload["data"]["user_followers"]]
        if not payload["data"]["has_more"]:
            break
        body["cursor"] = payload["data"]["cursor"]
    assert seen == [user.handle for user, _ in world["alice"].followers]
    assert research.token_requests == 1


def test_research_inclusive_cursor_repeats_the_boundary_item(http, world):
    with FakeTikTokResearch(world, inclusive_cursor=True) as fake:
        auth, url = research_token(http, fake), f"{fake.url}/v2/research/user/following/"
        first = http.post(url, json={"username": "alice", "max_count": 5}, headers=auth).json()["data"]
        second = http.post(
            url, json={"username": "alice", "max_count": 5, "cursor": first["cursor"]}, headers=auth
        ).json()["data"]
    assert first["cursor"] == world["alice"].following[4][1]
    assert second["user_following"][0] == first["user_following"][-1]


def test_research_token_expiry_and_bad_credentials(http, research):
    auth, url = research_token(http, research), f"{research.url}/v2/research/user/followers/"
    assert http.post(url, json={"username": "alice"}, headers=auth).status_code == 200
    research.expire_all_tokens()
    expired = http.post(url, json={"username": "alice"}, headers=auth)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "access_token_invalid"
    assert http.post(url, json={"username": "alice"}, headers=research_token(http, research)).status_code == 200
    assert research.token_requests == 2

    bad = http.post(f"{research.url}/v2/oauth/token/", data={**TOKEN_FORM, "client_secret": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client" and "log_id" in bad.json()

    with FakeTikTokResearch(FakeWorld(), token_ttl=0) as short_lived:
        response = http.post(
            f"{short_lived.url}/v2/research/user/info/?fields=display_name",
            json={"username": "x"},
            headers=research_token(http, short_lived),
        )
    assert response.json()["error"]["code"] == "access_token_invalid"


def test_research_user_info_and_errors(http, research):
    auth = research_token(http, research)

    def call(path, body, status, code):
        response = http.post(f"{research.url}{path}", json=body, headers=auth)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        return response.json()

    info = call("/v2/research/user/info/?fields=display_name,follower_count", {"username": "alice"}, 200, "ok")
    assert info["data"] == {"display_name": "alice", "follower_count": 95}
    call("/v2/research/user/info/", {"username": "alice"}, 400, "invalid_params")
    call("/v2/research/user/info/?fields=display_name", {"username": "hider"}, 200, "ok")
    followers = "/v2/research/user/followers/"
    call(followers, {"username": "alice", "max_count": 101}, 400, "invalid_params")
    for username, text in (("ghost", "user not found"), ("shy", "user is private"), ("hider", "not public")):
        assert text in call(followers, {"username": username}, 400, "invalid_params")["error"]["message"]
    research.scope_authorized = False
    call(followers, {"username": "alice"}, 401, "scope_not_authorized")


# -- failure injection ------------------------------------------------------------------------


def test_fail_next_kinds_then_back_to_normal(http, socialfetch):
    url = f"{socialfetch.url}/v1/tiktok/profiles/alice/followers"
    socialfetch.fail_next(status=503, retry_after=7)
    socialfetch.fail_next(kind="malformed")
    socialfetch.fail_next(kind="bad_shape")
    socialfetch.fail_next(kind="reset")
    socialfetch.fail_next(kind="timeout", seconds=2)

    unavailable = http.get(url, headers=SF_AUTH)
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "7"
    assert unavailable.json()["error"]["code"] == "temporarily_unavailable"
    malformed = http.get(url, headers=SF_AUTH)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    assert "followers" not in http.get(url, headers=SF_AUTH).json()["data"]
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(url, headers=SF_AUTH)
    with pytest.raises(httpx.ReadTimeout):
        http.get(url, headers=SF_AUTH, timeout=0.3)
    assert http.get(url, headers=SF_AUTH).status_code == 200
    assert [r.injected for r in socialfetch.requests] == ["status", "malformed", "bad_shape", "reset", "timeout", None]
    assert socialfetch.requests[3].status is None and socialfetch.pending_failures == 0


def test_fail_next_endpoint_filter_and_token_route(http, research):
    research.fail_next(status=500, endpoint="token")
    failed = http.post(f"{research.url}/v2/oauth/token/", data=TOKEN_FORM)
    assert failed.status_code == 500 and failed.json()["error"] == "temporarily_unavailable"
    research.fail_next(status=429)  # data endpoints only: the token route is left alone
    auth = research_token(http, research)
    limited = http.post(f"{research.url}/v2/research/user/followers/", json={"username": "alice"}, headers=auth)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert research.requests[-1].json == {"username": "alice"}
    research.reset_log()
    assert research.requests == []
