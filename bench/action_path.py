"""Action path: get-tiktok-user-followers through the connector under gunicorn (the Procfile's
settings), side by side with (a) the fake upstream called directly with httpx and (b) a
minimal Flask passthrough proxy under the same gunicorn settings."""

from __future__ import annotations

import tempfile

from . import common

ROUTE = "/api/v1/get-tiktok-user-followers"
BODY = {"handle": "brand", "count": 30}


def run(quick: bool = False) -> dict:
    total = 200 if quick else 3000
    concurrency = 16
    up_port, proxy_port, conn_port = common.free_port(), common.free_port(), common.free_port()
    upstream_env = {"BENCH_FOLLOWERS": "1000"}
    # The upstream gets its own generous pool so it is never the bottleneck being measured.
    upstream_args = ["--workers", "1", "--threads", "32", "--worker-class", "gthread"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, \
            common.gunicorn("bench.upstream:dumpling()", up_port, upstream_args, upstream_env):
        upstream = f"http://127.0.0.1:{up_port}"
        env = {"DUMPLING_API_KEY": "sk_bench", "DUMPLING_BASE_URL": upstream,
               "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "CONNECTOR_API_KEYS": "bench-key",
               "CONNECTOR_DEFAULT_RATE_LIMIT": "100000000", "CONNECTOR_PROVIDER": "dumpling"}
        auth = {"Authorization": "Bearer sk_bench"}
        results["direct"] = common.load(upstream + ROUTE, json_body=BODY, headers=auth, total=total,
                                        concurrency=concurrency)
        with common.gunicorn("bench.passthrough:app", proxy_port, env=env):
            results["passthrough"] = common.load(f"http://127.0.0.1:{proxy_port}{ROUTE}", json_body=BODY,
                                                 total=total, concurrency=concurrency)
        with common.gunicorn("connector.app:create_app()", conn_port, env=env):
            results["connector"] = common.load(f"http://127.0.0.1:{conn_port}{ROUTE}", json_body=BODY,
                                               headers={"Authorization": "Bearer bench-key"}, total=total,
                                               concurrency=concurrency)
        # A key from the database (hashed lookup, rate-limit window, usage row) instead of a static key.
        with common.gunicorn("connector.app:create_app()", conn_port, env=env):
            from connector.store import Store
            from connector.store.keys import KeyStore

            store = Store(env["CONNECTOR_DATABASE_URL"])
            raw, _ = KeyStore(store).create(name="bench", credits=10**9, rate_limit=10**8)
            store.dispose()
            results["connector (db key, credits)"] = common.load(
                f"http://127.0.0.1:{conn_port}{ROUTE}", json_body=BODY,
                headers={"Authorization": f"Bearer {raw}"}, total=total, concurrency=concurrency)
    return results


def report(results: dict) -> str:
    base = results["passthrough"].rps
    rows = [[name, f"{r.rps:,.0f}", f"{r.p50:.1f}", f"{r.p99:.1f}", r.errors, f"{r.rps / base:.2f}"]
            for name, r in results.items()]
    return ("### Action path: POST /api/v1/get-tiktok-user-followers (30 records)\n\n"
            + common.table(["target", "req/s", "p50 ms", "p99 ms", "errors", "÷ passthrough"], rows))


if __name__ == "__main__":
    import sys

    print(report(run(quick="--quick" in sys.argv)))
