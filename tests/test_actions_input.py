"""Bad input on every action route: a 4xx with a message that says what to fix, never a 500."""

import json

import httpx
import pytest

ROUTES = ["/api/v1/get-tiktok-profile", "/api/v1/get-tiktok-user-followers",
          "/api/v1/get-tiktok-user-following"]
HANDLE_REQUIRED = "'handle' parameter is required and must be a non-empty string."
COULD_NOT_PROCESS = {
    "/api/v1/get-tiktok-profile": "The profile service could not process the handle.",
    "/api/v1/get-tiktok-user-followers": "The followers service could not process the handle.",
    "/api/v1/get-tiktok-user-following": "The following service could not process the handle.",
}


def raw_post(demo, route, content, **headers):
    return demo.http.post(route, content=content, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("content", ["{", "{'handle': 'x'}", "nul", "\xff\xfe", '{"handle": "x",}'])
def test_invalid_json_is_400_with_the_seed_message(demo, route, content):
    r = raw_post(demo, route, content.encode("latin-1"))
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid JSON in request body"}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [{}, {"handle": ""}, {"handle": "   "}, {"handle": None}, {"handle": 12345},
                                  {"handle": ["a"]}, {"handle": {"name": "a"}}, {"handle": True}, None])
def test_missing_or_wrongly_typed_handle(demo, route, body):
    r = demo.post(route, body) if body is not None else demo.http.post(route)
    assert r.status_code == 400
    assert r.json() == {"error": HANDLE_REQUIRED}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("handle", ["bad handle", "name!", "@", "a/b", "💥", "x" * 31, "..", "trailing.",
                                    "https://example.com/@name", "<script>"])
def test_odd_handles_are_refused_in_the_seed_words(demo, route, handle):
    r = demo.post(route, {"handle": handle})
    assert r.status_code == 400
    # The seed's words, then the rule for handles (tests/test_edge_errors.py).
    assert r.json()["error"].startswith(COULD_NOT_PROCESS[route] + " A TikTok handle is ")


@pytest.mark.parametrize("handle", ["@StoolPresidente", "stoolpresidente", " stoolpresidente ",
                                    "https://www.tiktok.com/@stoolpresidente",
                                    "https://www.tiktok.com/@StoolPresidente/video/123?lang=en",
                                    "tiktok.com/@stoolpresidente", "https://m.tiktok.com/@stoolpresidente"])
def test_handle_forms_are_normalised(demo, handle):
    r = demo.post("/api/v1/get-tiktok-profile", {"handle": handle})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["uniqueId"] == "stoolpresidente"


@pytest.mark.parametrize("route", ROUTES)
def test_unknown_fields_are_named(demo, route):
    r = demo.post(route, {"handle": "abc", "limit": 5})
    assert r.status_code == 400
    assert r.json()["error"].startswith("Unknown field 'limit'. Allowed fields: handle")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [[{"handle": "x"}], "handle", 42, True])
def test_non_object_bodies(demo, route, body):
    r = demo.post(route, body)
    assert r.status_code == 400
    assert "must be a JSON object" in r.json()["error"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("source", ["zapier", "IFTTT", "", 7])
def test_unknown_request_source_lists_the_allowed_values(demo, route, source):
    r = demo.post(route, {"handle": "abc", "requestSource": source})
    if source == "":  # an empty optional field is treated as absent (Zapier and Make send "")
        assert r.status_code == 200
        return
    assert r.status_code == 400
    assert r.json() == {"error": "'requestSource' must be one of: MAKE_DOT_COM, ZAPIER, API."}


def test_request_source_header_is_validated_too(demo):
    r = demo.post("/api/v1/get-tiktok-profile", {"handle": "abc"}, headers={"X-Request-Source": "NOPE"})
    assert r.status_code == 400
    assert "MAKE_DOT_COM, ZAPIER, API" in r.json()["error"]


@pytest.mark.parametrize("count", [0, 101, -1, 2.5, "ten", True, [3]])
def test_count_out_of_range_or_wrong_type(demo, count):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "abc", "count": count})
    assert r.status_code == 400
    assert r.json() == {"error": "'count' must be a whole number from 1 to 100."}


def test_count_as_numeric_string_is_accepted(demo):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "abc", "count": "5"})
    assert r.status_code == 200
    assert len(r.json()["followers"]) == 5


@pytest.mark.parametrize("cursor", [-5, True, {"a": 1}, [1], "x" * 600, "tab\there"])
def test_bad_cursors(demo, cursor):
    r = demo.post("/api/v1/get-tiktok-user-followers", {"handle": "abc", "minTime": cursor})
    assert r.status_code == 400
    assert "'minTime' must be the minCursor of a previous response" in r.json()["error"]


@pytest.mark.parametrize("route", ROUTES)
def test_huge_body_is_413_with_the_limit(demo, route):
    r = raw_post(demo, route, json.dumps({"handle": "a" * 200_000}).encode())
    assert r.status_code == 413
    assert r.json() == {"error": "Request body is too large: the limit is 64 KB."}


def test_deeply_nested_json_is_a_400_not_a_500(demo):
    r = raw_post(demo, ROUTES[1], b"[" * 5000 + b"]" * 5000)
    assert r.status_code == 400


@pytest.mark.parametrize("route", ROUTES)
def test_wrong_method_says_which_to_use(demo, route):
    r = demo.http.get(route)
    assert r.status_code == 405
    assert r.json()["error"] == f"Method GET is not allowed on {route}; use POST."


def test_unknown_route_points_to_the_openapi_document(demo):
    r = demo.http.post("/api/v1/get-tiktok-videos", json={"handle": "x"})
    assert r.status_code == 404
    assert "/openapi.json" in r.json()["error"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                                     {"X-API-Key": "tc_unknown"}, {"Authorization": "Bearer " + "x" * 5000}])
def test_missing_or_unknown_key_is_401(demo, headers):
    r = httpx.post(demo.url + ROUTES[0], json={"handle": "abc"}, headers=headers)
    assert r.status_code == 401
    error = r.json()["error"]
    if headers in ({}, {"Authorization": "Basic abc"}):  # no key found: also told how to send one
        assert error.startswith("API key is invalid or missing. ") and "'Authorization: Bearer <key>'" in error
    else:
        assert error == "API key is invalid or missing."


def test_x_api_key_header_works_like_bearer(demo):
    r = httpx.post(demo.url + ROUTES[0], json={"handle": "abc"}, headers={"X-API-Key": demo.key})
    assert r.status_code == 200


def test_unknown_provider_header_lists_providers(demo):
    r = demo.post(ROUTES[0], {"handle": "abc"}, headers={"X-Provider": "instagram"})
    assert r.status_code == 400
    assert "Unknown provider 'instagram'" in r.json()["error"] and "demo" in r.json()["error"]


@pytest.mark.parametrize("route", ROUTES)
def test_fuzzed_bodies_never_500(demo, route):
    import random

    rng = random.Random(7)
    values = [None, "", "a", "@", 0, -1, 1.5, 10**30, True, [], {}, "x" * 300, "\u0000", "%00", "../../etc"]
    keys = ["handle", "minTime", "count", "requestSource", "", "__proto__"]
    for _ in range(120):
        body = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(0, 4))}
        r = demo.post(route, body)
        assert r.status_code < 500, (body, r.text)
        assert set(r.json()) <= {"error", "user", "stats", "itemList", "followers", "followingList",
                                 "maxCursor", "minCursor", "hasMore", "total"}


@pytest.mark.parametrize("content,status", [(b"{bad", 400), (json.dumps({"handle": "a" * 100_000}).encode(), 413)])
def test_bad_bodies_still_count_and_carry_rate_headers(serve, make_settings, content, status):
    live = serve(make_settings())
    raw, _ = live.services.keys.create(rate_limit=2)
    http = live.client(raw, headers={"Content-Type": "application/json"})
    first = http.post(ROUTES[1], content=content)
    assert first.status_code == status
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    http.post(ROUTES[1], content=content)
    third = http.post(ROUTES[1], json={"handle": "abc"})
    assert third.status_code == 429
