"""Helpers the exporters share: manifest access, JSON layout, field keys."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ..manifests import REQUEST_ONLY_INPUTS
from ..providers import PROVIDERS

PROVIDER_NAMES = tuple(PROVIDERS)   # the registry's, for the X-Provider choices

__all__ = ["PROVIDER_NAMES", "as_data", "dump_json", "platform_type", "flat_key",
           "user_inputs", "hook_inputs", "example_value", "REQUEST_ONLY_INPUTS"]


def as_data(manifests: Mapping[str, Any]) -> dict[str, dict]:
    """``{key: manifest data}`` sorted by key, from loaded ``Manifest`` objects or plain dicts."""
    return {key: getattr(manifests[key], "data", manifests[key]) for key in sorted(manifests)}


def dump_json(value: Any) -> str:
    """The one JSON layout every exported file uses (stable, readable, newline-terminated)."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def platform_type(manifest: dict, platform: str) -> str:
    """How ``platform`` shows the manifest; triggers trigger, actions read (search) by default."""
    declared = manifest.get("platforms", {}).get(platform, {}).get("type")
    if declared:
        return declared
    if manifest["kind"] == "trigger":
        return "trigger"
    return "search" if platform == "zapier" else "action"


def flat_key(key: str) -> str:
    """``user.id`` -> ``user__id``: how Zapier names a nested field."""
    return "__".join(key.split("."))


def user_inputs(manifest: dict) -> list[dict]:
    """The inputs a Zapier or Make user fills in: all but ``requestSource``, which the
    platform export always sets itself."""
    return [spec for spec in manifest["inputs"] if spec["key"] != "requestSource"]


def hook_inputs(manifest: dict) -> list[dict]:
    """The inputs a REST hook subscribes with: the watched account and the trigger's own
    inputs (filters, ``every``...), not those of one polling request (``limit``)."""
    return [spec for spec in user_inputs(manifest)
            if spec["key"] == "handle" or spec["key"] not in REQUEST_ONLY_INPUTS]


def example_value(spec: dict) -> Any:
    return spec.get("example", spec.get("default"))
