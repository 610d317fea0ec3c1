"""The small interface every provider implements.

A provider turns one upstream's wire format into the records of :mod:`connector.records`
and raises :class:`connector.errors.UpstreamError` with a kind for every failure. It knows
nothing of Flask, Zapier or Make. Each manifest's ``operation`` is a method of every
provider, taking the arguments its inputs name (``param``), or the provider lists it in
``unsupported`` with the reason; :mod:`.contract` checks that at start-up, and a caller who
picks a provider for an operation it does not offer gets :class:`NotOffered` (400).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import metrics
from ..config import Settings
from ..errors import InvalidCursor, NotOffered


class Provider:
    name: ClassVar[str]
    # How to describe the provider's cursor to a caller who sent one it cannot use.
    cursor_form: ClassVar[str] = "a cursor"
    # Operations (manifest ``operation`` names) this provider does not offer, and why.
    unsupported: ClassVar[dict[str, str]] = {}
    # Upstream credits one list page costs, for walks' progress when a page does not say
    # (``Page.meta["creditsCharged"]``); None when the upstream sells no credits.
    page_credits: ClassVar[int | None] = None

    @classmethod
    def from_settings(cls, settings: Settings, credentials: str | None = None) -> "Provider":
        """Build the provider with the operator's credentials, or the caller's when given."""
        raise NotImplementedError

    def operation(self, name: str, label: str | None = None):
        """The method that serves a manifest's ``operation``; :class:`NotOffered` when this
        provider does not offer it."""
        if name in self.unsupported:
            raise NotOffered(self.name, label or name.replace("_", " "), self.unsupported[name])
        return metrics.timed_upstream(self.name, name, getattr(self, name))   # counted and timed

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
