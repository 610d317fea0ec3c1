"""Providers: one module per upstream, chosen by name through ``PROVIDERS``.

Each provider class describes itself (its settings, credentials, operations; see
:mod:`.base`), so registering one is one line below. Order matters: the default provider is
the first one, in this order, whose credentials are set.

``ProviderPool.get(name, credentials)`` returns a cached instance per (provider,
credentials), so pooled connections and tokens are reused across requests and threads.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import weakref
from collections import OrderedDict

from ..config import Settings
from ..errors import PROVIDER_KEY_OPTION, PROVIDER_OPTION, BadRequest, UpstreamError
from .base import Provider
from .demo import DemoProvider
from .dumpling import DumplingProvider
from .socialfetch import SocialFetchProvider
from .tiktok_research import TikTokResearchProvider

PROVIDERS: dict[str, type[Provider]] = {provider.name: provider for provider in (
    DumplingProvider,
    SocialFetchProvider,
    TikTokResearchProvider,
    DemoProvider,
)}

__all__ = ["PROVIDERS", "Provider", "ProviderPool"]


def _close_when_released(provider: Provider) -> None:
    """Close ``provider``'s connections once nothing holds it any more.

    An evicted provider may be in the middle of a request or a poll on another thread:
    closing it then would fail that caller. The finalizer must not hold the provider, or it
    would never run, so it closes a shallow copy, which shares the provider's connections.
    """
    weakref.finalize(provider, copy.copy(provider).close)


class ProviderPool:
    """Provider instances shared by every request and thread, one per (name, credentials).

    The operator's providers (built from the server's settings) stay for the pool's life.
    Callers' (``X-Provider-Key``) are kept most recently used first, at most ``max_cached``;
    the one evicted is closed only when its last user lets go of it.
    """

    def __init__(self, settings: Settings, max_cached: int = 256):
        self.settings = settings
        self.max_cached = max_cached
        self._operator: dict[str, Provider] = {}
        self._callers: OrderedDict[tuple[str, str], Provider] = OrderedDict()
        self._lock = threading.Lock()

    def resolve_name(self, requested: str | None, credentials: str | None = None) -> str:
        """The provider to use: the one requested (X-Provider) or the configured default.

        A caller key without a provider name goes to the default provider; with no default
        it cannot be placed, which is the caller's to fix (400), not the operator's (500).
        """
        if requested and requested.strip():
            name = requested.strip().lower()
            if name not in PROVIDERS:
                raise BadRequest(f"Unknown provider '{requested[:40]}' in {PROVIDER_OPTION}. "
                                 f"Use one of: {', '.join(PROVIDERS)}.")
            return name
        name = self.settings.default_provider
        if (name is None or name not in PROVIDERS) and credentials:
            raise BadRequest(f"{PROVIDER_KEY_OPTION} was sent without {PROVIDER_OPTION}: name its provider, "
                             f"one of: {', '.join(PROVIDERS)}.")
        if name is None or name not in PROVIDERS:
            raise UpstreamError("not_configured", "no provider has credentials")
        return name

    def get(self, name: str, credentials: str | None = None) -> Provider:
        caller_key = (name, hashlib.sha256(credentials.encode()).hexdigest()) if credentials else None
        with self._lock:
            provider = self._cached(name, caller_key)
        if provider is not None:
            return provider
        provider = PROVIDERS[name].from_settings(self.settings, credentials)
        with self._lock:
            existing = self._cached(name, caller_key)
            if existing is not None:
                provider.close()  # another thread built it first; nobody else has this one
                return existing
            if caller_key is None:
                self._operator[name] = provider
                return provider
            self._callers[caller_key] = provider
            while len(self._callers) > self.max_cached:
                _, old = self._callers.popitem(last=False)
                _close_when_released(old)
        return provider

    def _cached(self, name: str, caller_key: tuple[str, str] | None) -> Provider | None:
        if caller_key is None:
            return self._operator.get(name)
        provider = self._callers.get(caller_key)
        if provider is not None:
            self._callers.move_to_end(caller_key)
        return provider

    def close(self) -> None:
        with self._lock:
            for provider in (*self._operator.values(), *self._callers.values()):
                provider.close()
            self._operator.clear()
            self._callers.clear()
