"""Record benchmark figures: print a table and merge them into benchmarks/results/latest.json."""

from __future__ import annotations

import json
import operator
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

# DIVSWEEP_BENCH_RESULTS: another file, for figures of another machine (scripts/device-check.sh)
RESULTS = Path(
    os.environ.get("DIVSWEEP_BENCH_RESULTS", Path(__file__).parent / "results" / "latest.json")
)
_COMPARE = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def goal_met(measured: float, goal: str) -> bool:
    """`goal` reads like '>= 0.95'; an empty goal is informational and always met."""
    if not goal:
        return True
    op, threshold = goal.split()
    return _COMPARE[op](measured, float(threshold))


def print_table(title: str, rows: dict[str, dict]) -> None:
    table = Table(title=title)
    for column in ("figure", "goal", "measured", "met"):
        table.add_column(column)
    for name, row in rows.items():
        met = "yes" if row["met"] else "NO"
        table.add_row(name, row["goal"] or "-", f"{row['measured']:g}", met)
    Console().print(table)


def record(bench: str, figures: dict[str, tuple[float, str]], path: Path = RESULTS) -> dict:
    """Print `figures` ({name: (measured, goal)}) and merge them into `path`."""
    rows = {
        name: {"measured": round(float(value), 4), "goal": goal, "met": goal_met(value, goal)}
        for name, (value, goal) in figures.items()
    }
    print_table(bench, rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(rows)
    # atomic replace: a crashed benchmark never leaves a half-written results file
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(merged, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return rows
