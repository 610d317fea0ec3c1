"""Run one fake upstream in the foreground, for manual runs and benchmarks.

    python -m tests.fakes dumpling --port 8701 --accounts stoolpresidente:5000,tiny:3:10 --latency 0.1

``--accounts`` takes ``handle:followers[:following]`` items separated by commas (default
``demo:100:20``). The fake prints its URL and the environment variables that point the
connector at it, then serves until interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import threading

from . import FAKES, FakeWorld


def _accounts(spec: str) -> list[tuple[str, int, int]]:
    accounts = []
    for item in filter(None, spec.split(",")):
        handle, *counts = item.strip().split(":")
        followers, following = (list(map(int, counts)) + [0, 0])[:2]
        accounts.append((handle, followers, following))
    return accounts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    parser.add_argument("provider", choices=sorted(FAKES))
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--accounts", type=_accounts, default="demo:100:20", help="handle:followers[:following],...")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept before every answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depth-cap", type=int, default=5000)
    args = parser.parse_args(argv)

    world = FakeWorld(seed=args.seed, depth_cap=args.depth_cap)
    for handle, followers, following in args.accounts:
        world.add_account(handle, followers=followers, following=following)
    fake = FAKES[args.provider](world, latency=args.latency, port=args.port)
    with fake:
        print(f"{args.provider} fake listening on {fake.url}", flush=True)
        for name, value in fake.env.items():
            print(f"{name}={value}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
