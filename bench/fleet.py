"""A seeded fleet for ``connector simulate`` (issue 21's benchmark fleet).

``watches`` accounts over ``days``: each gains followers at a rate drawn log-uniformly from
0.5 to 2,000 a day, on a time-of-day cycle (peak at a random hour, the trough a twentieth
to a sixth of the peak), and about one in ten has a viral burst: 5 to 15 times its daily
rate within one to three hours, most of it early (an exponential fall over the window).

    python -m bench.fleet --seed 1 --out fleet.json [--watches 300] [--days 7]
"""

from __future__ import annotations

import argparse
import json
import math
import random

START = 1_767_225_600    # 2026-01-01T00:00:00Z
DAY = 86400.0


def generate(seed: int, watches: int = 300, days: float = 7, start: int = START) -> dict:
    rng = random.Random(seed)
    horizon = days * DAY
    fleet = []
    for n in range(watches):
        rate = math.exp(rng.uniform(math.log(0.5), math.log(2000))) / DAY   # followers a second, on average
        peak, depth = rng.uniform(0, 24), rng.uniform(0.7, 0.9)             # trough/peak = (1-d)/(1+d)
        top = rate * (1 + depth)
        times, t = [], 0.0
        while True:   # a Poisson process thinned to the cycle
            t += rng.expovariate(top)
            if t >= horizon:
                break
            hour = ((start + t) / 3600) % 24
            if rng.random() * (1 + depth) < 1 + depth * math.cos(2 * math.pi * (hour - peak) / 24):
                times.append(t)
        burst = None
        if rng.random() < 0.1:
            length = rng.uniform(1, 3) * 3600
            at = rng.uniform(0.5 * DAY, horizon - length)
            size = int(rate * DAY * rng.uniform(5, 15))
            burst = {"at": round(at), "hours": round(length / 3600, 2), "followers": size}
            scale = length / 3
            times.extend(at + min(rng.expovariate(1 / scale), length) for _ in range(size))
            times.sort()
        fleet.append({"handle": f"acct_{n:04d}", "initialFollowers": rng.randint(100, 3000),
                      "followers": [round(x, 1) for x in times],
                      # (what the generator drew; the simulator ignores it, bench/adaptive.py reads it)
                      "truth": {"perDay": rate * DAY, "peakHour": peak, "depth": depth, "burst": burst}})
    return {"start": start, "days": days, "watches": fleet}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--watches", type=int, default=300)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.out, "w") as out:
        json.dump(generate(args.seed, args.watches, args.days), out)
