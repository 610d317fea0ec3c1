"""``python -m bench [--quick] [--only NAME] [--out bench/RESULTS.md]``: run the benchmarks,
print each table, and write them to a Markdown file with the machine they ran on.

Figures, not pass/fail: the machine, its load and the database decide them. ``--quick``
uses tiny sizes (the smoke test runs it); full sizes take a few minutes.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from . import action_path, common, delivery, isolation, poller, trigger_cost

BENCHMARKS = {"action_path": action_path, "poller": poller, "trigger_cost": trigger_cost, "delivery": delivery,
              "isolation": isolation}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GB"
    except OSError:
        pass
    return "unknown"


def _postgres_version() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(common.PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
        return str(version)
    except sa.exc.OperationalError:
        return "unreachable"


def machine() -> list[tuple[str, str]]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
            ("CPU", f"{os.cpu_count()} × {_cpu_model()}"), ("RAM", _ram_gb()),
            ("load average at start", load),
            ("Python", platform.python_version()), ("SQLite", sqlite3.sqlite_version),
            ("PostgreSQL", _postgres_version()),
            ("commit", subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                                      capture_output=True, text=True).stdout.strip() or "unknown")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about a minute in all)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--out", type=Path, default=common.ROOT / "bench" / "RESULTS.md",
                        help="Markdown file to write (default bench/RESULTS.md)")
    args = parser.parse_args(argv)

    about = machine()
    sections = []
    for name in args.only or BENCHMARKS:
        started = time.monotonic()
        module = BENCHMARKS[name]
        text = module.report(module.run(quick=args.quick))
        text += f"\n\n_{name}: {time.monotonic() - started:.0f} s_"
        print(text + "\n", flush=True)
        sections.append(text)

    command = "python -m bench" + (" --quick" if args.quick else "") + "".join(f" --only {n}" for n in args.only or [])
    lines = ["# Benchmark results", "", f"`{command}`", "", common.table(["machine", ""], about), "",
             *[s + "\n" for s in sections]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
