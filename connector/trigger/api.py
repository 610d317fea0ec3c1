"""The trigger's routes: REST hooks (``/api/v1/hooks``) and the polling trigger.

Both open (or reuse) the watch of (provider, provider key, handle); a new watch takes its
baseline within the request. The polling route also polls a due watch within the request,
under the watch's lease and at most ``request_page_budget`` pages (the rest is left to the
worker or the next poll), so a web process alone serves polling triggers within 30 s.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from ..errors import (UPSTREAM_STATUS, BadRequest, ConnectorError, InsufficientCredits, NotFoundError,
                      UpstreamError)
from ..manifests import Manifest
from ..api.common import authenticate, count_request, counted_body, provider_choice, services, upstream_failure
from .crypto import NO_SECRET_KEY, new_webhook_secret
from .events import iso
from .options import TriggerOptions
from .tables import deliveries, delivery_attempts, events, subscriptions, watches
from .targets import EXAMPLE, check_target_url
from .watches import (claim_watch, delete_subscription, get_watch, insert_ignore, open_watch, poll_watch,
                      release_watch, trigger_manifest)
from .worker import new_owner

HOOK_FIELDS = ("event", "handle", "targetUrl")
RECENT_ATTEMPTS = 20


def _provider_for_request(svc) -> tuple[str, str | None]:
    name, credentials = provider_choice()
    if credentials and not svc.settings.secret_key:
        raise BadRequest(NO_SECRET_KEY)
    return name, credentials


def _subscribe(svc, wid: str, *statements) -> bool:
    """Run the statements that insert a subscription, in one transaction that first checks
    the watch still exists; False when it was deleted meanwhile (its last subscription went)."""
    try:
        with svc.store.write() as conn:
            if get_watch(conn, wid) is None:
                return False
            for statement in statements:
                conn.execute(statement)
    except sa.exc.IntegrityError:   # PostgreSQL: deleted by a transaction that committed after our check
        return False
    return True


def _watch_vanished(handle: str) -> ConnectorError:
    error = ConnectorError(f"The watch of {handle} was removed while subscribing (another subscription "
                           "was deleted at the same moment); please try again.")
    error.status = 409
    return error


def _poll_now(svc, watch, caller, *, due_only: bool, extra_payer: bool) -> None:
    """Poll the watch within the request if its lease is free; raise what the caller must see."""
    owner = new_owner()
    opts = TriggerOptions.from_settings(svc.settings)
    if not claim_watch(svc.store, watch["id"], owner, opts.lease_seconds, due_only=due_only):
        return
    try:
        result = poll_watch(svc, watch["id"], owner, extra_payers={caller.id: caller} if extra_payer else None,
                            max_pages=opts.request_page_budget)
    except BaseException:
        release_watch(svc.store, watch["id"], owner)
        raise
    if result.lease_lost:   # another poller took the watch over: its poll stands, ours is skipped
        return
    if result.error is not None:
        raise result.error
    if caller.id in result.unpaid:
        raise InsufficientCredits()


def _stored_failure(manifest: Manifest, watch) -> ConnectorError | None:
    """The error a watch's last poll met, as the caller would have seen it then."""
    if watch["status"] not in ("not_found", "auth_failed") or not watch["last_error"]:
        return None
    error = ConnectorError(watch["last_error"])
    error.status = UPSTREAM_STATUS.get(watch["last_error_kind"] or "", 500)
    return error


def _hook_view(sub, watch, attempts=None, pending: int | None = None) -> dict:
    status = sub["status"] if sub["status"] != "active" else watch["status"]
    view = {"id": sub["id"], "event": sub["event"], "handle": watch["handle"], "targetUrl": sub["target_url"],
            "createdAt": iso(sub["created_at"]), "status": status, "provider": watch["provider"],
            "lastPollAt": iso(watch["last_poll_at"]), "nextPollAt": iso(watch["next_poll_at"]),
            "lastError": watch["last_error"] or sub["last_error"], "lastDeliveryError": sub["last_error"],
            "creditsSpent": sub["credits_spent"]}
    if attempts is not None:
        view["pendingDeliveries"] = pending
        view["recentDeliveries"] = [
            {"at": iso(a.attempted_at), "eventId": a.event_id, "statusCode": a.status_code,
             "error": a.error, "durationMs": a.duration_ms} for a in attempts]
    return view


def _own_hook(conn, caller, hook_id: str):
    row = conn.execute(sa.select(subscriptions).where(
        subscriptions.c.id == hook_id[:40], subscriptions.c.kind == "hook",
        subscriptions.c.key_id == caller.id)).mappings().first()
    if row is None:
        raise NotFoundError(f"No hook with id {hook_id[:60]} for this API key. List yours with GET /api/v1/hooks.")
    return row


def register(app, manifests: dict[str, Manifest]) -> None:
    manifest = trigger_manifest(manifests)
    allowed_events = sorted(m.hooks["event"] for m in manifests.values() if m.data.get("hooks"))
    hooks_route = manifest.hooks["route"]
    bp = Blueprint("trigger", __name__)

    def create_hook():
        svc = services()
        caller = authenticate()
        body = counted_body(caller, "hooks")
        if not isinstance(body, dict):
            raise BadRequest('Request body must be a JSON object, for example {"event": "new_follower", '
                             f'"handle": "stoolpresidente", "targetUrl": "{EXAMPLE}"}}.')
        unknown = [k for k in body if k not in HOOK_FIELDS]
        if unknown:
            raise BadRequest(f"Unknown field '{str(unknown[0])[:60]}'. Allowed fields: {', '.join(HOOK_FIELDS)}.")
        if body.get("event") not in allowed_events:
            raise BadRequest(f"'event' must be one of: {', '.join(allowed_events)}.")
        handle = manifest.parse({"handle": body.get("handle")})["handle"]
        target = check_target_url(body.get("targetUrl"), allow_private=svc.settings.allow_private_targets)
        credentials = None
        for _ in range(2):   # once more if a DELETE removed the watch between opening and subscribing
            try:
                provider_name, credentials = _provider_for_request(svc)
                watch, created = open_watch(svc, provider_name, credentials, handle, caller)
                if not created:
                    # Followers who exist now never fire: catch the watch up before subscribing.
                    _poll_now(svc, watch, caller, due_only=False, extra_payer=True)
            except UpstreamError as exc:
                raise upstream_failure(manifest, exc, handle, (credentials,) if credentials else ()) from None
            now = time.time()
            sub = {"id": "hook_" + secrets.token_hex(12), "watch_id": watch["id"], "key_id": caller.id,
                   "kind": "hook", "event": body["event"], "target_url": target, "secret": new_webhook_secret(),
                   "request_source": "API", "status": "active", "credits_spent": manifest.cost if created else 0,
                   "created_at": now, "last_called_at": None}
            if _subscribe(svc, watch["id"], subscriptions.insert().values(**sub)):
                break
        else:
            raise _watch_vanished(handle)
        response = jsonify({"id": sub["id"], "event": sub["event"], "handle": handle, "targetUrl": target,
                            "secret": sub["secret"], "createdAt": iso(now)})
        response.status_code = 201
        return response

    def list_hooks():
        svc = services()
        caller = authenticate()
        count_request(caller, "hooks")
        with svc.store.connect() as conn:
            rows = conn.execute(
                sa.select(subscriptions, watches.c.handle, watches.c.provider, watches.c.status.label("w_status"),
                          watches.c.last_poll_at, watches.c.next_poll_at, watches.c.last_error.label("w_error"))
                .join(watches, watches.c.id == subscriptions.c.watch_id)
                .where(subscriptions.c.key_id == caller.id, subscriptions.c.kind == "hook")
                .order_by(subscriptions.c.created_at)).mappings().all()
        hooks = [_hook_view(row, {"handle": row["handle"], "provider": row["provider"], "status": row["w_status"],
                                  "last_poll_at": row["last_poll_at"], "next_poll_at": row["next_poll_at"],
                                  "last_error": row["w_error"]}) for row in rows]
        return jsonify({"hooks": hooks})

    def get_hook(hook_id: str):
        svc = services()
        caller = authenticate()
        count_request(caller, "hooks")
        with svc.store.connect() as conn:
            sub = _own_hook(conn, caller, hook_id)
            watch = get_watch(conn, sub["watch_id"])
            attempts = conn.execute(
                sa.select(delivery_attempts).where(delivery_attempts.c.subscription_id == sub["id"])
                .order_by(delivery_attempts.c.id.desc()).limit(RECENT_ATTEMPTS)).all()
            pending = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                deliveries.c.subscription_id == sub["id"], deliveries.c.status == "pending")).scalar_one()
        return jsonify(_hook_view(sub, watch, attempts, pending))

    def delete_hook(hook_id: str):
        svc = services()
        caller = authenticate()
        count_request(caller, "hooks")
        with svc.store.connect() as conn:
            sub = _own_hook(conn, caller, hook_id)
        with svc.store.write() as conn:   # write first: SQLite cannot upgrade a stale read
            delete_subscription(conn, sub["id"], sub["watch_id"])
        return "", 204

    def poll_trigger():
        svc = services()
        caller = authenticate()
        body = counted_body(caller, manifest.key)
        values = manifest.parse(body, request.headers)
        handle, source = values["handle"], values["requestSource"]
        credentials = None
        try:
            provider_name, credentials = _provider_for_request(svc)
            for _ in range(2):   # once more if a DELETE removed the watch between opening and subscribing
                watch, created = open_watch(svc, provider_name, credentials, handle, caller, source)
                now = time.time()
                sub_id = "poll_" + hashlib.sha256(f"{watch['id']}:{caller.id}".encode()).hexdigest()[:24]
                if _subscribe(svc, watch["id"], insert_ignore(svc.store.dialect, subscriptions, {
                        "id": sub_id, "watch_id": watch["id"], "key_id": caller.id, "kind": "poll",
                        "event": manifest.hooks["event"], "request_source": source, "status": "active",
                        "credits_spent": manifest.cost if created else 0, "created_at": now}),
                        subscriptions.update().where(subscriptions.c.id == sub_id)
                        .values(last_called_at=now, request_source=source)):
                    break
            else:
                raise _watch_vanished(handle)
            if not created:
                if watch["next_poll_at"] <= now:
                    _poll_now(svc, watch, caller, due_only=True, extra_payer=False)
                with svc.store.connect() as conn:
                    watch = get_watch(conn, watch["id"])
                failure = _stored_failure(manifest, watch)
                if failure is not None:
                    raise failure
        except UpstreamError as exc:
            raise upstream_failure(manifest, exc, handle, (credentials,) if credentials else ()) from None
        with svc.store.connect() as conn:
            rows = conn.execute(sa.select(events.c.seq, events.c.payload).where(events.c.watch_id == watch["id"])
                                .order_by(events.c.seq.desc()).limit(values["limit"])).all()
        # ``seq`` (increasing with detection order) is for pollers that need an ordered id (Make).
        items = [{**json.loads(row.payload), "seq": row.seq} for row in rows]
        return jsonify(items if source == "ZAPIER" else {"events": items})

    bp.add_url_rule(hooks_route, "create_hook", create_hook, methods=["POST"])
    bp.add_url_rule(hooks_route, "list_hooks", list_hooks, methods=["GET"])
    bp.add_url_rule(f"{hooks_route}/<hook_id>", "get_hook", get_hook, methods=["GET"])
    bp.add_url_rule(f"{hooks_route}/<hook_id>", "delete_hook", delete_hook, methods=["DELETE"])
    bp.add_url_rule(manifest.route, "new_follower", poll_trigger, methods=["POST"])
    app.register_blueprint(bp)
