"""Provider-specific behaviour of Social Fetch and TikTok Research against their fakes:
the token's life, cursor overlap, error codes, credits, caller keys."""

from __future__ import annotations

import threading

import httpx
import pytest

from connector.config import Settings
from connector.errors import BadRequest, UpstreamError
from connector.providers.socialfetch import SocialFetchProvider
from connector.providers.tiktok_research import TikTokResearchProvider, kind_for_code
from tests.paging import iter_pages
from tests.fakes import FakeSocialFetch, FakeTikTokResearch, FakeWorld

FAST = dict(upstream_max_attempts=2, upstream_backoff_base=0.01, upstream_backoff_cap=0.02, upstream_deadline=3.0)


@pytest.fixture
def world():
    world = FakeWorld(seed=5)
    world.add_account("alice", followers=230, following=7)
    world.add_account("shy", followers=3, status="private")
    world.add_account("hider", followers=3, status="hidden")
    return world


def research(fake, credentials=None, **settings) -> TikTokResearchProvider:
    base = dict(FAST, tiktok_client_key=fake.client_key, tiktok_client_secret=fake.client_secret,
                tiktok_base_url=fake.url)
    base.update(settings)
    return TikTokResearchProvider.from_settings(Settings(**base), credentials)


def socialfetch(fake, credentials=None, **settings) -> SocialFetchProvider:
    base = dict(FAST, socialfetch_api_key=fake.api_key, socialfetch_base_url=fake.url)
    base.update(settings)
    return SocialFetchProvider.from_settings(Settings(**base), credentials)


def walk_handles(provider, handle="alice", which="followers", count=None):
    fetch = getattr(provider, f"list_{which}")
    return [r["user"]["uniqueId"] for page in iter_pages(lambda c: fetch(handle, cursor=c, count=count))
            for r in page.records]


# -- TikTok Research: the token -----------------------------------------------------------------

def test_concurrent_first_calls_share_one_token_request(world):
    with FakeTikTokResearch(world, latency=0.05) as fake:
        provider = research(fake)
        barrier = threading.Barrier(12)
        results, errors = [], []

        def call():
            barrier.wait()
            try:
                results.append(len(provider.list_followers("alice", count=5).records))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert errors == [] and results == [5] * 12
        assert fake.token_requests == 1
        token_calls = [r for r in fake.requests if r.endpoint == "token"]
        assert len(token_calls) == 1 and token_calls[0].form["grant_type"] == "client_credentials"
        provider.close()


def test_token_is_cached_then_refreshed_before_it_expires(world):
    now = [1000.0]
    with FakeTikTokResearch(world, token_ttl=7200) as fake:
        provider = research(fake)
        provider.clock = lambda: now[0]
        provider.list_followers("alice", count=1)
        provider.list_followers("alice", count=1)
        assert fake.token_requests == 1
        now[0] += 7200 - 200  # inside the early-refresh margin
        provider.list_followers("alice", count=1)
        assert fake.token_requests == 2
        provider.close()


def test_token_expiring_mid_walk_is_refreshed_once_and_the_walk_completes(world):
    with FakeTikTokResearch(world) as fake:
        provider = research(fake)
        handles, pages = [], 0
        for page in iter_pages(lambda c: provider.list_followers("alice", cursor=c, count=50)):
            handles += [r["user"]["uniqueId"] for r in page.records]
            pages += 1
            if pages == 2:
                fake.expire_all_tokens()
        assert handles == [u.handle for u, _ in world["alice"].followers]
        assert fake.token_requests == 2
        assert [r.status for r in fake.requests if r.endpoint == "followers"].count(401) == 1
        provider.close()


def test_a_token_refused_twice_is_auth_failed_not_a_loop(world):
    with FakeTikTokResearch(world) as fake:
        fake.scope_authorized = False
        provider = research(fake)
        with pytest.raises(UpstreamError) as caught:
            provider.list_followers("alice")
        assert caught.value.kind == "auth_failed"
        assert len([r for r in fake.requests if r.endpoint == "followers"]) == 1
        provider.close()


@pytest.mark.parametrize("caller, kind", [(False, "auth_failed"), (True, "provider_key_rejected")])
def test_invalid_client_on_the_token(world, caller, kind):
    with FakeTikTokResearch(world) as fake:
        provider = (research(fake, credentials=f"{fake.client_key}:nope_secret_1") if caller
                    else research(fake, tiktok_client_secret="nope_secret_1"))
        with pytest.raises(UpstreamError) as caught:
            provider.get_profile("alice")
        assert caught.value.kind == kind
        assert "nope_secret_1" not in str(caught.value)
        provider.close()


@pytest.mark.parametrize("key", ["no-colon-here", ":secret", "key:", " : "])
def test_malformed_caller_credentials_are_the_callers_to_fix(key):
    with pytest.raises(UpstreamError) as caught:
        TikTokResearchProvider.from_settings(Settings(), key)
    assert caught.value.kind == "provider_key_rejected"
    assert "secret" not in caught.value.detail.replace("client_secret", "")


@pytest.mark.parametrize("status, kind", [(429, "rate_limited"), (503, "unavailable"), (500, "unavailable")])
def test_token_route_failures(world, status, kind):
    with FakeTikTokResearch(world) as fake:
        fake.fail_next(2, status=status, endpoint="token")
        provider = research(fake)
        with pytest.raises(UpstreamError) as caught:
            provider.list_followers("alice")
        assert caught.value.kind == kind
        provider.close()


@pytest.mark.parametrize("code, message, status, kind", [
    ("access_token_invalid", "", 401, "auth_failed"),
    ("scope_not_authorized", "", 401, "auth_failed"),
    ("scope_permission_missed", "", 400, "auth_failed"),
    ("invalid_params", "user not found: x", 400, "not_found"),
    ("invalid_params", "user is private: x", 400, "not_found"),
    ("invalid_param", "user's followers list is not public: x", 400, "not_found"),
    ("invalid_params", "max_count must be an integer", 400, "reported_issue"),
    ("invalid_request", "bad cursor", 400, "reported_issue"),
    ("rate_limit_exceeded", "", 429, "rate_limited"),
    ("internal_error", "", 500, "fetch_error"),
    ("timeout", "", 504, "unavailable"),
    ("something_new", "", 503, "unavailable"),
    ("something_new", "", 418, "fetch_error"),
])
def test_every_research_error_code_has_a_kind(code, message, status, kind):
    assert kind_for_code(code, message, status) == kind


# -- TikTok Research: lists ----------------------------------------------------------------------

@pytest.mark.parametrize("inclusive", [False, True])
def test_cursor_overlap_is_dropped_whichever_reading_the_api_has(world, inclusive):
    with FakeTikTokResearch(world, inclusive_cursor=inclusive) as fake:
        provider = research(fake)
        handles = walk_handles(provider, count=40)
        assert handles == [u.handle for u, _ in world["alice"].followers]
        provider.close()


def test_research_list_fields_are_null_except_handle_and_name(world):
    with FakeTikTokResearch(world) as fake:
        provider = research(fake)
        page = provider.list_following("alice")
        assert page.total is None and len(page.records) == 7
        record = page.records[0]
        assert record["user"]["uniqueId"] == world["alice"].following[0][0].handle
        assert {k for k, v in record["user"].items() if v is not None} == {"uniqueId", "nickname"}
        assert set(record["stats"].values()) == {None}
        assert [r for r in fake.requests if r.endpoint == "following"][0].json["max_count"] == 100
        provider.close()


@pytest.mark.parametrize("cursor", ["abc", -5, "1.5"])
def test_research_refuses_a_cursor_it_did_not_return(world, cursor):
    with FakeTikTokResearch(world) as fake:
        provider = research(fake)
        with pytest.raises(BadRequest) as caught:  # the caller's to fix (400), not the upstream's
            provider.list_followers("alice", cursor=cursor)
        assert "minCursor of a previous response" in caught.value.message
        assert not [r for r in fake.requests if r.endpoint == "followers"], "refused before any upstream call"
        provider.close()


def test_research_bad_shape_is_invalid_data(world):
    with FakeTikTokResearch(world) as fake:
        fake.fail_next(1, kind="bad_shape")
        provider = research(fake)
        with pytest.raises(UpstreamError) as caught:
            provider.list_followers("alice")
        assert caught.value.kind == "invalid_data"
        fake.fail_next(1, kind="bad_shape", endpoint="token")
        fresh = research(fake)
        with pytest.raises(UpstreamError) as caught:
            fresh.list_followers("alice")
        assert caught.value.kind == "invalid_data"
        provider.close()
        fresh.close()


# -- Social Fetch -------------------------------------------------------------------------------

def test_socialfetch_walk_cursor_credits_and_no_trim(world):
    with FakeSocialFetch(world) as fake:
        provider = socialfetch(fake)
        pages = list(iter_pages(lambda c: provider.list_followers("alice", cursor=c)))
        handles = [r["user"]["uniqueId"] for p in pages for r in p.records]
        assert handles == [u.handle for u, _ in world["alice"].followers]
        assert all(p.meta["creditsCharged"] == 1 and p.meta["requestId"].startswith("req_") for p in pages)
        assert all(p.total == 230 for p in pages)
        assert isinstance(pages[0].next_cursor, str) and pages[-1].next_cursor is None
        requests = [r for r in fake.requests if r.endpoint == "followers"]
        assert requests[0].query == {} and requests[1].query["cursor"] == pages[0].next_cursor
        assert all(r.headers["x-api-key"] == fake.api_key for r in requests)
        assert all("trim" not in r.query for r in requests)  # trim would drop bio and avatarUrls
        provider.close()


@pytest.mark.parametrize("handle", ["shy", "hider", "nobody"])
def test_socialfetch_lookup_status_is_not_found(world, handle):
    with FakeSocialFetch(world) as fake:
        provider = socialfetch(fake)
        for which in ("followers", "following"):
            with pytest.raises(UpstreamError) as caught:
                getattr(provider, f"list_{which}")(handle)
            assert caught.value.kind == "not_found"
        if handle == "nobody":
            with pytest.raises(UpstreamError) as caught:
                provider.get_profile(handle)
            assert caught.value.kind == "not_found"
        else:  # a private or hidden account still has a profile, as on Dumpling
            assert provider.get_profile(handle)["user"]["privateAccount"] is (handle == "shy")
        provider.close()


def envelope(status, code, headers=None):
    body = {"error": {"code": code, "message": f"{code} happened"}} if code else {"unexpected": True}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("status, code, caller, kind", [
    (401, "unauthorized", False, "auth_failed"),
    (401, "unauthorized", True, "provider_key_rejected"),
    (403, "unauthorized", False, "auth_failed"),
    (402, "insufficient_credits", False, "unavailable"),
    (403, "insufficient_credits", True, "provider_key_rejected"),
    (429, "temporarily_unavailable", False, "rate_limited"),
    (503, "temporarily_unavailable", False, "rate_limited"),
    (429, None, False, "rate_limited"),
    (500, "internal_error", False, "fetch_error"),
    (502, "internal_error", False, "unavailable"),
    (400, "bad_request", False, "reported_issue"),
    (502, "lookup_failed", False, "fetch_error"),
    (404, "lookup_failed", False, "not_found"),
    (404, "not_found", False, "fetch_error"),
    (401, None, False, "auth_failed"),
    (500, None, False, "fetch_error"),
])
def test_socialfetch_error_envelope_maps_by_code_then_status(status, code, caller, kind):
    transport = httpx.MockTransport(lambda request: envelope(status, code, {"Retry-After": "0"}))
    provider = SocialFetchProvider("sfk_secret_key", "https://sf.test", caller_key=caller, transport=transport,
                                   settings=Settings(**FAST))
    with pytest.raises(UpstreamError) as caught:
        provider.list_followers("alice")
    assert caught.value.kind == kind
    assert "sfk_secret_key" not in str(caught.value)
    provider.close()


def test_socialfetch_bad_handle_message_is_could_not_process():
    transport = httpx.MockTransport(lambda request: httpx.Response(
        400, json={"error": {"code": "bad_request", "message": "handle must be a TikTok username"}}))
    provider = SocialFetchProvider("k", "https://sf.test", transport=transport, settings=Settings(**FAST))
    with pytest.raises(UpstreamError) as caught:
        provider.get_profile("alice")
    assert caught.value.kind == "could_not_process"


@pytest.mark.parametrize("body", [
    {"data": {"lookupStatus": "found"}},
    {"data": {"lookupStatus": "maybe", "followers": [], "page": {"nextCursor": None, "hasMore": False}}},
    {"data": {"lookupStatus": "found", "followers": [{"displayName": "no identity"}],
              "page": {"nextCursor": None, "hasMore": False}}},
    {"data": {"lookupStatus": "found", "followers": [], "page": {"nextCursor": None, "hasMore": True}}},
    {"data": {"lookupStatus": "found", "followers": "nope", "page": {}}},
    {"data": []},
    {"meta": {}},
])
def test_socialfetch_malformed_shapes_are_invalid_data(body):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    provider = SocialFetchProvider("k", "https://sf.test", transport=transport, settings=Settings(**FAST))
    with pytest.raises(UpstreamError) as caught:
        provider.list_followers("alice")
    assert caught.value.kind == "invalid_data"


def test_socialfetch_bad_cursor_from_the_caller_is_reported_issue(world):
    with FakeSocialFetch(world) as fake:
        provider = socialfetch(fake)
        with pytest.raises(UpstreamError) as caught:
            provider.list_followers("alice", cursor="not-a-cursor")
        assert caught.value.kind == "reported_issue"
        provider.close()
