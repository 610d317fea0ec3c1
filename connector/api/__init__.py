"""HTTP blueprints: actions (from manifests), meta (health, OpenAPI); hooks and triggers
live in ``connector.trigger``'s blueprint. Shared request plumbing is in ``common``."""
