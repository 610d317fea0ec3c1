"""The seed actions, one route per action manifest, all served by one view factory."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..errors import BadRequest, ConnectorError, InsufficientCredits, InvalidCursor, UpstreamError
from ..manifests import Manifest
from ..records import Page
from .common import authenticate, counted_body, provider_choice, services, unexpected, upstream_failure

def provider_for_request():
    """The provider instance this request is served by."""
    return services().providers.get(*provider_choice())


def make_view(manifest: Manifest):
    cursor_key = next((spec["key"] for spec in manifest.inputs if spec["type"] == "cursor"), None)

    def view():
        svc = services()
        caller = authenticate()
        body = counted_body(caller, manifest.key)
        values = manifest.parse(body, request.headers)
        handle = values.get("handle")
        provider = None
        try:
            provider = provider_for_request()
            perform = provider.operation(manifest.operation, manifest.label.lower())   # NotOffered: a 400
            if cursor_key is not None:
                try:
                    provider.check_cursor(values.get(cursor_key))
                except InvalidCursor as exc:
                    raise BadRequest(exc.for_field(cursor_key)) from None
            if not svc.keys.reserve(caller, manifest.cost):
                raise InsufficientCredits()
            try:
                result = perform(**manifest.provider_args(values))
            except BaseException:
                svc.keys.refund(caller, manifest.cost)
                raise
        except UpstreamError as exc:
            raise upstream_failure(manifest, exc, handle, provider.secrets() if provider else ()) from None
        except ConnectorError:
            raise
        except Exception as exc:  # a bug: the caller gets a reference, the log the detail
            raise unexpected(manifest, exc) from None
        svc.keys.record_spend(caller, manifest.key, values.get("requestSource", "API"), manifest.cost)
        if isinstance(result, Page):
            result = result.to_response(manifest.output["list"])
        return jsonify(result)

    view.__name__ = f"action_{manifest.key}"
    return view


def register(app, manifests: dict[str, Manifest]) -> None:
    bp = Blueprint("actions", __name__)
    for manifest in manifests.values():
        if manifest.kind == "action":
            bp.add_url_rule(manifest.route, endpoint=manifest.key, view_func=make_view(manifest),
                            methods=["POST"])
    app.register_blueprint(bp)
