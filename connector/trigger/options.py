"""Durations the trigger derives from ``Settings`` (the worker's knobs are ``settings.worker``)."""

from __future__ import annotations

from ..config import Settings


def delivery_lease(settings: Settings) -> float:
    """How long a claimed delivery is ours: its longest attempt (the timeout bounds it,
    name lookup included) plus a margin for starting it and recording the outcome."""
    return settings.delivery_timeout + 60.0


def poll_freshness(settings: Settings) -> float:
    """How long a polling caller keeps its watch polled (and pays) after its last request."""
    return max(3 * settings.poll_interval, 900)
