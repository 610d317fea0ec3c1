"""OpenAPI 3.1 document of the service, generated from the manifests.

Every route is described: the actions, each trigger's polling route and REST-hook routes
(from the manifest's ``hooks``), ``/healthz``, ``/openapi.json`` and ``/metrics``, with request and
response schemas and every error status a caller can meet.
"""

from __future__ import annotations

from .. import __version__, inputs
from ..errors import ERROR_KINDS
from .common import PROVIDER_NAMES, REQUEST_ONLY_INPUTS, as_data, dump_json

JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
              "datetime": "string", "enum": "string"}


def input_schema(spec: dict) -> dict:
    """What request validation accepts for this input (:mod:`connector.inputs`), as JSON Schema."""
    return inputs.json_schema(spec)


def request_schema(manifest: dict) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [s["key"] for s in manifest["inputs"] if s["required"]],
        "properties": {s["key"]: input_schema(s) for s in manifest["inputs"]},
    }


def _nullable(kind: str) -> dict:
    return {"type": [JSON_TYPES[kind], "null"]}


def fields_schema(fields: list[dict]) -> dict:
    """Nest dotted field keys (``user.id``) into an object schema; values may be null."""
    root: dict = {"type": "object", "properties": {}}
    for f in fields:
        node = root
        parts = f["key"].split(".")
        for part in parts[:-1]:
            node = node["properties"].setdefault(part, {"type": ["object", "null"], "properties": {}})
        node["properties"][parts[-1]] = {**_nullable(f["type"]), "description": f["label"]}
    return root


def response_schema(manifest: dict) -> dict:
    output = manifest["output"]
    if "list" in output:
        schema = fields_schema(output["fields"])
        cursor = {"type": ["integer", "string", "null"]}
        schema["properties"].update({"maxCursor": cursor, "minCursor": cursor})
        schema["properties"][output["list"]] = {"type": "array", "items": fields_schema(output["itemFields"])}
        schema["required"] = [output["list"], "maxCursor", "minCursor", "hasMore", "total"]
        return schema
    return fields_schema(output["fields"])


ERROR = {"$ref": "#/components/schemas/Error"}
# Failures any authenticated route may answer with, whatever it does (their messages are the table's).
EDGE_KINDS = ("unauthorized", "insufficient_credits", "payload_too_large", "over_rate_limit", "unexpected")


def error_responses(manifest: dict | None, extra: dict[int, list[str]] | None = None) -> dict:
    """Error responses of an authenticated route; ``manifest`` adds its upstream failures."""
    statuses: dict[int, list[str]] = {ERROR_KINDS[kind].status: [ERROR_KINDS[kind].message] for kind in EDGE_KINDS}
    statuses[405] = ["Method not allowed."]
    statuses.setdefault(400, []).append("Invalid JSON in request body")
    for status, messages in (extra or {}).items():
        statuses.setdefault(status, []).extend(messages)
    for kind, message in (manifest or {}).get("errors", {}).items():
        statuses.setdefault(ERROR_KINDS[kind].status if kind in ERROR_KINDS else 500, []).append(message)
    out = {}
    for status in sorted(statuses):
        out[str(status)] = {
            "description": "; ".join(dict.fromkeys(statuses[status])),
            "content": {"application/json": {"schema": ERROR}},
        }
        if status in (429, 503):
            out[str(status)]["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                           "description": "Seconds to wait."}}
    return out


RATE_HEADERS = {
    "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests allowed per minute."},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Requests left this minute."},
}


PROVIDER_HEADERS = [
    {"name": "X-Provider", "in": "header", "required": False,
     "schema": {"type": "string", "enum": list(PROVIDER_NAMES)},
     "description": "Use this provider instead of the configured one."},
    {"name": "X-Provider-Key", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "The provider key to use (for tiktok_research `client_key:client_secret`)."},
]


def action_operation(manifest: dict) -> dict:
    return {
        "operationId": manifest["key"],
        "summary": manifest["label"],
        "description": f"{manifest['description']} Costs {manifest['cost']} credit"
                       f"{'' if manifest['cost'] == 1 else 's'} per successful request.",
        "tags": ["actions" if manifest["kind"] == "action" else "triggers"],
        "parameters": PROVIDER_HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": request_schema(manifest), "example": {s["key"]: s["example"] for s in manifest["inputs"] if "example" in s}}}},
        "responses": {
            "200": {"description": "Success", "headers": RATE_HEADERS,
                    "content": {"application/json": {"schema": response_schema(manifest), "example": manifest["sample"]}}},
            **error_responses(manifest),
        },
    }


def event_schema(manifest: dict) -> dict:
    schema = fields_schema(manifest["output"]["fields"])
    schema["required"] = [manifest["output"].get("id", "id")]
    return schema


def json_content(schema: dict, example=None) -> dict:
    content = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"application/json": content}


# What a list trigger's subscribers are told when followers arrived faster than anyone can read
# them (CONTRACT.md section 5).
GAP_SCHEMA = {"type": "object", "required": ["id", "event", "handle", "trigger", "missedEstimate", "detectedAt"],
              "description": "Accounts arrived faster than the list can be read: some were lost. Sent once per "
                             "lost stretch to each subscriber of the watch, beside its own events.",
              "properties": {"id": {"type": "string"}, "event": {"type": "string", "enum": ["gap_detected"]},
                             "handle": {"type": "string"},
                             "trigger": {"type": "string", "description": "The subscription's event."},
                             "missedEstimate": {"type": "integer", "minimum": 1,
                                                "description": "About how many accounts could not be read."},
                             "detectedAt": {"type": "string", "format": "date-time"}}}


def _told_gaps(manifest: dict) -> bool:
    """Whether the trigger's subscribers may be told ``gap_detected`` (a newest-first list)."""
    return (manifest.get("trigger") or {}).get("strategy") == "newest_first"


def polling_operation(manifest: dict) -> dict:
    """A trigger's polling route: newest events first; Zapier gets a bare array."""
    event = {"$ref": f"#/components/schemas/{_event_name(manifest)}"}
    if _told_gaps(manifest):
        event = {"oneOf": [event, {"$ref": "#/components/schemas/GapDetected"}]}
    order = manifest["output"].get("order")
    if order:  # the polling route numbers its items so platforms can tell which are new
        event = {"allOf": [event, {"type": "object", "required": [order], "properties": {order: {
            "type": "integer", "description": "Increases with every event detected; newer events are larger."}}}]}
    op = action_operation(manifest)
    op["description"] = (f"{manifest['description']} Returns the newest events first: a bare JSON array "
                         "when requestSource is ZAPIER, otherwise {\"events\": [...]}. The first call for "
                         "a handle starts a watch and returns its most recent followers as sample events.")
    op["responses"]["200"]["content"] = json_content(
        {"oneOf": [{"type": "array", "items": event},
                   {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "items": event}}}]},
        {"events": [manifest["sample"]]})
    return op


def _event_name(manifest: dict) -> str:
    return "".join(part.title() for part in manifest["key"].split("_")) + "Event"


HOOK_SCHEMA = {
    "type": "object",
    "required": ["id", "event", "handle", "targetUrl", "createdAt"],
    "properties": {
        "id": {"type": "string"}, "event": {"type": "string"}, "handle": {"type": "string"},
        "targetUrl": {"type": "string"}, "createdAt": {"type": ["string", "null"]},
        "secret": {"type": "string", "description": "Standard Webhooks signing secret (whsec_...); shown on creation only."},
        "status": {"type": "string"}, "provider": {"type": ["string", "null"]},
        "lastPollAt": {"type": ["string", "null"]}, "nextPollAt": {"type": ["string", "null"]},
        "pollIntervalSeconds": {"type": ["number", "null"],
                                "description": "Seconds between this hook's watch's polls, as its schedule chose "
                                               "at the last poll (CONNECTOR_POLL_POLICY)."},
        "lastError": {"type": ["string", "null"]}, "creditsSpent": {"type": ["integer", "null"]},
        "statusReason": {"type": ["string", "null"],
                         "description": "Why the hook is disabled or paused, and how to resume it."},
        "failingSince": {"type": ["string", "null"],
                         "description": "First failed delivery since the last success."},
    },
}
READ_NOW_SCHEMA = {"type": "object", "required": ["id", "event", "handle", "queued", "nextPollAt"],
                   "properties": {"id": {"type": "string"}, "event": {"type": "string"},
                                  "handle": {"type": "string"}, "queued": {"type": "boolean"},
                                  "nextPollAt": {"type": ["string", "null"]}}}
NOT_FOUND_HOOK = {404: ["No hook with this id for this API key."]}
ROTATE_BODY = {"type": "object", "additionalProperties": False, "properties": {
    "secret": {"type": "string", "pattern": "^whsec_",
               "description": "The new secret (whsec_ + base64 of 24 to 64 random bytes); a random one when left out."},
    "keepPreviousSecretHours": {"type": "number", "minimum": 0, "maximum": 24, "default": 24,
                                "description": "How long the current secret keeps signing beside the new one "
                                               "(0: it stops at once)."}}}
ROTATED_SCHEMA = {"type": "object", "required": ["id", "secret", "previousSecretExpiresAt"], "properties": {
    "id": {"type": "string"}, "secret": {"type": "string", "description": "The new whsec_ secret; shown once."},
    "previousSecretExpiresAt": {"type": ["string", "null"],
                                "description": "Until when the previous secret also signs (ISO 8601 UTC)."}}}
QUOTA = {403: ["This API key has as many hooks (or watched accounts) as it may hold."],
         409: ["The watch was removed while subscribing; please try again."]}


def _hook_body(manifest: dict) -> dict:
    """The body that subscribes a hook to ``manifest``'s event: the watched account and the
    trigger's own inputs (filters, ``every``...)."""
    inputs = {spec["key"]: spec for spec in manifest["inputs"]}
    properties = {"event": {"type": "string", "enum": [manifest["hooks"]["event"]]},
                  "handle": input_schema(inputs["handle"]),
                  "targetUrl": {"type": "string", "format": "uri", "description": "Where each event is POSTed (https)."},
                  **{key: input_schema(spec) for key, spec in inputs.items() if key not in REQUEST_ONLY_INPUTS},
                  "requestSource": {**input_schema(inputs["requestSource"]),
                                    "description": "Who creates the hook (or the X-Request-Source header)."}}
    return {"type": "object", "additionalProperties": False, "required": ["event", "handle", "targetUrl"],
            "title": manifest["label"], "properties": properties}


def hook_operations(triggers: list[dict]) -> dict[str, dict]:
    """The hooks routes, shared by every trigger in ``triggers`` (manifests with ``hooks``)."""
    manifest = triggers[0]
    hooks = manifest["hooks"]
    handle = next(spec for spec in manifest["inputs"] if spec["key"] == "handle")
    hook_ref = {"$ref": "#/components/schemas/Hook"}
    bodies = [_hook_body(m) for m in triggers]
    create_body = bodies[0] if len(bodies) == 1 else {"oneOf": bodies}
    patch_body = {"type": "object", "additionalProperties": False, "required": ["enabled"],
                  "properties": {"enabled": {"type": "boolean", "description":
                                             "false pauses the hook; true enables it again (also after "
                                             "it was disabled for failing deliveries)."}}}
    hook_id = [{"name": "hookId", "in": "path", "required": True, "schema": {"type": "string"}}]
    tag = ["hooks"]
    return {
        hooks["route"]: {
            "post": {"operationId": "subscribe", "summary": "Subscribe to a trigger's events",
                     "description": "Creates a REST hook for one event (" + ", ".join(m["hooks"]["event"] for m in triggers)
                                    + "): each new event is POSTed to targetUrl with Standard Webhooks signature "
                                    "headers. What exists now never fires. Subscribing again with the same event, "
                                    "handle, inputs and targetUrl returns the existing hook (200).",
                     "tags": tag, "parameters": PROVIDER_HEADERS,
                     "requestBody": {"required": True, "content": json_content(
                         create_body, {"event": hooks["event"], "handle": handle.get("example", "name"),
                                       "targetUrl": "https://hooks.example.com/tiktok"})},
                     "responses": {"201": {"description": "Subscribed", "headers": RATE_HEADERS,
                                           "content": json_content(hook_ref)},
                                   "200": {"description": "Already subscribed: the existing hook",
                                           "headers": RATE_HEADERS, "content": json_content(hook_ref)},
                                   **error_responses(manifest, QUOTA)}},
            "get": {"operationId": "list_hooks", "summary": "List your hooks",
                    "tags": tag,
                    "responses": {"200": {"description": "The caller's hooks", "headers": RATE_HEADERS,
                                          "content": json_content({"type": "object", "required": ["hooks"],
                                                                   "properties": {"hooks": {"type": "array",
                                                                                            "items": hook_ref}}})},
                                  **error_responses(None)}},
        },
        hooks["route"] + "/{hookId}": {
            "get": {"operationId": "get_hook", "summary": "A hook's status",
                    "description": "Status, last poll, last error, credits spent and recent deliveries.",
                    "tags": tag, "parameters": hook_id,
                    "responses": {"200": {"description": "The hook", "headers": RATE_HEADERS,
                                          "content": json_content(hook_ref)},
                                  **error_responses(None, NOT_FOUND_HOOK)}},
            "patch": {"operationId": "update_hook", "summary": "Pause or enable a hook",
                      "tags": tag, "parameters": hook_id,
                      "requestBody": {"required": True, "content": json_content(patch_body, {"enabled": True})},
                      "responses": {"200": {"description": "The hook", "headers": RATE_HEADERS,
                                            "content": json_content(hook_ref)},
                                    **error_responses(None, NOT_FOUND_HOOK)}},
            "delete": {"operationId": "unsubscribe", "summary": "Unsubscribe",
                       "tags": tag, "parameters": hook_id,
                       "responses": {"204": {"description": "Deleted"},
                                     **error_responses(None, NOT_FOUND_HOOK)}},
        },
        hooks["route"] + "/{hookId}/poll": {
            "post": {"operationId": "read_hook_now", "summary": "Read a hook's account now",
                     "description": "The hook's watch is read at the worker's next pass, whatever its schedule. "
                                    "A read its schedule had not made due is paid by the keys that asked alone "
                                    "(the caller's balance must cover one read); at most once a minute per hook.",
                     "tags": tag, "parameters": hook_id,
                     "responses": {"202": {"description": "Queued for the next pass", "headers": RATE_HEADERS,
                                           "content": json_content(READ_NOW_SCHEMA)},
                                   **error_responses(None, {**NOT_FOUND_HOOK,
                                                            429: ["Already queued less than a minute ago."]})}},
        },
        hooks["route"] + "/{hookId}/rotate-secret": {
            "post": {"operationId": "rotate_hook_secret", "summary": "Rotate a hook's secret",
                     "description": "Gives the hook a new signing secret. For keepPreviousSecretHours (default 24) "
                                    "every delivery carries both signatures, space-separated "
                                    "(`v1,<new> v1,<old>`), so a receiver can switch to the new secret without "
                                    "losing a delivery.",
                     "tags": tag, "parameters": hook_id,
                     "requestBody": {"required": False, "content": json_content(ROTATE_BODY, {})},
                     "responses": {"200": {"description": "The new secret", "headers": RATE_HEADERS,
                                           "content": json_content(ROTATED_SCHEMA)},
                                   **error_responses(None, NOT_FOUND_HOOK)}},
        },
    }


HEALTH_SCHEMA = {"type": "object", "required": ["status", "database"],
                 "properties": {"status": {"enum": ["ok", "degraded"]}, "database": {"enum": ["ok", "unavailable"]},
                                "provider": {"type": ["string", "null"]}}}


def build(manifests) -> dict:
    """The OpenAPI document for ``manifests`` (a dict of key -> manifest data)."""
    manifests = as_data(manifests)
    paths: dict = {}
    schemas: dict = {"Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                               "properties": {"error": {"type": "string"}}},
                     "Hook": HOOK_SCHEMA}
    for key, manifest in manifests.items():
        if manifest["kind"] == "action":
            paths[manifest["route"]] = {"post": action_operation(manifest)}
        else:
            schemas[_event_name(manifest)] = event_schema(manifest)
            paths[manifest["route"]] = {"post": polling_operation(manifest)}
            if _told_gaps(manifest):
                schemas["GapDetected"] = GAP_SCHEMA
    hooked = [m for m in manifests.values() if m["kind"] == "trigger" and "hooks" in m]
    if hooked:
        paths.update(hook_operations(hooked))
    health = json_content({"$ref": "#/components/schemas/Health"})
    schemas["Health"] = HEALTH_SCHEMA
    paths["/healthz"] = {"get": {"operationId": "health", "summary": "Health check", "security": [],
                                 "tags": ["meta"],
                                 "responses": {"200": {"description": "The service is up.", "content": health},
                                               "503": {"description": "The database is unavailable.",
                                                       "content": health}}}}
    paths["/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                      "tags": ["meta"],
                                      "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                            "content": json_content({"type": "object",
                                                                                     "required": ["openapi", "paths"]})}}}}
    refused = json_content({"$ref": "#/components/schemas/Error"})
    paths["/metrics"] = {"get": {
        "operationId": "metrics", "summary": "Prometheus metrics (text format)", "tags": ["meta"],
        "description": "For the operator's scraper, not for callers: with CONNECTOR_METRICS_TOKEN set, send "
                       "'Authorization: Bearer <that token>'; without it, only clients on the service's own "
                       "machine that came through no proxy are answered.",
        "security": [],
        "responses": {"200": {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "401": {"description": "CONNECTOR_METRICS_TOKEN is set and was not sent", "content": refused},
                      "403": {"description": "No token is set and the client is not on this machine",
                              "content": refused}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tiktok-connector", "version": __version__,
                 "description": "TikTok profile, followers and following over one stable API, "
                                "and triggers (new followers, new following, ...) for Zapier, Make and webhooks."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [{"name": "actions"}, {"name": "triggers"}, {"name": "hooks"}, {"name": "meta"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": schemas,
        },
    }


def render(manifests) -> str:
    return dump_json(build(manifests))
