"""What the manifests ask of every provider, checked when the service starts.

A manifest names an ``operation`` (a provider method) and, for an action, the argument each
input fills (its ``param``, else its key). Every provider must define that method taking
those arguments, or list the operation in its ``unsupported`` with the reason: a missing
method would otherwise surface as a 500 on a caller's first request.
"""

from __future__ import annotations

import inspect

from ..manifests import Manifest, ManifestError
from . import PROVIDERS


def check_providers(manifests: dict[str, Manifest], providers: dict | None = None) -> None:
    """:class:`ManifestError` naming the manifest, the provider and what is missing."""
    providers = PROVIDERS if providers is None else providers
    problems = []
    for manifest in manifests.values():
        operation = manifest.data.get("operation")
        if not operation:
            continue
        for name, cls in providers.items():
            if operation in cls.unsupported:
                continue
            method = getattr(cls, operation, None)
            if not callable(method):
                problems.append(f"{manifest.path.name}: operation '{operation}' is not a method of the {name} "
                                f"provider ({cls.__name__}); add it, or list it in {cls.__name__}.unsupported "
                                "with the reason")
                continue
            if manifest.kind != "action":   # a trigger's inputs shape polls, not provider calls
                continue
            taken = inspect.signature(method).parameters
            for spec in manifest.inputs:
                argument = spec.get("param", spec["key"])
                if argument not in taken:
                    problems.append(f"{manifest.path.name}: input '{spec['key']}' fills argument '{argument}', "
                                    f"which {cls.__name__}.{operation} does not take")
    if problems:
        raise ManifestError("; ".join(problems))
