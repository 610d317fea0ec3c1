"""The polling trigger, credits per page, and bad input on the trigger routes."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from connector.trigger.tables import events, watches
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.worker import poll_due_watches
from tests.trigger_kit import (HANDLE, dumpling, follower_pages, make_due, receiver,  # noqa: F401
                               trigger_settings, watch_row, world)

ROUTE = "/api/v1/triggers/new-follower"


@pytest.fixture
def live(serve, dumpling, sqlite_url):  # noqa: F811
    return serve(trigger_settings(dumpling, sqlite_url))


def test_polling_returns_samples_first_then_new_events_newest_first(live, world):  # noqa: F811
    raw, _ = live.services.keys.create(name="zap")
    with live.client(raw) as http:
        r = http.post(ROUTE, json={"handle": HANDLE, "requestSource": "ZAPIER"})
        assert r.status_code == 200, r.text
        samples = r.json()
        assert isinstance(samples, list) and len(samples) == 30      # the first page, as samples
        top = [user.id for user, _ in world[HANDLE].followers[:30]]
        assert [e["follower"]["id"] for e in samples] == top           # newest first
        assert all(e["id"].startswith("evt_") for e in samples)

        new = world.add_followers(HANDLE, 3)
        make_due(live.services)
        r = http.post(ROUTE, json={"handle": HANDLE}, headers={"X-Request-Source": "ZAPIER"})
        body = r.json()
        assert [e["follower"]["id"] for e in body[:3]] == [u.id for u in new]
        assert body[3]["id"] == samples[0]["id"]                        # stable ids

        r = http.post(ROUTE, json={"handle": HANDLE, "requestSource": "MAKE_DOT_COM", "limit": 2})
        assert list(r.json()) == ["events"] and len(r.json()["events"]) == 2
        r = http.post(ROUTE, json={"handle": HANDLE})                  # API: an object too
        assert len(r.json()["events"]) == 33
        assert r.headers["X-RateLimit-Limit"] == "120"


def test_polling_is_served_by_the_web_process_only_when_due(live, world, dumpling):  # noqa: F811
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        http.post(ROUTE, json={"handle": HANDLE})
        world.add_followers(HANDLE, 1)
        http.post(ROUTE, json={"handle": HANDLE})                       # not due: no upstream call
        assert follower_pages(dumpling) == 1
        make_due(live.services)
        events = http.post(ROUTE, json={"handle": HANDLE}).json()["events"]
        assert follower_pages(dumpling) == 2 and len(events) == 31


def test_credits_are_charged_per_page_and_pause_then_resume(live, world, dumpling, receiver):  # noqa: F811
    svc = live.services
    raw, row = svc.keys.create(name="small", credits=3)
    with live.client(raw) as http:
        hook = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE,
                                                "targetUrl": receiver.url}).json()
        assert svc.keys.balance(row["id"]) == 2                        # the baseline page
        world.add_followers(HANDLE, 31)                                 # two pages
        make_due(svc)
        poll_due_watches(svc)
        assert svc.keys.balance(row["id"]) == 0
        assert http.get(f"/api/v1/hooks/{hook['id']}").json()["creditsSpent"] == 3
        pages = follower_pages(dumpling)

        late = world.add_followers(HANDLE, 2)
        make_due(svc)
        poll_due_watches(svc)
        assert follower_pages(dumpling) == pages                        # nobody pays: not polled
        view = http.get(f"/api/v1/hooks/{hook['id']}").json()
        assert view["status"] == "paused_credits"

        svc.keys.top_up(row["id"], 5)                                   # `connector keys topup`
        make_due(svc)
        poll_due_watches(svc)
        deliver_due_webhooks(svc)
        assert http.get(f"/api/v1/hooks/{hook['id']}").json()["status"] == "active"
        assert svc.keys.balance(row["id"]) == 4
        assert {b["follower"]["id"] for b in receiver.delivered()} >= {u.id for u in late}
        assert len(receiver.delivered()) == 33


def test_polling_without_credits_is_refused(live):
    raw, _ = live.services.keys.create(credits=0)
    with live.client(raw) as http:
        r = http.post(ROUTE, json={"handle": HANDLE})
        assert r.status_code == 403 and r.json() == {"error": "Insufficient credits. Please top up your account."}


def test_unknown_account_answers_the_seed_404(live):
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        r = http.post(ROUTE, json={"handle": "nobody_here"})
        assert r.status_code == 404 and r.json() == {"error": "Followers list not found for user: nobody_here"}
        r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": "nobody_here",
                                             "targetUrl": "http://127.0.0.1:9/x"})
        assert r.status_code == 404
        assert http.get("/api/v1/hooks").json() == {"hooks": []}


@pytest.mark.parametrize("body, fragment", [
    ('{"event": "new_follower", "handle": "a"', "Invalid JSON"),
    ({"event": "new_follower", "handle": HANDLE, "targetUrl": "http://127.0.0.1:9/", "x": 1},
     "Unknown field 'x'. Allowed fields: event, handle, targetUrl, requestSource, minFollowerCount, verifiedOnly."),
    ({"event": "new_like", "handle": HANDLE, "targetUrl": "http://127.0.0.1:9/"},
     "'event' must be one of: follower_milestone, lost_follower, new_follower, new_following."),
    ({"event": "new_follower", "targetUrl": "http://127.0.0.1:9/"}, "'handle' parameter is required"),
    ({"event": "new_follower", "handle": HANDLE}, "'targetUrl' is required"),
    ({"event": "new_follower", "handle": HANDLE, "targetUrl": "ftp://example.com/x"}, "http:// or https://"),
    ({"event": "new_follower", "handle": HANDLE, "targetUrl": "http://no-such-host.invalid/x"},
     "cannot be resolved"),
    ([1, 2], "must be a JSON object"),
])
def test_hook_creation_rejects_bad_input(live, body, fragment):
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        r = http.post("/api/v1/hooks", content=body) if isinstance(body, str) else \
            http.post("/api/v1/hooks", json=body)
        assert r.status_code == 400, r.text
        assert fragment in r.json()["error"]


def test_private_targets_are_refused_unless_allowed(serve, dumpling, sqlite_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url, allow_private_targets=False))
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        for url in ("http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/"):
            r = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE, "targetUrl": url})
            assert r.status_code == 400 and "webhook targets must be public" in r.json()["error"], url


def test_provider_key_needs_the_secret_key_and_is_never_echoed(serve, dumpling, sqlite_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url, secret_key=None))   # (the tests' default has one)
    raw, _ = live.services.keys.create()
    headers = {"X-Provider": "dumpling", "X-Provider-Key": dumpling.api_key}
    with live.client(raw, headers=headers) as http:
        r = http.post(ROUTE, json={"handle": HANDLE})
        assert r.status_code == 400 and "CONNECTOR_SECRET_KEY" in r.json()["error"]
        assert dumpling.api_key not in r.text

    live = serve(trigger_settings(dumpling, sqlite_url, secret_key="s3cret-for-tests"))
    with live.client(raw, headers=headers) as http:
        r = http.post(ROUTE, json={"handle": HANDLE})
        assert r.status_code == 200 and len(r.json()["events"]) == 30
    row = watch_row(live.services)
    assert row["cred_hash"] and dumpling.api_key not in (row["credentials_enc"] or "")
    make_due(live.services)
    assert poll_due_watches(live.services).errors == 0                 # the worker decrypts it


def test_hooks_are_private_to_their_key(live, receiver):  # noqa: F811
    a, _ = live.services.keys.create()
    b, _ = live.services.keys.create()
    with live.client(a) as http_a, live.client(b) as http_b:
        hook = http_a.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE,
                                                  "targetUrl": receiver.url}).json()
        assert http_b.get(f"/api/v1/hooks/{hook['id']}").status_code == 404
        assert http_b.delete(f"/api/v1/hooks/{hook['id']}").status_code == 404
        assert http_b.get("/api/v1/hooks").json() == {"hooks": []}
        view = http_a.get(f"/api/v1/hooks/{hook['id']}").json()
        assert "secret" not in view and view["status"] == "active"
    with live.client() as anonymous:
        assert anonymous.get("/api/v1/hooks").status_code == 401


def test_polling_events_carry_an_increasing_seq(live, world):  # noqa: F811
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        http.post(ROUTE, json={"handle": HANDLE})
        world.add_followers(HANDLE, 2)
        make_due(live.services)
        zapier = http.post(ROUTE, json={"handle": HANDLE, "requestSource": "ZAPIER"}).json()
        make = http.post(ROUTE, json={"handle": HANDLE, "requestSource": "MAKE_DOT_COM"}).json()["events"]
    for items in (zapier, make):
        seqs = [e["seq"] for e in items]
        assert all(isinstance(s, int) for s in seqs) and seqs == sorted(seqs, reverse=True)
        assert len(set(seqs)) == len(seqs) == 32
        assert all(e["id"].startswith("evt_") for e in items)
    assert [e["seq"] for e in zapier] == [e["seq"] for e in make]


def test_a_poll_inside_the_request_reads_at_most_two_pages(live, world, dumpling):  # noqa: F811
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        http.post(ROUTE, json={"handle": HANDLE})
        new = world.add_followers(HANDLE, 150)                          # 6 pages to the frontier
        make_due(live.services)
        before = follower_pages(dumpling)
        r = http.post(ROUTE, json={"handle": HANDLE, "limit": 100})
        assert r.status_code == 200
        assert follower_pages(dumpling) == before + 2                   # Zapier waits 30 s at most
        assert len(r.json()["events"]) == 30 + 60
        assert watch_row(live.services)["status"] == "backlog"
    poll_due_watches(live.services)                                     # the worker reads the rest
    assert watch_row(live.services)["status"] == "active"
    with live.services.store.connect() as conn:
        keys = set(conn.execute(sa.select(events.c.follower_key).where(events.c.baseline.is_(False))).scalars())
    assert keys == {f"id:{u.id}" for u in new}


def test_losing_the_lease_during_an_in_request_poll_is_not_a_500(live, world, monkeypatch):  # noqa: F811
    svc = live.services
    raw, row = svc.keys.create(credits=10)
    with live.client(raw) as http:
        assert http.post(ROUTE, json={"handle": HANDLE}).status_code == 200
        world.set_status(HANDLE, "private")                             # the poll will fail ...
        make_due(svc)
        reserve = svc.keys.reserve

        def reserve_then_lose_the_lease(caller, cost):                  # ... after a poller took the watch over
            with svc.store.begin() as conn:
                conn.execute(watches.update().values(lease_owner="other-poller", lease_expires_at=time.time() + 60))
            return reserve(caller, cost)
        monkeypatch.setattr(svc.keys, "reserve", reserve_then_lose_the_lease)
        r = http.post(ROUTE, json={"handle": HANDLE})
        assert r.status_code == 200 and len(r.json()["events"]) == 30     # our poll was skipped
    assert svc.keys.balance(row["id"]) == 9                             # and not charged


@pytest.mark.parametrize("route", ["/api/v1/hooks", ROUTE])
@pytest.mark.parametrize("content, status, error", [
    ('{"handle": "a"', 400, "Invalid JSON in request body"),
    ("x" * (65 * 1024), 413, "Request body is too large: the limit is 64 KB."),
], ids=["invalid-json", "too-large"])
def test_unparsable_bodies_are_counted_and_carry_rate_headers(live, route, content, status, error):
    raw, _ = live.services.keys.create(rate_limit=50)
    with live.client(raw) as http:
        first = http.post(route, content=content, headers={"Content-Type": "application/json"})
        second = http.post(route, content=content, headers={"Content-Type": "application/json"})
    for r in (first, second):
        assert r.status_code == status and r.json() == {"error": error}
        assert r.headers["X-RateLimit-Limit"] == "50"
    assert int(second.headers["X-RateLimit-Remaining"]) == int(first.headers["X-RateLimit-Remaining"]) - 1


def test_hook_reads_and_deletes_are_counted(live, receiver):  # noqa: F811
    raw, _ = live.services.keys.create(rate_limit=50)
    with live.client(raw) as http:
        hook = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": HANDLE,
                                                "targetUrl": receiver.url}).json()
        answers = [http.get("/api/v1/hooks"), http.get(f"/api/v1/hooks/{hook['id']}"),
                   http.delete(f"/api/v1/hooks/{hook['id']}"), http.delete(f"/api/v1/hooks/{hook['id']}"),
                   http.get("/api/v1/hooks/hook_nope")]
    assert [r.status_code for r in answers] == [200, 200, 204, 404, 404]
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in answers] == list(range(48, 43, -1))


def test_provider_key_without_provider_and_no_default_is_a_400_like_the_actions(serve, make_settings):
    live = serve(make_settings(provider=None, secret_key="s3cret-for-tests"))
    raw, _ = live.services.keys.create()
    headers = {"X-Provider-Key": "sk_mine_123"}
    with live.client(raw) as http:
        for route, body in (("/api/v1/triggers/new-follower", {"handle": "brand"}),
                            ("/api/v1/get-tiktok-user-followers", {"handle": "brand"})):
            r = http.post(route, json=body, headers=headers)
            assert r.status_code == 400, (route, r.text)
            assert "X-Provider-Key was sent without X-Provider" in r.json()["error"]
