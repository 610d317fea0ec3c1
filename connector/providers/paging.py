"""Following a list page by page, safely: one small paginator for every walker.

``Paginator`` holds the cursor to send next and refuses a cursor that comes back (an
upstream that hands out the same cursor twice would otherwise be walked forever). The bulk
walk (:func:`connector.walk.walk_list`) and the trigger's walk (:mod:`connector.trigger.detect`)
each drive one::

    paginator = Paginator(cursor, provider=provider.name)
    while not paginator.done:
        paginator.advance(provider.list_followers(handle, cursor=paginator.cursor))

A loop is ``UpstreamError("invalid_data")``: the upstream's paging state cannot be trusted.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UpstreamError
from ..records import Page

__all__ = ["Paginator"]


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
