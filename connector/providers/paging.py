"""Following a list page by page, safely: one small paginator for every walker.

``Paginator`` holds the cursor to send next and refuses a cursor that comes back (an
upstream that hands out the same cursor twice would otherwise be walked forever);
``iter_pages`` is the generator the bulk walk (``connector followers``) and the trigger use::

    for page in iter_pages(lambda cursor: provider.list_followers(handle, cursor=cursor)):
        ...

A loop is ``UpstreamError("invalid_data")``: the upstream's paging state cannot be trusted.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from ..errors import UpstreamError
from ..records import Page

__all__ = ["Paginator", "iter_pages"]


def _cursor_key(cursor: Any) -> str:
    # 1700000000 and "1700000000" are the same position.
    return json.dumps(str(cursor))


class Paginator:
    """The next cursor of a walk; ``advance(page)`` moves it on or finishes the walk."""

    def __init__(self, cursor: Any = None, *, provider: str | None = None):
        self.cursor = cursor
        self.provider = provider
        self.pages = 0
        self.done = False
        self._seen = {_cursor_key(cursor)} if cursor not in (None, "") else set()

    def advance(self, page: Page) -> None:
        self.pages += 1
        if not page.has_more or page.next_cursor in (None, ""):
            self.done = True
            return
        key = _cursor_key(page.next_cursor)
        if key in self._seen:
            raise UpstreamError("invalid_data", f"loop detected: cursor {str(page.next_cursor)[:60]!r} "
                                f"came back after {self.pages} pages", provider=self.provider)
        self._seen.add(key)
        self.cursor = page.next_cursor


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
