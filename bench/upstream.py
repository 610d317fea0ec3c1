"""A fake upstream for benchmarks, servable by gunicorn: ``bench.upstream:dumpling()``.

Environment: ``BENCH_FOLLOWERS`` (followers of every account, default 1000),
``BENCH_ACCOUNTS`` (comma-separated handles, default ``brand``), ``BENCH_LATENCY``
(seconds slept per answer, default 0).
"""

from __future__ import annotations

import os

from tests.fakes import FakeDumpling, FakeWorld


class _Unlogged(FakeDumpling):
    """The test fake without its request log (a benchmark sends far too many requests)."""

    def _record(self, request):
        record = super()._record(request)
        self.requests.clear()
        return record


def dumpling():
    world = FakeWorld(seed=1)
    followers = int(os.environ.get("BENCH_FOLLOWERS", "1000"))
    for handle in os.environ.get("BENCH_ACCOUNTS", "brand").split(","):
        world.add_account(handle, followers=followers)
    return _Unlogged(world, api_key="sk_bench", rate_limit=10**9,
                     latency=float(os.environ.get("BENCH_LATENCY", "0")))
