"""The polling trigger, credits per page, and bad input on the trigger routes."""

from __future__ import annotations

import pytest

from connector.trigger.worker import deliver_due_webhooks, poll_due_watches
from tests.trigger_kit import (HANDLE, dumpling, follower_pages, make_due, receiver,  # noqa: F401
                               trigger_settings, world)

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
     "Unknown field 'x'. Allowed fields: event, handle, targetUrl."),
    ({"event": "new_like", "handle": HANDLE, "targetUrl": "http://127.0.0.1:9/"},
     "'event' must be one of: new_follower."),
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
    live = serve(trigger_settings(dumpling, sqlite_url))
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
    from tests.trigger_kit import watch_row
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
