"""`make bench`: run every benchmark module in turn, then print one table of every figure."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

from benchmarks.results_table import RESULTS, print_table


def main(selected: list[str]) -> None:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]))
    for name in names:
        if name.startswith("bench_") and (not selected or name in selected):
            importlib.import_module(f"benchmarks.{name}").main()
    if RESULTS.exists():
        print_table(f"all figures ({RESULTS})", json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
