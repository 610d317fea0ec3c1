"""What the fleet's schedules cost: polls a day at the intervals chosen now, against fixed.

One statement over the watches that are polled (a subscription pays for them), read by the
console's overview and by ``/metrics``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .billing import active_subscription_clause
from .tables import watches
from .watches import FOLLOWERS

DAY = 86400.0


def fleet_schedule(conn, settings, *, now: float) -> dict:
    """``{"watches", "polls_per_day", "fixed_polls_per_day", "followers_per_day"}``: polls a
    day at each watch's current interval (a watch not polled since the schedule came in
    counts at the reference interval), what ``fixed`` would spend, and the estimated
    new followers a day over the watches of followers (not of accounts followed)."""
    reference = float(settings.poll_interval)
    count, polls, followers = conn.execute(
        sa.select(sa.func.count(),
                  sa.func.coalesce(sa.func.sum(DAY / sa.func.coalesce(watches.c.poll_interval, reference)), 0.0),
                  sa.func.coalesce(sa.func.sum(sa.case((watches.c.operation == FOLLOWERS, watches.c.rate_per_day),
                                                       else_=0.0)), 0.0))
        .where(active_subscription_clause(settings, now, watches))).one()
    return {"watches": count, "polls_per_day": float(polls), "fixed_polls_per_day": count * DAY / reference,
            "followers_per_day": float(followers)}
