"""Caller keys, credits and rate limits on SQLite and (when configured) PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from connector.config import Settings
from connector.store import Store
from connector.store.keys import KeyStore

FOLLOWERS = "/api/v1/get-tiktok-user-followers"
PROFILE = "/api/v1/get-tiktok-profile"


@pytest.fixture
def keystore(database_url):
    store = Store(database_url)
    yield KeyStore(store, static_keys=("static-key-1",), default_rate_limit=100)
    store.dispose()


@pytest.fixture
def service(serve, database_url):
    # 10 requests of one key at once: the per-key in-flight cap (tested in test_web_tier) is raised
    return serve(Settings(provider="demo", database_url=database_url, default_rate_limit=1000,
                          max_requests_in_flight_per_key=64))


def test_keys_are_stored_hashed_and_authenticate(keystore):
    raw, row = keystore.create(name="agency", credits=10, rate_limit=5)
    assert raw.startswith("tc_") and len(raw) > 40
    listed = keystore.list()
    assert [k["id"] for k in listed] == [row["id"]]
    assert raw not in repr(listed) and "key_hash" not in listed[0]
    caller = keystore.authenticate(raw)
    assert (caller.id, caller.credits, caller.rate_limit) == (row["id"], 10, 5)
    assert keystore.authenticate(raw + "x") is None
    assert keystore.revoke(row["id"]) is True
    assert keystore.authenticate(raw) is None
    assert keystore.revoke(row["id"]) is False


def test_static_keys_have_no_credit_limit(keystore):
    caller = keystore.authenticate("static-key-1")
    assert caller is not None and caller.credits is None and caller.rate_limit == 100
    assert keystore.reserve(caller, 10**9)


@pytest.fixture
def limited(keystore):
    def make(credits=None, rate_limit=None):
        raw, row = keystore.create(credits=credits, rate_limit=rate_limit)
        return raw, row, keystore.authenticate(raw)
    return make


def test_concurrent_reserve_with_real_caller(limited, keystore):
    _, row, caller = limited(credits=20)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda _: keystore.reserve(caller, 1), range(60)))
    assert results.count(True) == 20
    assert keystore.balance(row["id"]) == 0
    keystore.refund(caller, 4)
    assert keystore.balance(row["id"]) == 4
    assert keystore.top_up(row["id"], 6) == 10


def test_rate_limit_window(limited, keystore):
    _, _, caller = limited(rate_limit=3)
    t = 1_000_040.0  # 20 s into a minute
    states = [keystore.hit(caller, "x", "API", clock=lambda: t) for _ in range(4)]
    assert [s.allowed for s in states] == [True, True, True, False]
    assert [s.remaining for s in states] == [2, 1, 0, 0]
    assert states[-1].reset_in == 40
    nxt = keystore.hit(caller, "x", "API", clock=lambda: t + 60)
    assert nxt.allowed and nxt.remaining == 2


def test_credits_over_http_concurrently(service):
    raw, row = service.services.keys.create(credits=10)
    http = service.client(raw)

    def call(_):
        return http.post(FOLLOWERS, json={"handle": "brand", "count": 1}).status_code

    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(call, range(30)))
    assert codes.count(200) == 10 and codes.count(403) == 20
    assert service.services.keys.balance(row["id"]) == 0
    r = http.post(FOLLOWERS, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (403, {"error": "Insufficient credits. Please top up your account."})


def test_profile_costs_two_and_failures_cost_nothing(service):
    raw, row = service.services.keys.create(credits=3)
    http = service.client(raw)
    assert http.post(PROFILE, json={"handle": "demo_missing"}).status_code == 404
    assert http.post(PROFILE, json={"handle": "brand"}).status_code == 200
    assert service.services.keys.balance(row["id"]) == 1
    assert http.post(PROFILE, json={"handle": "brand"}).status_code == 403
    assert http.post(FOLLOWERS, json={"handle": "brand"}).status_code == 200
    assert service.services.keys.balance(row["id"]) == 0


def test_rate_limit_over_http(service):
    raw, _ = service.services.keys.create(rate_limit=3)
    http = service.client(raw)
    responses = [http.post(PROFILE, json={"handle": "brand"}) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in responses)
    assert responses[-1].json()["error"].startswith("Rate limit exceeded. Please try again later. "
                                                    "This is your API key's limit of 3 requests a minute")
    assert 1 <= int(responses[-1].headers["Retry-After"]) <= 60


def test_rate_headers_also_on_error_responses(service):
    raw, _ = service.services.keys.create(rate_limit=10)
    r = service.client(raw).post(PROFILE, json={"handle": "demo_private"})
    assert r.status_code == 404
    assert r.headers["X-RateLimit-Limit"] == "10" and r.headers["X-RateLimit-Remaining"] == "9"


def test_request_source_is_recorded_per_key(service):
    raw, row = service.services.keys.create()
    http = service.client(raw)
    http.post(PROFILE, json={"handle": "brand", "requestSource": "ZAPIER"})
    http.post(PROFILE, json={"handle": "brand", "requestSource": "ZAPIER"})
    http.post(FOLLOWERS, json={"handle": "brand"}, headers={"X-Request-Source": "MAKE_DOT_COM"})
    http.post(FOLLOWERS, json={"handle": "brand"})
    listed = {k["id"]: k for k in service.services.keys.list()}
    assert listed[row["id"]]["requests"] == {"ZAPIER": 2, "MAKE_DOT_COM": 1, "API": 1}


def test_revoked_key_is_refused(service):
    raw, row = service.services.keys.create()
    http = service.client(raw)
    assert http.post(PROFILE, json={"handle": "brand"}).status_code == 200
    service.services.keys.revoke(row["id"])
    r = http.post(PROFILE, json={"handle": "brand"})
    assert (r.status_code, r.json()) == (401, {"error": "API key is invalid or missing."})


def test_rate_limit_shared_by_several_processes_never_lets_more_through(database_url):
    """Two KeyStores on one database stand for two gunicorn workers leasing the same minute."""
    stores = [Store(database_url), Store(database_url)]
    workers = [KeyStore(s) for s in stores]
    raw, _ = workers[0].create(rate_limit=100)
    callers = [w.authenticate(raw) for w in workers]
    t = 1_000_000_010.0
    allowed = sum(workers[i % 2].hit(callers[i % 2], "x", "API", clock=lambda: t).allowed for i in range(300))
    assert 95 <= allowed <= 100  # leases of 5: at most one lease's worth refused early
    later = workers[1].hit(callers[1], "x", "API", clock=lambda: t + 60)
    assert later.allowed and later.remaining == 99
    for s in stores:
        s.dispose()
