"""Who pays for a poll, and what each key may see of it.

The rule (README, "Who pays"): every page read for a watch is paid, page by page, by the
keys it is read for; a key receives the new followers of the pages it paid for, and
nothing else.

- A regular poll is read for the watch's *paying* subscriptions: its hooks (unless
  disabled or paused by their owner) and its polling subscriptions called within
  ``Settings.poll_freshness``. A key that cannot pay a page is paused (``paused_credits``)
  and receives nothing from that page on; it resumes when it pays again.
- A key that subscribes pays alone for its baseline (or the catch-up read of a watch
  others already have). Followers that read finds for the first time also go to the
  subscriptions that are paid up at that moment, at no cost to them: their next paid
  poll would have found them, and would now find nothing instead.
- A read now (``POST /hooks/<id>/poll``) of a watch its schedule has not made due yet is
  paid by the keys that asked for it alone (:func:`read_now_keys`), and shared like a
  catch-up read: with the other paid-up subscriptions, at no cost to them (a full walk's
  losses too: they go to its payers and the keys paid up when it started). The watch's
  schedule starts again from that read. A watch due anyway (its schedule, a backlog, a walk
  under way) is read as a regular poll. A read now that none of its askers can pay is not
  made: the watch waits for its schedule, and nobody else pays for it.
- A backlog gap's followers predate every subscription made after the gap opened, so only
  keys subscribed by then pay for (and receive) its pages; a gap nobody can receive is dropped.
- A key charged for a poll whose results it can no longer receive (it unsubscribed, or its
  hooks were paused or disabled meanwhile) gets those credits back.
- A caller's own balance is checked before anything is read on its behalf
  (:func:`can_pay`), so a request that cannot be paid spends nobody's credits.

Credits move only through the key store (reserve, refund); :class:`Tab` keeps what one
poll took so that a poll that is dropped, for whatever reason, gives all of it back.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from ..store.keys import Caller
from ..store.schema import api_keys
from .tables import subscriptions, watches

# Subscription statuses that take part in polls (and pay); disabled and paused hooks do not.
BILLED_STATUSES = ("active", "paused_credits", "key_revoked")


def can_pay(keys, caller: Caller, cost: int) -> bool:
    """Whether the caller's balance covers ``cost`` now (checked before reading anything)."""
    if caller.credits is None or cost <= 0:
        return True
    balance = keys.balance(caller.id)
    return balance is not None and balance >= cost


def load_callers(conn, keys, key_ids) -> dict[str, Caller | None]:
    """The caller of each key id; None for a revoked or deleted key (it cannot pay)."""
    static = {caller.id: caller for caller in keys.static.values()}
    out: dict[str, Caller | None] = {k: static.get(k) for k in key_ids}
    wanted = [k for k in key_ids if k not in static]
    if wanted:
        rows = conn.execute(sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.credits,
                                      api_keys.c.rate_limit)
                            .where(api_keys.c.id.in_(wanted), api_keys.c.revoked_at.is_(None))).all()
        for row in rows:
            out[row.id] = Caller(id=row.id, name=row.name, credits=row.credits,
                                 rate_limit=row.rate_limit or keys.default_rate_limit)
    return out


def paying_subscriptions(subs, settings, now: float) -> list:
    """The subscriptions a regular poll is read for (see the module docstring)."""
    fresh_after = now - settings.poll_freshness
    return [s for s in subs if s["status"] in BILLED_STATUSES
            and (s["kind"] == "hook" or (s["last_called_at"] is not None and s["last_called_at"] >= fresh_after))]


def read_now_asked(sub, watch) -> bool:
    """The hook asked for a read now that no poll of its watch has served yet."""
    asked = sub["poll_requested_at"]
    return sub["kind"] == "hook" and asked is not None and \
        (watch["last_poll_at"] is None or asked >= watch["last_poll_at"])


def scheduled_at(watch) -> float:
    """When the watch's own schedule makes it due (a read now moves only ``next_poll_at``)."""
    return watch["next_poll_at"] if watch["scheduled_at"] is None else watch["scheduled_at"]


def read_now_keys(subs, watch, paying, now: float) -> frozenset | None:
    """The keys a poll at ``now`` is read for alone: those that asked for a read now (of
    those paying; maybe none) when the watch is not due by its own schedule; None for a
    regular poll (nobody asked, or the watch was due anyway)."""
    asked = {sub["key_id"] for sub in subs if read_now_asked(sub, watch)}
    if not asked or scheduled_at(watch) <= now:
        return None
    return frozenset(asked & {sub["key_id"] for sub in paying})


def active_subscription_clause(settings, now: float, watch_table=watches):
    """SQL: the watch has a paying subscription (so it is worth polling)."""
    fresh_after = now - settings.poll_freshness
    return sa.exists().where(
        subscriptions.c.watch_id == watch_table.c.id,
        subscriptions.c.status.in_(BILLED_STATUSES),
        sa.or_(subscriptions.c.kind == "hook", subscriptions.c.last_called_at >= fresh_after))


class Tab:
    """The credits one poll took, key by key, each page reserved before it is read."""

    def __init__(self, keys, callers: dict[str, Caller | None], cost: int):
        self.keys = keys
        self.callers = dict(callers)
        self.cost = cost
        self.charged: Counter = Counter()
        self.unpaid: set = set()

    def pay_page(self, eligible=None) -> frozenset | None:
        """Reserve one page from every key still paying (of ``eligible`` only, when given: a
        gap's followers go only to keys subscribed when it opened, so only they pay); the ids
        of those that paid, or None when nobody did (nothing is read then)."""
        paid = []
        for key_id, caller in self.callers.items():
            if key_id in self.unpaid or (eligible is not None and key_id not in eligible):
                continue
            if caller is not None and self.keys.reserve(caller, self.cost):
                paid.append(key_id)
            else:
                self.unpaid.add(key_id)
        for key_id in paid:
            self.charged[key_id] += self.cost
        return frozenset(paid) if paid else None

    def refund_page(self, payers: frozenset) -> None:
        """The page could not be read: its payers get their credits back."""
        for key_id in payers:
            self._give_back(key_id, self.cost)

    def refund(self, key_ids=None) -> int:
        """Give back everything charged (to ``key_ids`` only, when given); returns how much."""
        total = 0
        for key_id in list(self.charged if key_ids is None else key_ids):
            amount = self.charged.get(key_id, 0)
            if amount > 0:
                self._give_back(key_id, amount)
                total += amount
        return total

    def _give_back(self, key_id: str, amount: int) -> None:
        caller = self.callers.get(key_id)
        if caller is not None:
            self.keys.refund(caller, amount)
        self.charged[key_id] -= amount

    @property
    def total(self) -> int:
        return sum(self.charged.values())


_ADD_SPEND = subscriptions.update().where(subscriptions.c.id == sa.bindparam("sid")).values(
    credits_spent=subscriptions.c.credits_spent + sa.bindparam("amount"))


def settle(conn, wid: str, subs, tab: Tab, refunded=frozenset()) -> None:
    """Inside a poll's commit: a key that paid resumes, one that could not pay is paused
    (or marked revoked), and each key's first subscription on the watch counts its spend
    (but for ``refunded`` keys). Disabled and owner-paused subscriptions keep their status."""
    first_of_key: dict[str, str] = {}
    for sub in subs:
        first_of_key.setdefault(sub["key_id"], sub["id"])
    waiting = {sub["key_id"] for sub in subs if sub["status"] in ("paused_credits", "key_revoked")}
    for key_id, amount in tab.charged.items():
        if amount <= 0 or key_id in refunded:
            continue
        if key_id in waiting:   # (a steady-state poll skips this statement)
            conn.execute(subscriptions.update().where(
                subscriptions.c.watch_id == wid, subscriptions.c.key_id == key_id,
                subscriptions.c.status.in_(("paused_credits", "key_revoked"))).values(status="active"))
        if key_id in first_of_key:
            conn.execute(_ADD_SPEND, {"sid": first_of_key[key_id], "amount": amount})
    for key_id in tab.unpaid:
        if key_id not in first_of_key:
            continue
        status = "paused_credits" if tab.callers.get(key_id) is not None else "key_revoked"
        conn.execute(subscriptions.update().where(
            subscriptions.c.watch_id == wid, subscriptions.c.key_id == key_id,
            subscriptions.c.status.in_(BILLED_STATUSES)).values(status=status))
