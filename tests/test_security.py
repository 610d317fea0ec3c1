"""Security of the web tier: webhook target addresses, odd bytes in ids, console sessions and
sign-in throttling, webhook secrets at rest and their rotation.

Everything runs over real HTTP on loopback against SQLite files and, where configured,
PostgreSQL. The target filter is tested with no worker running (a worker would try to
deliver, which is not what is being checked).
"""

from __future__ import annotations

import base64
import json
import math
import re
import socket
import time

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connector.app import create_app
from connector.config import DAY, ConfigError
from connector.console.auth import OVERALL, PER_ADDRESS, SESSION_COOKIE, SignInThrottle
from connector.errors import BadRequest
from connector.store import Store
from connector.store.schema import console_sessions
from connector.trigger.crypto import decrypt_secret
from connector.trigger.events import iso
from connector.trigger.sender import deliver_due_webhooks
from connector.trigger.tables import subscriptions, watches
from connector.trigger.targets import resolve_target
from connector.trigger.worker import poll_due_watches
from tests.clock import ManualClock
from tests.conftest import TEST_SECRET_KEY
from tests.processes import clean_env, free_port, run
from tests.test_console import sign_in
from tests.trigger_kit import (HANDLE, Received, dumpling, make_due, receiver, trigger_settings,  # noqa: F401
                               world)

HOOKS = "/api/v1/hooks"
LOCAL_TARGET = "http://127.0.0.1:9/hook"     # never called: no worker runs in these tests

# IPv6 forms that wrap a refused IPv4 address, and other addresses that are not globally routable.
REFUSED = [
    "2002:7f00:1::",          # 6to4 wrapping 127.0.0.1 (the form)
    "2002:a00:1::1",          # 6to4 wrapping 10.0.0.1
    "2002:a9fe:a9fe::",       # 6to4 wrapping 169.254.169.254 (cloud metadata)
    "fec0::1",                # deprecated site-local (the form)
    "fec0:1234::5",
    "64:ff9b::7f00:1",        # NAT64 well-known prefix wrapping 127.0.0.1
    "64:ff9b::a9fe:a9fe",     # ... wrapping 169.254.169.254
    "64:ff9b:1::808:808",     # NAT64 local-use prefix: never global
    "::ffff:127.0.0.1",       # IPv4-mapped
    "::ffff:192.168.1.1",
    "::127.0.0.1",            # IPv4-compatible (deprecated)
    "::10.0.0.1",
    "::8.8.8.8",              # IPv4-compatible is deprecated whatever it wraps
    "::1", "::", "fe80::1", "fd00::1", "ff02::1", "2001:db8::1", "2001::1",
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "192.0.2.10", "198.18.0.1", "224.0.0.1", "255.255.255.255",
]
ALLOWED = ["93.184.216.34", "2606:4700::1111", "2002:808:808::1", "64:ff9b::808:808", "::ffff:8.8.8.8"]


def url_for(address: str) -> str:
    return f"http://[{address}]/hook" if ":" in address else f"http://{address}/hook"


@pytest.mark.parametrize("address", REFUSED)
def test_a_target_at_an_address_that_is_not_globally_routable_is_refused(address):
    with pytest.raises(BadRequest, match="private, loopback or reserved") as refused:
        resolve_target(url_for(address), allow_private=False)      # the real getaddrinfo, on a literal
    assert "'targetUrl'" in refused.value.message


@pytest.mark.parametrize("address", REFUSED[:12])
def test_a_name_resolving_to_a_wrapped_internal_address_is_refused(address):
    def resolve(host, port, type=None):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
    with pytest.raises(BadRequest, match=f"resolves to {address}"):
        resolve_target("https://hooks.example.com/x", allow_private=False, resolve=resolve)


@pytest.mark.parametrize("address", ALLOWED)
def test_globally_routable_addresses_and_forms_wrapping_them_are_allowed(address):
    assert resolve_target(url_for(address), allow_private=False).addresses


@pytest.mark.parametrize("url", ["http://[2002:7f00:1::]/", "http://[fec0::1]/", "http://[::ffff:7f00:1]:8080/x",
                                 "http://[64:ff9b::7f00:1]/", "http://[::127.0.0.1]/", "http://2130706433/",
                                 "http://0x7f.1/"])
def test_the_api_refuses_those_targets_naming_the_field(serve, make_settings, url):
    live = serve(make_settings(allow_private_targets=False))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        r = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente", "targetUrl": url})
        assert r.status_code == 400, r.text
        assert r.json()["error"].startswith("'targetUrl' host") and "webhook targets must be public" in r.json()["error"]
        assert http.get(HOOKS).json()["hooks"] == []


# -- odd bytes in ids ------------------------------------------------------------------------

ODD_IDS = ["%00", "hook_%00abc", "hook_%01", "%7F", "hook_%C3%A9", "%E2%80%AE", "%FF%FE", "hook_" + "a" * 300,
           "hook_%0d%0aSet-Cookie:x=1", "..%2F..%2Fetc", "hook_a%20b"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_bytes_in_a_hook_id_are_a_404_never_a_500(serve, make_settings, database_url, odd, caplog):
    live = serve(make_settings(database_url=database_url))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        for method in ("GET", "PATCH", "DELETE"):
            r = http.request(method, f"{HOOKS}/{odd}", json={"enabled": True} if method == "PATCH" else None)
            assert r.status_code == 404, (method, odd, r.status_code, r.text)
            assert "error" in r.json()
        r = http.post(f"{HOOKS}/{odd}/rotate-secret")
        assert r.status_code in (404, 405), (odd, r.status_code, r.text)
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


ADMIN = "operator-secret-0123456789"


@pytest.mark.parametrize("odd", ODD_IDS)
def test_odd_bytes_in_console_ids_and_filters_are_a_4xx_never_a_500(serve, make_settings, database_url, odd, caplog):
    live = serve(make_settings(database_url=database_url, admin_key=ADMIN))
    client = live.app.test_client()
    assert sign_in(client).status_code == 303
    for path in (f"/console/hooks/{odd}", f"/console/watches/{odd}", f"/console/hooks/{odd}/replay?since=2020-01-01",
                 f"/console/keys?key={odd}", f"/console/hooks?handle={odd}", f"/console/watches?key={odd}"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


# -- console sessions ------------------------------------------------------------------------

def _console(live) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=30, follow_redirects=False)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def _sign_in(http: httpx.Client, key: str = ADMIN) -> httpx.Response:
    page = http.get("/console/login")
    return http.post("/console/login", data={"csrf_token": _csrf(page.text), "admin_key": key})


def _copy(http: httpx.Client, live) -> httpx.Client:
    """Another browser holding a copy of ``http``'s session cookie."""
    other = _console(live)
    other.cookies.set(SESSION_COOKIE, http.cookies.get(SESSION_COOKIE, path="/console/"), path="/console/")
    return other


def test_signing_out_ends_the_session_everywhere_its_cookie_was_copied(serve, make_settings, database_url):
    live = serve(make_settings(database_url=database_url, admin_key=ADMIN))
    with _console(live) as browser:
        assert _sign_in(browser).status_code == 303
        cookie = browser.cookies.get(SESSION_COOKIE, path="/console/")
        with live.services.store.connect() as conn:
            rows = conn.execute(sa.select(console_sessions)).mappings().all()
        assert len(rows) == 1 and cookie not in str(dict(rows[0]))           # only its hash is stored
        with _copy(browser, live) as thief:
            assert thief.get("/console/").status_code == 200                  # a copy works while signed in
            page = browser.get("/console/")
            assert browser.post("/console/logout", data={"csrf_token": _csrf(page.text)}).status_code == 303
            r = thief.get("/console/")
            assert r.status_code == 302 and "/console/login" in r.headers["Location"]
            r = thief.post("/console/logout", data={"csrf_token": _csrf(page.text)})
            assert r.status_code == 403                                      # its forms are refused too
        assert browser.get("/console/").status_code == 302
    with live.services.store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar_one() == 0


def test_changing_the_admin_key_ends_every_session(serve, make_settings, database_url):
    first = serve(make_settings(database_url=database_url, admin_key=ADMIN))
    with _console(first) as one, _console(first) as two:
        assert _sign_in(one).status_code == 303 and _sign_in(two).status_code == 303
        assert one.get("/console/").status_code == 200
        new_key = "a-brand-new-admin-key-42"
        changed = serve(make_settings(database_url=database_url, admin_key=new_key))
        for browser in (one, two):
            with _copy(browser, changed) as moved:
                assert moved.get("/console/").status_code == 302                 # the new key refuses them
        with _console(changed) as three:
            assert _sign_in(three, new_key).status_code == 303                     # and signing in deletes them
        with first.services.store.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar_one() == 1
        assert one.get("/console/").status_code == 302      # even where the old key is still in force


def test_sign_in_attempts_are_throttled_per_address_with_retry_after_and_a_log_line(serve, make_settings, caplog):
    clock = ManualClock()
    live = serve(make_settings(admin_key=ADMIN, clock=clock))
    guesses = [f"guess-number-{n:04d}-of-the-key" for n in range(PER_ADDRESS[0])]
    with _console(live) as http:
        for guess in guesses:
            assert _sign_in(http, guess).status_code == 401
        caplog.clear()
        refused = _sign_in(http, ADMIN)                         # even the right key: no answer while throttled
        assert refused.status_code == 429 and refused.headers["Retry-After"] == str(int(PER_ADDRESS[1]))
        assert "Too many failed sign-ins from this address" in refused.text
        assert "console sign-in from 127.0.0.1 refused" in caplog.text
        assert ADMIN not in caplog.text and not any(g in caplog.text for g in guesses)
        assert http.get("/console/").status_code == 302
        clock.advance(PER_ADDRESS[1])                           # one more attempt comes back
        assert _sign_in(http, ADMIN).status_code == 303
        assert http.get("/console/").status_code == 200


def test_sign_in_attempts_are_throttled_over_all_addresses(serve, make_settings):
    clock = ManualClock()
    live = serve(make_settings(admin_key=ADMIN, clock=clock))
    burst, every = OVERALL
    for n in range(burst):                                      # one failure each from many addresses
        browser = live.app.test_client()
        browser.environ_base["REMOTE_ADDR"] = f"10.{n // 250}.{n % 250}.1"
        assert sign_in(browser, f"wrong-admin-key-{n:05d}").status_code == 401
    fresh = live.app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "192.0.2.77"
    r = sign_in(fresh)
    assert r.status_code == 429 and "from all addresses" in r.get_data(as_text=True)
    assert int(r.headers["Retry-After"]) == math.ceil(every)
    clock.advance(every)
    assert sign_in(fresh).status_code == 303


def test_the_throttle_forgets_addresses_whose_bucket_refilled():
    clock = ManualClock()
    throttle = SignInThrottle(clock, per_address=(2, 10.0), overall=(10**6, 0.001))
    throttle.MAX_ADDRESSES = 50
    for n in range(200):
        throttle.failed(f"198.51.100.{n}")
        clock.advance(20)
    assert len(throttle._addresses) <= 50
    throttle.failed("203.0.113.1"), throttle.failed("203.0.113.1")
    assert throttle.wait("203.0.113.1") == (10, "this address") and throttle.wait("203.0.113.2") is None


# -- webhook secrets at rest ----------------------------------------------------------------

def _raw_rows(store) -> list[dict]:
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM subscriptions")).mappings()]


def test_webhook_secrets_are_not_readable_in_the_database(serve, make_settings, database_url):
    live = serve(make_settings(database_url=database_url, allow_private_targets=True))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        hook = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente",
                                      "targetUrl": LOCAL_TARGET}).json()
        again = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente",
                                       "targetUrl": LOCAL_TARGET})
        assert again.status_code == 200 and again.json()["secret"] == hook["secret"]   # Zapier re-subscribes
    secret = hook["secret"]
    [row] = _raw_rows(live.services.store)
    dumped = repr(row)
    assert secret not in dumped and secret.removeprefix("whsec_") not in dumped
    assert row["secret"] is None and row["secret_enc"]
    assert decrypt_secret(TEST_SECRET_KEY, row["secret_enc"]) == secret
    with pytest.raises(ValueError, match="CONNECTOR_SECRET_KEY changed"):
        decrypt_secret("another-secret-key", row["secret_enc"])


def _plain_hook(store, secret: str) -> None:
    """A hook as the previous release wrote it: its secret in plain text."""
    now = time.time()
    with store.write() as conn:
        conn.execute(watches.insert().values(id="w_prev", provider="demo", cred_hash="", handle="stoolpresidente",
                                             status="active", next_poll_at=now, created_at=now, credits_spent=0,
                                             pages_read=0))
        conn.execute(subscriptions.insert().values(
            id="hook_prev", watch_id="w_prev", key_id="key_prev", kind="hook", event="new_follower",
            target_url="https://hooks.example.com/x", target_host="hooks.example.com:443", secret=secret,
            request_source="API", status="active", credits_spent=0, created_at=now))


def test_plain_secrets_are_encrypted_at_the_first_start_with_a_key_and_refused_without(make_settings, database_url):
    secret = "whsec_" + "Q" * 32
    store = Store(database_url)
    _plain_hook(store, secret)
    store.dispose()
    with pytest.raises(ConfigError) as refused:
        create_app(make_settings(database_url=database_url, secret_key=None))
    message = str(refused.value)
    assert message.startswith("1 webhook subscription exists") and "set CONNECTOR_SECRET_KEY" in message
    assert message.count(". ") == 0 and "\n" not in message                          # one sentence
    app = create_app(make_settings(database_url=database_url))
    svc = app.extensions["connector"]
    [row] = _raw_rows(svc.store)
    assert row["secret"] is None and decrypt_secret(TEST_SECRET_KEY, row["secret_enc"]) == secret
    svc.close()
    with pytest.raises(ConfigError, match="CONNECTOR_SECRET_KEY does not decrypt the stored webhook secrets"):
        create_app(make_settings(database_url=database_url, secret_key="not-the-key-they-were-sealed-with"))


def test_without_a_secret_key_hooks_are_refused_naming_the_setting(serve, make_settings):
    live = serve(make_settings(secret_key=None, allow_private_targets=True))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        r = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente",
                                   "targetUrl": LOCAL_TARGET})
        assert r.status_code == 400 and "CONNECTOR_SECRET_KEY" in r.json()["error"]
        assert http.post("/api/v1/get-tiktok-profile", json={"handle": "brand"}).status_code == 200   # the rest works


def test_serve_and_poll_without_the_key_while_hooks_exist_say_what_to_set(database_url, tmp_path):
    store = Store(database_url)
    _plain_hook(store, "whsec_" + "Q" * 32)
    store.dispose()
    (tmp_path / "m").mkdir()
    env = clean_env(database_url, CONNECTOR_PROVIDER="demo", PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "m"))
    for args in (("poll", "--once"), ("serve", "--port", str(free_port()))):
        done = run(env, *args)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "set CONNECTOR_SECRET_KEY" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- rotation ----------------------------------------------------------------------------------

def _deliver_one(live, world, receiver) -> Received:
    world.add_followers(HANDLE, 1)
    make_due(live.services)
    poll_due_watches(live.services)
    before = len(receiver.requests)
    deliver_due_webhooks(live.services)
    assert len(receiver.requests) == before + 1, "no delivery"
    return receiver.requests[-1]


def _verifies(secret: str, delivery: Received) -> bool:
    try:
        Webhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(serve, dumpling, receiver, world, database_url):  # noqa: F811
    clock = ManualClock(time.time() - DAY - 600)
    live = serve(trigger_settings(dumpling, database_url, clock=clock))
    raw, _ = live.services.keys.create(name="t", credits=1000)
    with live.client(raw) as http:
        s0 = http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url}).json()
        hook_id = s0["id"]
        first = http.post(f"{HOOKS}/{hook_id}/rotate-secret")
        assert first.status_code == 200, first.text
        s1 = first.json()
        assert set(s1) == {"id", "secret", "previousSecretExpiresAt"} and s1["secret"] != s0["secret"]
        assert s1["previousSecretExpiresAt"] == iso(clock() + DAY)

        clock.advance(DAY + 600)                 # now: the first overlap ended 10 minutes ago
        d1 = _deliver_one(live, world, receiver)
        assert len(d1.headers["webhook-signature"].split(" ")) == 1
        assert _verifies(s1["secret"], d1) and not _verifies(s0["secret"], d1)

        s2 = http.post(f"{HOOKS}/{hook_id}/rotate-secret", json={}).json()
        d2 = _deliver_one(live, world, receiver)
        new_sig, old_sig = d2.headers["webhook-signature"].split(" ")
        assert new_sig.startswith("v1,") and old_sig.startswith("v1,")
        assert _verifies(s2["secret"], d2) and _verifies(s1["secret"], d2) and not _verifies(s0["secret"], d2)

        chosen = "whsec_" + base64.b64encode(b"k" * 32).decode()
        s3 = http.post(f"{HOOKS}/{hook_id}/rotate-secret", json={"secret": chosen, "keepPreviousSecretHours": 0})
        assert s3.json() == {"id": hook_id, "secret": chosen, "previousSecretExpiresAt": None}
        d3 = _deliver_one(live, world, receiver)
        assert _verifies(chosen, d3) and not _verifies(s2["secret"], d3)
        again = http.post(HOOKS, json={"event": "new_follower", "handle": HANDLE, "targetUrl": receiver.url})
        assert again.json()["secret"] == chosen                  # re-subscribing shows the secret in force
    for delivery in receiver.requests:                           # every delivery was signed
        assert any(_verifies(s, delivery) for s in (s0["secret"], s1["secret"], s2["secret"], chosen))
    rows = _raw_rows(live.services.store)
    assert all(chosen not in repr(r) and s2["secret"] not in repr(r) for r in rows)


@pytest.mark.parametrize("body, status, fragment", [
    ({"secrets": "x"}, 400, "Unknown field 'secrets'"),
    ({"keepPreviousSecretHours": "24"}, 400, "'keepPreviousSecretHours' must be a number of hours from 0 to 24"),
    ({"keepPreviousSecretHours": True}, 400, "'keepPreviousSecretHours'"),
    ({"keepPreviousSecretHours": 25}, 400, "'keepPreviousSecretHours'"),
    ({"keepPreviousSecretHours": -1}, 400, "'keepPreviousSecretHours'"),
    ({"secret": 12}, 400, "'secret' must be a string: whsec_"),
    ({"secret": "whsec_short"}, 400, "'secret' must be a string: whsec_"),
    ({"secret": "whsec_" + "!" * 40}, 400, "'secret'"),
    ({"secret": "sk_" + "A" * 40}, 400, "'secret'"),
    ([1, 2], 400, "Request body must be a JSON object"),
    ("not json", 400, "Invalid JSON"),
    ("x" * 70000, 413, "too large"),
])
def test_bad_input_to_rotate_secret_is_a_4xx_naming_the_field(serve, make_settings, body, status, fragment):
    live = serve(make_settings(allow_private_targets=True))
    raw, _ = live.services.keys.create(name="t")
    with live.client(raw) as http:
        hook = http.post(HOOKS, json={"event": "new_follower", "handle": "stoolpresidente",
                                      "targetUrl": LOCAL_TARGET}).json()
        content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        r = http.post(f"{HOOKS}/{hook['id']}/rotate-secret", content=content,
                      headers={"Content-Type": "application/json"})
        assert r.status_code == status, r.text
        assert fragment in r.json()["error"]
        assert hook["secret"] not in r.text
        other, _ = live.services.keys.create(name="someone else")
        stranger = http.post(f"{HOOKS}/{hook['id']}/rotate-secret", headers={"Authorization": f"Bearer {other}"})
        assert stranger.status_code == 404 and "No hook with id" in stranger.json()["error"]
        assert http.post(f"{HOOKS}/hook_%00/rotate-secret").status_code == 404
        assert http.post(f"{HOOKS}/hook_{'a' * 100}/rotate-secret").status_code == 404
