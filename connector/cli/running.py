"""What ``connector serve`` uses, so ``connector check`` can check the same.

``serve`` leaves one small JSON file per port in the instance folder while it runs
(``serve-<port>.json``: its pid, port, provider and a hash naming its database) and removes it
when it stops; a file whose process is gone (a killed server), or that names another
database, is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..config import Settings
from ..services import instance_path

DEMO_POLL_INTERVAL = 30


def demo_settings(settings: Settings, environ=os.environ) -> Settings:
    """What ``connector serve --demo`` runs with: the demo provider, watches polled every 30 s
    (unless CONNECTOR_POLL_INTERVAL says otherwise), receivers on this machine allowed."""
    overrides = {"provider": "demo", "allow_private_targets": True}
    if not (environ.get("CONNECTOR_POLL_INTERVAL") or "").strip():
        overrides["poll_interval"] = DEMO_POLL_INTERVAL
        overrides["poll_min_interval"] = min(settings.poll_min_interval, DEMO_POLL_INTERVAL)
    return settings.replace(**overrides)


def _file(port: int) -> Path:
    return instance_path() / f"serve-{port}.json"


def database_id(url: str) -> str:
    """Which database a server uses, without writing its URL (and password) to a file."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def record(port: int, provider: str | None, database_url: str) -> Path:
    path = _file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "port": port, "provider": provider,
                                "database": database_id(database_url)}))
    return path


def forget(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def services(database_url: str) -> list[dict]:
    """The servers running from this instance folder on ``database_url``, lowest port first."""
    found = []
    for path in sorted(instance_path().glob("serve-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("database") == database_id(database_url) and _alive(info.get("pid")):
            found.append(info)
    return sorted(found, key=lambda info: info.get("port") or 0)
