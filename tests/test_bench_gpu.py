"""The GPU benchmark's pieces, run on the CPU: its trials, and the packed-process harness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.bench_gpu import packed_windows, study_trial
from benchmarks.results_table import RESULTS
from divsweep.trainer.config import load_trial_config

REPO = Path(__file__).resolve().parents[1]


def test_study_trial_keeps_the_study_model_on_a_small_budget():
    trial = study_trial("configs/paper.yaml", 1000, 200_000, 300)
    assert (trial.model.n_layers, trial.model.d_model, trial.train.batch_size) == (6, 256, 256)
    assert trial.data.n_instructions == 1000 and trial.data.total_examples == 200_000
    assert trial.train.total_steps(200_000) == 300


@pytest.mark.slow
def test_packed_trainers_train_together_and_add_up(tmp_path: Path):
    base = load_trial_config(REPO / "configs" / "trial-tiny.yaml")
    cfg = base.model_copy(update={"train": base.train.model_copy(update={"max_steps": 80})})
    (alone,) = packed_windows(cfg, 1, tmp_path, "cpu")
    together = packed_windows(cfg, 2, tmp_path, "cpu")
    # Behaviour only: the harness reports each packed trainer, and each trained the whole
    # window on the batches one alone trains on (same seed). How much faster two are than one
    # depends on what else the cores run: that ratio is `make bench`'s (bench_gpu on a GPU).
    assert len(together) == 2
    assert alone["tokens"] > 0
    assert [w["tokens"] for w in together] == [alone["tokens"]] * 2
    assert all(0 < w["start"] < w["end"] for w in (alone, *together))


@pytest.mark.skipif(torch.cuda.is_available(), reason="measures for real on a GPU")
def test_without_cuda_it_measures_nothing():
    before = RESULTS.read_text() if RESULTS.exists() else None
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks", "bench_gpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "no CUDA device here; nothing measured" in out
    after = RESULTS.read_text() if RESULTS.exists() else None
    assert before == after


def test_gpu_benchmarks_run_without_ray_or_mlflow():
    # the GPU machine's image has neither (scripts/device-check.sh): importing either fails
    code = (
        "import sys; sys.modules.update(ray=None, mlflow=None)\n"
        "import benchmarks.bench_gpu, benchmarks.bench_trainer\n"
        "from divsweep.trainer.fit import fit\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
