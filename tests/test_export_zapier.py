"""The Zapier export, checked by Zapier's own packages and run against the live service.

``zapier-platform-schema`` validates the definition (app level and per operation);
``zapier-platform-core`` runs the auth test, the polling trigger, the REST-hook cycle and every
action through ``createAppHandler`` with ``NODE_ENV=test``, so core's result checks (trigger
results are an array with unique ids, searches return arrays, ...) fail the test instead of
being logged. The node packages are pinned in ``tests/zapier/package-lock.json``; the harness
runs ``npm ci`` there when ``node_modules`` is missing. Node and npm are required: CI has them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa

from connector.export import zapier
from connector.manifests import load_manifests
from connector.trigger.signing import new_webhook_secret, signed_headers

HARNESS_DIR = Path(__file__).parent / "zapier"
MANIFESTS = Path(__file__).parents[1] / "manifests"
KEY_PATTERN = re.compile(r"^[a-zA-Z]+[a-zA-Z0-9_]*$")


@pytest.fixture(scope="session")
def node_env():
    """Environment for the harness; installs the pinned packages once if they are missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("The Zapier export tests need Node.js 18+ and npm on PATH (CI has them): "
                    "install Node 20 and run `npm ci` in tests/zapier.", pytrace=False)
    modules = HARNESS_DIR / "node_modules"
    if not (modules / "zapier-platform-core" / "package.json").exists():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HARNESS_DIR,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {HARNESS_DIR} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)
    installed = json.loads((modules / "zapier-platform-core" / "package.json").read_text())["version"]
    assert installed == zapier.ZAPIER_CORE_VERSION, "tests/zapier pins another zapier-platform-core"
    env = {**os.environ, "NODE_PATH": str(modules), "NODE_ENV": "test"}
    env.pop("NODE_OPTIONS", None)
    return {"node": node, "env": env}


def write_app(directory: Path, manifests=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in zapier.render(manifests or load_manifests(MANIFESTS)).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def app_dir(tmp_path):
    return write_app(tmp_path / "zapier-app")


def harness(node_env, *args) -> dict:
    done = subprocess.run([node_env["node"], str(HARNESS_DIR / "harness.js"), *map(str, args)],
                          env=node_env["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"harness failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


class ZapierRunner:
    """Runs one method of the integration through zapier-platform-core against a service."""

    def __init__(self, node_env, app_dir: Path, url: str, key: str):
        self.node_env, self.app_dir = node_env, app_dir
        self.auth = {"serviceUrl": url, "apiKey": key}

    def __call__(self, method: str, input_data=None, auth=None, **bundle) -> dict:
        bundle = {"authData": auth or self.auth, "inputData": input_data or {}, **bundle}
        return harness(self.node_env, "run", self.app_dir, method, json.dumps(bundle))

    def ok(self, method: str, input_data=None, **bundle):
        out = self(method, input_data, **bundle)
        assert out["ok"], f"{method} failed: {out}"
        return out["results"]


@pytest.fixture
def run(node_env, app_dir, demo):
    return ZapierRunner(node_env, app_dir, demo.url, demo.key)


def requests_by_source(service) -> dict:
    return service.services.keys.list()[0]["requests"]


# -- the definition ----------------------------------------------------------

def test_files_and_pins(app_dir):
    package = json.loads((app_dir / "package.json").read_text())
    assert package["main"] == "index.js"
    assert package["dependencies"] == {"zapier-platform-core": "19.1.0"}
    index = (app_dir / "index.js").read_text()
    assert "require('./integration.json')" in index
    assert "platformVersion: require('zapier-platform-core').version" in index


def test_schema_validates_app_and_every_operation(node_env, app_dir):
    out = harness(node_env, "validate", app_dir)
    assert out["app"] == []
    assert out["platformVersion"] == "19.1.0" and out["version"] == "1.0.0"
    assert {"searches.get_profile", "searches.list_followers", "searches.list_following",
            "triggers.new_follower", "triggers.new_follower_instant"} <= set(out["operations"])
    assert all(errors == [] for errors in out["operations"].values()), out["operations"]


def test_schema_check_is_not_blind(node_env, tmp_path):
    """The harness reports what Zapier rejects: a bad key, and a missing sample (per operation)."""
    app = write_app(tmp_path / "broken")
    definition = json.loads((app / zapier.DEFINITION_FILE).read_text())
    definition["searches"]["get_profile"]["key"] = "get-profile"
    del definition["triggers"]["new_follower"]["operation"]["sample"]
    (app / zapier.DEFINITION_FILE).write_text(json.dumps(definition))
    out = harness(node_env, "validate", app)
    assert any("key" in error for error in out["app"])
    assert out["operations"]["triggers.new_follower"] != []


def test_keys_inputs_and_outputs_follow_the_manifests():
    definition = zapier.build(load_manifests(MANIFESTS))
    for group in ("triggers", "searches", "creates"):
        for key, op in definition[group].items():
            assert KEY_PATTERN.match(key) and op["key"] == key
            fields = op["operation"]["inputFields"]
            assert all(f["helpText"] for f in fields)
            assert "requestSource" not in {f["key"] for f in fields}
    profile = definition["searches"]["get_profile"]["operation"]
    assert {"key": "user__id", "label": "User ID", "type": "string"} in profile["outputFields"]
    followers = definition["searches"]["list_followers"]["operation"]
    assert {f["key"]: f["type"] for f in followers["inputFields"]} == {
        "handle": "string", "minTime": "string", "count": "integer"}
    assert "followers[]user__uniqueId" in {f["key"] for f in followers["outputFields"]}
    trigger = definition["triggers"]["new_follower"]["operation"]
    assert {"key": "id", "label": "Event ID", "type": "string", "primary": True} in trigger["outputFields"]
    assert trigger["perform"]["body"]["requestSource"] == "ZAPIER"
    assert definition["requestTemplate"]["headers"]["Authorization"] == "Bearer {{bundle.authData.apiKey}}"


# -- running it with zapier-platform-core -------------------------------------

def test_auth_test_accepts_a_key_and_rejects_a_bad_one(run, demo):
    run.ok("authentication.test")
    out = run("authentication.test", auth={"serviceUrl": demo.url, "apiKey": "not-a-key"})
    assert not out["ok"] and "API key is invalid or missing." in out["message"]


def test_polling_trigger_returns_new_followers_with_ids(run, demo):
    events = run.ok("triggers.new_follower.operation.perform", {"handle": "@zapier_watch", "limit": "5"})
    assert isinstance(events, list) and 0 < len(events) <= 5
    assert len({e["id"] for e in events}) == len(events)
    assert all(e["event"] == "new_follower" and e["handle"] == "zapier_watch" for e in events)
    assert events[0]["follower"]["uniqueId"]
    assert requests_by_source(demo).get("ZAPIER", 0) >= 1


def test_profile_search_returns_one_profile(run, demo):
    results = run.ok("searches.get_profile.operation.perform", {"handle": "https://www.tiktok.com/@zapfan"})
    assert len(results) == 1 and results[0]["user"]["uniqueId"] == "zapfan"
    assert set(results[0]["stats"]) >= {"followerCount", "followingCount"}
    assert set(requests_by_source(demo)) == {"ZAPIER"}


@pytest.mark.parametrize("key, list_key", [("list_followers", "followers"), ("list_following", "followingList")])
def test_list_searches_return_a_page_with_line_items(run, key, list_key):
    first = run.ok(f"searches.{key}.operation.perform", {"handle": "zapfan", "count": "3", "minTime": ""})
    assert len(first) == 1
    page = first[0]
    assert len(page[list_key]) == 3 and page["hasMore"] is True
    second = run.ok(f"searches.{key}.operation.perform",
                    {"handle": "zapfan", "count": "3", "minTime": str(page["minCursor"])})[0]
    assert {r["user"]["id"] for r in second[list_key]}.isdisjoint({r["user"]["id"] for r in page[list_key]})


def test_service_errors_reach_the_zap_with_the_services_message(run):
    out = run("searches.list_followers.operation.perform", {"handle": "demo_private"})
    assert not out["ok"]
    assert json.loads(out["message"]) == {"message": "Followers list not found for user: demo_private",
                                          "code": "ServiceError", "status": 404}


def test_provider_choice_is_sent_as_header(run, demo):
    out = run("searches.get_profile.operation.perform", {"handle": "zapfan"},
              auth={"serviceUrl": demo.url, "apiKey": demo.key, "provider": "nonesuch"})
    assert not out["ok"] and "Unknown provider 'nonesuch'" in out["message"]


# -- the instant trigger's signature check ---------------------------------------

def zapier_raw_request(headers: dict, content: str) -> dict:
    """``bundle.rawRequest`` as Zapier builds it: header names prefixed ``Http-``."""
    return {"method": "POST", "querystring": "", "content": content,
            "headers": {"Http-" + "-".join(part.capitalize() for part in name.split("-")): value
                        for name, value in headers.items()}}


def signed(event: dict, secret: str, *, timestamp=None, msg_id=None) -> tuple[dict, str]:
    body = json.dumps(event)
    headers = signed_headers(secret, msg_id or event["id"], body, int(timestamp or time.time()))
    return headers, body


EVENT = {"id": "evt_sig", "event": "new_follower", "handle": "sig_account",
         "follower": {"id": "1", "uniqueId": "someone"}, "detectedAt": "2026-01-01T00:00:00Z", "provider": "demo"}
SECRET = new_webhook_secret()


def _tamper(headers, body):
    return headers, body.replace("someone", "somebody")


def _other_secret(headers, body):
    return signed(EVENT, new_webhook_secret())


def _unsigned(headers, body):
    return {k: v for k, v in headers.items() if k != "webhook-signature"}, body


def _stale(headers, body):
    return signed(EVENT, SECRET, timestamp=time.time() - 3600)


def _future(headers, body):
    return signed(EVENT, SECRET, timestamp=time.time() + 3600)


def _other_id(headers, body):
    return {**headers, "webhook-id": "evt_other"}, body


def _v2_scheme(headers, body):
    return {**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v2,")}, body


def _garbage(headers, body):
    return {**headers, "webhook-signature": "v1,not base64!, v1"}, body


@pytest.fixture
def perform(node_env, app_dir):
    def call(headers, body, subscribe_data=None, raw=True):
        bundle = {"authData": {}, "inputData": {}, "cleanedRequest": json.loads(body),
                  "subscribeData": subscribe_data if subscribe_data is not None else {"id": "hook_1", "secret": SECRET}}
        bundle["rawRequest"] = zapier_raw_request(headers, body) if raw else {"headers": headers, "content": body}
        out = harness(node_env, "run", app_dir, "triggers.new_follower_instant.operation.perform", json.dumps(bundle))
        assert out["ok"], out
        return out["results"]
    return call


def test_a_signed_delivery_fires(perform):
    headers, body = signed(EVENT, SECRET)
    assert perform(headers, body) == [EVENT]
    # Header names as sent (no Http- prefix, any case) are read too.
    assert perform({k.upper(): v for k, v in headers.items()}, body, raw=False) == [EVENT]
    # Several signatures (a rotated secret): one that checks out is enough.
    other, _ = signed(EVENT, new_webhook_secret())
    both = {**headers, "webhook-signature": other["webhook-signature"] + " " + headers["webhook-signature"]}
    assert perform(both, body) == [EVENT]


@pytest.mark.parametrize("change", [_tamper, _other_secret, _unsigned, _stale, _future, _other_id, _v2_scheme,
                                    _garbage], ids=lambda f: f.__name__.strip("_"))
def test_a_delivery_that_fails_the_signature_is_dropped(perform, change):
    headers, body = change(*signed(EVENT, SECRET))
    assert perform(headers, body) == []


@pytest.mark.parametrize("subscribe_data", [{}, {"id": "hook_1"}, {"id": "hook_1", "secret": "not-a-whsec"}])
def test_without_the_subscription_secret_nothing_fires(perform, subscribe_data):
    assert perform(*signed(EVENT, SECRET), subscribe_data=subscribe_data) == []


# -- REST hooks: subscribe -> delivery -> unsubscribe ---------------------------

class Receiver:
    """A webhook target on loopback that keeps every delivery."""

    def __init__(self):
        self.deliveries: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.deliveries.append({"headers": dict(self.headers), "raw": body.decode(),
                                            "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/zapier-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_rest_hook_subscribe_delivery_unsubscribe(node_env, app_dir, serve, make_settings, sqlite_url):
    # The service's demo clock starts an hour back, so the subscription's baseline is an hour
    # old and the worker (real time) finds an hour of new followers on its first poll.
    live = serve(make_settings(allow_private_targets=True, poll_interval=1,
                               clock=lambda: time.time() - 3600))
    key, _ = live.services.keys.create(name="zapier")
    run = ZapierRunner(node_env, app_dir, live.url, key)
    receiver = Receiver()
    try:
        sub = run.ok("triggers.new_follower_instant.operation.performSubscribe",
                     {"handle": "hooked_account"}, targetUrl=receiver.url)
        assert sub["id"] and sub["targetUrl"] == receiver.url and sub["handle"] == "hooked_account"

        samples = run.ok("triggers.new_follower_instant.operation.performList", {"handle": "hooked_account"})
        assert samples and all(s["event"] == "new_follower" for s in samples)

        engine = sa.create_engine(sqlite_url)                   # the watch is due now
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE watches SET next_poll_at = 0"))
        engine.dispose()
        env = {**os.environ, "CONNECTOR_DATABASE_URL": sqlite_url, "CONNECTOR_PROVIDER": "demo",
               "CONNECTOR_ALLOW_PRIVATE_TARGETS": "1", "CONNECTOR_POLL_INTERVAL": "1",
               "CONNECTOR_SECRET_KEY": live.services.settings.secret_key}
        done = subprocess.run([sys.executable, "-m", "connector.cli", "poll", "--once"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        deadline = time.time() + 10
        while not receiver.deliveries and time.time() < deadline:
            time.sleep(0.1)
        assert receiver.deliveries, f"no delivery reached the hook URL:\n{done.stdout}\n{done.stderr}"
        delivery = receiver.deliveries[0]

        # Zapier hands perform the delivery as it arrived; the signature checks out with the
        # secret the subscription returned, and the event fires.
        raw_request = zapier_raw_request(delivery["headers"], delivery["raw"])
        results = run.ok("triggers.new_follower_instant.operation.perform", cleanedRequest=delivery["body"],
                         rawRequest=raw_request, subscribeData=sub)
        assert results == [delivery["body"]]
        assert results[0]["handle"] == "hooked_account" and results[0]["id"].startswith("evt_")
        tampered = {**raw_request, "content": delivery["raw"].replace("hooked_account", "other_account")}
        assert run.ok("triggers.new_follower_instant.operation.perform", cleanedRequest=delivery["body"],
                      rawRequest=tampered, subscribeData=sub) == []

        run.ok("triggers.new_follower_instant.operation.performUnsubscribe", subscribeData=sub)
        with live.client(key) as http:
            assert http.get(f"/api/v1/hooks/{sub['id']}").status_code == 404
        # Unsubscribing twice (Zapier retries) is not an error.
        run.ok("triggers.new_follower_instant.operation.performUnsubscribe", subscribeData=sub)
    finally:
        receiver.close()
