"""The small interface every provider implements.

A provider turns one upstream's wire format into the records of :mod:`connector.records`
and raises :class:`connector.errors.UpstreamError` with a kind for every failure. It knows
nothing of Flask, Zapier or Make. Adding an action means one method here and on each
provider (or a clear ``UpstreamError("reported_issue", "not supported")``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..config import Settings
from ..errors import InvalidCursor
from ..records import Page


class Provider:
    name: ClassVar[str]
    # Whether the provider's cursor is a number (seed: minTime is a number) or opaque, and
    # how to describe it to a caller who sent one it cannot use.
    numeric_cursor: ClassVar[bool] = True
    cursor_form: ClassVar[str] = "a cursor"
    # Upstream credits one list page costs, for walks' progress when a page does not say
    # (``Page.meta["creditsCharged"]``); None when the upstream sells no credits.
    page_credits: ClassVar[int | None] = None

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "Provider":
        """Build the provider with the operator's credentials, or the caller's when given."""
        raise NotImplementedError

    def get_profile(self, handle: str, *, request_source: str = "API") -> dict:
        raise NotImplementedError

    def list_followers(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        raise NotImplementedError

    def list_following(self, handle: str, *, cursor: Any = None, count: int | None = None,
                       request_source: str = "API") -> Page:
        raise NotImplementedError

    def accepts_cursor(self, cursor: Any) -> bool:
        """Whether a caller's cursor (a previous page's ``minCursor``) can be paged from.
        By default the upstream judges it."""
        return True

    def check_cursor(self, cursor: Any) -> None:
        """Refuse, before any upstream call, a caller's cursor this provider cannot use."""
        if cursor is not None and not self.accepts_cursor(cursor):
            raise InvalidCursor(self.name, self.cursor_form, cursor)

    def secrets(self) -> tuple[str, ...]:
        """Credentials to scrub from anything this provider's errors put in a log line."""
        return ()

    def close(self) -> None:
        """Release pooled connections."""
