"""The small interface every provider implements.

A provider turns one upstream's wire format into the records of :mod:`connector.records`
and raises :class:`connector.errors.UpstreamError` with a kind for every failure. It knows
nothing of Flask, Zapier or Make. Each manifest's ``operation`` is a method of every
provider, taking the arguments its inputs name (``param``), or the provider lists it in
``unsupported`` with the reason; :mod:`.contract` checks that at start-up, and a caller who
picks a provider for an operation it does not offer gets :class:`NotOffered` (400).

A provider also describes itself: the settings it reads (``own_settings``: names, secret
flags, base URL), which of them are its credentials, and what a caller's ``X-Provider-Key``
holds for it (``credential_form``). The service, ``connector check`` and the settings table
read these; a new provider is one module and one line in :mod:`connector.providers`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import metrics
from ..config import Setting, Settings
from ..errors import InvalidCursor, NotOffered, UpstreamError


class Provider:
    name: ClassVar[str]
    # How to describe the provider's cursor to a caller who sent one it cannot use.
    cursor_form: ClassVar[str] = "a cursor"
    # Operations (manifest ``operation`` names) this provider does not offer, and why.
    unsupported: ClassVar[dict[str, str]] = {}
    # Upstream credits one list page costs, for walks' progress when a page does not say
    # (``Page.meta["creditsCharged"]``); None when the upstream sells no credits.
    page_credits: ClassVar[int | None] = None
    # The settings this provider reads, each reached as ``settings.<attr>``; those marked
    # ``credential`` must all be set for the operator's credentials to exist.
    own_settings: ClassVar[tuple[Setting, ...]] = ()
    # What a caller's X-Provider-Key holds when it is not one key, e.g. "client_key:client_secret".
    credential_form: ClassVar[str | None] = None

    @classmethod
    def needs_credentials(cls) -> bool:
        """Whether the provider needs credentials at all (the demo does not)."""
        return any(s.credential for s in cls.own_settings)

    @classmethod
    def has_credentials(cls, settings: Settings) -> bool:
        """Whether the operator set every credential this provider needs."""
        return all(getattr(settings, s.attr) for s in cls.own_settings if s.credential)

    @classmethod
    def require_credentials(cls, settings: Settings) -> None:
        """Refuse (``not_configured``) when the operator's credentials are not all set."""
        missing = [s.env for s in cls.own_settings if s.credential and not getattr(settings, s.attr)]
        if missing:
            raise UpstreamError("not_configured", f"{'/'.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                                "not set", provider=cls.name)

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
