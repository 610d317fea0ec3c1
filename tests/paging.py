"""A page-by-page loop over a provider, for tests (the service walks with its own loops)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from connector.providers.paging import Paginator
from connector.records import Page


def iter_pages(fetch: Callable[[Any], Page], cursor: Any = None, *, max_pages: int | None = None,
               provider: str | None = None) -> Iterator[Page]:
    """Yield pages from ``fetch(cursor)`` until the last one (or ``max_pages``).

    A page whose next cursor was already used raises instead of being yielded.
    """
    paginator = Paginator(cursor, provider=provider)
    while not paginator.done and (max_pages is None or paginator.pages < max_pages):
        page = fetch(paginator.cursor)
        paginator.advance(page)
        yield page
