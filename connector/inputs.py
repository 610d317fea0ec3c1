"""A manifest's inputs as a marshmallow schema (request validation) and as JSON Schema (OpenAPI).

Each input ``type`` of ``manifests/schema.json`` is one class here, which makes both the
marshmallow field that loads a request value and the JSON Schema that documents it, so the
validation and the OpenAPI document cannot drift apart. Every problem with an input has one
message, the manifest's ``message`` or the one :func:`explain` words from its type and bounds.
:func:`request_schema` builds a manifest's schema once, at start-up.
"""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

__all__ = ["explain", "json_schema", "request_schema"]

# A whole number as text: ASCII digits only (int() also reads "٣" and fails on "²"), and
# short enough that int() never refuses it.
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _literal(message: str) -> str:
    """A message for a marshmallow validator, which formats its ``error`` with its own fields."""
    return message.replace("{", "{{").replace("}", "}}")


def explain(spec: dict) -> str:
    """The one message for anything wrong with this input, so a caller knows what to send."""
    key = spec["key"]
    if spec.get("message"):
        return spec["message"]
    kind = spec["type"]
    if kind == "integer":
        lo, hi = spec.get("minimum"), spec.get("maximum")
        if lo is not None and hi is not None:
            return f"'{key}' must be a whole number from {lo} to {hi}."
        return f"'{key}' must be a whole number."
    if kind == "enum":
        return f"'{key}' must be one of: {', '.join(spec['choices'])}."
    if kind == "cursor":
        return f"'{key}' must be the minCursor of a previous response (a non-negative number or a cursor string)."
    if kind == "boolean":
        return f"'{key}' must be true or false."
    return f"'{key}' must be a non-empty string of at most {spec.get('maxLength', 1000)} characters."


class _Input(fields.Field):
    """A manifest input's marshmallow field: any problem is :func:`explain`'s message."""

    def __init__(self, spec: dict, **kwargs):
        self.spec = spec
        self.message = explain(spec)
        required = spec.get("message") or f"'{spec['key']}' is required."
        super().__init__(required=spec["required"], error_messages={"required": required}, **kwargs)

    def fail(self, hint: str = "") -> ValidationError:
        return ValidationError(f"{self.message.rstrip('.')}, {hint}." if hint else self.message)

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        raise NotImplementedError


class WholeNumber(_Input):
    """A JSON integer, an integral float or a string of ASCII digits, within the bounds."""

    def __init__(self, spec: dict):
        lo, hi = spec.get("minimum"), spec.get("maximum")
        super().__init__(spec, validate=validate.Range(lo, hi, error=_literal(explain(spec))))

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.fail()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            value = int(value.strip())
        elif isinstance(value, str) and any(c.isdigit() and not c.isascii() for c in value):
            raise self.fail("written with the digits 0-9")
        if not isinstance(value, int):
            raise self.fail()
        return value

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        return _bounded({"type": "integer"}, spec)


class Flag(_Input):
    """true or false, also as the strings "true" and "false" (any case)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.fail()

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        return _bounded({"type": "boolean"}, spec)


class Cursor(_Input):
    """A previous page's ``minCursor``: a non-negative number, or a printable string (digits
    that fit an int become one)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.fail()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            if value < 0:
                raise self.fail()
            return value
        if isinstance(value, str) and 0 < len(value) <= self.spec.get("maxLength", 512) and value.isprintable():
            return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else value
        raise self.fail()

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        return {"oneOf": [{"type": "integer", "minimum": 0},
                          {"type": "string", "minLength": 1, "maxLength": spec.get("maxLength", 512)}]}


class Text(_Input):
    """A non-empty string (kept as sent) of at most ``maxLength`` characters; a TikTok handle's
    length is left to the handle rule, which says more."""

    def __init__(self, spec: dict, **kwargs):
        if spec.get("format") != "tiktok_handle":
            kwargs.setdefault("validate", []).append(validate.Length(max=spec.get("maxLength", 1000),
                                                                     error=_literal(explain(spec))))
        super().__init__(spec, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not value.strip():
            raise self.fail()
        return value

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        return _bounded({"type": "string"}, spec)


class Choice(Text):
    """One of the manifest's ``choices``."""

    def __init__(self, spec: dict):
        super().__init__(spec, validate=[validate.OneOf(spec["choices"], error=_literal(explain(spec)))])

    @classmethod
    def json_schema(cls, spec: dict) -> dict:
        return {**_bounded({"type": "string"}, spec), "enum": list(spec["choices"])}


def _bounded(schema: dict, spec: dict) -> dict:
    for name in ("minLength", "maxLength", "minimum", "maximum", "default"):
        if name in spec:
            schema[name] = spec[name]
    return schema


# Each manifest input type (manifests/schema.json) and the class that loads and documents it.
INPUT_TYPES: dict[str, type[_Input]] = {
    "string": Text,
    "enum": Choice,
    "integer": WholeNumber,
    "boolean": Flag,
    "cursor": Cursor,
}


def json_schema(spec: dict) -> dict:
    """The JSON Schema of one input, with its help and example, for the OpenAPI document."""
    schema = INPUT_TYPES[spec["type"]].json_schema(spec)
    schema["description"] = spec["help"]
    if "example" in spec:
        schema["examples"] = [spec["example"]]
    return schema


def request_schema(manifest_key: str, inputs: list[dict]) -> Schema:
    """A marshmallow schema that loads a request's inputs (unknown keys are refused beforehand)."""
    declared = {spec["key"]: INPUT_TYPES[spec["type"]](spec) for spec in inputs}
    return Schema.from_dict(declared, name=f"{manifest_key}_request")()
