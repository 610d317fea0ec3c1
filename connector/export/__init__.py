"""Pure exporters: manifests in, documents out (OpenAPI, Zapier, Make).

Each exporter is a function of the manifests alone and is deterministic: the same
manifests give byte-identical output. ``EXPORTERS`` maps a target name to its module.
"""
