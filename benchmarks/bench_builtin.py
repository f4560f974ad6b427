"""The built-in GPT trained through the generic trial (the class_path form, trainer/builtin.py)
against the built-in path (trainer/fit.py), on the same data, side by side in one process.

`python -m benchmarks bench_builtin`. The demo's trial at 64 instructions, 600 steps with an
evaluation every 300 (both paths evaluate at the same steps), one CPU thread; the two paths
alternate, REPEATS times each, and each path's median wall time is compared: built-in ÷
generic is the generic path's speed as a fraction of the built-in's (goal >= 0.97).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_table import record
from divsweep.datasets import build
from divsweep.orchestrator.spec import load_spec
from divsweep.trainer.builtin import as_class_path
from divsweep.trainer.callback import ReportEachValidation
from divsweep.trainer.config import trial_key
from divsweep.trainer.fit import fit
from divsweep.trainer.user_fit import fit_user_trial
from divsweep.trainer.user_trial import build_data

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVAL_EVERY, REPEATS = 600, 300, 3


def main() -> None:
    torch.set_num_threads(1)
    demo = load_spec(ROOT / "configs" / "demo.yaml").trials()[1]
    train = demo.train.model_copy(update={"max_steps": STEPS, "eval_every": EVAL_EVERY})
    builtin = demo.model_copy(update={"train": train})
    generic = as_class_path(builtin)
    seconds: dict[str, list[float]] = {"built-in": [], "generic": []}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        data = build(builtin.data, builtin.eval, cache)
        assert build_data(generic.data, generic.eval, cache) == data  # the same files

        def run_builtin(workdir: Path) -> None:
            fit(builtin, data, workdir=workdir)

        def run_generic(workdir: Path) -> None:
            callback = ReportEachValidation(workdir, None, trial_key(generic), None)
            fit_user_trial(generic, callback, data=data)

        for repeat in range(REPEATS):
            for name, run in (("built-in", run_builtin), ("generic", run_generic)):
                start = time.perf_counter()
                run(Path(tmp) / f"{name}-{repeat}")
                seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    record(
        "builtin",
        {
            "builtin: generic trial speed / built-in path (same GPT, data, steps)": (
                median["built-in"] / median["generic"],
                ">= 0.97",
            ),
            f"builtin: built-in path s, {STEPS} steps (info)": (median["built-in"], ""),
            f"builtin: generic trial s, {STEPS} steps (info)": (median["generic"], ""),
        },
    )


if __name__ == "__main__":
    main()
