"""The services the web app, the worker and the CLI share, built without Flask.

``build_services(settings)`` loads the manifests and checks them, against every provider
too (:mod:`.providers.contract`), opens the database (checking
its schema), and makes the key store and the provider pool. The web app (``app.py``) and
every command (``cli/``) build them the same way; nothing here knows HTTP or the CLI.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import Settings
from .manifests import Manifest, load_manifests
from .providers import ProviderPool
from .providers.contract import check_providers
from .store import Store
from .store.keys import KeyStore


@dataclass
class Services:
    settings: Settings
    manifests: dict[str, Manifest]
    store: Store
    keys: KeyStore
    providers: ProviderPool
    clock: Callable[[], float] = field(default=None)   # unix seconds; tests move it

    def __post_init__(self):
        if self.clock is None:
            self.clock = self.settings.clock

    def close(self) -> None:
        self.providers.close()
        self.keys.close()   # leased credits go back to their keys
        self.store.dispose()


def instance_path() -> Path:
    """Where the default SQLite file lives: ``instance/`` of a source checkout, else where
    Flask keeps an installed app's instance folder."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout / "instance"
    return Path(sys.prefix) / "var" / "connector.app-instance"


def default_database_url() -> str:
    path = instance_path()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'connector.db'}"


def build_services(settings: Settings, *, upgrade: bool | None = None) -> Services:
    """Everything a process needs. The database schema is created when the database is
    empty; an out-of-date one is upgraded only with ``upgrade`` (default: on the demo)."""
    manifests = load_manifests(settings.manifests_dir)
    check_providers(manifests)
    if upgrade is None:
        upgrade = settings.provider == "demo"
    store = Store(settings.database_url or default_database_url(), upgrade=upgrade)
    return Services(settings=settings, manifests=manifests, store=store,
                    keys=KeyStore(store, settings.api_keys, settings.default_rate_limit),
                    providers=ProviderPool(settings))
