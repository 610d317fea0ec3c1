"""The operator console over HTTP: who may open it, forms and their CSRF tokens, every page,
replay, bad input, and a first page of 10,000 watches.

The service runs for real (fake Dumpling and a webhook receiver on loopback, SQLite files and,
where configured, PostgreSQL); hooks are made through the API and polled and delivered by the
worker's own functions. Console pages are fetched with Flask's test client, which keeps cookies
as a browser does. ``test_console_browser.py`` drives the same pages in Chromium.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from connector.config import DAY, ConfigError, Settings
from connector.console.auth import SESSION_COOKIE
from connector.console.queries import Filters, watches_query
from connector.trigger.replay import replay_plan
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import deliveries, subscriptions, watches
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.trigger_kit import (HANDLE, dumpling, make_due, receiver, trigger_settings, verify,  # noqa: F401
                               watch_row, world)

ADMIN = "operator-secret-0123456789"
HOOKS = "/api/v1/hooks"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def sign_in(client, key: str = ADMIN, next_path: str | None = None):
    page = client.get("/console/login")
    data = {"csrf_token": csrf_of(page.get_data(as_text=True)), "admin_key": key}
    if next_path:
        data["next"] = next_path
    return client.post("/console/login", data=data)


def text(response) -> str:
    return response.get_data(as_text=True)


class Env:
    def __init__(self, live, api, receiver, key_id):  # noqa: F811
        self.live, self.api, self.receiver, self.key_id = live, api, receiver, key_id
        self.browser = live.app.test_client()

    @property
    def svc(self):
        return self.live.services

    def subscribe(self, handle=HANDLE, **extra) -> dict:
        r = self.api.post(HOOKS, json={"event": "new_follower", "handle": handle, "targetUrl": self.receiver.url,
                                       **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def cycle(self):
        make_due(self.svc)
        poll_due_watches(self.svc)
        deliver_due_webhooks(self.svc)

    def signed_in(self):
        assert sign_in(self.browser).status_code == 303
        return self.browser

    def form_token(self, path: str) -> str:
        return csrf_of(text(self.browser.get(path)))


def _env(serve, fake, db, rx, **overrides):
    live = serve(trigger_settings(fake, db, admin_key=ADMIN, **overrides))
    raw, row = live.services.keys.create(name="acme-zaps", credits=500)
    return live, raw, row


@pytest.fixture
def env(serve, dumpling, receiver, database_url):  # noqa: F811
    live, raw, row = _env(serve, dumpling, database_url, receiver)
    with live.client(raw) as api:
        yield Env(live, api, receiver, row["id"])


# -- access ----------------------------------------------------------------------------------

def test_the_console_is_off_without_an_admin_key_and_says_how_to_turn_it_on(serve, dumpling, sqlite_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url))
    client = live.app.test_client()
    for method, path in (("get", "/console/"), ("get", "/console/login"), ("post", "/console/login"),
                         ("get", "/console/watches")):
        r = getattr(client, method)(path, data={"admin_key": "anything-at-all-here"} if method == "post" else None)
        assert r.status_code == 404, path
        assert "CONNECTOR_ADMIN_KEY" in text(r) and "restart" in text(r)
        assert SESSION_COOKIE not in r.headers.get("Set-Cookie", "")
    # The page saying so is styled: its one stylesheet loads while the console is off.
    assert re.findall(r'<link[^>]+href="([^"]+)"', text(client.get("/console/"))) == ["/console/static/console.css"]
    with client.get("/console/static/console.css") as css:
        assert css.status_code == 200 and css.content_type.startswith("text/css") and "main {" in text(css)


def test_the_admin_key_is_a_setting_with_a_minimum_length():
    assert Settings.from_env({"CONNECTOR_ADMIN_KEY": ADMIN}).admin_key == ADMIN
    assert Settings.from_env({}).admin_key is None
    with pytest.raises(ConfigError, match="CONNECTOR_ADMIN_KEY must be at least 16 characters"):
        Settings.from_env({"CONNECTOR_ADMIN_KEY": "short"})


def test_without_the_cookie_pages_send_you_to_sign_in_and_forms_are_refused(env):
    hook = env.subscribe()
    client = env.browser
    for path in ("/console/", "/console/watches", "/console/hooks", f"/console/hooks/{hook['id']}",
                 "/console/keys", f"/console/watches/{watch_row(env.svc)['id']}"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/console/login?next=/console/"), path
    for path, data in ((f"/console/hooks/{hook['id']}/state", {"action": "pause"}),
                       (f"/console/hooks/{hook['id']}/replay", {"since": "2020-01-01T00:00"}),
                       ("/console/logout", {})):
        r = client.post(path, data=data)
        assert r.status_code == 403 and "sign in" in text(r).lower(), path
    assert env.api.get(f"{HOOKS}/{hook['id']}").json()["status"] == "active"     # nothing changed


def test_caller_keys_never_open_it(env):
    raw, _ = env.svc.keys.create(name="a client")
    for headers in ({"Authorization": f"Bearer {raw}"}, {"X-API-Key": raw}):
        r = env.browser.get("/console/", headers=headers)
        assert r.status_code == 302 and "/console/login" in r.headers["Location"]
    r = sign_in(env.browser, raw)
    assert r.status_code == 401 and "not the admin key" in text(r)
    assert SESSION_COOKIE + "=" not in r.headers.get("Set-Cookie", "")
    env.browser.set_cookie(SESSION_COOKIE, "eyJraW5kIjoic2Vzc2lvbiJ9.forged", path="/console/")
    assert env.browser.get("/console/").status_code == 302


def test_sign_in_sets_a_strict_cookie_and_sign_out_clears_it(env):
    client = env.browser
    r = sign_in(client, "operator-secret-wrong-one")
    assert r.status_code == 401 and "not the admin key" in text(r)
    r = sign_in(client, next_path="/console/keys")
    assert r.status_code == 303 and r.headers["Location"] == "/console/keys"
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie
    assert ADMIN not in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "<h1>Overview</h1>" in text(page)
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert client.post("/console/logout").status_code == 403                   # no CSRF token: still in
    assert client.get("/console/").status_code == 200
    r = client.post("/console/logout", data={"csrf_token": csrf_of(text(page))})
    assert r.status_code == 303
    assert client.get("/console/").status_code == 302
    follow = client.get(r.headers["Location"])
    assert "Signed out." in text(follow)


def test_a_sign_in_from_elsewhere_is_refused_and_open_redirects_are_not_followed(env):
    client = env.browser
    r = client.post("/console/login", data={"admin_key": ADMIN})            # no login cookie, no token
    assert r.status_code == 403 and "enter the admin key again" in text(r)
    r = sign_in(client, next_path="https://evil.example/")
    assert r.status_code == 303 and r.headers["Location"] == "/console/"
    r = sign_in(env.live.app.test_client(), next_path="/console//evil.example")
    assert r.headers["Location"] == "/console/"


def test_a_session_expires_with_the_clock_and_with_a_new_admin_key(serve, dumpling, receiver, sqlite_url):  # noqa: F811
    clock = ManualClock(time.time())
    live, _, _ = _env(serve, dumpling, sqlite_url, receiver, clock=clock)
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    assert client.get("/console/").status_code == 200
    clock.advance(13 * 3600)
    assert client.get("/console/").status_code == 302
    assert sign_in(client).status_code == 303
    other = serve(trigger_settings(dumpling, sqlite_url, admin_key="another-operator-key-42", clock=clock))
    stolen = client.get_cookie(SESSION_COOKIE, path="/console/").value
    moved = other.app.test_client()
    moved.set_cookie(SESSION_COOKIE, stolen, path="/console/")
    assert moved.get("/console/").status_code == 302


def test_forms_without_or_with_a_wrong_csrf_token_change_nothing(env):
    hook = env.subscribe()
    client = env.signed_in()
    path = f"/console/hooks/{hook['id']}"
    for data in ({"action": "pause"}, {"action": "pause", "csrf_token": "x" * 43}):
        r = client.post(f"{path}/state", data=data)
        assert r.status_code == 403 and "CSRF" in text(r)
    assert env.api.get(f"{HOOKS}/{hook['id']}").json()["status"] == "active"
    r = client.post(f"{path}/replay", data={"since": "2000-01-01T00:00", "csrf_token": "nope"})
    assert r.status_code == 403
    with env.svc.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(deliveries.c.status == "pending")).scalar_one() == 0


# -- the pages -------------------------------------------------------------------------------

def test_the_overview_lists_watches_hooks_and_keys_with_filters(env, world):  # noqa: F811
    hook = env.subscribe(requestSource="ZAPIER")
    world.add_followers(HANDLE, 3)
    env.cycle()
    assert len(env.receiver.delivered()) == 3
    broke, broke_row = env.svc.keys.create(name="broke-client", credits=0)
    client = env.signed_in()

    overview = text(client.get("/console/"))
    assert "Keeping up" in overview and "Keys out of credits" in overview
    assert "Keys out of credits</dt><dd>1<" in overview and "Keys</a></dt><dd>2<" in overview
    assert hook["id"] in overview

    page = text(client.get("/console/watches"))
    assert f"@{HANDLE}" in page and "dumpling" in page and "s-active" in page
    assert "1 watch; showing 1–1, page 1 of 1" in page
    row = watch_row(env.svc)
    assert f">{row['pages_read']}<" in page and ">1 / 0<" in page               # one hook, no polling

    hooks = text(client.get("/console/hooks"))
    host = env.receiver.url.split("/")[2]
    assert host in hooks and "acme-zaps" in hooks and "100 %" in hooks and "(3/3)" in hooks

    keys = text(client.get("/console/keys"))
    assert "acme-zaps" in keys and "ZAPIER 1" in keys and "broke-client" in keys and "out of credits" in keys
    assert broke_row["key_prefix"] in keys and broke not in keys               # never the key itself
    env.api.post("/api/v1/get-tiktok-profile", json={"handle": HANDLE})        # leases a block of credits
    balance = env.svc.keys.balance(env.key_id)
    assert balance < 500 - 3 and f"<td>{balance:,}" in text(client.get("/console/keys")), balance

    assert "acme-zaps" not in text(client.get("/console/hooks?key=broke-client"))
    assert hook["id"] in text(client.get(f"/console/hooks?key={env.key_id}"))
    assert hook["id"] in text(client.get("/console/hooks?handle=@STOOL"))
    assert "No watches match the filter" in text(client.get("/console/watches?handle=nobody"))
    r = client.get("/console/watches?key=someone-else")
    assert r.status_code == 400 and "No key has the id, name or prefix" in text(r)
    r = client.get("/console/hooks?handle=%3Cscript%3E")
    assert r.status_code == 400 and "part of a TikTok handle" in text(r) and "<script>" not in text(r)


def test_a_hook_page_shows_attempts_and_pauses_resumes_and_re_enables(env, world):  # noqa: F811
    hook = env.subscribe()
    calls = []
    env.receiver.respond = lambda received: calls.append(1) or (503 if len(calls) == 1 else 200)
    world.add_followers(HANDLE, 1)
    env.cycle()                                          # 503, retried at once (schedule 0 s)
    deliver_due_webhooks(env.svc)                        # 200
    client = env.signed_in()
    path = f"/console/hooks/{hook['id']}"
    page = text(client.get(path))
    assert "HTTP 503" in page and ">503<" in page and ">200<" in page and " ms<" in page
    assert "50 % (1 of 2)" in page and "Pause" in page

    r = client.post(f"{path}/state", data={"action": "pause", "csrf_token": csrf_of(page)})
    assert r.status_code == 303
    assert env.api.get(f"{HOOKS}/{hook['id']}").json()["status"] == "paused"
    page = text(client.get(r.headers["Location"]))
    assert "The hook is paused" in page and ">Resume<" in page
    client.post(f"{path}/state", data={"action": "enable", "csrf_token": csrf_of(page)})
    assert env.api.get(f"{HOOKS}/{hook['id']}").json()["status"] == "active"

    with env.svc.store.begin() as conn:                  # as the sender leaves a hook failing for days
        conn.execute(subscriptions.update().where(subscriptions.c.id == hook["id"]).values(
            status="disabled", status_reason="Disabled: deliveries have failed since …"))
    page = text(client.get(path))
    assert ">Re-enable<" in page and "Disabled: deliveries have failed" in page
    r = client.post(f"{path}/state", data={"action": "enable", "csrf_token": csrf_of(page)})
    assert "enabled again" in text(client.get(r.headers["Location"]))
    assert env.api.get(f"{HOOKS}/{hook['id']}").json()["status"] == "active"
    r = client.post(f"{path}/state", data={"action": "explode", "csrf_token": csrf_of(page)})
    assert r.status_code == 400 and "Choose an action" in text(r)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M")


def test_replay_shows_the_count_then_resends_with_the_same_webhook_ids(env, world):  # noqa: F811
    hook = env.subscribe()
    before = time.time() - 120
    world.add_followers(HANDLE, 3)
    env.cycle()
    first = {r.headers["webhook-id"] for r in env.receiver.requests}
    assert len(first) == 3
    other_hook = env.api.post(HOOKS, json={"event": "new_follower", "handle": HANDLE,
                                           "targetUrl": env.receiver.url + "/other"}).json()
    client = env.signed_in()
    path = f"/console/hooks/{hook['id']}"

    confirm = client.get(f"{path}/replay?since={_utc(before)}")
    assert confirm.status_code == 200
    assert re.search(r"<strong>3</strong> deliveries of events detected since", text(confirm))
    deliver_due_webhooks(env.svc)
    assert len(env.receiver.requests) == 3                # counting changed nothing

    later = text(client.get(f"{path}/replay", query_string={"since": datetime.now(timezone.utc).isoformat()}))
    assert "<strong>0</strong> deliveries" in later and "nothing to replay" in later

    r = client.post(f"{path}/replay", data={"since": re.search(r'name="since" value="([^"]+)"', text(confirm))[1],
                                            "csrf_token": csrf_of(text(confirm))})
    assert r.status_code == 303
    assert "3 deliveries queued again" in text(client.get(r.headers["Location"]))
    deliver_due_webhooks(env.svc)
    again = env.receiver.requests[3:]
    assert {r.headers["webhook-id"] for r in again} == first
    for received in again:
        assert verify(hook["secret"], received.headers, received.body)["id"] == received.headers["webhook-id"]
    assert not any(r.headers.get("webhook-id") and "/other" in r.body.decode() for r in again)
    with env.svc.store.connect() as conn:                 # the other hook (made later) got nothing replayed
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
            deliveries.c.subscription_id == other_hook["id"])).scalar_one() == 0


def test_replay_waits_for_a_paused_hook_and_leaves_a_delivery_being_sent(env, world):  # noqa: F811
    hook = env.subscribe()
    world.add_followers(HANDLE, 2)
    env.cycle()
    now = env.svc.clock()
    with env.svc.store.begin() as conn:                   # one is being sent right now by a sender
        held = conn.execute(sa.select(deliveries.c.id).where(deliveries.c.subscription_id == hook["id"])
                            .limit(1)).scalar_one()
        conn.execute(deliveries.update().where(deliveries.c.id == held).values(
            status="pending", claimed_until=now + 60, next_attempt_at=now + 60))
    plan = replay_plan(env.svc, hook["id"], 0)
    assert (plan.resend, plan.queued, plan.sending, plan.hook_silent) == (1, 0, 1, False)
    env.api.patch(f"{HOOKS}/{hook['id']}", json={"enabled": False})
    client = env.signed_in()
    confirm = text(client.get(f"/console/hooks/{hook['id']}/replay?since=2000-01-01T00:00"))
    assert "<strong>1</strong> delivery" in confirm and "1 being sent right now is left" in confirm
    assert "wait until it is resumed" in confirm
    client.post(f"/console/hooks/{hook['id']}/replay", data={"since": "2000-01-01T00:00Z",
                                                            "csrf_token": csrf_of(confirm)})
    deliver_due_webhooks(env.svc)
    assert len(env.receiver.requests) == 2                # paused: nothing went out
    with env.svc.store.connect() as conn:
        assert conn.execute(sa.select(deliveries.c.claimed_until).where(deliveries.c.id == held)).scalar() == now + 60


@pytest.mark.parametrize("since, fragment", [
    ("", "Choose the time to replay from"),
    ("yesterday", "is not a time"),
    ("2999-01-01T00:00", "in the future"),
    ("0001-01-01T00:00", "not a plausible time"),
    ("x" * 500, "is too long"),
])
def test_bad_replay_times_get_a_message_on_the_page(env, since, fragment):
    hook = env.subscribe()
    client = env.signed_in()
    path = f"/console/hooks/{hook['id']}/replay"
    r = client.get(path, query_string={"since": since})
    assert r.status_code == 400 and fragment in text(r) and 'role="alert"' in text(r)
    r = client.post(path, data={"since": since, "csrf_token": env.form_token(f"/console/hooks/{hook['id']}")})
    assert r.status_code == 400 and fragment in text(r)


def test_bad_input_anywhere_is_a_message_never_a_500(env):
    hook = env.subscribe()
    client = env.signed_in()
    token = env.form_token("/console/")
    cases = [
        ("get", "/console/watches?page=abc", 400, "page must be a whole number"),
        ("get", "/console/watches?page=-3", 400, "page must be a whole number"),
        ("get", "/console/hooks?page=99999999999", 400, "page must be a whole number"),
        ("get", "/console/keys?key=" + "k" * 300, 400, "too long"),
        ("get", "/console/watches?page=40", 200, "page 1 of 1"),   # past the end: the last page
        ("get", f"/console/watches/{watch_row(env.svc)['id']}?days=abc", 400, "Days must be one of"),
        ("get", "/console/watches/w_nope", 404, "No watch with id w_nope"),
        ("get", "/console/hooks/hook_nope", 404, "No hook with id hook_nope"),
        ("get", "/console/hooks/hook_nope/replay?since=2020-01-01T00:00", 404, "No hook with id"),
        ("post", "/console/hooks/hook_nope/state", 404, "No hook with id"),
        ("post", f"/console/hooks/{hook['id']}/state", 413, "too large"),
    ]
    for method, path, status, fragment in cases:
        data = {"action": "pause", "csrf_token": token}
        if status == 413:
            data["pad"] = "x" * (env.svc.settings.max_body_bytes + 10)
        r = client.get(path) if method == "get" else client.post(path, data=data)
        assert r.status_code == status, (path, r.status_code, text(r)[:300])
        assert fragment in text(r), (path, text(r)[:500])
        assert r.content_type.startswith("text/html")


def test_an_account_page_charts_growth_per_day_without_loading_anything_from_elsewhere(
        serve, dumpling, receiver, world, sqlite_url):  # noqa: F811
    clock = ManualClock(time.time() - 3 * DAY)
    live, raw, _ = _env(serve, dumpling, sqlite_url, receiver, clock=clock)
    svc = live.services
    with live.client(raw) as api:
        assert api.post(HOOKS, json={"event": "new_follower", "handle": HANDLE,
                                     "targetUrl": receiver.url}).status_code == 201
    for burst in (2, 0, 5):                   # two days ago: 2, yesterday: none, today: 5
        world.add_followers(HANDLE, burst)
        make_due(svc)
        poll_due_watches(svc)
        clock.advance(DAY)
    newest = world.add_followers(HANDLE, 1)[0]
    make_due(svc)
    poll_due_watches(svc)
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    wid = watch_row(svc)["id"]
    r = client.get(f"/console/watches/{wid}?days=7")
    page = text(r)
    assert r.status_code == 200
    known = 30 + 2 + 5 + 1                     # the baseline is the first page (30 followers)
    assert '<svg class="chart"' in page and 'role="img"' in page and '<title id="chart-title">' in page
    # 7 days asked for, but the watch began 3 days ago: the chart starts that day, with no flat
    # "total known" line for the days before anything was watched.
    began = datetime.fromtimestamp(clock.now - 3 * DAY, timezone.utc).strftime("%Y-%m-%d")
    assert f"<desc id=\"chart-desc\">4 days from {began}" in page and "8 new followers detected" in page
    assert f"grew from 30 to {known}" in page and "most on" in page
    rows = re.findall(r'<tr><th scope="row">(\d{4}-\d\d-\d\d)</th><td>(\d+)</td><td>([\d,]+)</td></tr>', page)
    assert len(rows) == 4 and rows[-1][0] == began   # newest day first: today 1, yesterday 5, then 0, then 2
    assert [(int(n), int(t)) for _, n, t in rows] == [(1, known), (5, known - 1), (0, known - 6), (2, known - 6)]
    assert page.count('class="bar"') == 3 + 1  # three days with new followers, and the legend
    assert f"https://www.tiktok.com/@{newest.handle}" in page
    assert re.search(r'class="avatar" aria-hidden="true">[A-Z?]{1,2}<', page)
    assert "<img" not in page and "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//(?!www\.tiktok\.com/@)', page)   # nothing loaded from elsewhere
    assert re.findall(r'<link[^>]+href="([^"]+)"', page) == ["/console/static/console.css"]
    with client.get("/console/static/console.css") as css:
        assert css.status_code == 200 and "url(" not in text(css) and "@import" not in text(css)


def test_the_overview_says_when_the_worker_falls_behind(serve, dumpling, receiver, sqlite_url):  # noqa: F811
    clock = ManualClock(time.time())
    live, raw, _ = _env(serve, dumpling, sqlite_url, receiver, clock=clock)
    with live.client(raw) as api:
        assert api.post(HOOKS, json={"event": "new_follower", "handle": HANDLE,
                                     "targetUrl": receiver.url}).status_code == 201
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    assert "Keeping up" in text(client.get("/console/"))
    clock.advance(live.services.settings.poll_interval + 180)            # nobody polled when it fell due
    page = text(client.get("/console/"))
    assert "<strong>Behind</strong>" in page
    assert "Watches due, not yet polled</dt><dd>1 (oldest waiting 3 min)" in page
    # No poll has committed for longer than a lease while a watch is due: a warning says to start the worker.
    assert 'id="worker-stalled"' in page and "No worker is polling" in page and "<code>connector poll</code>" in page
    assert re.search(r"No poll has committed for \d+ min, longer than a poll lease \(2 min\)", page), page[page.find("worker-stalled"):][:400]
    poll_due_watches(live.services)
    page = text(client.get("/console/"))
    assert "Keeping up" in page and "Watches due, not yet polled</dt><dd>0<" in page
    assert "worker-stalled" not in page


# -- 10,000 watches --------------------------------------------------------------------------

def test_ten_thousand_watches_page_through_an_index(serve, dumpling, sqlite_url):  # noqa: F811
    live = serve(trigger_settings(dumpling, sqlite_url, admin_key=ADMIN))
    svc = live.services
    _, key = svc.keys.create(name="bulk")
    now = time.time()
    rows = [{"id": f"w_bulk{i:05d}", "provider": "dumpling", "cred_hash": "", "handle": f"acct_{i:05d}",
             "status": "active", "last_poll_at": now - 60, "next_poll_at": now + i, "credits_spent": i,
             "pages_read": i, "created_at": now} for i in range(10_000)]
    subs = [{"id": f"poll_bulk{i:05d}", "watch_id": f"w_bulk{i:05d}", "key_id": key["id"], "kind": "poll",
             "event": "new_follower", "request_source": "MAKE_DOT_COM", "status": "active", "credits_spent": 0,
             "created_at": now} for i in range(0, 10_000, 10)]
    with svc.store.begin() as conn:
        conn.execute(watches.insert(), rows)
        conn.execute(subscriptions.insert(), subs)
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    page = text(client.get("/console/watches"))
    assert "10,000 watches; showing 1–50, page 1 of 200" in page
    assert len(re.findall(r'<th scope="row"><a href="/console/watches/w_bulk', page)) == 50
    assert "@acct_00000" in page and "@acct_00049" in page and "@acct_00050" not in page   # next poll first
    assert 'rel="next" href="/console/watches?page=2"' in page
    last = text(client.get("/console/watches?page=200"))
    assert "showing 9,951–10,000, page 200 of 200" in last and "@acct_09999" in last
    filtered = text(client.get("/console/watches?handle=acct_0004"))
    assert "10 watches; showing 1–10" in filtered
    by_key = text(client.get("/console/watches?key=bulk&page=2"))
    assert "1,000 watches; showing 51–100, page 2 of 20" in by_key and "@acct_00500" in by_key
    assert "10,000" in text(client.get("/console/"))

    statement = watches_query(Filters()).limit(50).offset(50).compile(svc.store.engine)
    with svc.store.connect() as conn:
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(statement),
                                                                  tuple(statement.params.values())))
    assert "ix_watches_due" in plan, plan                  # read in order from the index
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # never a sort of every watch


def test_each_watch_page_names_what_it_reads(env, world):  # noqa: F811
    """A watch of followers, of accounts followed, of the profile (milestones) and of full walks
    (lost followers): each page says what it counts, and lists its own events by name."""
    world.add_following(HANDLE, 10)
    for event, extra in (("new_follower", {}), ("new_following", {}), ("follower_milestone", {"every": 10}),
                         ("lost_follower", {})):
        env.subscribe(event=event, **extra)
    followed = world.add_following(HANDLE, 3)
    world.add_followers(HANDLE, 25)                      # 75 + 25: milestones 80, 90 and 100
    env.cycle()
    browser = env.signed_in()
    with env.svc.store.connect() as conn:
        ids = dict(conn.execute(sa.select(watches.c.operation, watches.c.id)).all())

    def page(operation: str) -> str:
        r = browser.get(f"/console/watches/{ids[operation]}")
        assert r.status_code == 200
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text(r)))

    following = page("list_following")
    assert "Accounts followed known 13" in following and "Latest accounts followed" in following
    assert "3 new accounts followed detected" in following and "unknown" not in following
    assert all(f"@{u.handle}" in following for u in followed)
    milestones = page("get_profile")
    assert "Latest milestones" in milestones and "100 followers reached" in milestones
    assert "Followers known" not in milestones and "Growth" not in milestones and "unknown" not in milestones
    lost = page("followers_snapshot")
    assert "Followers in the last full walk 100" in lost and "No follower lost yet" in lost
    assert "Followers known" in page("list_followers") and "Latest followers" in page("list_followers")
    # The overview's estimate of new followers a day counts the followers' watch, not the following one.
    with env.svc.store.connect() as conn:
        rates = dict(conn.execute(sa.select(watches.c.operation, watches.c.rate_per_day)).all())
    assert rates["list_following"] and rates["list_followers"]
    overview = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text(browser.get("/console/"))))
    assert f"Estimated new followers a day {rates['list_followers']:,.0f} " in overview
