"""Make custom app (Apps SDK local-development layout), generated from the manifests.

``render(manifests)`` returns ``{relative path: text}``: ``makecomapp.json`` listing every
component, ``general/`` (base with the shared headers and the error table, common, groups,
readme), one API-key connection, and per manifest:

- an action manifest of Make type ``action``: a module returning one bundle;
- of type ``search``: a module that iterates the record list, honours a ``limit`` and follows
  the cursor (``pagination`` sends the previous page's ``minCursor`` as ``minTime``);
- a trigger manifest: a polling trigger (``response.trigger`` by event id, newest first, with
  an epoch) and, when the manifest has ``hooks``, a webhook (attach/detach) and its instant
  trigger.

Every request says ``requestSource: MAKE_DOT_COM`` (header, and body where the route takes it).
"""

from __future__ import annotations

from ..errors import ERROR_KINDS
from .common import PROVIDER_NAMES, as_data, dump_json, hook_inputs, platform_type, user_inputs

__all__ = ["CONNECTION", "build", "render"]

CONNECTION = "tiktokConnector"
SOURCE = "MAKE_DOT_COM"
SEARCH_LIMIT_DEFAULT = 100

INTERFACE_TYPES = {"string": "text", "integer": "number", "number": "number", "boolean": "boolean",
                   "datetime": "date"}

# Make's error type for each status the service answers with (connector.errors.ERROR_KINDS;
# Make treats 400-599 as errors).
ERRORS = dict(sorted({kind.status: kind.make_type for kind in ERROR_KINDS.values()}.items()))


def camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def pascal(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


# -- general -------------------------------------------------------------------

def base() -> dict:
    error = {"message": "[{{statusCode}}] {{ifempty(body.error, 'The service did not answer as expected.')}}",
             "type": "RuntimeError"}
    for status, kind in ERRORS.items():
        error[str(status)] = {"message": "{{ifempty(body.error, 'HTTP " + str(status) + "')}}", "type": kind}
    return {
        "baseUrl": "{{connection.serviceUrl}}",
        "headers": {
            "Authorization": "Bearer {{connection.apiKey}}",
            "X-Provider": "{{ifempty(connection.provider, undefined)}}",
            "X-Provider-Key": "{{ifempty(connection.providerKey, undefined)}}",
            "X-Request-Source": SOURCE,
        },
        "response": {"error": error},
        "log": {"sanitize": ["request.headers.authorization", "request.headers.x-provider-key"]},
    }


def connection_params() -> list[dict]:
    return [
        {"name": "serviceUrl", "type": "url", "label": "Service URL", "required": True,
         "help": "Where your tiktok-connector runs, e.g. `https://tiktok.example.com` (no trailing slash)."},
        {"name": "apiKey", "type": "password", "label": "API Key", "required": True,
         "help": "A caller key of the service (`connector keys create --name make`)."},
        {"name": "provider", "type": "select", "label": "Provider", "required": False,
         "options": [{"label": name, "value": name} for name in PROVIDER_NAMES],
         "help": "The TikTok data provider to use. Leave empty for the service's default."},
        {"name": "providerKey", "type": "password", "label": "Provider Key", "required": False,
         "help": "Your own key for that provider (for tiktok_research `client_key:client_secret`). "
                 "Leave empty to use the service's credentials."},
    ]


def connection_communication() -> dict:
    # Listing hooks is authenticated and free: it proves the URL and the key without spending credits.
    return {
        "url": "{{parameters.serviceUrl}}/api/v1/hooks",
        "method": "GET",
        "headers": {
            "Authorization": "Bearer {{parameters.apiKey}}",
            "X-Provider": "{{ifempty(parameters.provider, undefined)}}",
            "X-Provider-Key": "{{ifempty(parameters.providerKey, undefined)}}",
            "X-Request-Source": SOURCE,
        },
        "response": {"error": {"message": "{{ifempty(body.error, 'The service did not accept the connection.')}}",
                               "type": "InvalidConfigurationError"}},
        "log": {"sanitize": ["request.headers.authorization", "request.headers.x-provider-key"]},
    }


# -- parameters and interfaces --------------------------------------------------

def parameter(spec: dict, required: bool | None = None) -> dict:
    param = {"name": spec["key"], "label": spec["label"], "help": spec["help"],
             "required": spec["required"] if required is None else required}
    kind = spec["type"]
    if kind == "integer":
        param["type"] = "uinteger" if spec.get("minimum", 0) >= 0 else "integer"
        bounds = {k: spec[m] for k, m in (("min", "minimum"), ("max", "maximum")) if m in spec}
        if bounds:
            param["validate"] = bounds
    elif kind == "boolean":
        param["type"] = "boolean"
    elif kind == "enum":
        param["type"] = "select"
        param["options"] = [{"label": c, "value": c} for c in spec["choices"]]
    else:  # string, cursor
        param["type"] = "text"
        if "maxLength" in spec:
            param["validate"] = {"max": spec["maxLength"]}
    if "default" in spec:
        param["default"] = spec["default"]
    return param


def limit_parameter(default: int) -> dict:
    return {"name": "limit", "type": "uinteger", "label": "Limit", "required": True, "default": default,
            "validate": {"min": 1},
            "help": "The most records this module returns in one run."}


def interface(fields: list[dict]) -> list[dict]:
    """Make's output spec; dotted keys (``user.id``) become collections."""
    root: list[dict] = []
    for f in fields:
        level = root
        parts = f["key"].split(".")
        for part in parts[:-1]:
            node = next((n for n in level if n["name"] == part), None)
            if node is None:
                node = {"name": part, "type": "collection", "label": part[:1].upper() + part[1:], "spec": []}
                level.append(node)
            level = node["spec"]
        level.append({"name": parts[-1], "type": INTERFACE_TYPES[f["type"]], "label": f["label"]})
    return root


def body_of(manifest: dict, inputs: list[dict]) -> dict:
    body = {}
    for spec in inputs:
        ref = f"parameters.{spec['key']}"
        body[spec["key"]] = f"{{{{{ref}}}}}" if spec["required"] else f"{{{{ifempty({ref}, undefined)}}}}"
    if "requestSource" in {spec["key"] for spec in manifest["inputs"]}:
        body["requestSource"] = SOURCE
    return body


# -- modules ----------------------------------------------------------------------

def action_module(manifest: dict) -> dict:
    inputs = user_inputs(manifest)
    return {
        "communication": {"url": manifest["route"], "method": manifest["method"],
                          "body": body_of(manifest, inputs), "response": {"output": "{{body}}"}},
        "staticParams": [],
        "mappableParams": [parameter(spec) for spec in inputs],
        "interface": interface(manifest["output"]["fields"]),
        "samples": manifest["sample"],
    }


def search_module(manifest: dict) -> dict:
    output = manifest["output"]
    inputs = [spec for spec in user_inputs(manifest) if spec["key"] != "limit"]
    if "list" not in output:  # one record: a search of at most one result
        communication = {"url": manifest["route"], "method": manifest["method"],
                         "body": body_of(manifest, inputs),
                         "response": {"output": "{{body}}", "limit": "{{parameters.limit}}"}}
        return {"communication": communication, "staticParams": [],
                "mappableParams": [parameter(s) for s in inputs] + [limit_parameter(1)],
                "interface": interface(output["fields"]), "samples": manifest["sample"]}
    cursor = next((s["key"] for s in inputs if s["type"] == "cursor"), None)
    communication = {
        "url": manifest["route"], "method": manifest["method"], "body": body_of(manifest, inputs),
        "response": {"iterate": f"{{{{body.{output['list']}}}}}", "output": "{{item}}",
                     "limit": "{{parameters.limit}}"},
    }
    if cursor:
        # Only the changing part: the next page starts at the previous page's minCursor.
        communication["pagination"] = {"body": {cursor: "{{body.minCursor}}"}, "condition": "{{body.hasMore}}"}
    sample_list = manifest["sample"].get(output["list"]) or [{}]
    return {
        "communication": communication,
        "staticParams": [],
        "mappableParams": [parameter(s) for s in inputs] + [limit_parameter(SEARCH_LIMIT_DEFAULT)],
        "interface": interface(output["itemFields"]),
        "samples": sample_list[0],
    }


def _trigger_request(manifest: dict, inputs: list[dict], limit: str | int) -> dict:
    body = body_of(manifest, [s for s in inputs if s["key"] != "limit"])
    if any(s["key"] == "limit" for s in manifest["inputs"]):
        body["limit"] = limit
    return {"url": manifest["route"], "method": manifest["method"], "body": body}


def polling_trigger_module(manifest: dict) -> dict:
    output = manifest["output"]
    inputs = user_inputs(manifest)
    limit_spec = next((s for s in inputs if s["key"] == "limit"), None)
    id_path = output.get("id", "id")
    # Make compares trigger ids to find new items, so it needs one that grows: the polling
    # route's `order` field (event ids are hashes, stable but unordered).
    order_path = output.get("order", id_path)
    date_path = output.get("date")
    params = [parameter(s) for s in inputs if s["key"] != "limit"]
    params.append(parameter(limit_spec, required=True) if limit_spec else limit_parameter(50))
    communication = _trigger_request(manifest, inputs, "{{parameters.limit}}")
    communication["response"] = {
        "iterate": "{{body.events}}", "output": "{{item}}", "limit": "{{parameters.limit}}",
        "trigger": {"type": "id", "order": "desc", "id": f"{{{{item.{order_path}}}}}"},
    }
    maximum = (limit_spec or {}).get("maximum", 100)
    epoch = _trigger_request(manifest, inputs, maximum)
    label = "{{item.id}}"
    subject = manifest.get("trigger", {}).get("subject")
    if any(f["key"] == f"{subject}.uniqueId" for f in output["fields"]):
        label = f"{{{{item.{subject}.uniqueId}}}}"
    epoch["response"] = {"iterate": "{{body.events}}", "limit": maximum,
                         "output": {"label": label, "date": f"{{{{item.{date_path or id_path}}}}}",
                                    "id": f"{{{{item.{order_path}}}}}"}}
    return {
        "communication": communication,
        "staticParams": params,
        "mappableParams": [],
        "interface": interface(output["fields"]),
        "samples": manifest["sample"],
        "epoch": epoch,
    }


def webhook(manifest: dict) -> dict:
    hooks = manifest["hooks"]
    inputs = hook_inputs(manifest)
    body = {"event": hooks["event"], **body_of(manifest, inputs), "targetUrl": "{{webhook.url}}"}
    return {
        "communication": {"respond": {"type": "json", "status": 200, "body": {"ok": True}},
                          "output": "{{body}}"},
        "params": [parameter(s) for s in inputs],
        "attach": {"url": hooks["route"], "method": "POST", "body": body,
                   "response": {"data": {"hookId": "{{body.id}}"}}},
        "detach": {"url": hooks["route"] + "/{{webhook.hookId}}", "method": "DELETE"},
    }


def instant_trigger_module(manifest: dict) -> dict:
    return {
        "communication": {"output": "{{body}}"},
        "staticParams": [],
        "mappableParams": [],
        "interface": interface(manifest["output"]["fields"]),
        "samples": manifest["sample"],
    }


# -- the app ------------------------------------------------------------------------

MODULE_FILES = {"communication": "communication.iml.json", "staticParams": "static-params.iml.json",
                "mappableParams": "mappable-params.iml.json", "interface": "interface.iml.json",
                "samples": "samples.iml.json", "epoch": "epoch.iml.json"}
WEBHOOK_FILES = {"communication": "communication.iml.json", "params": "params.iml.json",
                 "attach": "attach.iml.json", "detach": "detach.iml.json"}
CONNECTION_FILES = {"communication": "communication.iml.json", "params": "params.iml.json"}


def _component(kind_dir: str, name: str, parts: dict, files: dict, out: dict) -> dict:
    code_files = {}
    for part, suffix in files.items():
        if part in parts:
            path = f"{kind_dir}/{name}/{name}.{suffix}"
            code_files[part] = path
            out[path] = parts[part]
    return code_files


def build(manifests) -> dict:
    """``{relative path: JSON-able data or text}`` of the Make app."""
    files: dict = {}
    connections = {CONNECTION: {
        "label": "tiktok-connector", "connectionType": "basic",
        "codeFiles": _component("connections", CONNECTION,
                                {"communication": connection_communication(), "params": connection_params()},
                                CONNECTION_FILES, files)}}
    modules: dict = {}
    webhooks: dict = {}
    groups = {"Triggers": [], "Actions": [], "Searches": []}
    for key, manifest in as_data(manifests).items():
        kind = platform_type(manifest, "make")
        meta = {"label": manifest["label"], "description": manifest["description"], "connection": CONNECTION}
        if manifest["kind"] == "trigger":
            name = "watch" + pascal(key)
            modules[name] = {**meta, "label": f"Watch {manifest['label']}s", "moduleType": "trigger",
                             "codeFiles": _component("modules", name, polling_trigger_module(manifest),
                                                     MODULE_FILES, files)}
            groups["Triggers"].append(name)
            if "hooks" in manifest:
                hook = camel(key)
                webhooks[hook] = {"label": manifest["label"], "webhookType": "web", "connection": CONNECTION,
                                  "codeFiles": _component("webhooks", hook, webhook(manifest), WEBHOOK_FILES, files)}
                instant = f"watch{pascal(key)}Instant"
                modules[instant] = {**meta, "label": f"Watch {manifest['label']}s (Instant)",
                                    "moduleType": "instant_trigger", "webhook": hook,
                                    "codeFiles": _component("modules", instant, instant_trigger_module(manifest),
                                                            MODULE_FILES, files)}
                groups["Triggers"].append(instant)
        else:
            name = camel(key)
            parts = search_module(manifest) if kind == "search" else action_module(manifest)
            modules[name] = {**meta, "moduleType": "search" if kind == "search" else "action",
                             "actionCrud": "read",
                             "codeFiles": _component("modules", name, parts, MODULE_FILES, files)}
            groups["Searches" if kind == "search" else "Actions"].append(name)
    files["general/base.iml.json"] = base()
    files["general/common.json"] = {}
    files["general/groups.json"] = [{"label": label, "modules": names} for label, names in groups.items() if names]
    files["general/readme.md"] = readme(modules)
    files["makecomapp.json"] = {
        "fileVersion": 1,
        "generalCodeFiles": {"base": "general/base.iml.json", "common": "general/common.json",
                             "groups": "general/groups.json", "readme": "general/readme.md"},
        "components": {"connection": connections, "webhook": webhooks, "module": modules,
                       "rpc": {}, "function": {}, "endpoint": {}},
        "origins": [],
    }
    return dict(sorted(files.items()))


def readme(modules: dict) -> str:
    lines = ["# TikTok (tiktok-connector)", "",
             "TikTok profiles, followers and following, and triggers on them, through your own "
             "self-hosted tiktok-connector. Create a connection with the service URL and a caller key "
             "(`connector keys create --name make`); optionally pick a provider and your own provider key.",
             "", "## Modules", ""]
    for name in sorted(modules):
        lines.append(f"- **{modules[name]['label']}** ({modules[name]['moduleType']}): {modules[name]['description']}")
    return "\n".join(lines) + "\n"


def render(manifests) -> dict[str, str]:
    """``{relative path: content}`` of the Make app, ready to write under one folder."""
    return {path: value if isinstance(value, str) else dump_json(value) for path, value in build(manifests).items()}
