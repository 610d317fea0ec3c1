"""Action path: get-tiktok-user-followers through the connector under gunicorn (the Procfile's
settings), side by side with (a) the fake upstream called directly with httpx and (b) a
minimal Flask passthrough proxy under the same gunicorn settings."""

from __future__ import annotations

import tempfile

from . import common

ROUTE = "/api/v1/get-tiktok-user-followers"
BODY = {"handle": "brand", "count": 30}


def _merge(rounds: list[common.LoadResult]) -> common.LoadResult:
    """The round with the median throughput (latencies from all rounds)."""
    ordered = sorted(rounds, key=lambda r: r.rps)
    median = ordered[len(ordered) // 2]
    latencies = [ms for r in rounds for ms in r.latencies_ms]
    return common.LoadResult(requests=median.requests, errors=sum(r.errors for r in rounds),
                             seconds=median.seconds, latencies_ms=latencies)


def run(quick: bool = False) -> dict:
    """All servers up at once, then rounds that take turns (direct, passthrough, connector, ...),
    so a burst of noise on the shared machine hits every target alike; the median round counts."""
    total = 200 if quick else 2000
    rounds = 1 if quick else 3
    concurrency = 16
    up_port, proxy_port, conn_port, db_port = (common.free_port() for _ in range(4))
    upstream_env = {"BENCH_FOLLOWERS": "1000"}
    # The upstream gets its own generous pool so it is never the bottleneck being measured.
    upstream_args = ["--workers", "1", "--threads", "32", "--worker-class", "gthread"]
    with tempfile.TemporaryDirectory() as tmp, \
            common.gunicorn("bench.upstream:dumpling()", up_port, upstream_args, upstream_env):
        upstream = f"http://127.0.0.1:{up_port}"
        env = {"DUMPLING_API_KEY": "sk_bench", "DUMPLING_BASE_URL": upstream,
               "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "CONNECTOR_API_KEYS": "bench-key",
               "CONNECTOR_DEFAULT_RATE_LIMIT": "100000000", "CONNECTOR_PROVIDER": "dumpling"}
        from connector.store import Store
        from connector.store.keys import KeyStore

        store = Store(env["CONNECTOR_DATABASE_URL"])
        db_key, _ = KeyStore(store).create(name="bench", credits=10**9, rate_limit=10**8)
        store.dispose()
        targets = {
            "direct": (upstream + ROUTE, {"Authorization": "Bearer sk_bench"}),
            "passthrough": (f"http://127.0.0.1:{proxy_port}{ROUTE}", {}),
            "connector": (f"http://127.0.0.1:{conn_port}{ROUTE}", {"Authorization": "Bearer bench-key"}),
            # A key from the database (hashed lookup, rate-limit lease, credits) instead of a static key.
            "connector (db key, credits)": (f"http://127.0.0.1:{db_port}{ROUTE}",
                                            {"Authorization": f"Bearer {db_key}"}),
        }
        measured: dict[str, list] = {name: [] for name in targets}
        with common.gunicorn("bench.passthrough:app", proxy_port, env=env), \
                common.gunicorn("connector.app:create_app()", conn_port, env=env), \
                common.gunicorn("connector.app:create_app()", db_port, env=env):
            for _ in range(rounds):
                for name, (url, headers) in targets.items():
                    measured[name].append(common.load(url, json_body=BODY, headers=headers, total=total,
                                                      concurrency=concurrency))
    return {name: _merge(results) for name, results in measured.items()}


def report(results: dict) -> str:
    base = results["passthrough"].rps
    rows = [[name, f"{r.rps:,.0f}", f"{r.p50:.1f}", f"{r.p99:.1f}", r.errors, f"{r.rps / base:.2f}"]
            for name, r in results.items()]
    return ("### Action path: POST /api/v1/get-tiktok-user-followers (30 records), median of rounds\n\n"
            + common.table(["target", "req/s", "p50 ms", "p99 ms", "errors", "÷ passthrough"], rows))


if __name__ == "__main__":
    import sys

    print(report(run(quick="--quick" in sys.argv)))
