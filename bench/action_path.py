"""Action path: POST /api/v1/get-tiktok-user-followers through the connector under gunicorn (the
Procfile's settings) against a minimal Flask passthrough proxy under the same settings.

So that the figures measure the connector and not its helpers, the upstream is nginx serving
the fake's 30-follower page as a static file (byte for byte what ``bench.upstream`` answers)
and the load comes from ``wrk`` (C), 64 keep-alive connections, one thread. (With 16, the
kernel's split of the connections between gunicorn's two workers, which keep-alive then keeps
for the whole round, decided the figure: the same connector code gave 290 req/s in rounds
where one worker held most connections and 590-730 in the others, ratios 0.38-0.92; 64
connections average the split out, 0.82-0.90 over five rounds in the same trial.) Every target is up
for the whole run and the rounds take turns (upstream directly, passthrough, connector with a
static key, connector with a database key that has credits, ...), so noise on a shared
machine hits all alike; each round's connector figure is divided by the passthrough figure of
the same round, and the table gives the median of those ratios and their spread (min-max).

Beside each target: the CPU milliseconds its server processes spent per request, and the share
of a core that the upstream nginx and wrk used while it was measured (they must stay small for
the ratio to mean anything), and how much of the machine other processes used meanwhile.
"""

from __future__ import annotations

import json
import statistics
import tempfile

from . import common, tools

ROUTE = "/api/v1/get-tiktok-user-followers"
BODY = {"handle": "brand", "count": 30}
CONNECTIONS = 64
# nginx answers any POST with the page (a static file answers POST with 405 unless told otherwise).
UPSTREAM = ("location / { root .; default_type application/json; try_files /page.json =404; "
            "error_page 405 =200 $uri; }")


def upstream_page() -> bytes:
    """The fake Dumpling's answer to :data:`BODY` (``bench.upstream``, 1,000 followers by default)."""
    from werkzeug.test import Client

    from .upstream import dumpling

    response = Client(dumpling()).post(ROUTE, json=BODY, headers={"Authorization": "Bearer sk_bench"})
    page = response.get_data()
    if response.status_code != 200 or len(json.loads(page)["followers"]) != BODY["count"]:
        raise RuntimeError(f"the fake upstream did not give a page of {BODY['count']}: {page[:300]!r}")
    return page


def _measure(url: str, headers: dict, seconds: float, server_pid: int | None, nginx: tools.Nginx) -> dict:
    server_before = tools.cpu_seconds(server_pid) if server_pid else 0.0
    nginx_before = nginx.cpu_seconds()
    busy_before, total_before = tools.machine_cpu()
    result = tools.wrk(url, method="POST", body=json.dumps(BODY), headers=headers, connections=CONNECTIONS,
                       threads=1, seconds=seconds)
    busy_after, total_after = tools.machine_cpu()
    server_cpu = (tools.cpu_seconds(server_pid) - server_before) if server_pid else 0.0
    nginx_cpu = nginx.cpu_seconds() - nginx_before
    wall = result.seconds or seconds
    ours = server_cpu + nginx_cpu + result.cpu_seconds
    return {"rps": result.rps, "requests": result.requests, "errors": result.errors, "p50": result.p50,
            "p99": result.p99, "server_ms": server_cpu * 1000 / max(result.requests, 1),
            "nginx_core": nginx_cpu / wall, "wrk_core": result.cpu_seconds / wall,
            # the rest of the machine (other users, the database...), in cores
            "others_core": max(0.0, (busy_after - busy_before) - ours) / wall,
            "machine_cores": (total_after - total_before) / wall}


def run(quick: bool = False) -> dict:
    """All servers up at once, then rounds that take turns between the targets."""
    tools.ensure_tools()
    rounds, seconds = (1, 1) if quick else (7, 5)
    proxy_port, conn_port, db_port = (common.free_port() for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp, tools.nginx(UPSTREAM, files={"page.json": upstream_page()}) as nginx:
        env = {"DUMPLING_API_KEY": "sk_bench", "DUMPLING_BASE_URL": nginx.url,
               "CONNECTOR_DATABASE_URL": f"sqlite:///{tmp}/bench.db", "CONNECTOR_API_KEYS": "bench-key",
               "CONNECTOR_DEFAULT_RATE_LIMIT": "100000000", "CONNECTOR_PROVIDER": "dumpling",
               "CONNECTOR_MAX_REQUESTS_IN_FLIGHT_PER_KEY": "1000"}   # one key, 64 connections
        from connector.store import Store
        from connector.store.keys import KeyStore

        store = Store(env["CONNECTOR_DATABASE_URL"])
        db_key, _ = KeyStore(store).create(name="bench", credits=10**9, rate_limit=10**8)
        store.dispose()
        connector_app = "connector.app:create_app()"
        with common.gunicorn("bench.passthrough:app", proxy_port, env=env) as proxy, \
                common.gunicorn(connector_app, conn_port, env=env, config=common.PROCFILE_CONFIG) as connector, \
                common.gunicorn(connector_app, db_port, env=env, config=common.PROCFILE_CONFIG) as db_connector:
            targets = {
                "upstream (nginx) directly": (nginx.url + ROUTE, {"Authorization": "Bearer sk_bench"}, None),
                "passthrough": (f"http://127.0.0.1:{proxy_port}{ROUTE}", {}, proxy.pid),
                "connector, static key": (f"http://127.0.0.1:{conn_port}{ROUTE}",
                                          {"Authorization": "Bearer bench-key"}, connector.pid),
                # hashed lookup, rate-limit lease and a credit taken per request
                "connector, database key with credits": (f"http://127.0.0.1:{db_port}{ROUTE}",
                                                         {"Authorization": f"Bearer {db_key}"}, db_connector.pid),
            }
            for url, headers, pid in targets.values():   # warm-up: imports, pools, first connections
                _measure(url, headers, 1, pid, nginx)
            measured: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(rounds):
                for name, (url, headers, pid) in targets.items():
                    measured[name].append(_measure(url, headers, seconds, pid, nginx))
    return {"rounds": rounds, "seconds": seconds, "measured": measured}


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(results: dict) -> str:
    measured = results["measured"]
    base = measured["passthrough"]
    rows, notes = [], []
    for name, rounds in measured.items():
        ratios = [r["rps"] / b["rps"] if b["rps"] else 0.0 for r, b in zip(rounds, base)]
        direct = name.startswith("upstream")
        server = "—" if direct else f"{_median(rounds, 'server_ms'):.2f}"
        # what a CPU-bound machine would give: the passthrough's CPU per request over this target's
        cpu_ratio = "—" if direct else f"{statistics.median(b['server_ms'] / max(r['server_ms'], 1e-9) for r, b in zip(rounds, base)):.2f}"
        rows.append([name, f"{_median(rounds, 'rps'):,.0f}", f"{_median(rounds, 'p50'):.1f}",
                     f"{_median(rounds, 'p99'):.1f}", sum(r["errors"] for r in rounds),
                     f"{statistics.median(ratios):.2f}", f"{min(ratios):.2f}–{max(ratios):.2f}", server, cpu_ratio,
                     f"{_median(rounds, 'nginx_core'):.0%}", f"{_median(rounds, 'wrk_core'):.0%}",
                     f"{_median(rounds, 'others_core'):.2f}"])
    cores = _median(base, "machine_cores")
    notes.append(f"{results['rounds']} rounds of {results['seconds']} s per target, taking turns; wrk, "
                 f"{CONNECTIONS} connections, 1 thread; gunicorn {' '.join(common.GUNICORN_WEB)} (the connector "
                 f"also with the Procfile's {common.PROCFILE_CONFIG}: metrics in multiprocess mode); "
                 f"{cores:.0f} cores. Ratios are per round (same round's passthrough); CPU shares are of "
                 "one core; \"others\" is the rest of the machine's busy time, in cores. \"CPU ÷ passthrough\" is the "
                 "passthrough's server CPU per request over the target's (median of rounds): the ratio a machine "
                 "busy with nothing else would give, and steady where other load swings req/s.")
    return ("### Action path: POST /api/v1/get-tiktok-user-followers (30 records), wrk against an nginx "
            "upstream\n\n"
            + common.table(["target", "req/s", "p50 ms", "p99 ms", "errors", "÷ passthrough",
                            "spread", "server CPU ms/req", "CPU ÷ passthrough", "nginx CPU", "wrk CPU",
                            "others (cores)"], rows)
            + "\n\n" + " ".join(notes))


if __name__ == "__main__":
    import sys

    print(report(run(quick="--quick" in sys.argv)))
