"""Smoke test of the benchmarks: ``python -m bench --quick`` runs end to end and its tables
hold sane figures (every cell filled, no errors, 0 missed, 0 duplicates). The figures
themselves are not judged: they depend on the machine."""

from __future__ import annotations

import math
import subprocess
import sys

from bench.common import ROOT


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each ``### title`` of the report with the rows of the table under it."""
    out: dict[str, list[dict[str, str]]] = {}
    title, header = None, None
    for line in markdown.splitlines():
        if line.startswith("### "):
            title, header = line[4:], None
            out[title] = []
        elif line.startswith("|") and title is not None:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
            elif not set(line) <= set("|- "):
                out[title].append(dict(zip(header, cells)))
    return out


def number(cell: str) -> float:
    value = float(cell.replace(",", "").split()[0])
    assert math.isfinite(value), cell
    return value


def section(found: dict, prefix: str) -> list[dict[str, str]]:
    titles = [t for t in found if t.startswith(prefix)]
    assert titles, f"no table '{prefix}…' in {list(found)}"
    rows = found[titles[0]]
    assert rows, f"table '{titles[0]}' is empty"
    for row in rows:
        assert all(cell and "nan" not in cell.lower() for cell in row.values()), row
    return rows


def test_quick_benchmarks_print_sane_tables(tmp_path):
    out = tmp_path / "RESULTS.md"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    report = out.read_text()
    for label in ("CPU", "RAM", "Python", "SQLite", "PostgreSQL", "date"):
        assert f"| {label} " in report, label
    found = tables(report)

    for row in section(found, "Action path"):
        assert number(row["req/s"]) > 0 and number(row["errors"]) == 0, row

    poller = section(found, "Poller")
    assert any(r["database, pollers"].startswith("SQLite") for r in poller)
    for row in poller:
        assert number(row["watches polled"]) == 200 and number(row["errors"]) == 0, row
        assert number(row["polls/s"]) > 0 and number(row["CPU ms/poll"]) > 0 and number(row["peak RSS MB"]) > 0

    cost = section(found, "Trigger cost")
    steady, bursts = cost[0], cost[1:]
    assert steady["upstream pages"].startswith(steady["polls"] + " "), steady   # one page a poll
    assert [int(number(r["new followers"])) for r in bursts] == [1, 50]
    for row in bursts:
        n = number(row["new followers"])
        assert number(row["events stored"]) == n and number(row["delivered"]) == n, row
        assert number(row["missed"]) == 0 and number(row["duplicates"]) == 0, row
        assert number(row["vs ideal"]) <= 1, row

    delivery = section(found, "Webhook delivery")
    assert {r["events from"] for r in delivery} == {"worker's own poll", "committed elsewhere"}
    for row in delivery:
        assert 0 <= number(row["p50 ms"]) <= number(row["p99 ms"]) <= number(row["max ms"]) < 60_000, row
