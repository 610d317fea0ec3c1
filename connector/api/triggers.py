"""The polling triggers (``/api/v1/triggers/new-follower`` and one per trigger manifest): a
caller's newest events.

The first call for a handle subscribes the caller (its samples are the page it paid for);
a due watch is polled within the request, so a web process alone serves polling triggers.
What a caller may read is :func:`connector.trigger.subscriptions.poll_events`'s to decide.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import UpstreamError
from ..manifests import Manifest
from ..trigger.subscriptions import poll_events
from ..trigger.watches import trigger_manifests
from .common import authenticate, counted_body, services, stored_provider_choice, upstream_failure


def _view(manifest: Manifest):
    def poll():
        svc = services()
        caller = authenticate()
        body = counted_body(caller, manifest.key)
        values = manifest.parse(body, request.headers)
        handle, source = values["handle"], values["requestSource"]
        provider_name, credentials = stored_provider_choice()
        try:
            items = poll_events(svc, caller, manifest, provider_name, credentials, handle=handle,
                                inputs=manifest.subscription(values), source=source, limit=values["limit"])
        except UpstreamError as exc:
            raise upstream_failure(manifest, exc, handle, (credentials,) if credentials else ()) from None
        return jsonify(items if source == "ZAPIER" else {"events": items})
    return poll


def register(app, manifests: dict[str, Manifest]) -> None:
    bp = Blueprint("triggers", __name__)
    for event, manifest in sorted(trigger_manifests(manifests).items()):
        bp.add_url_rule(manifest.route, event, _view(manifest), methods=["POST"])
    app.register_blueprint(bp)
