"""The Make export: every file valid per Make's Apps SDK schemas, every request replayed live.

The schemas are the data files of Make's own editor extension, kept outside this repository:
``CONNECTOR_MAKE_SCHEMAS_DIR`` names the folder (the one holding ``syntaxes/``), by default
``../shared/make-schemas`` next to the repository; the schema tests skip, saying so, without it.
What Make's editor checks beyond the schemas (id formats, references between components) is
checked by ``tests/make/checks.py`` and needs no schemas. The module requests are rendered by a small IML renderer
(``tests/make/iml.py``) and sent to the service on loopback the way Make runs them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from connector.export import make
from connector.manifests import load_manifests

from .make.checks import problems
from .make.iml import UNDEFINED, MakeClient, MakeError, render

MANIFESTS = Path(__file__).parents[1] / "manifests"
SCHEMAS_DIR = Path(os.environ.get("CONNECTOR_MAKE_SCHEMAS_DIR")
                   or Path(__file__).parents[2] / "shared" / "make-schemas")
SCHEMAS = SCHEMAS_DIR / "syntaxes"
BASE_URI = "https://make-schemas.test/"

SCHEMA_FOR_PART = {
    "communication": "api.json", "attach": "api.json", "detach": "api.json",
    "params": "parameters.json", "staticParams": "parameters.json", "mappableParams": "parameters.json",
    "interface": "parameters.json", "samples": "samples.json", "epoch": "epoch.json",
}
SCHEMA_FOR_GENERAL = {"base": "base.json", "common": "common.json", "groups": "groups.json"}


@pytest.fixture(scope="module")
def validators():
    if not SCHEMAS.is_dir():
        pytest.skip(f"Make's Apps SDK schemas are not at {SCHEMAS}: set CONNECTOR_MAKE_SCHEMAS_DIR to "
                    "a copy of the make-schemas folder (the one holding syntaxes/)")
    resources = []
    imljson = SCHEMAS / "imljson" / "schemas"
    for path in sorted(imljson.glob("*.json")):
        resources.append((BASE_URI + path.name, Resource.from_contents(json.loads(path.read_text()),
                                                                       default_specification=DRAFT7)))
    app_schema = json.loads((SCHEMAS / "local-development" / "schemas" / "makecomapp.schema.json").read_text())
    resources.append((BASE_URI + "makecomapp.schema.json", Resource.from_contents(app_schema)))
    from jsonschema_specifications import REGISTRY as META
    registry = META.combine(Registry().with_resources(resources))

    def validator(name: str):
        return jsonschema.Draft7Validator({"$ref": BASE_URI + name}, registry=registry)

    return validator


def errors_of(validator, data) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(data)]


@pytest.fixture(scope="module")
def app():
    return make.build(load_manifests(MANIFESTS))


def test_every_file_is_valid_per_the_make_schemas(validators, app):
    manifest_file = app["makecomapp.json"]
    assert errors_of(validators("makecomapp.schema.json"), manifest_file) == []
    assert set(manifest_file["components"]) == {"connection", "webhook", "module", "rpc", "function", "endpoint"}
    checked = {"makecomapp.json"}
    for part, path in manifest_file["generalCodeFiles"].items():
        checked.add(path)
        if part in SCHEMA_FOR_GENERAL:
            assert errors_of(validators(SCHEMA_FOR_GENERAL[part]), app[path]) == [], path
    for kind, components in manifest_file["components"].items():
        for name, component in components.items():
            for part, path in component["codeFiles"].items():
                checked.add(path)
                assert errors_of(validators(SCHEMA_FOR_PART[part]), app[path]) == [], path
    assert checked == set(app), "every generated file is listed in makecomapp.json"


def test_schema_check_is_not_blind(validators, app):
    """The schemas reject what Make would: a GET-only connection verify is fine, a POST without body is not."""
    bad = dict(app["modules/getProfile/getProfile.communication.iml.json"])
    del bad["body"]
    assert errors_of(validators("api.json"), bad)
    bad_base = json.loads(json.dumps(app["general/base.iml.json"]))
    del bad_base["response"]["error"]["message"]
    assert errors_of(validators("base.json"), bad_base)


def test_modules_kinds_and_errors(app):
    modules = app["makecomapp.json"]["components"]["module"]
    assert {n: m["moduleType"] for n, m in modules.items()} == {
        "getProfile": "action", "listFollowers": "search", "listFollowing": "search",
        "watchNewFollower": "trigger", "watchNewFollowerInstant": "instant_trigger",
        "watchNewFollowing": "trigger", "watchNewFollowingInstant": "instant_trigger",
        "watchFollowerMilestone": "trigger", "watchFollowerMilestoneInstant": "instant_trigger",
            "watchLostFollower": "trigger", "watchLostFollowerInstant": "instant_trigger"}
    assert modules["watchNewFollowerInstant"]["webhook"] == "newFollower"
    assert modules["watchNewFollowingInstant"]["webhook"] == "newFollowing"
    # A hook subscribes with the trigger's filters; an empty one is left out.
    attach = app["webhooks/newFollowing/newFollowing.attach.iml.json"]["body"]
    assert attach["event"] == "new_following" and attach["handle"] == "{{parameters.handle}}"
    assert attach["minFollowerCount"] == "{{ifempty(parameters.minFollowerCount, undefined)}}"
    assert "limit" not in attach
    epoch = app["modules/watchNewFollowing/watchNewFollowing.epoch.iml.json"]["response"]["output"]
    assert epoch["label"] == "{{item.followed.uniqueId}}"
    error = app["general/base.iml.json"]["response"]["error"]
    assert error["429"]["type"] == "RateLimitError" and error["401"]["type"] == "InvalidAccessTokenError"
    trigger = app["modules/watchNewFollower/watchNewFollower.communication.iml.json"]["response"]["trigger"]
    assert trigger == {"type": "id", "order": "desc", "id": "{{item.seq}}"}
    limit = [p for p in app["modules/watchNewFollower/watchNewFollower.static-params.iml.json"] if p["name"] == "limit"]
    assert limit and limit[0]["required"] is True
    assert app["webhooks/newFollower/newFollower.attach.iml.json"]["response"]["data"] == {"hookId": "{{body.id}}"}
    assert "{{webhook.hookId}}" in app["webhooks/newFollower/newFollower.detach.iml.json"]["url"]


def test_ids_and_references_pass_makes_own_checks(app):
    manifest_file = app["makecomapp.json"]
    assert problems(manifest_file) == []
    components = manifest_file["components"]
    # Every module and the webhook use the one connection; the instant trigger names its webhook.
    assert all(c["connection"] == "tiktokConnector" for c in components["module"].values())
    assert components["webhook"]["newFollower"]["connection"] == "tiktokConnector"
    # A suggested origin (README: your app id) in Make's app id format passes.
    with_origin = {**manifest_file, "origins": [{"appId": "tiktok-connector", "label": "x"}]}
    assert problems(with_origin) == []


def test_makes_own_checks_are_not_blind(app):
    broken = json.loads(json.dumps(app["makecomapp.json"]))
    components = broken["components"]
    components["module"]["get-profile"] = components["module"].pop("getProfile")        # hyphen in a module id
    components["module"]["ab"] = dict(components["module"]["listFollowers"])           # too short
    components["connection"]["c" * 36] = {"label": "long", "connectionType": "basic"}  # too long
    components["module"]["listFollowers"]["altConnection"] = "missingConnection"
    components["module"]["listFollowing"]["connection"] = "otherConnection"
    components["module"]["watchNewFollowerInstant"]["webhook"] = "noSuchHook"
    components["webhook"]["newFollower"]["connection"] = "gone"
    broken["origins"] = [{"appId": "TikTok_Connector"}, {"appId": "tiktok-connector-"}]
    found = problems(broken)
    expected = ["module id 'get-profile'", "module id 'ab'", f"connection id '{'c' * 36}'",
                "module 'listFollowers' names altConnection 'missingConnection'",
                "module 'listFollowing' names connection 'otherConnection'",
                "module 'watchNewFollowerInstant' names webhook 'noSuchHook'",
                "webhook 'newFollower' names connection 'gone'",
                "origin app id 'TikTok_Connector'", "origin app id 'tiktok-connector-'"]
    for start in expected:
        assert any(line.startswith(start) for line in found), (start, found)
    assert len(found) == len(expected), found


def test_iml_renderer():
    scope = {"parameters": {"a": "x", "n": 0, "e": ""}, "body": {"list": [1, 2]}}
    assert render("{{parameters.a}}", scope) == "x"
    assert render("{{body.list}}", scope) == [1, 2]
    assert render("/p/{{parameters.a}}/{{parameters.n}}", scope) == "/p/x/0"
    assert render({"k": "{{ifempty(parameters.e, undefined)}}", "m": "{{ifempty(parameters.e, 'd')}}"}, scope) == {"m": "d"}
    assert render("{{parameters.missing}}", scope) is UNDEFINED


# -- replaying the modules against the live service -----------------------------

@pytest.fixture
def client(demo, app):
    return MakeClient(demo.http, app["general/base.iml.json"], {"serviceUrl": demo.url, "apiKey": demo.key})


def module(app, name, part="communication"):
    return app[f"modules/{name}/{name}.{'static-params' if part == 'staticParams' else part}.iml.json"]


def test_connection_verification(app, demo):
    spec = app["connections/tiktokConnector/tiktokConnector.communication.iml.json"]
    good = MakeClient(demo.http, {"baseUrl": "", "headers": {}, "response": {"error": spec["response"]["error"]}}, {})
    response, _ = good.request(spec, {"serviceUrl": demo.url, "apiKey": demo.key})
    assert response.status_code == 200
    with pytest.raises(MakeError) as err:
        good.request(spec, {"serviceUrl": demo.url, "apiKey": "wrong"})
    assert err.value.message == "API key is invalid or missing."


def test_get_profile_action(client, app, demo):
    bundles = client.run(module(app, "getProfile"), {"handle": "@makefan"})
    assert len(bundles) == 1 and bundles[0]["user"]["uniqueId"] == "makefan"
    assert set(demo.services.keys.list()[0]["requests"]) == {"MAKE_DOT_COM"}


@pytest.mark.parametrize("name", ["listFollowers", "listFollowing"])
def test_list_search_iterates_and_follows_the_cursor(client, app, name):
    bundles = client.run(module(app, name), {"handle": "makefan", "count": 4, "limit": 10})
    assert len(bundles) == 10  # three pages of four, cut at the limit
    ids = [b["user"]["id"] for b in bundles]
    assert len(set(ids)) == 10
    assert set(bundles[0]) == {"user", "stats"}


def test_errors_get_makes_types(client, app):
    with pytest.raises(MakeError) as err:
        client.run(module(app, "listFollowers"), {"handle": "demo_private", "limit": 5})
    assert (err.value.kind, err.value.message, err.value.status) == (
        "DataError", "Followers list not found for user: demo_private", 404)
    with pytest.raises(MakeError) as err:
        client.run(module(app, "listFollowers"), {"handle": "demo_ratelimited", "limit": 5})
    assert err.value.kind == "RateLimitError"


def test_polling_trigger_and_epoch(client, app):
    trigger = module(app, "watchNewFollower")
    bundles = client.run(trigger, {"handle": "make_watch", "limit": 3})
    assert 0 < len(bundles) <= 3 and all(b["id"].startswith("evt_") for b in bundles)
    # Make remembers the trigger id of the newest item and fires on larger ones: newest first, growing.
    ids = [render(trigger["response"]["trigger"]["id"], {"item": b}) for b in bundles]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    epoch = module(app, "watchNewFollower", "epoch")
    _, data = client.request(epoch, {"handle": "make_watch"})
    items = render(epoch["response"]["iterate"], {"body": data})
    choices = [render(epoch["response"]["output"], {"item": item}) for item in items]
    assert choices and all(c["label"] and c["date"] and c["id"] for c in choices)


def test_webhook_attach_delivery_detach(serve, make_settings, app):
    live = serve(make_settings(allow_private_targets=True, clock=lambda: time.time() - 3600))
    key, _ = live.services.keys.create(name="make")
    with live.client() as http:
        client = MakeClient(http, app["general/base.iml.json"], {"serviceUrl": live.url, "apiKey": key})
        hook = {"url": "http://127.0.0.1:9/make-hook"}
        attach = app["webhooks/newFollower/newFollower.attach.iml.json"]
        _, body = client.request(attach, {"handle": "make_hooked"}, {"webhook": hook})
        data = render(attach["response"]["data"], {"body": body})
        assert data["hookId"] == body["id"] and body["targetUrl"] == hook["url"]
        # What the webhook hands the instant trigger is the delivered event itself.
        event = json.loads(json.dumps(load_manifests(MANIFESTS)["new_follower"].sample))
        webhook_out = render(app["webhooks/newFollower/newFollower.communication.iml.json"]["output"], {"body": event})
        assert render(module(app, "watchNewFollowerInstant")["output"], {"body": webhook_out}) == event
        detach = app["webhooks/newFollower/newFollower.detach.iml.json"]
        response, _ = client.request(detach, {}, {"webhook": {**hook, **data}})
        assert response.status_code == 204
        assert http.get(f"/api/v1/hooks/{data['hookId']}", headers={"Authorization": f"Bearer {key}"}).status_code == 404
