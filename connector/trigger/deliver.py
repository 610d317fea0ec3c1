"""Delivery of the outbox: claim due deliveries, send attempts, record their outcomes.

A claim also loads what its deliveries need (URL, secret, payload) in the same
transaction; :func:`send_one` only POSTs (a coroutine); :func:`record_robustly` writes many
outcomes in one transaction, and when that fails, each alone, and one that still cannot be
written as a bare failure (or success) of its delivery row: one bad row never holds a batch.
A delivery stays claimed until its outcome is written, so one whose outcome was never
recorded (the database away, the process killed) is sent again, same ``webhook-id``.

A delivery row is claimed by moving its ``next_attempt_at`` a lease ahead (so a crashed
sender's row comes back by itself); the lease (``Settings.delivery_lease``) outlives the
longest attempt, which :mod:`.webhook_client` bounds with one deadline, so two senders never
POST the same delivery at once. Claims hand out at most ``per_host`` attempts per receiver
host (``host:port``) and ``per_key`` per hook owner (the sender's fair share, see
:mod:`.sender`), keys taking turns, so a slow or dead receiver, or one key with many of
them, holds a bounded share of the sender.

Outcomes: 2xx delivered. 410: the subscription is deleted with its pending deliveries (and
its watch, if no other subscription uses it). Anything else, a timeout or a redirect (never
followed): retried after ``webhook_retry_schedule[attempt]`` seconds with -10 % to +20 %
jitter, or later if the receiver's ``Retry-After`` asks; failed after the schedule. A hook
whose deliveries have failed without a success for ``hook_disable_after`` is disabled, with
the reason in its status, until its owner enables it again.
"""

from __future__ import annotations

import json
import logging
import random
import unicodedata
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from .. import metrics
from ..errors import redact
from ..providers.http import parse_retry_after
from .events import iso
from .outbox import SILENT_STATUSES
from .signing import SECRET_COLUMNS, signed_headers, signing_secrets
from .tables import deliveries, delivery_attempts, events, subscriptions
from .targets import target_receiver
from .watches import delete_subscription
from .webhook_client import PostFailed, WebhookClient

log = logging.getLogger("connector.trigger")

MAX_RETRY_AFTER = 24 * 3600
KEEP_ATTEMPTS = 50       # recent attempts kept per subscription (GET /hooks/<id> shows them)
START_WITHIN = 30.0      # a claimed delivery not started this soon is left for its lease to expire


@dataclass(frozen=True)
class Claimed:
    id: int
    receiver: str        # host:port of the target
    key_id: str          # the hook's owner
    claimed_at: float
    row: Any = None      # what sending it needs (see _SENDING), loaded with the claim


@dataclass
class Attempt:
    """One POST made and not yet recorded: :func:`record_outcomes` writes many at once."""
    claimed: Claimed
    row: Any
    status_code: int | None
    error: str | None
    retry_after: float | None
    started: float
    finished: float
    failing_since: float | None = None   # of its hook, once this attempt is counted


@dataclass
class Outcome:
    delivery_id: int
    result: str            # delivered | retry | failed | gone | disabled | skipped | error | unrecorded
    status_code: int | None = None
    error: str | None = None
    subscription_id: str | None = None


def _claim_statement(dialect: str):
    """The claim's select, one text for every claim (compiled once): the rows due, ranked
    oldest first within each receiver host (``rn``) and each hook owner (``rk``), those of
    hosts and keys with no slot left dropped before ranking, then those within their
    host's and key's slots. The slots left per host and per key come as two JSON objects
    (``{"host:port": 3}``), absent ones having ``per_host`` / ``per_key``: a CASE with a
    branch per busy host made a new statement at each claim (~800 branches beside keys
    with hundreds of hanging receivers: 10-130 ms compiling, holding the GIL)."""
    stmt = _CLAIMS.get(dialect)
    if stmt is not None:
        return stmt
    d, s = deliveries.alias("d"), subscriptions.alias("s")
    rooms = []
    for name in ("hosts", "keys"):
        if dialect == "postgresql":
            pairs = sa.func.jsonb_each_text(sa.cast(sa.bindparam(name, type_=sa.Text), JSONB))
        else:
            pairs = sa.func.json_each(sa.bindparam(name, type_=sa.Text))
        pairs = pairs.table_valued("key", "value").alias(f"{name}_room")
        room = sa.cast(pairs.c.value, sa.Integer) if dialect == "postgresql" else pairs.c.value
        rooms.append(sa.select(pairs.c.key.label("name"), room.label("room"))
                     .cte(f"{name}_rooms").prefix_with("MATERIALIZED"))
    hosts, keys = rooms
    host_room = sa.func.coalesce(hosts.c.room, sa.bindparam("per_host", type_=sa.Integer))
    key_room = sa.func.coalesce(keys.c.room, sa.bindparam("per_key", type_=sa.Integer))
    order = (d.c.next_attempt_at, d.c.id)
    c = (sa.select(d.c.id, d.c.next_attempt_at, s.c.target_host, s.c.target_url, s.c.key_id,
                   host_room.label("host_room"), key_room.label("key_room"),
                   sa.func.row_number().over(partition_by=s.c.target_host, order_by=order).label("rn"),
                   sa.func.row_number().over(partition_by=s.c.key_id, order_by=order).label("rk"))
         .select_from(d.join(s, s.c.id == d.c.subscription_id)
                      # (hosts last: SQLite then looks them up through an automatic index; the
                      # other way round it scans the ~800 busy hosts for each row due, 10x slower)
                      .outerjoin(keys, keys.c.name == s.c.key_id)
                      .outerjoin(hosts, hosts.c.name == s.c.target_host))
         .where(d.c.status == "pending", d.c.next_attempt_at <= sa.bindparam("due_before", type_=sa.Float),
                s.c.status.notin_(SILENT_STATUSES), host_room > 0, key_room > 0)
         .subquery("c"))
    stmt = _CLAIMS[dialect] = (
        sa.select(c.c.id, c.c.target_host, c.c.target_url, c.c.key_id)
        .where(c.c.rn <= c.c.host_room, c.c.rk <= c.c.key_room)
        .order_by(c.c.rk, c.c.rn, c.c.next_attempt_at, c.c.id)      # keys take turns
        .limit(sa.bindparam("limit", type_=sa.Integer)))
    return stmt


_CLAIMS: dict = {}
# (locked first on their own: inside the UPDATE as a subquery, PostgreSQL may run the locking
# scan once per pending row when its statistics lag behind a burst)
_LOCK = (sa.select(deliveries.c.id).where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)))
         .with_for_update(skip_locked=True))
_LEASE = (deliveries.update()
          .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)), deliveries.c.status == "pending",
                 deliveries.c.next_attempt_at <= sa.bindparam("due_before"))
          .values(next_attempt_at=sa.bindparam("until"), claimed_until=sa.bindparam("until"))
          .returning(deliveries.c.id))


def claim_due_deliveries(store, *, now: float, lease: float, limit: int, due_before: float,
                         busy_hosts: dict[str, int] | None = None, busy_keys: dict[str, int] | None = None,
                         per_host: int = 8, per_key: int = 8, trim=None) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries, at most ``per_host`` running at once per
    receiver host and ``per_key`` per hook owner (``busy_*``: those running now; a negative
    number lets that host or key have as many more), oldest first within a host, keys and
    hosts taking turns. ``trim(picked)``, given the rows picked as ``(id, host, key)`` in
    that order, returns the ids to lease (the sender's fair share, once it knows which keys
    have work)."""
    params = {"hosts": json.dumps({h: per_host - n for h, n in (busy_hosts or {}).items() if n}),
              "keys": json.dumps({k: per_key - n for k, n in (busy_keys or {}).items() if n}),
              "per_host": per_host, "per_key": per_key, "due_before": due_before, "limit": limit}
    with store.write() as conn:
        picked = {row.id: (row.target_host or target_receiver(row.target_url), row.key_id)
                  for row in conn.execute(_claim_statement(store.dialect), params)}
        ids = list(picked)
        if trim is not None and ids:
            keep = trim([(i, *picked[i]) for i in ids])
            ids = [i for i in ids if i in keep]
        if not ids:
            return []
        if store.dialect == "postgresql":   # another sender may be claiming the same rows: skip its
            ids = conn.execute(_LOCK, {"ids": ids}).scalars().all()
            if not ids:
                return []
        claimed = conn.execute(_LEASE, {"ids": ids, "due_before": due_before, "until": now + lease}).scalars().all()
        rows = {row.id: row for row in conn.execute(_SENDING, {"ids": list(claimed)})} if claimed else {}
    return [Claimed(id=i, receiver=picked[i][0], key_id=picked[i][1], claimed_at=now, row=rows.get(i))
            for i in sorted(claimed)]


def retry_delay(schedule: tuple[int, ...], attempts: int, retry_after: float | None,
                rng: random.Random | None = None) -> float | None:
    """Seconds before the next try after ``attempts`` failed ones; None when the schedule is spent."""
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1] * (rng or random).uniform(0.9, 1.2)
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_RETRY_AFTER))
    return base


MAX_ERROR = 500          # characters of an attempt's error text that are stored


def clean_text(text: str, limit: int = MAX_ERROR) -> str:
    """Text safe to store anywhere: control characters (NUL included) and lone surrogates
    removed, whitespace runs made one space, at most ``limit`` characters."""
    kept = "".join(c for c in text if c in "\t\n\r" or unicodedata.category(c) not in ("Cc", "Cs"))
    return " ".join(kept.split())[:limit]


def _error_text(status: int, body: bytes, secret: tuple[str, ...]) -> str:
    error = f"HTTP {status}"
    if 300 <= status < 400:
        return error + " (redirects are not followed; use the final URL)"
    snippet = clean_text(body[:400].decode("utf-8", "replace"), 200)
    return f"{error}: {redact(snippet, secret)}" if snippet else error


# What sending a delivery needs, for the ids given (a claimed batch, or one delivery).
_SENDING = (sa.select(deliveries.c.id, deliveries.c.attempts, deliveries.c.event_id, deliveries.c.subscription_id,
                      subscriptions.c.watch_id, subscriptions.c.target_url, *SECRET_COLUMNS,
                      events.c.payload, events.c.detected_at)
            .select_from(deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
                         .join(events, events.c.id == deliveries.c.event_id))
            .where(deliveries.c.id.in_(sa.bindparam("ids", expanding=True)), deliveries.c.status == "pending",
                   subscriptions.c.status.notin_(SILENT_STATUSES)))
_FAILING = sa.select(subscriptions.c.id, subscriptions.c.failing_since).where(
    subscriptions.c.id.in_(sa.bindparam("ids", expanding=True)))
_DONE = {   # a delivery's row after an attempt, by result (executemany)
    "delivered": deliveries.update().where(deliveries.c.id == sa.bindparam("did")).values(
        status="delivered", delivered_at=sa.bindparam("at"), attempts=sa.bindparam("n"),
        last_status=sa.bindparam("code"), last_error=sa.bindparam("error"), claimed_until=None),
    "retry": deliveries.update().where(deliveries.c.id == sa.bindparam("did")).values(
        next_attempt_at=sa.bindparam("at"), attempts=sa.bindparam("n"),
        last_status=sa.bindparam("code"), last_error=sa.bindparam("error"), claimed_until=None),
    "failed": deliveries.update().where(deliveries.c.id == sa.bindparam("did")).values(
        status="failed", attempts=sa.bindparam("n"),
        last_status=sa.bindparam("code"), last_error=sa.bindparam("error"), claimed_until=None),
}


async def send_one(svc, client: WebhookClient, claimed: Claimed) -> Attempt | Outcome:
    """POST one claimed delivery; the :class:`Attempt` to record, or an :class:`Outcome`
    when there was nothing to send (skipped, or the delivery or its hook is gone)."""
    if svc.clock() - claimed.claimed_at > START_WITHIN:   # too late to start inside the lease: leave it
        return Outcome(claimed.id, "skipped")
    row = claimed.row
    if row is None:        # (loaded with the claim: no longer pending, or its hook paused meanwhile)
        return Outcome(claimed.id, "gone")
    status_code, error, retry_after = None, None, None
    started = svc.clock()
    try:
        keys = signing_secrets(svc.settings.secret_key, row, started)
    except ValueError as exc:     # CONNECTOR_SECRET_KEY missing or changed: retried as any failure
        return Attempt(claimed, row, None, clean_text(str(exc)), None, started, svc.clock())
    headers = signed_headers(keys, row.event_id, row.payload, int(started))   # the one place deliveries are signed
    try:
        answer = await client.post(row.target_url, row.payload.encode(), headers)
        status_code = answer.status
        if not 200 <= status_code < 300:
            error = _error_text(status_code, answer.body, keys)
            retry_after = parse_retry_after(answer.headers.get("retry-after"))
    except PostFailed as exc:
        error = clean_text(exc.message)
    return Attempt(claimed, row, status_code, error, retry_after, started, svc.clock())


def record_robustly(svc, attempts: list[Attempt], *, rng: random.Random | None = None) -> list[Outcome]:
    """Record the attempts' outcomes: all in one transaction (:func:`record_outcomes`); if
    that fails, each alone, successes first; one that still fails is written as a bare
    outcome of its delivery row (:func:`_record_bare`: delivered, or a failure that backs
    off on the retry schedule), never left to its lease. Only when even that fails (the
    database is away) is its outcome ``unrecorded``: the caller may try again later."""
    try:
        return record_outcomes(svc, attempts, rng=rng)
    except Exception as exc:
        if len(attempts) == 1:
            failed = {id(attempts[0]): exc}
        else:
            log.error("recording %d delivery outcomes together failed, recording each alone: %s", len(attempts),
                      redact(f"{type(exc).__name__}: {exc}"))
            failed = {}
    outcomes: dict[int, Outcome] = {}
    for attempt in sorted(attempts, key=lambda a: a.error is not None):     # successes first
        if id(attempt) not in failed:
            try:
                outcomes[id(attempt)] = record_outcomes(svc, [attempt], rng=rng)[0]
                continue
            except Exception as exc:
                failed[id(attempt)] = exc
        cause = failed[id(attempt)]
        log.error("delivery %s: its outcome could not be recorded (%s); recording it bare", attempt.claimed.id,
                  redact(f"{type(cause).__name__}: {cause}"))
        try:
            outcomes[id(attempt)] = _record_bare(svc, attempt, rng)
        except Exception as exc:
            log.error("delivery %s: recording it bare failed too: %s", attempt.claimed.id,
                      redact(f"{type(exc).__name__}: {exc}"))
            outcomes[id(attempt)] = Outcome(attempt.claimed.id, "unrecorded", attempt.status_code, attempt.error)
    return [outcomes[id(a)] for a in attempts]


UNRECORDED = "the outcome of this attempt could not be recorded"


def _record_bare(svc, attempt: Attempt, rng) -> Outcome:
    """The delivery row alone: delivered after a 2xx (never sent again), else one more
    attempt counted and the next one on the retry schedule (or failed when it is spent)."""
    row = attempt.row
    n = row.attempts + 1
    pending = sa.and_(deliveries.c.id == row.id, deliveries.c.status == "pending")
    if attempt.error is None:
        values, result = dict(status="delivered", delivered_at=attempt.finished), "delivered"
    else:
        delay = retry_delay(svc.settings.webhook_retry_schedule, n, attempt.retry_after, rng)
        values, result = ((dict(status="failed"), "failed") if delay is None
                          else (dict(next_attempt_at=attempt.finished + delay), "retry"))
        values["last_error"] = f"{UNRECORDED} (HTTP {attempt.status_code})" if attempt.status_code else UNRECORDED
    with svc.store.write() as conn:
        conn.execute(deliveries.update().where(pending).values(attempts=n, last_status=attempt.status_code,
                                                               claimed_until=None, **values))
    return Outcome(row.id, result, attempt.status_code, attempt.error, row.subscription_id)


def record_outcomes(svc, attempts: list[Attempt], *, rng: random.Random | None = None) -> list[Outcome]:
    """Record the outcomes of many attempts in ONE transaction; their outcomes, in order.

    Until this commits, each delivery stays claimed (its lease running), so a sender that
    dies after its POSTs and before this commit sends them again when the leases expire,
    with the same ``webhook-id``: delivery is at least once.
    """
    settings = svc.settings
    outcomes: dict[int, Outcome] = {}
    logs: list = []
    deleted: set = set()
    lags: list[float] = []       # commit -> 2xx of each delivered one, counted once recorded
    with svc.store.write() as conn:
        for attempt in attempts:     # 410: the receiver says the subscription is gone (Zapier, on unsubscribe)
            if attempt.status_code == 410:
                row = attempt.row
                if row.subscription_id not in deleted:
                    deleted.add(row.subscription_id)
                    delete_subscription(conn, row.subscription_id, row.watch_id)
                    logs.append((log.info, "subscription %s answered 410; deleted", row.subscription_id))
                outcomes[id(attempt)] = Outcome(row.id, "gone", 410, attempt.error, row.subscription_id)
        live = [a for a in attempts if id(a) not in outcomes]
        subs = sorted({a.row.subscription_id for a in live})
        failing = dict(conn.execute(_FAILING, {"ids": subs}).all()) if subs else {}
        attempt_rows, done, prune = [], {"delivered": [], "retry": [], "failed": []}, set()
        for sub_id in subs:
            mine = [a for a in live if a.row.subscription_id == sub_id]
            if sub_id in failing:
                since, values = failing[sub_id], {}
                for a in mine:       # in the order they were made
                    since = None if a.error is None else (since or a.started)
                    if a.error is not None and a.finished - since >= settings.hook_disable_after \
                            and "status" not in values:
                        values.update(status="disabled", status_reason=(
                            f"Disabled: deliveries have failed since {iso(since)} without a success "
                            f"(last: {a.error}). Fix the receiver, then enable the hook again: "
                            'PATCH /api/v1/hooks/<id> {"enabled": true}.'))
                        logs.append((log.warning, "subscription %s disabled: failing since %s", sub_id, iso(since)))
                    a.failing_since = since
                last = mine[-1]
                values.update(last_error=last.error, last_called_at=last.finished, failing_since=last.failing_since)
                still_there = conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id)
                                           .values(**values)).rowcount
            else:
                still_there = 0
            for a in mine:
                row = a.row
                if not still_there:      # unsubscribed while we were sending
                    outcomes[id(a)] = Outcome(row.id, "gone", a.status_code, a.error, sub_id)
                    continue
                attempt_rows.append({"subscription_id": sub_id, "event_id": row.event_id, "attempted_at": a.finished,
                                     "status_code": a.status_code, "error": a.error,
                                     "duration_ms": int(max(0.0, a.finished - a.started) * 1000)})
                n = row.attempts + 1
                params = {"did": row.id, "n": n, "code": a.status_code, "error": a.error}
                if a.error is None:
                    result = "delivered"
                    done["delivered"].append({**params, "at": a.finished})
                    lags.append(a.finished - row.detected_at)
                else:
                    delay = retry_delay(settings.webhook_retry_schedule, n, a.retry_after, rng)
                    disabled = a.finished - a.failing_since >= settings.hook_disable_after
                    result = "failed" if delay is None else ("disabled" if disabled else "retry")
                    if delay is None:
                        done["failed"].append(params)
                    else:
                        done["retry"].append({**params, "at": a.finished + delay})
                    logs.append((log.info, "delivery %s of %s to subscription %s: %s (%s)", row.id, row.event_id,
                                 sub_id, a.error, result))
                outcomes[id(a)] = Outcome(row.id, result, a.status_code, a.error, sub_id)
                if row.id % 10 == 0:
                    prune.add(sub_id)
        if attempt_rows:
            conn.execute(delivery_attempts.insert(), attempt_rows)
        for result, params in done.items():
            if params:
                conn.execute(_DONE[result], params)
        for sub_id in sorted(prune):
            _prune_attempts(conn, sub_id)
    for lag in lags:
        metrics.delivered(lag)
    for write, *args in logs:
        write(*args)
    return [outcomes[id(a)] for a in attempts]


def _prune_attempts(conn, subscription_id: str) -> None:
    cutoff = conn.execute(
        sa.select(delivery_attempts.c.id).where(delivery_attempts.c.subscription_id == subscription_id)
        .order_by(delivery_attempts.c.id.desc()).offset(KEEP_ATTEMPTS).limit(1)).scalar()
    if cutoff is not None:
        conn.execute(delivery_attempts.delete().where(delivery_attempts.c.subscription_id == subscription_id,
                                                      delivery_attempts.c.id <= cutoff))
