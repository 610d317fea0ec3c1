"""A small renderer for the IML templates the Make export uses, and a replay client.

Handles ``{{path.to.value}}`` (``parameters``, ``connection``, ``body``, ``item``, ``webhook``,
``statusCode``), ``{{ifempty(a, b)}}``, ``undefined``, quoted strings and numbers. Like Make, a
string that is exactly one ``{{…}}`` keeps the value's type; inside text it is stringified; a
key whose value renders to ``undefined`` is left out of objects.
"""

from __future__ import annotations

import json
import re
from typing import Any

UNDEFINED = object()
_EXPR = re.compile(r"\{\{(.*?)\}\}")


def _split_args(text: str) -> list[str]:
    args, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


def evaluate(expr: str, scope: dict) -> Any:
    expr = expr.strip()
    if expr == "undefined":
        return UNDEFINED
    if len(expr) >= 2 and expr[0] == expr[-1] and expr[0] in "'\"":
        return expr[1:-1]
    if re.fullmatch(r"-?\d+(\.\d+)?", expr):
        return json.loads(expr)
    call = re.fullmatch(r"(\w+)\((.*)\)", expr, re.S)
    if call:
        name, args = call.group(1), [evaluate(a, scope) for a in _split_args(call.group(2))]
        if name == "ifempty":
            first = args[0]
            return args[1] if first in (None, "", UNDEFINED) or first == [] else first
        raise ValueError(f"IML function {name}() is not supported by the test renderer")
    value: Any = scope
    for part in expr.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return UNDEFINED
    return value


def _text(value: Any) -> str:
    if value in (None, UNDEFINED):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def render(template: Any, scope: dict) -> Any:
    if isinstance(template, str):
        whole = _EXPR.fullmatch(template)
        if whole:
            return evaluate(whole.group(1), scope)
        return _EXPR.sub(lambda m: _text(evaluate(m.group(1), scope)), template)
    if isinstance(template, list):
        return [v for v in (render(t, scope) for t in template) if v is not UNDEFINED]
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            rendered = render(value, scope)
            if rendered is not UNDEFINED:
                out[key] = rendered
        return out
    return template


class MakeClient:
    """Replays a module's requests the way Make runs them: base + request, iterate, limit, pagination."""

    def __init__(self, http, base: dict, connection: dict):
        self.http, self.base, self.connection = http, base, connection

    def request(self, spec: dict, parameters: dict, extra: dict | None = None, body_override=None):
        scope = {"connection": self.connection, "parameters": parameters, **(extra or {})}
        base_url = render(self.base["baseUrl"], scope)
        url = render(spec["url"], scope)
        if url.startswith("/"):
            url = base_url + url
        headers = {k: _text(v) for k, v in render({**self.base.get("headers", {}),
                                                    **spec.get("headers", {})}, scope).items()}
        body = render(spec.get("body"), scope) if "body" in spec else None
        if body_override:
            body = {**(body or {}), **body_override}
        response = self.http.request(spec.get("method", "GET"), url, headers=headers,
                                     json=body if spec.get("method", "GET") != "GET" else None)
        data = response.json() if response.content else None
        if response.status_code >= 400:
            error = self.base["response"]["error"]
            rule = error.get(str(response.status_code), error)
            message = render(rule["message"], {"body": data, "statusCode": response.status_code})
            raise MakeError(rule["type"], message, response.status_code)
        return response, data

    def run(self, spec: dict, parameters: dict, extra: dict | None = None) -> list:
        """All output bundles of a module run (iterate, output, limit, pagination)."""
        resp_spec = spec.get("response", {})
        scope_extra = extra or {}
        limit = render(resp_spec.get("limit"), {"parameters": parameters}) if "limit" in resp_spec else None
        limit = int(limit) if limit not in (None, UNDEFINED, "") else None
        bundles: list = []
        override = None
        pages = 0
        while True:
            response, data = self.request(spec, parameters, scope_extra, override)
            pages += 1
            scope = {"body": data, "parameters": parameters, "connection": self.connection, **scope_extra}
            if "iterate" in resp_spec:
                items = render(resp_spec["iterate"], scope)
                for item in items:
                    bundles.append(render(resp_spec.get("output", "{{item}}"), {**scope, "item": item}))
            else:
                bundles.append(render(resp_spec.get("output", "{{body}}"), scope))
            if limit is not None and len(bundles) >= limit:
                return bundles[:limit]
            pagination = spec.get("pagination")
            if not pagination or not render(pagination.get("condition", True), scope) or pages >= 20:
                return bundles
            override = render(pagination.get("body", {}), scope)


class MakeError(Exception):
    def __init__(self, kind: str, message: str, status: int):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.status = kind, message, status
