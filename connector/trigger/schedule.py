"""When a watch is read next: the one place that decides ``watches.next_poll_at``."""

from __future__ import annotations

from ..config import Settings


def next_poll_at(settings: Settings, now: float, *, backlog: bool = False) -> float:
    """After a read at ``now``: at once while a backlog drains, else one poll interval later."""
    return now if backlog else now + settings.poll_interval
