"""Walking a newest-first follower list down to what a watch already knows.

Pure functions over two callables, so every rule is unit-testable without a network:

- ``fetch(cursor) -> Page | None`` reads one page (``None``: nobody can pay for it);
- ``is_seen(keys) -> set`` says which follower keys the watch has already seen.

A walk stops at the *frontier*: a run of ``run`` consecutive already-seen followers (a
single seen follower is not enough: a re-follower reappears at the top, and the newest
known follower may have unfollowed), or the end of the list. It also stops when its page
budget is spent, returning the cursor to continue from next time, so a burst bigger than
the budget is read over several polls and never lost. A cursor that comes back twice is a
loop (:class:`LoopDetected`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..errors import UpstreamError
from ..providers.paging import Paginator
from ..records import Page, follower_key

log = logging.getLogger("connector.trigger")

__all__ = ["LoopDetected", "Walk", "walk", "keyed", "out_of_reach"]


class LoopDetected(Exception):
    """The upstream returned a cursor it had already returned in this walk."""


@dataclass
class Walk:
    new: list[tuple[str, dict]] = field(default_factory=list)   # (key, record), newest first
    new_page: list[int] = field(default_factory=list)            # page (0-based, in this walk) of each new one
    pages: int = 0
    cursor: Any = None      # where to continue; None once the frontier or the end was reached
    reason: str = ""        # frontier | end | budget | unpaid
    depth: int = 0          # accounts read
    total: int | None = None    # the list's length as its first page told it (None: not told)
    tail_seen: int = 0      # accounts already seen on the last page read

    @property
    def finished(self) -> bool:
        return self.reason in ("frontier", "end")


def keyed(records: Iterable[dict]) -> list[tuple[str, dict]]:
    """``(follower_key, record)`` pairs; records without any identity are skipped."""
    out = []
    for record in records:
        try:
            out.append((follower_key(record), record))
        except ValueError:
            log.warning("skipping a follower record without id, secUid or uniqueId")
    return out


def walk(fetch: Callable[[Any], Page | None], is_seen: Callable[[list[str]], set], *,
         start: Any = None, run: int = 3, max_pages: int = 10,
         known: set | None = None) -> Walk:
    """Read pages from ``start`` until the frontier, the end, or ``max_pages``.

    ``known`` holds keys found new earlier in the same poll; they count as seen here and
    the keys this walk finds are added to it.
    """
    known = set() if known is None else known
    result = Walk(cursor=start)
    paginator = Paginator(start)   # the shared guard against a cursor that comes back
    streak = 0
    while True:
        if result.pages >= max_pages:
            result.reason = "budget"
            return result
        page = fetch(paginator.cursor)
        if page is None:
            result.reason = "unpaid"
            return result
        result.pages += 1
        result.depth += len(page.records)
        if result.total is None:
            result.total = page.total
        entries = keyed(page.records)
        seen = is_seen([key for key, _ in entries if key not in known]) if entries else set()
        result.tail_seen = 0
        for key, record in entries:
            if key in seen or key in known:
                result.tail_seen += 1
                streak += 1
                if streak >= run:
                    result.cursor, result.reason = None, "frontier"
                    return result
            else:
                streak = 0
                known.add(key)
                result.new.append((key, record))
                result.new_page.append(result.pages - 1)
        try:
            paginator.advance(page)
        except UpstreamError as exc:
            raise LoopDetected(exc.detail) from None
        if paginator.done or not page.records:
            result.cursor, result.reason = None, "end"
            return result
        result.cursor = paginator.cursor


def out_of_reach(result: Walk, *, from_top: bool, knows_enough: Callable[[], bool]) -> bool:
    """Whether what the watch knows has sunk below what the upstream lets anyone read, so
    the accounts between the end of the readable list and the frontier are lost (a *gap*).

    The walk reached the end of the list without meeting, on its last page, any account
    the watch has seen. From a gap's cursor that is enough: a gap only exists above known
    accounts. From the top, the list must also be longer than what was read (``total``),
    or, where the upstream does not tell its length, the watch must know at least a
    frontier's run of accounts (``knows_enough``): a small account whose few known
    followers all left is not a gap.
    """
    if result.reason != "end" or result.tail_seen:
        return False
    if not from_top:
        return True
    if result.depth == 0:        # an empty list: everybody left, nobody arrived unseen
        return False
    if result.total is not None:
        return result.total > result.depth
    return knows_enough()
