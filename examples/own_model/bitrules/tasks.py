"""The grouped dataset: each group (task) adds its own constant k to a B-bit number x, modulo
2^B. A model sees the bits of x and of k; trained on few tasks it memorises them, trained on
many it can learn addition and so get tasks it never saw right."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_table(bits: int = 6, rows_per_task: int = 64, seed: int = 0) -> pa.Table:
    """One group per k in [0, 2^bits), `rows_per_task` inputs x each (without repeats)."""
    rng = np.random.default_rng(seed)
    size = 1 << bits
    if not 1 <= rows_per_task <= size:
        raise ValueError(f"rows_per_task must be 1 to {size} (the inputs x of {bits} bits)")
    ks = np.repeat(np.arange(size), rows_per_task)
    xs = np.concatenate([rng.permutation(size)[:rows_per_task] for _ in range(size)])
    return pa.table(
        {
            "task": [f"add-{k:0{len(str(size))}d}" for k in ks],
            "x": pa.array(xs, pa.int32()),
            "k": pa.array(ks, pa.int32()),
            "y": pa.array((xs + ks) % size, pa.int32()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the Parquet file to write")
    parser.add_argument("--bits", type=int, default=6)
    parser.add_argument("--rows-per-task", type=int, default=64)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(make_table(args.bits, args.rows_per_task), args.out)


if __name__ == "__main__":
    main()
