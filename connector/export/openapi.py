"""OpenAPI 3.1 document of the service, generated from the manifests."""

from __future__ import annotations

import json

from .. import __version__
from ..errors import UPSTREAM_STATUS

JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
              "datetime": "string", "enum": "string"}


def input_schema(spec: dict) -> dict:
    kind = spec["type"]
    if kind == "cursor":
        schema: dict = {"oneOf": [{"type": "integer", "minimum": 0},
                                  {"type": "string", "minLength": 1, "maxLength": spec.get("maxLength", 512)}]}
    else:
        schema = {"type": JSON_TYPES[kind]}
    for name in ("minLength", "maxLength", "minimum", "maximum", "default"):
        if name in spec and kind != "cursor":
            schema[name] = spec[name]
    if kind == "enum":
        schema["enum"] = list(spec["choices"])
    schema["description"] = spec["help"]
    if "example" in spec:
        schema["examples"] = [spec["example"]]
    return schema


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


def error_responses(manifest: dict) -> dict:
    statuses: dict[int, list[str]] = {401: ["API key is invalid or missing."],
                                      403: ["Insufficient credits. Please top up your account."],
                                      413: ["Request body is too large."],
                                      429: ["Rate limit exceeded. Please try again later."]}
    statuses.setdefault(400, []).append("Invalid JSON in request body")
    for kind, message in manifest["errors"].items():
        statuses.setdefault(UPSTREAM_STATUS.get(kind, 500), []).append(message)
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


def action_operation(manifest: dict) -> dict:
    return {
        "operationId": manifest["key"],
        "summary": manifest["label"],
        "description": f"{manifest['description']} Costs {manifest['cost']} credit"
                       f"{'' if manifest['cost'] == 1 else 's'} per successful request.",
        "tags": ["actions" if manifest["kind"] == "action" else "triggers"],
        "parameters": [
            {"name": "X-Provider", "in": "header", "required": False,
             "schema": {"type": "string", "enum": ["dumpling", "socialfetch", "tiktok_research", "demo"]},
             "description": "Use this provider instead of the configured one."},
            {"name": "X-Provider-Key", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The provider key to use (for tiktok_research `client_key:client_secret`)."},
        ],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": request_schema(manifest), "example": {s["key"]: s["example"] for s in manifest["inputs"] if "example" in s}}}},
        "responses": {
            "200": {"description": "Success", "headers": RATE_HEADERS,
                    "content": {"application/json": {"schema": response_schema(manifest), "example": manifest["sample"]}}},
            **error_responses(manifest),
        },
    }


def build(manifests: dict) -> dict:
    """The OpenAPI document for ``manifests`` (a dict of key -> manifest data)."""
    paths: dict = {}
    for key in sorted(manifests):
        manifest = manifests[key]
        if manifest["kind"] == "action":
            paths[manifest["route"]] = {"post": action_operation(manifest)}
    paths["/healthz"] = {"get": {"operationId": "health", "summary": "Health check", "security": [],
                                 "tags": ["meta"],
                                 "responses": {"200": {"description": "The service is up.",
                                                       "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    paths["/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                      "tags": ["meta"],
                                      "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                            "content": {"application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tiktok-connector", "version": __version__,
                 "description": "TikTok profile, followers and following over one stable API, "
                                "and a New Follower trigger for Zapier, Make and webhooks."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [{"name": "actions"}, {"name": "triggers"}, {"name": "meta"}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                                  "properties": {"error": {"type": "string"}}}},
        },
    }


def render(manifests: dict) -> str:
    return json.dumps(build(manifests), indent=2, sort_keys=False, ensure_ascii=False) + "\n"
