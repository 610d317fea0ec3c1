"""Issue 21: adaptive polling against fixed on the benchmark fleet, seed by seed.

``python -m bench.adaptive [--seeds 1,2,3] [--watches 300] [--days 7]``. For each seed the
fleet (:mod:`bench.fleet`) is written to a file and replayed by ``connector simulate --fleet
FILE --json`` in its own process, with the default settings, as an operator runs it; the
issue's targets are checked. Then, for the first seed, where the reads go: watches by rate
band, the reads each policy spends there, and what an *oracle* would spend (the same
interval rule fed each watch's true rate at every minute, with no estimation, no cold start,
no burst reaction): the gap between the adaptive column and the oracle's is what the
estimator leaves on the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

from . import common
from .fleet import DAY, generate

BANDS = ((0.5, 10), (10, 100), (100, 500), (500, 2000))


def _cli(path: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    env["PYTHONPATH"] = str(common.ROOT)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "connector.cli", "simulate", "--fleet", path, "--json"],
                         capture_output=True, text=True, env=env, cwd=common.ROOT)
    if run.returncode:
        raise RuntimeError(run.stderr)
    out = json.loads(run.stdout)
    out["commandSeconds"] = time.monotonic() - started
    return out


def _oracle_reads(truth: dict, start: float, days: float, policy) -> float:
    """Reads a day of the interval rule fed the true rate, minute by minute (bursts left out)."""
    from connector.trigger.schedule import interval_for

    reads, step = 0.0, 60.0
    rate = truth["perDay"] / DAY
    for k in range(int(days * DAY / step)):
        hour = ((start + k * step) / 3600) % 24
        now = rate * (1 + truth["depth"] * math.cos(2 * math.pi * (hour - truth["peakHour"]) / 24))
        reads += step / interval_for(now, policy)
    return reads / days


def bands(data: dict) -> list[list]:
    from connector.config import Settings
    from connector.trigger.fleet import load_fleet
    from connector.trigger.schedule import Policy
    from connector.trigger.simulate import simulate

    fleet = load_fleet(json.dumps(data))
    settings = Settings()
    adaptive = simulate(fleet, settings, "adaptive")["_watches"]
    policy = Policy.from_settings(settings)
    total_events = sum(w["events"] for w in adaptive.values()) or 1
    rows = []
    for low, high in BANDS:
        chosen = [w for w in data["watches"] if low <= w["truth"]["perDay"] < high]
        if not chosen:
            continue
        ours = [adaptive[w["handle"]] for w in chosen]
        events = sum(w["events"] for w in ours)
        reads = sum(w["reads"] for w in ours) / len(chosen) / data["days"]
        oracle = sum(_oracle_reads(w["truth"], data["start"], data["days"], policy) for w in chosen) / len(chosen)
        rows.append([f"{low:g}-{high:g}", len(chosen), f"{events / total_events:.1%}",
                     f"{DAY / settings.poll_interval:.0f}", f"{reads:.0f}", f"{oracle:.0f}",
                     f"{sum(w['delays'] for w in ours) / max(events, 1):.0f}",
                     f"{max(w['p95'] for w in ours):.0f}"])
    return rows


def run(seeds=(1, 2, 3), watches: int = 300, days: float = 7) -> dict:
    results, breakdown = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            data = generate(seed, watches, days)
            path = os.path.join(tmp, f"fleet-{seed}.json")
            with open(path, "w") as out:
                json.dump(data, out)
            results[seed] = _cli(path)
            if breakdown is None:
                breakdown = bands(data)
    return {"seeds": results, "bands": breakdown, "watches": watches, "days": days}


def report(results: dict) -> str:
    rows = []
    for seed, out in results["seeds"].items():
        fixed, adaptive = out["fixed"], out["adaptive"]
        for name, r in (("fixed", fixed), ("adaptive", adaptive)):
            rows.append([seed, name, f"{r['upstreamRequests']:,}",
                         f"{r['upstreamRequests'] / fixed['upstreamRequests']:.2f}", f"{r['events']:,}", r["missed"],
                         r["duplicates"], f"{r['delayMean']:.0f}", f"{r['delayP50']:.0f}", f"{r['delayP95']:.0f}",
                         f"{r['delayP99']:.0f}", f"{r['worstWatchP95']:.0f}", f"{r['wallSeconds']:.0f}"])
        rows[-1].append(f"{out['commandSeconds']:.0f}")
        rows[-2].append("")
    text = (f"### Adaptive against fixed: {results['watches']} watches over {results['days']:g} days "
            "(`connector simulate`, default settings)\n\n"
            + common.table(["seed", "policy", "upstream reads", "reads / fixed", "events", "missed", "duplicates",
                            "mean delay s", "p50 s", "p95 s", "p99 s", "worst watch p95 s", "replay wall s",
                            "command wall s"], rows))
    checks = []
    for seed, out in results["seeds"].items():
        f, a = out["fixed"], out["adaptive"]
        ok = (a["upstreamRequests"] <= 0.7 * f["upstreamRequests"] and a["delayMean"] <= f["delayMean"]
              and a["delayP95"] <= f["delayP95"] and a["worstWatchP95"] <= 1800
              and a["missed"] == f["missed"] == 0 and a["duplicates"] == f["duplicates"] == 0)
        checks.append(f"seed {seed}: {'all targets met' if ok else 'TARGET MISSED'}")
    text += "\n\n" + "; ".join(checks) + "."
    if results.get("bands"):
        text += ("\n\n### Where the reads go (first seed, by each watch's true mean rate)\n\n"
                 + common.table(["followers a day", "watches", "share of events", "fixed reads/watch/day",
                                 "adaptive reads/watch/day", "oracle reads/watch/day", "adaptive mean delay s",
                                 "adaptive worst watch p95 s"], results["bands"]))
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--watches", type=int, default=300)
    parser.add_argument("--days", type=float, default=7)
    args = parser.parse_args()
    print(report(run(tuple(int(s) for s in args.seeds.split(",")), args.watches, args.days)))
