"""Manifests against providers: every operation a manifest names is a method of every provider,
taking the arguments its inputs fill, or the provider says it does not offer it (a 400)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from connector.config import MANIFESTS_DIR
from connector.manifests import ManifestError, load_manifests
from connector.providers import PROVIDERS
from connector.providers.contract import check_providers
from connector.providers.demo import DemoProvider


def test_the_shipped_manifests_fit_every_provider():
    check_providers(load_manifests(MANIFESTS_DIR))


@pytest.fixture
def manifests_copy(tmp_path):
    folder = tmp_path / "manifests"
    shutil.copytree(MANIFESTS_DIR, folder)
    return folder


def edit(folder, name: str, change) -> None:
    path = folder / f"{name}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_an_operation_no_provider_has_stops_start_up_naming_it(manifests_copy, make_settings):
    edit(manifests_copy, "list_following", lambda m: m.update(operation="list_videos"))
    with pytest.raises(ManifestError) as caught:
        check_providers(load_manifests(manifests_copy))
    message = str(caught.value)
    for cls in PROVIDERS.values():
        assert f"list_following.json: operation 'list_videos' is not a method of the {cls.name} provider" in message
    assert "DemoProvider.unsupported" in message
    done = subprocess.run([sys.executable, "-m", "connector.cli", "manifests", "check", "--dir", str(manifests_copy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "operation 'list_videos'" in done.stderr and "Traceback" not in done.stderr


def test_an_input_no_provider_takes_is_named(manifests_copy):
    def rename(manifest):
        next(spec for spec in manifest["inputs"] if spec["key"] == "count")["param"] = "page_size"
    edit(manifests_copy, "list_followers", rename)
    with pytest.raises(ManifestError, match="input 'count' fills argument 'page_size', which "
                                            "DumplingProvider.list_followers does not take"):
        check_providers(load_manifests(manifests_copy))


def test_an_operation_a_provider_does_not_offer_is_a_400_that_costs_nothing(serve, make_settings, monkeypatch):
    monkeypatch.setattr(DemoProvider, "unsupported", {"list_following": "its accounts follow nobody"})
    check_providers(load_manifests(MANIFESTS_DIR))                   # declared: start-up accepts it
    live = serve(make_settings())
    raw, key = live.services.keys.create(credits=10)
    with live.client(raw) as http:
        r = http.post("/api/v1/get-tiktok-user-following", json={"handle": "stoolpresidente"})
        assert r.status_code == 400
        assert r.json()["error"] == ("The demo provider does not offer list following: its accounts follow nobody. "
                                     "Choose another provider with X-Provider.")
        assert http.post("/api/v1/get-tiktok-user-followers", json={"handle": "stoolpresidente"}).status_code == 200
    assert live.services.keys.balance(key["id"]) == 9                  # only the followers page was paid


def test_the_trigger_is_refused_too_before_anything_is_made(serve, make_settings, monkeypatch):
    from connector.trigger.tables import watches
    monkeypatch.setattr(DemoProvider, "unsupported", {"list_followers": "it lists no followers"})
    live = serve(make_settings(allow_private_targets=True))
    raw, key = live.services.keys.create(credits=10)
    with live.client(raw) as http:
        for route, body in (("/api/v1/triggers/new-follower", {"handle": "stoolpresidente"}),
                            ("/api/v1/hooks", {"event": "new_follower", "handle": "stoolpresidente",
                                               "targetUrl": "http://127.0.0.1:9/hook"})):
            r = http.post(route, json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"].startswith("The demo provider does not offer new follower: it lists no followers.")
    with live.services.store.connect() as conn:
        assert conn.execute(watches.select()).first() is None
    assert live.services.keys.balance(key["id"]) == 10


def test_stored_errors_are_worded_for_http_when_shown(serve, make_settings):

    from connector.errors import ERROR_KINDS
    from connector.trigger.tables import watches
    live = serve(make_settings(allow_private_targets=True))
    raw, _ = live.services.keys.create()
    with live.client(raw) as http:
        hook = http.post("/api/v1/hooks", json={"event": "new_follower", "handle": "stoolpresidente",
                                                "targetUrl": "http://127.0.0.1:9/hook"}).json()
        stored = ERROR_KINDS["provider_key_rejected"].message.format(provider="dumpling")   # as a poll stores it
        with live.services.store.begin() as conn:
            conn.execute(watches.update().values(status="auth_failed", last_error=stored))
        for view in (http.get(f"/api/v1/hooks/{hook['id']}").json(), http.get("/api/v1/hooks").json()["hooks"][0]):
            assert "rejected the key sent in X-Provider-Key." in view["lastError"]
            assert "[provider" not in view["lastError"]
