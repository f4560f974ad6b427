"""Run one pilot trial like `divsweep train TRIAL.yaml`, printing every evaluation as one JSON
line (the metrics the trainer reports, plus wall seconds since start) so a trajectory can be
read, and stopped early, while it runs. Usage: python pilot.py TRIAL.yaml WORKDIR"""

import json
import sys
import time
from pathlib import Path

t0 = time.perf_counter()

from divsweep.datasets import build  # noqa: E402
from divsweep.trainer.config import load_trial_config  # noqa: E402
from divsweep.trainer.fit import fit  # noqa: E402

cfg = load_trial_config(Path(sys.argv[1]))
data = build(cfg.data, cfg.eval)
t_data = time.perf_counter() - t0
print(json.dumps({"event": "data", "s": round(t_data, 1)}), flush=True)

KEYS = (
    "step",
    "train/loss",
    "seen/exact_match",
    "unseen/exact_match",
    "unseen_applied/exact_match",
    "unseen_noop/exact_match",
    "unseen_val_applied/exact_match",
    "wall_time_s",
)


def report(metrics, _ckpt):
    row = {k: round(metrics[k], 4) for k in KEYS if k in metrics}
    row["since_start_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(row), flush=True)


final = fit(cfg, data, workdir=Path(sys.argv[2]), report=report)
print(
    json.dumps({"event": "final", "total_s": round(time.perf_counter() - t0, 1), **final}),
    flush=True,
)
