"""The Dumpling provider against a fake Dumpling that speaks the seed wire format over loopback.

Every error row of the seed documents, both upstream error body forms, malformed bodies,
timeouts and refused connections map to the seed's status and message.
"""

import logging
import socket

import pytest

from tests.fakes import FakeDumpling, FakeWorld

FOLLOWERS = "/api/v1/get-tiktok-user-followers"
FOLLOWING = "/api/v1/get-tiktok-user-following"
PROFILE = "/api/v1/get-tiktok-profile"


@pytest.fixture
def world():
    w = FakeWorld(seed=3)
    w.add_account("brand", followers=75, following=12)
    w.add_account("secretive", followers=10, status="private")
    return w


@pytest.fixture(params=["string", "object"])
def fake(request, world):
    with FakeDumpling(world, error_form=request.param) as f:
        yield f


@pytest.fixture
def service(serve, make_settings, fake):
    """The connector on the Dumpling provider (no retries, so error rows are one request each)."""
    live = serve(make_settings(provider=None, dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                               upstream_max_attempts=1, upstream_read_timeout=1.0, upstream_deadline=3.0))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        http.fake = fake
        yield http


def test_followers_pass_through_in_the_seed_shape(service, world):
    r = service.post(FOLLOWERS, json={"handle": "@Brand", "count": 10, "requestSource": "ZAPIER"})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["followers", "maxCursor", "minCursor", "hasMore", "total"]
    first_user, _ = world["brand"].followers[0]
    assert body["followers"][0]["user"]["id"] == first_user.id
    assert body["followers"][0]["user"]["uniqueId"] == first_user.handle
    assert list(body["followers"][0]["stats"]) == ["followerCount", "followingCount", "heartCount",
                                                   "videoCount", "diggCount"]
    assert body["hasMore"] is True and body["total"] == 75
    sent = service.fake.requests[-1].json
    assert sent == {"handle": "brand", "requestSource": "ZAPIER", "count": 10}


def test_paging_with_min_cursor_reaches_every_follower_once(service, world):
    seen, cursor, pages = [], None, 0
    while True:
        body = {"handle": "brand", "count": 20, **({"minTime": cursor} if cursor is not None else {})}
        page = service.post(FOLLOWERS, json=body).json()
        pages += 1
        seen += [f["user"]["id"] for f in page["followers"]]
        if not page["hasMore"]:
            break
        cursor = page["minCursor"]
    assert pages == 4
    assert seen == [u.id for u, _ in world["brand"].followers]


def test_following_and_profile(service, world):
    r = service.post(FOLLOWING, json={"handle": "brand"})
    assert r.status_code == 200
    assert len(r.json()["followingList"]) == 12
    r = service.post(PROFILE, json={"handle": "brand"})
    assert r.status_code == 200
    profile = r.json()
    assert profile["user"]["uniqueId"] == "brand"
    assert profile["stats"]["followerCount"] == 75
    assert profile["itemList"] == []


def test_request_source_from_header_is_forwarded(service):
    service.post(PROFILE, json={"handle": "brand"}, headers={"X-Request-Source": "MAKE_DOT_COM"})
    assert service.fake.request_sources[-1] == "MAKE_DOT_COM"


def test_private_account_is_the_seed_404(service):
    r = service.post(FOLLOWERS, json={"handle": "secretive"})
    assert r.status_code == 404
    assert r.json() == {"error": "Followers list not found for user: secretive"}
    r = service.post(FOLLOWING, json={"handle": "nobody_here"})
    assert r.json() == {"error": "Following list not found for user: nobody_here"}
    r = service.post(PROFILE, json={"handle": "nobody_here"})
    assert (r.status_code, r.json()) == (404, {"error": "TikTok profile not found for handle: nobody_here"})


# (upstream status, followers message, profile message) -> our status and message
ROWS = [
    (500, 502, "Error fetching followers data from the upstream service.",
     "Error fetching profile data from the upstream service."),
    (502, 502, "The followers service is currently unavailable.", "The profile service is currently unavailable."),
    (503, 503, "Rate limit exceeded. Please try again later.",
     "Rate limit exceeded with the profile service. Please try again later."),
    (429, 503, "Rate limit exceeded. Please try again later.",
     "Rate limit exceeded with the profile service. Please try again later."),
    (401, 500, "Service authentication failed. Please contact support.",
     "Service authentication failed. Please contact support."),
    (403, 502, "The followers service is currently unavailable.", "The profile service is currently unavailable."),
    (400, 400, "The followers service reported an issue.", "The profile service reported an issue."),
]


@pytest.mark.parametrize("upstream,status,followers_msg,profile_msg", ROWS)
def test_upstream_error_rows(service, upstream, status, followers_msg, profile_msg):
    service.fake.fail_next(2, kind="status", status=upstream, retry_after=1 if upstream in (429, 503) else None)

    def seed_words(r):  # an upstream rate limit adds whose limit it is after the seed's words
        return r.json()["error"].split(" This is the dumpling data provider's limit")[0]

    r = service.post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, seed_words(r)) == (status, followers_msg)
    r = service.post(PROFILE, json={"handle": "brand"})
    assert (r.status_code, seed_words(r)) == (status, profile_msg)
    if status == 503:
        assert int(r.headers["Retry-After"]) >= 1


def test_upstream_could_not_process_handle(service):
    service.fake.fail_next(1, kind="status", status=400,
                           body={"error": "The followers service could not process the handle."})
    r = service.post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (400, {"error": "The followers service could not process the handle."})


@pytest.mark.parametrize("kind", ["malformed", "bad_shape"])
def test_malformed_upstream_bodies_are_502(service, kind):
    service.fake.fail_next(2, kind=kind)
    r = service.post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (502, {"error": "Received invalid data structure from followers service."})
    r = service.post(PROFILE, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (502, {"error": "Received invalid data format from profile service."})


@pytest.mark.parametrize("kind", ["timeout", "reset"])
def test_timeouts_and_dropped_connections_are_502(service, kind):
    service.fake.fail_next(1, kind=kind, seconds=2.5)
    r = service.post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (502, {"error": "The followers service is currently unavailable."})


def test_refused_connection_is_502(serve, make_settings):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    live = serve(make_settings(provider=None, dumpling_api_key="sk_x", dumpling_base_url=f"http://127.0.0.1:{port}",
                               upstream_max_attempts=2))
    raw, _ = live.services.keys.create()
    r = live.client(raw).post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (502, {"error": "The followers service is currently unavailable."})


def test_transient_failure_is_retried_within_the_request(serve, make_settings, world):
    with FakeDumpling(world) as fake:
        live = serve(make_settings(provider=None, dumpling_api_key=fake.api_key, dumpling_base_url=fake.url))
        raw, _ = live.services.keys.create()
        fake.fail_next(1, kind="status", status=502)
        r = live.client(raw).post(FOLLOWERS, json={"handle": "brand"})
        assert r.status_code == 200
        assert [q.status for q in fake.requests] == [502, 200]


def test_no_provider_configured_is_the_seed_500(serve, make_settings):
    live = serve(make_settings(provider=None))
    raw, _ = live.services.keys.create()
    for route in (FOLLOWERS, FOLLOWING, PROFILE):
        r = live.client(raw).post(route, json={"handle": "brand"})
        assert (r.status_code, r.json()) == (500, {"error": "Service not configured. Please contact support."})


def test_caller_supplied_provider_key_rejected_is_a_4xx(service):
    r = service.post(FOLLOWERS, json={"handle": "brand"},
                     headers={"X-Provider": "dumpling", "X-Provider-Key": "sk_wrong_key_123"})
    assert r.status_code == 401
    assert "rejected the key sent in X-Provider-Key" in r.json()["error"]
    assert "sk_wrong_key_123" not in r.text


def test_caller_supplied_provider_key_is_used(service):
    r = service.post(FOLLOWERS, json={"handle": "brand"},
                     headers={"X-Provider": "dumpling", "X-Provider-Key": service.fake.api_key})
    assert r.status_code == 200


def test_failed_requests_cost_nothing(serve, make_settings, fake):
    live = serve(make_settings(provider=None, dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                               upstream_max_attempts=1))
    raw, row = live.services.keys.create(credits=5)
    http = live.client(raw)
    fake.fail_next(1, kind="status", status=500)
    assert http.post(FOLLOWERS, json={"handle": "brand"}).status_code == 502
    assert http.post(FOLLOWERS, json={"handle": "secretive"}).status_code == 404
    assert live.services.keys.balance(row["id"]) == 5
    assert http.post(PROFILE, json={"handle": "brand"}).status_code == 200
    assert live.services.keys.balance(row["id"]) == 3


def test_no_key_or_secret_in_logs_or_messages(service, caplog):
    caplog.set_level(logging.DEBUG)
    service.fake.fail_next(1, kind="status", status=401)
    r1 = service.post(FOLLOWERS, json={"handle": "brand"})
    r2 = service.post(FOLLOWERS, json={"handle": "brand"},
                      headers={"X-Provider": "dumpling", "X-Provider-Key": "sk_caller_secret_999"})
    caller_key = service.headers["Authorization"].split()[1]
    text = caplog.text + r1.text + r2.text
    for secret in (caller_key, service.fake.api_key, "sk_caller_secret_999"):
        assert secret not in text
    assert "auth_failed" in caplog.text  # the operator can still see what went wrong
