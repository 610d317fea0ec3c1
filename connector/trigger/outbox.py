"""The outbox commit: everything one poll learnt, in ONE transaction.

The lease check, the watch's status and cursors, the billing statuses, the seen
followers, the new events (oldest first, so ``seq`` puts the newest last), a delivery row
per hook and an inbox row per polling subscription that may see each event. Ids are
deterministic and every insert is ``ON CONFLICT DO NOTHING``, so a poll that dies before
its commit is redone without a trace, and two pollers that raced commit every event once.

The subscriptions are read again inside the transaction (and locked against deletion on
PostgreSQL), so a hook deleted while its watch was being read simply receives nothing. A
commit that fails for any reason gives every credit the poll took back; a key that can no
longer receive anything of the poll (unsubscribed, paused or disabled meanwhile) gets its
credits back too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .billing import Tab, settle
from .events import GAP, dumps, event_payload, follower_fields, gap_payload, gap_subject, passes, subject_key
from .leases import LeaseLost
from .schedule import Observation, Policy, dump_state, plan, rate_per_day
from .snapshot import snapshot_events
from .threshold import threshold_events
from .tables import deliveries, events, inbox, seen_followers, subscriptions, watches

log = logging.getLogger("connector.trigger")

# The watch's columns a poll's commit sets: to the poll's ``values``, else as they were.
_KEPT = ("status", "last_error", "last_error_kind", "list_state")
# Subscriptions that receive nothing, whatever was paid: their owner paused them, or they failed for days.
SILENT_STATUSES = ("disabled", "paused")


@dataclass
class Found:
    """A new follower, the keys that may receive it (they paid for its page, or share a
    catch-up read), and when its gap opened (``since`` None: found from the top)."""
    key: str
    record: dict
    payers: frozenset
    since: float | None


@dataclass
class LostGap:
    """A stretch of the list no one can read any more (CONTRACT.md ``gap_detected``): when
    its gap opened (``since``, None: below the top), the moment that names it (``opened``),
    how many accounts it held (an estimate) and the keys that paid the read that found it."""
    since: float | None
    opened: float
    missed: int
    payers: frozenset


_INSERTS: dict = {}


def _insert_ignore(dialect: str, table: sa.Table, returning=None):
    """``INSERT ... ON CONFLICT DO NOTHING [RETURNING ...]``, built once per dialect."""
    key = (dialect, table.name, returning)
    stmt = _INSERTS.get(key)
    if stmt is None:
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(table).on_conflict_do_nothing()
        if returning is not None:
            stmt = stmt.returning(*returning)
        _INSERTS[key] = stmt
    return stmt


def _insert_many(conn, dialect, table, rows: list[dict], returning=None) -> list:
    """Insert ``rows`` (executemany: SQLAlchemy sends them as multi-row statements); the
    returned rows of those inserted."""
    stmt = _insert_ignore(dialect, table, returning)
    if returning is not None:
        return conn.execute(stmt, rows).all()
    conn.execute(stmt, rows)
    return []


def mark_seen(conn, dialect, wid: str, keys: list[str]) -> None:
    """The accounts a newest-first walk must stop at from now on."""
    if keys:
        _insert_many(conn, dialect, seen_followers, [{"watch_id": wid, "follower_key": key} for key in keys])


def account_events(watch, manifest, oldest_first: list[tuple[str, dict]], now: float, *,
                   baseline: bool) -> list[dict]:
    """The ``events`` rows of ``manifest``'s event about accounts ``[(key, record)]``."""
    rows = []
    for key, record in oldest_first:
        payload = event_payload(watch["id"], key, record, handle=watch["handle"], provider=watch["provider"],
                                detected_at=now, event=manifest.event, subject=manifest.subject)
        rows.append({"id": payload["id"], "watch_id": watch["id"], "follower_key": subject_key(manifest.event, key),
                     "event": manifest.event, "payload": dumps(payload), "detected_at": now, "baseline": baseline})
    return rows


def store_events(conn, dialect, rows: list[dict], now: float, *, recipients: list | None = None,
                 counts=None, existing_too: bool = False) -> int:
    """Events (``rows``, oldest first) and their delivery and inbox rows; returns how many
    events were new. ``recipients[i]`` is ``(hook_ids, poll_ids)`` for ``rows[i]``: only a new
    event is sent, so a subject never fires twice (``existing_too``: an event that exists is
    sent too, to recipients that keep their own mark of what they received, see
    :mod:`.threshold`; one delivery or inbox row per recipient and event still holds). One multi-row statement per table, events
    oldest first so that ``seq`` puts the newest last.
    """
    if not rows:
        return 0
    new = dict(_insert_many(conn, dialect, events, rows, returning=(events.c.id, events.c.seq)))
    if counts is not None:
        counts.update(row["event"] for row in rows if row["id"] in new)
    seqs = new
    if existing_too:
        old = [row["id"] for row in rows if row["id"] not in new]
        if old:
            seqs = {**new, **dict(conn.execute(sa.select(events.c.id, events.c.seq).where(events.c.id.in_(old))).all())}
    if recipients is not None:
        sends, inboxes = [], []
        for row, (hook_ids, poll_ids) in zip(rows, recipients):
            seq = seqs.get(row["id"])
            if seq is None:
                continue
            sends.extend({"subscription_id": sub_id, "event_id": row["id"], "status": "pending", "attempts": 0,
                          "next_attempt_at": now, "created_at": now} for sub_id in hook_ids)
            inboxes.extend({"subscription_id": sub_id, "seq": seq, "created_at": now} for sub_id in poll_ids)
        if sends:
            _insert_many(conn, dialect, deliveries, sends)
        if inboxes:
            _insert_many(conn, dialect, inbox, inboxes)
    return len(new)


def subscription_filters(manifest, sub) -> list[tuple[str, str, object]]:
    """A subscription's filters ``[(field, test, value)]`` from its stored inputs."""
    inputs = json.loads(sub["inputs"]) if sub["inputs"] else {}
    return [(spec["filter"]["field"], spec["filter"]["test"], inputs[spec["key"]])
            for spec in manifest.subscription_inputs if "filter" in spec and spec["key"] in inputs]


def _recipients(subs, item: Found, fields: dict | None = None) -> tuple[list[str], list[str]]:
    """The hooks and polling subscriptions (of one event, each with its filters) an event
    goes to: those whose key may receive its page, that existed when its gap opened, and
    whose filters the account passes."""
    hooks, polls = [], []
    for sub, filters in subs:
        if sub["key_id"] not in item.payers or sub["status"] in SILENT_STATUSES:
            continue
        if item.since is not None and sub["created_at"] > item.since:
            continue
        if filters and not passes(filters, fields):
            continue
        (hooks if sub["kind"] == "hook" else polls).append(sub["id"])
    return hooks, polls


def _list_subscriptions(svc, subs) -> dict[str, list]:
    """The watch's subscriptions to newest-first list triggers, by event, each with its filters."""
    by_event: dict[str, list] = {}
    for sub in subs:
        manifest = svc.manifests.get(sub["event"])
        if manifest is not None and manifest.strategy == "newest_first":
            by_event.setdefault(sub["event"], []).append((sub, subscription_filters(manifest, sub)))
    return by_event


def _account_events(svc, watch, by_event: dict[str, list], oldest_first: list[Found],
                    now: float) -> tuple[list, list]:
    """The events of what a newest-first walk found, one per account and trigger subscribed
    to on the watch (``by_event``, :func:`_list_subscriptions`), with their recipients."""
    rows, recipients = [], []
    for item in oldest_first:
        fields = follower_fields(item.record)
        for event, event_subs in by_event.items():
            rows.extend(account_events(watch, svc.manifests[event], [(item.key, item.record)], now, baseline=False))
            recipients.append(_recipients(event_subs, item, fields))
    return rows, recipients


def _gap_events(watch, by_event: dict[str, list], lost: LostGap, now: float) -> tuple[list, list]:
    """One ``gap_detected`` event per trigger subscribed to on the watch (``by_event``), to
    each of its subscriptions that may receive the read that found the gap, whatever their
    filters."""
    item = Found("", {}, lost.payers, lost.since)
    rows, recipients = [], []
    for trigger, event_subs in by_event.items():
        subject = gap_subject(trigger, lost.opened)
        payload = gap_payload(watch["id"], subject, handle=watch["handle"], trigger=trigger, missed=lost.missed,
                              detected_at=now)
        rows.append({"id": payload["id"], "watch_id": watch["id"], "follower_key": subject, "event": GAP,
                     "payload": dumps(payload), "detected_at": now, "baseline": False})
        recipients.append(_recipients([(sub, []) for sub, _ in event_subs], item))   # (no filter applies)
    return rows, recipients


# The statements every poll's commit runs, built once (building and keying a statement per
# call costs more CPU than running it).
_CLOSE_POLL = watches.update().where(
    watches.c.id == sa.bindparam("wid"), watches.c.lease_owner == sa.bindparam("owner")).values(
    last_poll_at=sa.bindparam("now"), next_poll_at=sa.bindparam("next_poll"),
    scheduled_at=sa.bindparam("scheduled"), lease_owner=None,
    lease_expires_at=None, credits_spent=watches.c.credits_spent + sa.bindparam("spent"),
    pages_read=watches.c.pages_read + sa.bindparam("pages"), status=sa.bindparam("status"),
    last_error=sa.bindparam("last_error"), last_error_kind=sa.bindparam("last_error_kind"),
    list_state=sa.bindparam("list_state"), poll_interval=sa.bindparam("interval"),
    rate_per_day=sa.bindparam("rate"), schedule_state=sa.bindparam("schedule"))
_SUBSCRIPTIONS = (sa.select(subscriptions).where(subscriptions.c.watch_id == sa.bindparam("wid"))
                  .order_by(subscriptions.c.created_at, subscriptions.c.id))
# On PostgreSQL a concurrent DELETE waits for the commit instead of breaking it.
_SUBSCRIPTIONS_LOCKED = _SUBSCRIPTIONS.with_for_update(read=True, key_share=True)


def _subscriptions_for_update(conn, dialect: str, wid: str):
    query = _SUBSCRIPTIONS_LOCKED if dialect == "postgresql" else _SUBSCRIPTIONS
    return conn.execute(query, {"wid": wid}).mappings().all()


def _keep_read_now(conn, wid: str, subs, started: float, next_poll: float) -> None:
    """A read now (``POST /hooks/<id>/poll``) asked since the poll started was not served by
    it: the watch stays due from that moment instead of taking the poll's next poll."""
    asked = max((sub["poll_requested_at"] for sub in subs if sub["poll_requested_at"] is not None), default=None)
    if asked is not None and started <= asked < next_poll:
        conn.execute(watches.update().where(watches.c.id == wid).values(next_poll_at=asked))


def commit_poll(svc, watch, owner: str, tab: Tab, values: dict, oldest_first: list[Found], *, now: float,
                pages: int = 0, backlog: bool = False, subscriber: str | None = None,
                observation: Observation | None = None, counts=None, threshold: tuple | None = None,
                snapshot: tuple | None = None, next_poll: float | None = None, scheduled: float | None = None,
                lost_gap: LostGap | None = None) -> int:
    """The poll's one transaction; returns how many events were new.

    The next poll is the schedule's (:func:`.schedule.plan`) from ``observation``, what
    the poll saw (None: it read nothing); a backlog is read again at once, and so is a watch
    whose read now was asked while the poll read (:func:`_keep_read_now`). ``scheduled``: when
    the watch's own schedule makes it due next (``next_poll`` unless a read now's poll says
    otherwise: a read now moves only ``next_poll_at``).
    Raises :class:`LeaseLost` without the lease. On any failure everything ``tab`` holds
    is refunded before the exception goes on. ``subscriber``: the key a catch-up read was
    made for (it has no subscription yet, and keeps what it paid). ``lost_gap``: a gap the poll
    found unreadable, told to the watch's subscribers after the accounts it did read.
    """
    wid, dialect = watch["id"], svc.store.dialect
    schedule = plan(watch.get("schedule_state"), observation, now, Policy.from_settings(svc.settings))
    if next_poll is None:      # (a snapshot watch keeps its own schedule: full walks, checkEveryHours)
        next_poll = now if backlog else schedule.next_poll_at
    if scheduled is None:
        scheduled = next_poll
    try:
        with svc.store.write() as conn:
            result = conn.execute(_CLOSE_POLL, {
                "wid": wid, "owner": owner, "now": now, "next_poll": next_poll, "scheduled": scheduled,
                "spent": tab.total, "pages": pages,
                "interval": schedule.interval, "rate": rate_per_day(schedule.state),
                "schedule": dump_state(schedule.state),
                **{name: values.get(name, watch[name]) for name in _KEPT}})
            if result.rowcount != 1:
                raise LeaseLost(wid)
            subs = _subscriptions_for_update(conn, dialect, wid)
            _keep_read_now(conn, wid, subs, now, next_poll)
            # Keys that can no longer receive what they paid for (unsubscribed, paused or
            # disabled while we read) are refunded after the commit.
            receiving = {sub["key_id"] for sub in subs if sub["status"] not in SILENT_STATUSES}
            gone = {k for k, v in tab.charged.items() if v > 0} - receiving - {subscriber}
            if gone:
                conn.execute(watches.update().where(watches.c.id == wid).values(
                    credits_spent=watches.c.credits_spent - sum(tab.charged[k] for k in gone)))
            settle(conn, wid, subs, tab, refunded=gone)
            if threshold is not None:   # (its manifest, the figure read, the keys that may receive it)
                rows, recipients, states = threshold_events(*threshold[:1], watch, subs, *threshold[1:], now,
                                                            SILENT_STATUSES)
                for sub_id, state in states.items():
                    conn.execute(subscriptions.update().where(subscriptions.c.id == sub_id).values(state=state))
                inserted = store_events(conn, dialect, rows, now, recipients=recipients, counts=counts,
                                        existing_too=True)
            elif snapshot is not None:   # (its manifest, what the poll read of a walk: snapshot.Walked)
                rows, recipients, state = snapshot_events(snapshot[0], watch, subs, *snapshot[1:], now,
                                                          SILENT_STATUSES)
                conn.execute(watches.update().where(watches.c.id == wid).values(state=state))
                inserted = store_events(conn, dialect, rows, now, recipients=recipients, counts=counts)
            else:
                mark_seen(conn, dialect, wid, [item.key for item in oldest_first])
                by_event = _list_subscriptions(svc, subs)
                rows, recipients = _account_events(svc, watch, by_event, oldest_first, now)
                if lost_gap is not None:
                    more_rows, more_recipients = _gap_events(watch, by_event, lost_gap, now)
                    rows, recipients = rows + more_rows, recipients + more_recipients
                inserted = store_events(conn, dialect, rows, now, recipients=recipients, counts=counts)
    except BaseException:
        refunded = tab.refund()
        if refunded:
            log.info("poll of watch %s not committed; %d credits refunded", wid, refunded)
        raise
    if gone:
        tab.refund(gone)
    return inserted
