"""``/api/v1/hooks``: REST hook subscriptions (Zapier REST hooks, Make instant triggers, any
webhook receiver). The views check the request and shape the answer; what a hook is, who
pays and what it may see live in :mod:`connector.trigger.subscriptions`."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..errors import BadRequest, UpstreamError, worded
from ..manifests import Manifest
from ..trigger import subscriptions
from ..trigger.events import GAP
from ..trigger.hook_secrets import ROTATION_OVERLAP, check_new_secret
from ..trigger.targets import EXAMPLE, check_target_url
from ..trigger.watches import trigger_manifests
from .common import (REQUEST_SOURCES, authenticate, count_request, counted_body, request_source, services,
                     stored_provider_choice, upstream_failure)
from .errors import HTTP_WORDS

HOOK_FIELDS = ("event", "handle", "targetUrl", "requestSource")
PATCH_FIELDS = ("enabled",)
ROTATE_FIELDS = ("secret", "keepPreviousSecretHours")
MAX_OVERLAP_HOURS = ROTATION_OVERLAP / 3600


def _object(body, example: str) -> dict:
    if not isinstance(body, dict):
        raise BadRequest(f"Request body must be a JSON object, for example {example}.")
    return body


def _no_unknown(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise BadRequest(f"Unknown field '{str(unknown[0])[:60]}'. Allowed fields: {', '.join(allowed)}.")


def _shown(view: dict) -> dict:
    """A hook's stored errors, worded for HTTP (they were written once for every edge)."""
    return {k: worded(v, HTTP_WORDS) if isinstance(v, str) else v for k, v in view.items()}


def register(app, manifests: dict[str, Manifest]) -> None:
    triggers = {event: m for event, m in trigger_manifests(manifests).items() if m.data.get("hooks")}
    allowed_events = sorted(triggers)
    told_gaps = sorted(e for e, m in triggers.items() if m.strategy == "newest_first")   # (hooks told of gaps)
    routes = sorted({m.hooks["route"] for m in triggers.values()})
    if not routes:
        return
    if len(routes) > 1:   # (the loader lets triggers share one hooks route; the API has one)
        raise ValueError(f"every trigger's hooks route must be the same, not {', '.join(routes)}")
    route = routes[0]
    bp = Blueprint("hooks", __name__)

    def create_hook():
        svc = services()
        caller = authenticate()
        body = _object(counted_body(caller, "hooks"), '{"event": "new_follower", "handle": "stoolpresidente", '
                                                     f'"targetUrl": "{EXAMPLE}"}}')
        event = body.get("event")
        if not isinstance(event, str) or event not in allowed_events:
            if event == GAP and told_gaps:   # (not a subscription of its own: CONTRACT.md section 5)
                raise BadRequest(f"'event' must be one of: {', '.join(allowed_events)}; {GAP} is not subscribed "
                                 f"to on its own: every hook of {', '.join(told_gaps)} receives it.")
            raise BadRequest(f"'event' must be one of: {', '.join(allowed_events)}.")
        manifest = triggers[event]
        own = [spec["key"] for spec in manifest.subscription_inputs]
        _no_unknown(body, HOOK_FIELDS + tuple(own))
        if "requestSource" in body and body["requestSource"] not in REQUEST_SOURCES:
            raise BadRequest(f"'requestSource' must be one of: {', '.join(REQUEST_SOURCES)}.")
        values = manifest.parse({"handle": body.get("handle"), **{k: body[k] for k in own if k in body}})
        handle, inputs = values["handle"], manifest.subscription(values)
        target = check_target_url(body.get("targetUrl"), allow_private=svc.settings.allow_private_targets)
        provider_name, credentials = stored_provider_choice()
        try:
            hook, created = subscriptions.create_hook(
                svc, caller, manifest, provider_name, credentials, handle=handle, inputs=inputs, target_url=target,
                request_source=request_source(body))
        except UpstreamError as exc:
            raise upstream_failure(manifest, exc, handle, (credentials,) if credentials else ()) from None
        return jsonify(hook), 201 if created else 200

    def list_hooks():
        caller = authenticate()
        count_request(caller, "hooks")
        return jsonify({"hooks": [_shown(hook) for hook in subscriptions.list_hooks(services(), caller)]})

    def get_hook(hook_id: str):
        caller = authenticate()
        count_request(caller, "hooks")
        return jsonify(_shown(subscriptions.hook_detail(services(), caller, hook_id)))

    def update_hook(hook_id: str):
        caller = authenticate()
        body = _object(counted_body(caller, "hooks"), '{"enabled": true}')
        _no_unknown(body, PATCH_FIELDS)
        if not isinstance(body.get("enabled"), bool):
            raise BadRequest("'enabled' is required and must be true (deliver again) or false (pause the hook).")
        return jsonify(_shown(subscriptions.set_hook_enabled(services(), caller, hook_id, body["enabled"])))

    def delete_hook(hook_id: str):
        caller = authenticate()
        count_request(caller, "hooks")
        subscriptions.delete_hook(services(), caller, hook_id)
        return "", 204

    def read_now(hook_id: str):
        """The hook's watch is read at the worker's next pass (202), at most once a minute."""
        caller = authenticate()
        body = counted_body(caller, "hooks")
        unknown = list(_object({} if body is None else body, "{} (or no body)"))
        if unknown:
            raise BadRequest(f"Unknown field '{str(unknown[0])[:60]}'. This route takes no fields: send an empty body.")
        return jsonify(subscriptions.request_read(services(), caller, hook_id)), 202

    def rotate_secret(hook_id: str):
        """A new signing secret; the current one keeps signing beside it (24 h by default)."""
        caller = authenticate()
        body = counted_body(caller, "hooks")
        body = _object({} if body is None else body, '{"keepPreviousSecretHours": 24}')
        _no_unknown(body, ROTATE_FIELDS)
        hours = body.get("keepPreviousSecretHours", MAX_OVERLAP_HOURS)
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not 0 <= hours <= MAX_OVERLAP_HOURS:
            raise BadRequest(f"'keepPreviousSecretHours' must be a number of hours from 0 to {MAX_OVERLAP_HOURS:g}: "
                             "how long the current secret keeps signing beside the new one "
                             f"(default {MAX_OVERLAP_HOURS:g}; 0 stops it at once).")
        secret = check_new_secret(body["secret"]) if body.get("secret") is not None else None
        return jsonify(subscriptions.rotate_hook_secret(services(), caller, hook_id, secret=secret,
                                                        overlap=hours * 3600))

    bp.add_url_rule(route, "create_hook", create_hook, methods=["POST"])
    bp.add_url_rule(route, "list_hooks", list_hooks, methods=["GET"])
    bp.add_url_rule(f"{route}/<hook_id>", "get_hook", get_hook, methods=["GET"])
    bp.add_url_rule(f"{route}/<hook_id>", "update_hook", update_hook, methods=["PATCH"])
    bp.add_url_rule(f"{route}/<hook_id>", "delete_hook", delete_hook, methods=["DELETE"])
    bp.add_url_rule(f"{route}/<hook_id>/poll", "read_hook_now", read_now, methods=["POST"])
    bp.add_url_rule(f"{route}/<hook_id>/rotate-secret", "rotate_hook_secret", rotate_secret, methods=["POST"])
    app.register_blueprint(bp)
