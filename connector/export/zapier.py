"""Zapier CLI integration, generated from the manifests.

``render(manifests)`` returns ``{file name: text}``: ``package.json`` (pinning
``zapier-platform-core``), ``index.js`` and ``definition.json``, the integration as plain
JSON. Requests are request objects templated with ``{{bundle.…}}`` where Zapier can use the
response as it is; where a result must be reshaped (a search returns an array, an
unsubscribe answers 204 without a body) the definition holds a ``{"source": …}`` function
that ``zapier-platform-core`` compiles. Shared headers (caller key, provider, provider key,
request source) live once in ``requestTemplate``; every body also says ``requestSource: ZAPIER``.

- every trigger manifest gives a polling trigger (its route, bare array with ``id``s) and,
  when it has ``hooks``, an instant REST-hook trigger ``<key>_instant``;
- every action manifest gives a search (``[result]``) or a create (``result``), per
  ``platforms.zapier.type``; a paged result keeps its records as line items.
"""

from __future__ import annotations

import json

from .common import PROVIDER_NAMES, as_data, dump_json, flat_key, platform_type, user_inputs

__all__ = ["ZAPIER_CORE_VERSION", "build", "render"]

ZAPIER_CORE_VERSION = "19.1.0"
APP_VERSION = "1.0.0"
DEFINITION_FILE = "definition.json"
SERVICE_URL = "{{bundle.authData.serviceUrl}}"

INPUT_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean", "cursor": "string",
               "enum": "string"}
OUTPUT_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
                "datetime": "datetime"}

# The service's base URL without a trailing slash, in generated function sources.
JS_BASE = "const base = String(bundle.authData.serviceUrl || '').trim().replace(/\\/+$/, '');\n"


def _js(value) -> str:
    """A JavaScript literal for ``value`` (JSON is valid JavaScript here)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _label(text: str, suffix: str = "") -> str:
    """Zapier labels are 2-64 characters."""
    return (text[: 64 - len(suffix)] + suffix).strip()


def authentication() -> dict:
    return {
        "type": "custom",
        "fields": [
            {"key": "serviceUrl", "label": "Service URL", "type": "string", "required": True,
             "helpText": "Where your tiktok-connector runs, e.g. `https://tiktok.example.com` "
                         "(no trailing slash)."},
            {"key": "apiKey", "label": "API Key", "type": "password", "required": True,
             "helpText": "A caller key of the service (`connector keys create --name zapier`)."},
            {"key": "provider", "label": "Provider", "type": "string", "required": False,
             "choices": list(PROVIDER_NAMES),
             "helpText": "The TikTok data provider to use. Leave empty for the service's default."},
            {"key": "providerKey", "label": "Provider Key", "type": "password", "required": False,
             "helpText": "Your own key for that provider (for tiktok_research `client_key:client_secret`). "
                         "Leave empty to use the service's credentials."},
        ],
        # Listing hooks is authenticated and free: it proves the URL and the key without spending credits.
        "test": {"url": f"{SERVICE_URL}/api/v1/hooks", "method": "GET"},
        "connectionLabel": "{{bundle.authData.serviceUrl}}",
    }


def request_template() -> dict:
    return {
        "headers": {
            "Authorization": "Bearer {{bundle.authData.apiKey}}",
            "X-Provider": "{{bundle.authData.provider}}",
            "X-Provider-Key": "{{bundle.authData.providerKey}}",
            "X-Request-Source": "ZAPIER",
            "Accept": "application/json",
        },
    }


# Zapier leaves ``{{bundle.authData.provider}}`` unrendered when the optional field is empty
# (and ``removeMissingValuesFrom`` covers only params and body): drop such headers so the
# service's defaults apply instead of an "unknown provider" error.
DROP_UNSET_HEADERS = {
    "args": ["request", "z", "bundle"],
    "source": "for (const [name, value] of Object.entries(request.headers || {})) {\n"
              "  if (value === undefined || value === null || String(value).trim() === '' "
              "|| String(value).includes('{{')) delete request.headers[name];\n"
              "}\n"
              "return request;",
}


# Users see the service's own message ("Followers list not found for user: x"), not Zapier's
# dump of the whole response; requests that handle statuses themselves opt out.
SERVICE_ERRORS = {
    "args": ["response", "z", "bundle"],
    "source": "if (response.status < 400 || (response.request || {}).skipThrowForStatus) return response;\n"
              "let message = '';\n"
              "try { message = JSON.parse(response.content).error; } catch (err) { message = ''; }\n"
              "message = String(message || `The service answered HTTP ${response.status}.`).slice(0, 240);\n"
              "if (response.status === 429) {\n"
              "  throw new z.errors.ThrottledError(message, Number(response.headers.get('retry-after')) || 60);\n"
              "}\n"
              "throw new z.errors.Error(message, response.status === 401 ? 'AuthenticationError' : "
              "'ServiceError', response.status);",
}


def input_field(spec: dict) -> dict:
    field = {"key": spec["key"], "label": spec["label"], "type": INPUT_TYPES[spec["type"]],
             "required": spec["required"], "helpText": spec["help"]}
    if spec["type"] == "enum":
        field["choices"] = list(spec["choices"])
    if "default" in spec:
        field["default"] = str(spec["default"]).lower() if isinstance(spec["default"], bool) else str(spec["default"])
    if "example" in spec and spec["type"] in ("string", "cursor"):
        field["placeholder"] = str(spec["example"])
    return field


def output_fields(manifest: dict) -> list[dict]:
    output = manifest["output"]
    fields = []
    for spec in output["fields"]:
        field = {"key": flat_key(spec["key"]), "label": spec["label"], "type": OUTPUT_TYPES[spec["type"]]}
        if spec["key"] == output.get("id"):
            field["primary"] = True
        fields.append(field)
    if "list" in output:
        for spec in output["itemFields"]:
            fields.append({"key": f"{output['list']}[]{flat_key(spec['key'])}",
                           "label": f"{manifest['noun']}: {spec['label']}",
                           "type": OUTPUT_TYPES[spec["type"]]})
    return fields


def _body_source(keys: list[str]) -> str:
    """JS that builds a request body from the user's inputs, skipping empty ones."""
    return (f"const body = {{requestSource: 'ZAPIER'}};\n"
            f"for (const key of {_js(keys)}) {{\n"
            "  const value = bundle.inputData[key];\n"
            "  if (value !== undefined && value !== null && value !== '') body[key] = value;\n"
            "}\n")


def action_perform(manifest: dict, kind: str) -> dict:
    """A search returns ``[result]``; a create returns ``result``."""
    keys = [spec["key"] for spec in user_inputs(manifest)]
    result = "[response.data]" if kind == "search" else "response.data"
    source = (JS_BASE + _body_source(keys)
              + f"const response = await z.request({{url: base + {_js(manifest['route'])}, "
                f"method: {_js(manifest['method'])}, body}});\n"
              + f"return {result};")
    return {"source": source}


def _operation(manifest: dict, inputs: list[dict], perform) -> dict:
    return {
        "inputFields": [input_field(spec) for spec in inputs],
        "outputFields": output_fields(manifest),
        "sample": manifest["sample"],
        "perform": perform,
    }


def _display(manifest: dict, label: str, description: str | None = None) -> dict:
    return {"label": label, "description": description or manifest["description"]}


def polling_request(manifest: dict, inputs: list[dict]) -> dict:
    body = {spec["key"]: f"{{{{bundle.inputData.{spec['key']}}}}}" for spec in inputs}
    body["requestSource"] = "ZAPIER"
    return {"url": SERVICE_URL + manifest["route"], "method": manifest["method"], "body": body,
            "removeMissingValuesFrom": {"body": True, "params": True}}


def polling_trigger(manifest: dict) -> dict:
    inputs = user_inputs(manifest)
    return {
        "key": manifest["key"],
        "noun": manifest["noun"],
        "display": _display(manifest, manifest["label"]),
        "operation": {"type": "polling", **_operation(manifest, inputs, polling_request(manifest, inputs))},
    }


def hook_trigger(manifest: dict) -> dict:
    """REST hook: subscribe with Zapier's target URL, deliveries are the events themselves."""
    hooks = manifest["hooks"]
    # The hooks route takes the required inputs (the watched account); optional ones shape polls only.
    inputs = [spec for spec in user_inputs(manifest) if spec["required"]]
    body = {spec["key"]: f"{{{{bundle.inputData.{spec['key']}}}}}" for spec in inputs}
    subscribe = {"url": SERVICE_URL + hooks["route"], "method": "POST",
                 "body": {"event": hooks["event"], **body, "targetUrl": "{{bundle.targetUrl}}"},
                 "removeMissingValuesFrom": {"body": True, "params": True}}
    # DELETE answers 204 without a body, which a request object cannot return: a function does.
    # A hook that is already gone (404, 410) is as unsubscribed as it gets.
    unsubscribe = {"source": JS_BASE + (
        f"const id = encodeURIComponent(String((bundle.subscribeData || {{}}).id || ''));\n"
        f"const response = await z.request({{url: base + {_js(hooks['route'] + '/')} + id, "
        "method: 'DELETE', skipThrowForStatus: true});\n"
        "if (response.status >= 400 && response.status !== 404 && response.status !== 410) "
        "response.throwForStatus();\n"
        "return {id: (bundle.subscribeData || {}).id, unsubscribed: true};")}
    return {
        "key": f"{manifest['key']}_instant",
        "noun": manifest["noun"],
        "display": _display(manifest, _label(manifest["label"], " (Instant)"),
                            manifest["description"] + " Instant: the service pushes each event to Zapier."),
        "operation": {
            "type": "hook",
            **_operation(manifest, inputs, {"source": "return [bundle.cleanedRequest];"}),
            "performSubscribe": subscribe,
            "performUnsubscribe": unsubscribe,
            # Samples for the Zap editor: recent events from the polling route, same shape as deliveries.
            "performList": polling_request(manifest, inputs),
        },
    }


def action(manifest: dict, kind: str) -> dict:
    inputs = user_inputs(manifest)
    return {
        "key": manifest["key"],
        "noun": manifest["noun"],
        "display": _display(manifest, manifest["label"]),
        "operation": _operation(manifest, inputs, action_perform(manifest, kind)),
    }


def build(manifests) -> dict:
    """The integration definition (plain JSON) for ``manifests``."""
    triggers, searches, creates = {}, {}, {}
    for key, manifest in as_data(manifests).items():
        kind = platform_type(manifest, "zapier")
        if manifest["kind"] == "trigger":
            triggers[key] = polling_trigger(manifest)
            if "hooks" in manifest:
                instant = hook_trigger(manifest)
                triggers[instant["key"]] = instant
        elif kind == "create":
            creates[key] = action(manifest, "create")
        else:
            searches[key] = action(manifest, "search")
    return {
        "authentication": authentication(),
        "requestTemplate": request_template(),
        "beforeRequest": [DROP_UNSET_HEADERS],
        "afterResponse": [SERVICE_ERRORS],
        "triggers": triggers,
        "searches": searches,
        "creates": creates,
    }


INDEX_JS = """\
// Generated by `connector export zapier` from the connector's manifests: edit the
// manifests and export again rather than editing this file.
const definition = require('./definition.json');

module.exports = {
  ...definition,
  version: require('./package.json').version,
  platformVersion: require('zapier-platform-core').version,
};
"""


def package_json() -> dict:
    return {
        "name": "tiktok-connector-zapier",
        "version": APP_VERSION,
        "description": "TikTok profile, followers and following, and a New Follower trigger, "
                       "through a self-hosted tiktok-connector.",
        "main": "index.js",
        "private": True,
        "engines": {"node": ">=18"},
        "dependencies": {"zapier-platform-core": ZAPIER_CORE_VERSION},
    }


def render(manifests) -> dict[str, str]:
    """``{file name: content}`` of the Zapier CLI integration."""
    return {
        "package.json": dump_json(package_json()),
        "index.js": INDEX_JS,
        DEFINITION_FILE: dump_json(build(manifests)),
    }
