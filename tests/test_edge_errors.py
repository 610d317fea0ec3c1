"""Errors at the edges say what to fix (issue 10, item 6), over real HTTP on loopback.

Where a seed document fixes a message, the answer starts with the seed's words and a second
sentence says what to fix.
"""

import logging
import random
import re

import httpx
import pytest
import sqlalchemy as sa

from connector.providers.demo import DemoProvider
from tests.fakes import FakeDumpling, FakeWorld

PROFILE = "/api/v1/get-tiktok-profile"
FOLLOWERS = "/api/v1/get-tiktok-user-followers"
FOLLOWING = "/api/v1/get-tiktok-user-following"
TRIGGER = "/api/v1/triggers/new-follower"
ACTIONS = [PROFILE, FOLLOWERS, FOLLOWING]
SEED_RATE_LIMITED = "Rate limit exceeded. Please try again later."
PARAMETER = "private-" + "param-value"  # built, so the traceback's source lines do not show it


@pytest.fixture
def dumpling(serve, make_settings):
    """The service on a fake Dumpling, with a key holding 5 credits."""
    world = FakeWorld(seed=3)
    world.add_account("brand", followers=40)
    with FakeDumpling(world) as fake:
        live = serve(make_settings(provider=None, dumpling_api_key=fake.api_key, dumpling_base_url=fake.url,
                                   upstream_max_attempts=1))
        raw, row = live.services.keys.create(credits=5)
        with live.client(raw) as http:
            yield http, fake, live, row


@pytest.mark.parametrize("handle,problem", [
    ("bad handle", "contains a space"),
    ("José", "contains 'é'"),
    ("x" * 31, "is 31 characters long"),
    ("x" * 300, "is 300 characters long"),
])
def test_a_handle_that_cannot_be_one_is_told_the_rule(demo, handle, problem):
    r = demo.post(FOLLOWERS, {"handle": handle})
    assert r.status_code == 400
    message = r.json()["error"]
    assert message.startswith("The followers service could not process the handle. ")
    for rule in ("letters (a-z)", "digits (0-9)", "underscores (_)", "periods (.)", "1 to 30"):
        assert rule in message, message
    assert message.endswith(f"this one {problem}."), message


def test_a_cursor_the_provider_cannot_use_is_a_400_naming_min_time(dumpling, demo):
    http, fake, live, row = dumpling
    r = http.post(FOLLOWERS, json={"handle": "brand", "minTime": "x"})
    assert r.status_code == 400
    assert r.json() == {"error": "'minTime' must be the minCursor of a previous response from this "
                                 "provider (a number for dumpling); got 'x'."}
    assert fake.requests == []  # refused before any upstream call
    assert live.services.keys.balance(row["id"]) == 5
    # A number (also written as a string) still goes through.
    assert http.post(FOLLOWERS, json={"handle": "brand", "minTime": "1734567800"}).status_code == 200

    r = demo.post(FOLLOWING, {"handle": "brand", "minTime": "x"})
    assert r.status_code == 400
    assert "'minTime'" in r.json()["error"] and "dm_" in r.json()["error"]


@pytest.mark.parametrize("route,field", [(FOLLOWERS, "count"), (FOLLOWING, "count"), (TRIGGER, "limit")])
@pytest.mark.parametrize("number", ["²", "٣", "１２", "3\u0663"])
def test_numbers_with_non_ascii_digits_are_a_400_naming_the_field(demo, route, field, number):
    r = demo.post(route, {"handle": "brand", field: number})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == f"'{field}' must be a whole number from 1 to 100, written with the digits 0-9."


def test_odd_numbers_and_cursors_never_500(demo):
    rng = random.Random(10)
    odd = ["²", "٣", "１", "--5", "-", "+5", " 7 ", "5\n", "1" * 5000, "٣" * 30, "1e3", "0x10", "Infinity",
           1e308, -0.0, 2**70, "\u0000", "dm_", "dm_!!!", "dm_" + "A" * 400, "", None, [], {}, True]
    for _ in range(150):
        route = rng.choice(ACTIONS + [TRIGGER])
        body = {"handle": rng.choice(["brand", "b", "²", "@x", "x" * 40])}
        fields = ["requestSource"] + (["limit"] if route == TRIGGER else
                                      [] if route == PROFILE else ["count", "minTime"])
        for key in rng.sample(fields, rng.randint(1, len(fields))):
            body[key] = rng.choice(odd)
        r = demo.post(route, body)
        assert r.status_code < 500, (route, body, r.text)


def test_a_chunked_body_over_the_limit_is_a_413_like_a_sized_one(demo):
    def chunks(total):
        yield b'{"handle": "brand", "requestSource": "API"'
        for _ in range(total // 1024):
            yield b" " * 1024
        yield b"}"

    headers = {"Content-Type": "application/json"}
    sized = demo.http.post(FOLLOWERS, content=b"".join(chunks(100 * 1024)), headers=headers)
    chunked = demo.http.post(FOLLOWERS, content=chunks(100 * 1024), headers=headers)
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
    assert (sized.status_code, chunked.status_code) == (413, 413)
    assert chunked.json() == sized.json() == {"error": "Request body is too large: the limit is 64 KB."}
    # Under the limit, a chunked body is read as usual.
    small = demo.http.post(FOLLOWERS, content=chunks(2 * 1024), headers=headers)
    assert small.status_code == 200, small.text


@pytest.mark.parametrize("headers,why", [
    ({}, "No key was sent"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "is not 'Bearer <key>'"),
    ({"Authorization": "Token tc_abc123456"}, "is not 'Bearer <key>'"),
    ({"Authorization": "Bearer"}, "no key after 'Bearer'"),
])
def test_a_missing_or_malformed_authorization_says_how_to_send_the_key(demo, headers, why):
    r = httpx.post(demo.url + PROFILE, json={"handle": "brand"}, headers=headers)
    assert r.status_code == 401
    message = r.json()["error"]
    assert message.startswith("API key is invalid or missing. ")
    assert why in message
    assert "'Authorization: Bearer <key>' or 'X-API-Key: <key>'" in message
    assert "dXNlcjpwYXNz" not in message and "tc_abc123456" not in message
    # A key that was sent properly but is unknown keeps the seed's words alone.
    r = httpx.post(demo.url + PROFILE, json={"handle": "brand"}, headers={"Authorization": "Bearer tc_nope"})
    assert r.json() == {"error": "API key is invalid or missing."}


def test_the_callers_rate_limit_and_the_upstreams_read_differently(serve, make_settings):
    live = serve(make_settings())
    raw, _ = live.services.keys.create(rate_limit=2)
    http = live.client(raw)
    upstream = http.post(FOLLOWERS, json={"handle": "demo_ratelimited"})
    http.post(FOLLOWERS, json={"handle": "brand"})
    own = http.post(FOLLOWERS, json={"handle": "brand"})
    assert (own.status_code, upstream.status_code) == (429, 503)
    mine, theirs = own.json()["error"], upstream.json()["error"]
    assert mine.startswith(SEED_RATE_LIMITED) and theirs.startswith(SEED_RATE_LIMITED) and mine != theirs
    assert "your API key's limit of 2 requests a minute" in mine
    assert "the demo data provider's limit" in theirs and "not your API key's" in theirs
    assert own.headers["Retry-After"] and upstream.headers["Retry-After"]


@pytest.mark.parametrize("route", [FOLLOWERS, TRIGGER])
@pytest.mark.parametrize("provider,form", [("socialfetch", ""), ("tiktok_research", " (client_key:client_secret)")])
def test_x_provider_without_its_key_says_to_send_x_provider_key(demo, route, provider, form):
    r = demo.post(route, {"handle": "brand"}, headers={"X-Provider": provider})
    assert r.status_code == 500  # the seed's "Service not configured", with what the caller can do
    message = r.json()["error"]
    assert message.startswith("Service not configured. Please contact support. ")
    assert f"send your own {provider} key{form} with X-Provider-Key" in message


def _sql_error() -> sa.exc.IntegrityError:
    """A real SQLAlchemy error whose text carries the statement's parameters."""
    engine = sa.create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (v TEXT UNIQUE)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": PARAMETER})
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": PARAMETER})
    except sa.exc.IntegrityError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("no IntegrityError")


@pytest.mark.parametrize("failure", ["secret", "sql"])
def test_an_unexpected_error_logs_its_traceback_under_the_callers_reference(demo, monkeypatch, caplog, failure):
    def broken(self, handle, **kwargs):
        if failure == "sql":
            raise _sql_error()
        raise RuntimeError("upstream said token=sk_live_ABCDEF123456")

    monkeypatch.setattr(DemoProvider, "list_followers", broken)
    caplog.set_level(logging.ERROR, logger="connector")
    r = demo.post(FOLLOWERS, {"handle": "brand"})
    assert r.status_code == 500
    ref = re.search(r"\(ref ([0-9a-f]{8})\)", r.json()["error"]).group(1)
    logged = caplog.text
    assert f"ref={ref}" in logged
    assert "Traceback (most recent call last)" in logged and "in broken" in logged
    assert "sk_live_ABCDEF123456" not in logged + r.text
    assert PARAMETER not in logged + r.text
    if failure == "sql":
        assert "IntegrityError" in logged and "[parameters hidden]" in logged
