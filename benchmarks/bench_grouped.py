"""Building one sweep's sets from a user's grouped table: time, and peak memory against the
source file's size (the source is streamed in record batches, never loaded whole).

`python -m benchmarks bench_grouped`. A Parquet source of 1,000,000 rows in 10,000 groups,
with a prompt and a completion of text per row (the shape of an instruction dataset); the
build draws 1,000 training groups x 100 examples, 200 + 200 held-out groups and 1,000 seen rows.
The build runs in a child process whose peak RSS (ru_maxrss) above its RSS before the build is
the memory the build took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.results_table import record

ROWS, GROUPS = 1_000_000, 10_000
CONFIG = {
    "test_groups": 200,
    "validation_groups": 200,
    "examples_per_heldout_group": 20,
    "seen_examples": 1000,
    "n_instructions": 1000,
    "budget": 50_000,
}
# The child: imports and a read of a one-row file first (the libraries' code pages are not the
# build's memory), then one build, then its peak.
CHILD = """
import json, resource, sys, time
from pathlib import Path
import psutil
import pyarrow as pa, pyarrow.parquet as pq
from divsweep.datasets import grouped
cfg = grouped.GroupedDataConfig.parse(json.loads(sys.argv[1]))
warm = Path(sys.argv[2]).with_name("warm.parquet")
pq.write_table(pa.table({"task": ["a"], "x": [1]}), warm)
pq.ParquetFile(warm).read()
before = psutil.Process().memory_info().rss
start = time.perf_counter()
grouped.build(cfg, Path(sys.argv[2]))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_added": peak - before}))
"""


def write_source(path: Path) -> None:
    """ROWS rows in GROUPS groups, written a slice at a time (this process stays small too)."""
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, pa.schema([("task", pa.string()), ("prompt", pa.string()),
                                           ("completion", pa.string())])) as writer:  # fmt: skip
        for start in range(0, ROWS, 100_000):
            n = min(100_000, ROWS - start)
            group = rng.integers(0, GROUPS, n)
            words = rng.integers(0, 1 << 30, (n, 6))
            writer.write_table(
                pa.table(
                    {
                        "task": [f"task-{g:05d}" for g in group],
                        "prompt": [" ".join(f"{w:x}" for w in row) for row in words],
                        "completion": [f"{row[0] ^ row[1]:x} {row[2]:x}" for row in words],
                    }
                )
            )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "tasks.parquet"
        write_source(source)
        config = CONFIG | {"source": {"path": str(source), "group_column": "task"}}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(config), str(Path(tmp) / "cache")],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"the build failed: {done.stderr}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        size = source.stat().st_size
    record(
        "grouped",
        {
            f"grouped: build seconds, {ROWS:,} rows / {GROUPS:,} groups Parquet": (
                measured["seconds"],
                "",
            ),
            "grouped: peak build memory / source file size": (
                measured["peak_added"] / size,
                "<= 1.5",
            ),
            "grouped: source file size (MB, info)": (size / 1e6, ""),
        },
    )


if __name__ == "__main__":
    main()
