"""Exact match per split and applied/no-op from a pilot's last predictions.parquet
(the per-example predictions the trainer writes beside its last checkpoint).
Usage: python summarise.py WORKDIR [WORKDIR ...]   (e.g. /tmp/pilots-work/p01-...)"""

import sys
from pathlib import Path

import pyarrow.parquet as pq

for workdir in sys.argv[1:]:
    last = sorted(Path(workdir).glob("checkpoints/step-*/predictions.parquet"))[-1]
    t = pq.read_table(last).to_pandas()
    out = [Path(workdir).name, last.parent.name]
    for split in ("seen", "unseen", "unseen_val"):
        s = t[t.split == split]
        a, n = s[s.applied], s[~s.applied]
        out.append(
            f"{split}: all {s.correct.mean():.3f} applied {a.correct.mean():.3f} "
            f"({int(a.correct.sum())}/{len(a)}) no-op {n.correct.mean():.3f}"
        )
    print(" | ".join(out))
