"""Subscriptions: REST hooks and polling callers on watches, what they may read, their limits.

- A hook is created once per (key, watch, event, target URL): subscribing again returns the
  same hook (Zapier and Make re-subscribe). A key holds at most ``max_hooks_per_key`` hooks
  and watches at most ``max_handles_per_key`` accounts (hooks and polling together).
- Subscribing checks the caller's own balance first, then pays alone for the watch's
  baseline, or for a catch-up read of a watch others already have (see :mod:`.billing`).
- A polling subscription reads its *inbox*: the events of pages its key paid for, plus the
  samples of its first call (the top page it paid for), newest first through an index.
- A hook's owner may pause it, and re-enable it after it was disabled for failing.

Routes call these functions and turn what they return into JSON; nothing here knows HTTP
beyond raising the domain errors of :mod:`connector.errors`.
"""

from __future__ import annotations

import hashlib
import json
import secrets

import sqlalchemy as sa

from ..errors import (UPSTREAM_KINDS, BadRequest, Conflict, InsufficientCredits, NotFoundError, QuotaExceeded,
                      RateLimited, UpstreamError)
from ..manifests import Manifest
from ..store import insert_ignore
from ..store.keys import Caller
from .billing import can_pay
from .crypto import credential_hash, encrypt_secret
from .events import EVENT, follower_fields, iso, passes
from .hook_secrets import ROTATION_OVERLAP, current_secret, new_stored_secret
from .outbox import account_events, store_events, subscription_filters
from .poll import poll_in_request
from .tables import deliveries, delivery_attempts, events, inbox, subscriptions, watches
from .targets import target_receiver
from . import snapshot
from .threshold import figure, initial_state, last_passed
from .watches import create_watch, delete_subscription, get_watch, reader_manifest, watch_id

RECENT_ATTEMPTS = 20
SNAPSHOT_WATCH = "followers_snapshot"
WATCH_FAILURES = ("not_found", "auth_failed")


def _stored_failure(watch) -> UpstreamError | None:
    """The error a watch's last poll met, for a caller that asks before the next poll."""
    if watch["status"] not in WATCH_FAILURES or not watch["last_error"]:
        return None
    kind = watch["last_error_kind"] if watch["last_error_kind"] in UPSTREAM_KINDS else "unexpected"
    return UpstreamError(kind, "the watch's last poll", provider=watch["provider"])


def _check_quotas(svc, caller: Caller, wid: str, *, new_hook: bool) -> None:
    settings = svc.settings
    with svc.store.connect() as conn:
        if new_hook:
            hooks = conn.execute(sa.select(sa.func.count()).select_from(subscriptions).where(
                subscriptions.c.key_id == caller.id, subscriptions.c.kind == "hook")).scalar_one()
            if hooks >= settings.max_hooks_per_key:
                raise QuotaExceeded(
                    f"This API key has {hooks} hooks, the most it may hold ({settings.max_hooks_per_key}). "
                    "Delete hooks you no longer use (DELETE /api/v1/hooks/<id>), or ask the operator to "
                    "raise CONNECTOR_MAX_HOOKS_PER_KEY.")
        watched = set(conn.execute(sa.select(subscriptions.c.watch_id).distinct()
                                   .where(subscriptions.c.key_id == caller.id)).scalars())
    if wid not in watched and len(watched) >= settings.max_handles_per_key:
        raise QuotaExceeded(
            f"This API key already watches {len(watched)} accounts, the most it may watch "
            f"({settings.max_handles_per_key}). Delete the hooks (and stop the polling triggers) of accounts "
            "you no longer need, or ask the operator to raise CONNECTOR_MAX_HANDLES_PER_KEY.")


def _catch_up(svc, watch, caller: Caller):
    """The subscriber's own read of an existing watch; returns ``(pages, first_page)``."""
    result = poll_in_request(svc, watch["id"], due_only=False, subscriber=caller)
    if result is None:            # another poller holds the watch right now: its poll stands
        return 0, []
    if result.error is not None:
        raise result.error
    if result.refused(caller.id):
        raise InsufficientCredits()
    return result.pages, result.first_page


def _open(svc, manifest: Manifest, provider_name, credentials, handle, caller: Caller, source: str):
    """The watch (created, or caught up for this subscriber); ``(watch, credits paid, samples)``."""
    cost = reader_manifest(svc.manifests, manifest.watch_operation).cost
    with svc.store.connect() as conn:
        watch = get_watch(conn, watch_id(provider_name, credential_hash(credentials), handle, manifest.watch_operation))
    if watch is None:
        watch, _created, samples = create_watch(svc, manifest, provider_name, credentials, handle, caller, source)
        return watch, cost, samples
    if manifest.strategy == "snapshot":
        snapshot.check_limit(svc.settings, watch)
    pages, samples = _catch_up(svc, watch, caller)
    svc.keys.record_spend(caller, manifest.event, source, pages * cost)
    with svc.store.connect() as conn:
        watch = get_watch(conn, watch["id"]) or watch
    failure = _stored_failure(watch)
    if failure is not None:
        raise failure
    return watch, pages * cost, samples


class _WatchGone(Exception):
    """The watch was deleted (its last subscription went) between opening it and subscribing."""


def _subscribe(svc, manifest: Manifest, caller: Caller, provider_name, credentials, handle, source, write):
    """Open the watch for ``caller`` (paid by it alone), then run ``write(conn, watch, spent,
    samples)`` in one transaction that first checks the watch still exists, and return what
    it returns. Once more if a DELETE removed the watch meanwhile; the reads lost with it are
    refunded."""
    for _ in range(2):
        watch, spent, samples = _open(svc, manifest, provider_name, credentials, handle, caller, source)
        try:
            with svc.store.write() as conn:
                if get_watch(conn, watch["id"]) is None:
                    raise _WatchGone
                return write(conn, watch, spent, samples)
        except (_WatchGone, sa.exc.IntegrityError):   # (PostgreSQL: deleted by a commit after our check)
            svc.keys.refund(caller, spent)
    raise _vanished(handle)


def _vanished(handle: str) -> Conflict:
    return Conflict(f"The watch of {handle} was removed while subscribing (another subscription was "
                    "deleted at the same moment); please try again.")


def _threshold_state(manifest: Manifest, samples) -> str | None:
    """A threshold subscription starts above the figure read when it subscribed."""
    if manifest.strategy != "threshold" or not samples:
        return None
    return initial_state(figure(manifest, samples[0][1]))


# -- hooks ----------------------------------------------------------------------------------

def _canonical(inputs: dict | None) -> str:
    return json.dumps(inputs, sort_keys=True, separators=(",", ":")) if inputs else ""


def hook_dedupe_key(key_id: str, wid: str, event: str, target_url: str, inputs: dict | None = None) -> str:
    """The same hook: key, watch, event, target URL and inputs (a hook without inputs keeps
    the key it had before hooks had inputs)."""
    extra = f"\n{_canonical(inputs)}" if inputs else ""
    return hashlib.sha256(f"{key_id}\n{wid}\n{event}\n{target_url}{extra}".encode()).hexdigest()


def _inputs(sub) -> dict:
    return json.loads(sub["inputs"]) if sub["inputs"] else {}


def _created_view(sub, handle: str, secret: str, svc=None) -> dict:
    view = {"id": sub["id"], "event": sub["event"], "handle": handle, "targetUrl": sub["target_url"],
            "secret": secret, "createdAt": iso(sub["created_at"]), **_inputs(sub)}
    manifest = svc.manifests.get(sub["event"]) if svc is not None else None
    if manifest is not None and manifest.strategy == "snapshot":
        with svc.store.connect() as conn:
            view["creditsPerCheck"] = snapshot.credits_per_check(get_watch(conn, sub["watch_id"]))
    return view


def create_hook(svc, caller: Caller, manifest: Manifest, provider_name: str, credentials: str | None, *,
                handle: str, inputs: dict, target_url: str, request_source: str) -> tuple[dict, bool]:
    """The hook, as its creator sees it once (with its secret), and whether it is new."""
    event = manifest.event
    wid = watch_id(provider_name, credential_hash(credentials), handle, manifest.watch_operation)
    dedupe = hook_dedupe_key(caller.id, wid, event, target_url, inputs)

    def existing():
        with svc.store.connect() as conn:
            return conn.execute(sa.select(subscriptions).where(subscriptions.c.dedupe_key == dedupe)).mappings().first()

    secret_key = svc.settings.secret_key
    row = existing()
    if row is not None:
        return _created_view(row, handle, current_secret(secret_key, row), svc), False
    stored, secret = new_stored_secret(secret_key)     # refused, naming the setting, without a key
    _check_quotas(svc, caller, wid, new_hook=True)
    if not can_pay(svc.keys, caller, reader_manifest(svc.manifests, manifest.watch_operation).cost):
        raise InsufficientCredits()

    def insert(conn, watch, spent, samples):
        sub = {"id": "hook_" + secrets.token_hex(12), "watch_id": watch["id"], "key_id": caller.id,
               "kind": "hook", "event": event, "target_url": target_url, "inputs": _canonical(inputs) or None,
               "state": _threshold_state(manifest, samples),
               "target_host": target_receiver(target_url), "dedupe_key": dedupe, **stored,
               "request_source": request_source, "status": "active", "credits_spent": spent,
               "created_at": svc.clock(), "last_called_at": None}
        inserted = conn.execute(insert_ignore(svc.store.dialect, subscriptions, sub)
                                .returning(subscriptions.c.id)).first() is not None
        return sub if inserted else None, spent

    sub, spent = _subscribe(svc, manifest, caller, provider_name, credentials, handle, request_source, insert)
    if sub is None:      # the same hook was created by a concurrent request: its reads cost nothing
        svc.keys.refund(caller, spent)
        row = existing()
        return _created_view(row, handle, current_secret(secret_key, row), svc), False
    return _created_view(sub, handle, secret, svc), True


def _own_hook(conn, caller: Caller, hook_id: str):
    row = conn.execute(sa.select(subscriptions).where(
        subscriptions.c.id == hook_id[:40], subscriptions.c.kind == "hook",
        subscriptions.c.key_id == caller.id)).mappings().first()
    if row is None:
        raise NotFoundError(f"No hook with id {hook_id[:60]} for this API key. List yours with GET /api/v1/hooks.")
    return row


def _hook_view(sub, watch, attempts=None, pending: int | None = None) -> dict:
    status = sub["status"] if sub["status"] != "active" else watch["status"]
    view = {"id": sub["id"], "event": sub["event"], "handle": watch["handle"], "targetUrl": sub["target_url"],
            **_inputs(sub), "createdAt": iso(sub["created_at"]), "status": status, "statusReason": sub["status_reason"],
            "provider": watch["provider"], "lastPollAt": iso(watch["last_poll_at"]),
            "nextPollAt": iso(watch["next_poll_at"]), "pollIntervalSeconds": watch.get("poll_interval"),
            "lastError": watch["last_error"] or sub["last_error"],
            "lastDeliveryError": sub["last_error"], "failingSince": iso(sub["failing_since"]),
            "creditsSpent": sub["credits_spent"]}
    if watch.get("operation") == SNAPSHOT_WATCH:
        view["creditsPerCheck"] = snapshot.credits_per_check(watch)
    if attempts is not None:
        view["pendingDeliveries"] = pending
        view["recentDeliveries"] = [
            {"at": iso(a.attempted_at), "eventId": a.event_id, "statusCode": a.status_code,
             "error": a.error, "durationMs": a.duration_ms} for a in attempts]
    return view


def list_hooks(svc, caller: Caller) -> list[dict]:
    with svc.store.connect() as conn:
        rows = conn.execute(
            sa.select(subscriptions, watches.c.handle, watches.c.provider, watches.c.status.label("w_status"),
                      watches.c.last_poll_at, watches.c.next_poll_at, watches.c.poll_interval,
                      watches.c.last_error.label("w_error"), watches.c.state.label("w_state"),
                      watches.c.operation.label("w_operation"))
            .join(watches, watches.c.id == subscriptions.c.watch_id)
            .where(subscriptions.c.key_id == caller.id, subscriptions.c.kind == "hook")
            .order_by(subscriptions.c.created_at)).mappings().all()
    return [_hook_view(row, {"handle": row["handle"], "provider": row["provider"], "status": row["w_status"],
                             "last_poll_at": row["last_poll_at"], "next_poll_at": row["next_poll_at"],
                             "poll_interval": row["poll_interval"], "state": row["w_state"],
                             "operation": row["w_operation"], "last_error": row["w_error"]}) for row in rows]


def hook_detail(svc, caller: Caller, hook_id: str) -> dict:
    with svc.store.connect() as conn:
        sub = _own_hook(conn, caller, hook_id)
        watch = get_watch(conn, sub["watch_id"])
        attempts = conn.execute(
            sa.select(delivery_attempts).where(delivery_attempts.c.subscription_id == sub["id"])
            .order_by(delivery_attempts.c.id.desc()).limit(RECENT_ATTEMPTS)).all()
        pending = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
            deliveries.c.subscription_id == sub["id"], deliveries.c.status == "pending")).scalar_one()
    return _hook_view(sub, watch, attempts, pending)


def delete_hook(svc, caller: Caller, hook_id: str) -> None:
    with svc.store.connect() as conn:
        sub = _own_hook(conn, caller, hook_id)
    with svc.store.write() as conn:   # write first: SQLite cannot upgrade a stale read
        delete_subscription(conn, sub["id"], sub["watch_id"])


def rotate_hook_secret(svc, caller: Caller, hook_id: str, *, secret: str | None = None,
                       overlap: float = ROTATION_OVERLAP) -> dict:
    """Give the hook a new secret (``secret``, else a random one); the current one keeps
    signing beside it for ``overlap`` seconds (0: stops at once). Rotating again within the
    overlap drops the oldest: only the two newest secrets ever sign."""
    secret_key = svc.settings.secret_key
    encrypted, new = new_stored_secret(secret_key, secret)
    now = svc.clock()
    with svc.store.connect() as conn:
        sub = _own_hook(conn, caller, hook_id)
    old = current_secret(secret_key, sub)
    until = now + overlap if overlap > 0 and old != new else None
    with svc.store.write() as conn:
        conn.execute(subscriptions.update().where(subscriptions.c.id == sub["id"]).values(
            secret=None, **encrypted,
            previous_secret_enc=encrypt_secret(secret_key, old) if until is not None else None,
            previous_secret_until=until))
    return {"id": sub["id"], "secret": new, "previousSecretExpiresAt": iso(until)}


READ_NOW_EVERY = 60.0     # seconds: POST /hooks/<id>/poll at most once a minute per hook


def request_read(svc, caller: Caller, hook_id: str) -> dict:
    """Have the hook's watch read at the worker's next pass, whatever its schedule: paid by the
    keys that asked alone unless the schedule made it due anyway (see :mod:`.billing`), so the
    caller's balance must cover a read first. At most once a :data:`READ_NOW_EVERY` per hook,
    else :class:`RateLimited`."""
    now = svc.clock()
    with svc.store.connect() as conn:
        sub = _own_hook(conn, caller, hook_id)
        watch = get_watch(conn, sub["watch_id"])
    if sub["status"] in ("paused", "disabled"):   # (a read would deliver nothing to it)
        raise BadRequest(f"This hook is {sub['status']}: a read now would deliver nothing to it. Enable it "
                         f"first (PATCH /api/v1/hooks/{sub['id']} with {{\"enabled\": true}}), then ask again.")
    if not can_pay(svc.keys, caller, reader_manifest(svc.manifests, watch["operation"]).cost):
        raise InsufficientCredits()
    with svc.store.write() as conn:
        # One statement decides, so two requests at once cannot both pass.
        taken = conn.execute(subscriptions.update().where(
            subscriptions.c.id == sub["id"], sa.or_(subscriptions.c.poll_requested_at.is_(None),
                                                    subscriptions.c.poll_requested_at <= now - READ_NOW_EVERY))
            .values(poll_requested_at=now)).rowcount
        if taken:
            conn.execute(watches.update().where(watches.c.id == sub["watch_id"], watches.c.next_poll_at > now)
                         .values(next_poll_at=now))
    if not taken:
        wait = int(sub["poll_requested_at"] + READ_NOW_EVERY - now) + 1 if sub["poll_requested_at"] else 1
        raise RateLimited(wait, f"This hook's account was already queued for a read less than a minute ago; "
                                f"ask again in {max(1, wait)} s.")
    with svc.store.connect() as conn:
        watch = get_watch(conn, sub["watch_id"])
    return {"id": sub["id"], "event": sub["event"], "handle": watch["handle"], "queued": True,
            "nextPollAt": iso(watch["next_poll_at"])}


def set_hook_enabled(svc, caller: Caller, hook_id: str, enabled: bool) -> dict:
    """Pause a hook (nothing is read or sent for it), or enable it again, also after it was
    disabled for failing: its pending deliveries go out at once."""
    now = svc.clock()
    with svc.store.connect() as conn:
        sub = _own_hook(conn, caller, hook_id)
    with svc.store.write() as conn:
        if enabled:
            changed = conn.execute(subscriptions.update().where(
                subscriptions.c.id == sub["id"], subscriptions.c.status.in_(("disabled", "paused")))
                .values(status="active", status_reason=None, failing_since=None)).rowcount
            if changed:   # its waiting deliveries go out now; one a sender holds stays its
                conn.execute(deliveries.update().where(
                    deliveries.c.subscription_id == sub["id"], deliveries.c.status == "pending",
                    sa.or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now))
                    .values(next_attempt_at=now))
        else:
            conn.execute(subscriptions.update().where(subscriptions.c.id == sub["id"])
                         .values(status="paused", status_reason="Paused by its owner; enable it to resume."))
    return hook_detail(svc, caller, hook_id)


# -- polling --------------------------------------------------------------------------------

def poll_subscription_id(wid: str, key_id: str, event: str = EVENT, inputs: dict | None = None) -> str:
    """One polling subscription per key, watch, event and inputs (New Follower's without
    inputs keeps the id it had before there were other triggers)."""
    subject = f"{wid}:{key_id}" + ("" if event == EVENT and not inputs else f":{event}:{_canonical(inputs)}")
    return "poll_" + hashlib.sha256(subject.encode()).hexdigest()[:24]


def _poll_subscriber(svc, manifest: Manifest, caller: Caller, sub_id: str, source: str, inputs: dict):
    """``write`` for :func:`_subscribe`: the polling subscription, with the samples of the page
    it paid for (those its filters let through) in its inbox."""
    def write(conn, watch, spent, samples):
        now, dialect, wid = svc.clock(), svc.store.dialect, watch["id"]
        sub = {"id": sub_id, "watch_id": wid, "key_id": caller.id, "kind": "poll", "event": manifest.event,
               "inputs": _canonical(inputs) or None, "state": _threshold_state(manifest, samples),
               "request_source": source, "status": "active", "credits_spent": 0, "created_at": now}
        conn.execute(insert_ignore(dialect, subscriptions, sub))
        conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id).values(
            last_called_at=now, request_source=source, credits_spent=subscriptions.c.credits_spent + spent))
        if manifest.strategy == "snapshot":
            rows = [snapshot.sample_event(manifest, watch, now)]   # (the current followers are not lost ones)
        elif manifest.strategy == "threshold":
            # The last multiple the figure passed, as a sample (never delivered).
            rows = [] if not samples else last_passed(manifest, inputs, figure(manifest, samples[0][1]), watch, now)
        else:
            # Accounts of the page it paid for; their events may have been pruned: stored again.
            filters = subscription_filters(manifest, sub)
            samples = [(key, record) for key, record in samples
                       if not filters or passes(filters, follower_fields(record))]
            rows = account_events(watch, manifest, list(reversed(samples)), now, baseline=True)
        if rows:
            store_events(conn, dialect, rows, now)
            ids = [row["id"] for row in rows]
            for seq in conn.execute(sa.select(events.c.seq).where(events.c.id.in_(ids))).scalars():
                conn.execute(insert_ignore(dialect, inbox, {"subscription_id": sub_id, "seq": seq,
                                                            "created_at": now}))
    return write


def poll_events(svc, caller: Caller, manifest: Manifest, provider_name: str, credentials: str | None, *,
                handle: str, inputs: dict, source: str, limit: int) -> list[dict]:
    """The polling trigger: the caller's newest events for the handle (each with ``seq``)."""
    cost = reader_manifest(svc.manifests, manifest.watch_operation).cost
    wid = watch_id(provider_name, credential_hash(credentials), handle, manifest.watch_operation)
    sub_id = poll_subscription_id(wid, caller.id, manifest.event, inputs)
    with svc.store.connect() as conn:
        watch = get_watch(conn, wid)
        sub = conn.execute(sa.select(subscriptions).where(subscriptions.c.id == sub_id)).mappings().first()
    if watch is None or sub is None:
        _check_quotas(svc, caller, wid, new_hook=False)
        if not can_pay(svc.keys, caller, cost):
            raise InsufficientCredits()
        _subscribe(svc, manifest, caller, provider_name, credentials, handle, source,
                   _poll_subscriber(svc, manifest, caller, sub_id, source, inputs))
        return read_inbox(svc, sub_id, limit)
    now = svc.clock()
    due = watch["next_poll_at"] <= now
    if (due or sub["status"] != "active") and not can_pay(svc.keys, caller, cost):
        raise InsufficientCredits()
    with svc.store.write() as conn:   # the caller is a paying subscriber while it keeps calling
        conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id)
                     .values(last_called_at=now, request_source=source))
    if due:
        result = poll_in_request(svc, wid, due_only=True)
        if result is not None:
            if result.error is not None:
                raise result.error
            if result.refused(caller.id):
                raise InsufficientCredits()
        with svc.store.connect() as conn:
            watch = get_watch(conn, wid) or watch
    failure = _stored_failure(watch)
    if failure is not None:
        raise failure
    return read_inbox(svc, sub_id, limit)


def read_inbox(svc, sub_id: str, limit: int) -> list[dict]:
    """Newest first, through the inbox's primary key (never a sort of a watch's history)."""
    with svc.store.connect() as conn:
        rows = conn.execute(sa.select(events.c.seq, events.c.payload)
                            .select_from(inbox.join(events, events.c.seq == inbox.c.seq))
                            .where(inbox.c.subscription_id == sub_id)
                            .order_by(inbox.c.seq.desc()).limit(limit)).all()
    # ``seq`` (increasing with detection order) is for pollers that need an ordered id (Make).
    return [{**json.loads(row.payload), "seq": row.seq} for row in rows]

