"""Manifests: loaded and validated once, then turned into request validators.

``load_manifests(dir)`` checks every ``*.json`` against ``manifests/schema.json`` and a few
rules the schema cannot express, and stops with a :class:`ManifestError` naming the file
and the field. ``Manifest.parse(body, headers)`` validates a request body with the marshmallow
schema built from the manifest's inputs at start-up (:mod:`connector.inputs`; of several
problems, the first input in the manifest's order is the answer) and returns the values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
from marshmallow import Schema, ValidationError

from .errors import BadRequest
from .handles import handle_problem, normalize_handle
from .inputs import request_schema

__all__ = ["Manifest", "ManifestError", "load_manifests"]


class ManifestError(Exception):
    """A manifest is invalid; the message names the file and the field."""


# Inputs that shape one polling request, not what a subscription receives.
REQUEST_ONLY_INPUTS = ("handle", "limit", "requestSource")


@dataclass
class Manifest:
    key: str
    data: dict
    path: Path
    schema: Schema | None = field(repr=False, default=None)   # loads a request's inputs

    def __getattr__(self, name: str) -> Any:
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def inputs(self) -> list[dict]:
        return self.data["inputs"]

    @cached_property
    def input_keys(self) -> list[str]:
        return [spec["key"] for spec in self.inputs]

    def parse(self, body: Any, headers: dict | None = None) -> dict:
        """Validate a request body; return ``{input key: value}`` with defaults applied.

        Raises :class:`BadRequest` with a message that says what to fix.
        """
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest("Request body must be a JSON object, for example "
                             '{"handle": "stoolpresidente"}.')
        unknown = [k for k in body if k not in self.input_keys]
        if unknown:
            raise BadRequest(f"Unknown field '{str(unknown[0])[:60]}'. Allowed fields: "
                             f"{', '.join(self.input_keys)}.")
        data = {}
        for spec in self.inputs:
            value = body.get(spec["key"])
            if value is None and spec.get("header") and headers:
                value = headers.get(spec["header"])
            # Zapier and Make send empty optional fields as "" or null: treat them as absent.
            if value is None or (value == "" and not spec["required"]):
                continue
            data[spec["key"]] = value
        try:
            values = self.schema.load(data)
        except ValidationError as exc:
            first = next(key for key in self.input_keys if key in exc.messages)
            raise BadRequest(exc.messages[first][0]) from None
        for spec in self.inputs:
            if spec["key"] not in values and "default" in spec:
                values[spec["key"]] = spec["default"]
            if spec.get("format") == "tiktok_handle" and spec["key"] in values:
                handle = normalize_handle(values[spec["key"]])
                if handle is None:
                    # The seed's words first, for callers that match them; then what to fix.
                    raise BadRequest(f"{self.errors['could_not_process'].format(handle='')} "
                                     f"{handle_problem(values[spec['key']])}")
                values[spec["key"]] = handle
        return values

    # -- triggers -------------------------------------------------------------------------

    @property
    def event(self) -> str:
        """A trigger's event name: its key (``hooks.event`` must equal it)."""
        return self.key

    @property
    def strategy(self) -> str | None:
        return (self.data.get("trigger") or {}).get("strategy")

    @property
    def watch_operation(self) -> str | None:
        """What a watch of this trigger reads, in its key: the operation, unless the trigger
        names its own watch (``trigger.watch``: snapshot reads run on their own schedule)."""
        return (self.data.get("trigger") or {}).get("watch") or self.operation

    @property
    def subject(self) -> str | None:
        return (self.data.get("trigger") or {}).get("subject")

    @cached_property
    def subscription_inputs(self) -> list[dict]:
        """The inputs that shape what a subscription receives (filters, ``every``, ...):
        all but the handle and those of one polling request (``limit``, ``requestSource``)."""
        return [spec for spec in self.inputs if spec["key"] not in REQUEST_ONLY_INPUTS]

    def subscription(self, values: dict) -> dict:
        """A subscription's own inputs, from parsed values: what two subscriptions must share to
        be the same one. Absent, null and ``false`` inputs are left out (``verifiedOnly: false``
        is no filter at all)."""
        return {spec["key"]: values[spec["key"]] for spec in self.subscription_inputs
                if values.get(spec["key"]) not in (None, False)}

    def provider_args(self, values: dict) -> dict:
        """Map validated inputs to the provider method's argument names."""
        out = {}
        for spec in self.inputs:
            if spec["key"] in values:
                out[spec.get("param", spec["key"])] = values[spec["key"]]
        return out


def _schema_validator(schema_path: Path) -> jsonschema.Draft202012Validator:
    try:
        schema = json.loads(schema_path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{schema_path}: cannot read the manifest schema: {exc}") from None
    return jsonschema.Draft202012Validator(schema)


def _check_rules(data: dict, path: Path) -> None:
    """What the JSON Schema cannot say."""
    keys = [spec["key"] for spec in data["inputs"]]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            raise ManifestError(f"{path.name}: inputs/{i}/key: duplicate input {key!r}")
    if data["key"] != path.stem:
        raise ManifestError(f"{path.name}: key: {data['key']!r} must match the file name {path.stem!r}")
    for i, spec in enumerate(data["inputs"]):
        if "default" in spec and spec["type"] == "enum" and spec["default"] not in spec["choices"]:
            raise ManifestError(f"{path.name}: inputs/{i}/default: {spec['default']!r} is not one of the choices")
    hooks = data.get("hooks")
    if hooks and hooks["event"] != data["key"]:
        raise ManifestError(f"{path.name}: hooks/event: {hooks['event']!r} must be the manifest's key {data['key']!r}")
    for i, spec in enumerate(data["inputs"]):
        if "filter" in spec and (data["kind"] != "trigger"
                                 or spec["type"] != ("integer" if spec["filter"]["test"] == "at_least" else "boolean")):
            raise ManifestError(f"{path.name}: inputs/{i}/filter: a filter belongs to a trigger's integer "
                                "(at_least) or boolean (is_true) input")
    step = (data.get("trigger") or {}).get("step")
    if step and step not in keys:
        raise ManifestError(f"{path.name}: trigger/step: {step!r} is not one of the inputs")
    for name, message in data["errors"].items():
        try:
            message.format(handle="h", detail="d", provider="p")
        except (KeyError, IndexError, ValueError):
            raise ManifestError(f"{path.name}: errors/{name}: only {{handle}}, {{detail}} and "
                                "{provider} may be used as placeholders") from None


def load_manifests(directory: Path | str) -> dict[str, Manifest]:
    """Load and validate every manifest in ``directory``; keyed by manifest key."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ManifestError(f"{directory}: manifests folder not found (set CONNECTOR_MANIFESTS_DIR?)")
    validator = _schema_validator(directory / "schema.json")
    manifests: dict[str, Manifest] = {}
    routes: dict[str, str] = {}
    hook_routes: set[str] = set()      # one hooks route serves every trigger that names it
    for path in sorted(directory.glob("*.json")):
        if path.name == "schema.json":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path.name}: not valid JSON: {exc}") from None
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            raise ManifestError(f"{path.name}: {where}: {err.message}")
        _check_rules(data, path)
        hook_route = data.get("hooks", {}).get("route")
        for route in (data["route"], hook_route):
            if route and route in routes and not (route == hook_route and route in hook_routes):
                raise ManifestError(f"{path.name}: route: {route} is already used by {routes[route]}")
            if route:
                routes.setdefault(route, path.name)
        if hook_route:
            hook_routes.add(hook_route)
        manifests[data["key"]] = Manifest(key=data["key"], data=data, path=path,
                                       schema=request_schema(data["key"], data["inputs"]))
    if not manifests:
        raise ManifestError(f"{directory}: no manifests found")
    return manifests
