"""Routes that need no key: health and the OpenAPI document."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from ..export import openapi
from .common import services

bp = Blueprint("meta", __name__)


@bp.get("/healthz")
def healthz():
    svc = services()
    try:
        with svc.store.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = "ok"
    except Exception:
        database = "unavailable"
    body = {"status": "ok" if database == "ok" else "degraded", "database": database,
            "provider": svc.settings.default_provider}
    return jsonify(body), 200 if database == "ok" else 503


@bp.get("/openapi.json")
def openapi_json():
    svc = services()
    return jsonify(openapi.build({k: m.data for k, m in svc.manifests.items()}))
