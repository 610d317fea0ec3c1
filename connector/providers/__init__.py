"""Providers: one module per upstream, chosen by name through ``PROVIDERS``.

``ProviderPool.get(name, credentials)`` returns a cached instance per (provider,
credentials), so pooled connections and tokens are reused across requests and threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from ..config import Settings
from ..errors import BadRequest, UpstreamError
from .base import Provider
from .demo import DemoProvider
from .dumpling import DumplingProvider
from .socialfetch import SocialFetchProvider
from .tiktok_research import TikTokResearchProvider

PROVIDERS: dict[str, type[Provider]] = {
    "dumpling": DumplingProvider,
    "socialfetch": SocialFetchProvider,
    "tiktok_research": TikTokResearchProvider,
    "demo": DemoProvider,
}

__all__ = ["PROVIDERS", "Provider", "ProviderPool"]


class ProviderPool:
    def __init__(self, settings: Settings, max_cached: int = 256):
        self.settings = settings
        self.max_cached = max_cached
        self._cache: OrderedDict[tuple, Provider] = OrderedDict()
        self._lock = threading.Lock()

    def resolve_name(self, requested: str | None, credentials: str | None = None) -> str:
        """The provider to use: the one requested (X-Provider) or the configured default.

        A caller key without a provider name goes to the default provider; with no default
        it cannot be placed, which is the caller's to fix (400), not the operator's (500).
        """
        if requested and requested.strip():
            name = requested.strip().lower()
            if name not in PROVIDERS:
                raise BadRequest(f"Unknown provider '{requested[:40]}' in X-Provider. "
                                 f"Use one of: {', '.join(PROVIDERS)}.")
            return name
        name = self.settings.default_provider
        if (name is None or name not in PROVIDERS) and credentials:
            raise BadRequest("X-Provider-Key was sent without X-Provider: name its provider, "
                             f"one of: {', '.join(PROVIDERS)}.")
        if name is None or name not in PROVIDERS:
            raise UpstreamError("not_configured", "no provider has credentials")
        return name

    def get(self, name: str, credentials: str | None = None) -> Provider:
        cache_key = (name, hashlib.sha256(credentials.encode()).hexdigest() if credentials else None)
        with self._lock:
            provider = self._cache.get(cache_key)
            if provider is not None:
                self._cache.move_to_end(cache_key)
                return provider
        provider = PROVIDERS[name].from_settings(self.settings, credentials)
        with self._lock:
            existing = self._cache.get(cache_key)
            if existing is not None:
                provider.close()
                return existing
            self._cache[cache_key] = provider
            while len(self._cache) > self.max_cached:
                _, old = self._cache.popitem(last=False)
                old.close()
        return provider

    def close(self) -> None:
        with self._lock:
            for provider in self._cache.values():
                provider.close()
            self._cache.clear()
