"""HTTP blueprints: actions (from manifests), hooks (REST hooks), triggers (the polling
trigger), meta (health, OpenAPI). Shared request plumbing is in ``common``; the views hold no
SQL: they call the trigger package and the key store."""
