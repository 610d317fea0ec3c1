"""Pure exporters: manifests in, documents out (OpenAPI, Zapier, Make).

Each exporter is a function of the manifests alone and is deterministic: the same
manifests give byte-identical output. ``EXPORTERS`` maps a target name to its module;
every module has ``build(manifests)`` (the document as data) and ``render(manifests)``
(``{file name: text}`` for Zapier and Make, the JSON text for OpenAPI). ``manifests`` is
the dict of manifest key -> manifest data; loaded ``Manifest`` objects are accepted too.
"""

from __future__ import annotations

from . import make, openapi, zapier

__all__ = ["EXPORTERS"]

EXPORTERS = {"zapier": zapier, "make": make, "openapi": openapi}
