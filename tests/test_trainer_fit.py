"""fit(): real Lightning on tiny models and tiny real Arrow datasets, on the CPU. A trial of the
built-in spec form trains as its class_path form (trainer/builtin.py) under divsweep's callback."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from divsweep import tracking
from divsweep.datasets import build
from divsweep.datasets.sampling import allocate
from divsweep.trainer import notice, predictions
from divsweep.trainer.builtin import as_class_path
from divsweep.trainer.callback import ReportEachValidation
from divsweep.trainer.checkpoint import CHECKPOINT_FILE
from divsweep.trainer.config import TrialConfig, parse_trial_config, trial_key
from divsweep.trainer.fit import build_modules, build_trainer, fit
from divsweep.trainer.pause import PAUSE_AT_BOUNDARY, PAUSE_DIR, paused, starts

TASK = {
    "alphabet_size": 4,
    "pattern_length": [1, 1],
    "replacement_length": [1, 1],
    "input_length": [2, 3],
    "p_pattern_present": 0.7,
    "n_unseen": 4,
}
EVAL = {"seen_examples": 32, "unseen_instructions": 2, "unseen_examples_per_instruction": 16,
        "validation_instructions": 2}  # fmt: skip
MODEL = {"n_layers": 2, "d_model": 32, "n_heads": 4, "max_len": 32}
TIMING = {"output_tokens_per_s", "wall_time_s"}


def trial(data: dict | None = None, model: dict | None = None, **train) -> TrialConfig:
    return parse_trial_config(
        {
            "data": data or {"task": TASK, "n_instructions": 4, "examples_per_instruction": 16},
            "eval": EVAL,
            "model": {**MODEL, **(model or {})},
            "train": {"batch_size": 16, "warmup_steps": 5, "lr": 3e-3, "num_threads": 1, **train},
        }
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data-cache")


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[dict, Path]] = []
        self.stop_after = stop_after

    def __call__(self, metrics: dict, checkpoint_dir: Path) -> None:
        assert (checkpoint_dir / CHECKPOINT_FILE).is_file()  # resumable when reported
        self.calls.append((metrics, checkpoint_dir))
        if self.stop_after == len(self.calls):
            raise Interrupted


class Interrupted(Exception):
    """Stands in for a killed worker: raised right after a checkpoint is reported."""


@pytest.fixture(scope="module")
def overfit(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Recorder:
    """Train on 64 examples and score on those same examples (seen := train)."""
    cfg = trial(model={"d_model": 64}, max_steps=300, eval_every=50)
    generic = as_class_path(cfg)
    module, dm = build_modules(generic, build(cfg.data, cfg.eval, cache))
    dm.eval_sets["seen"] = dm.train_set
    rec, workdir = Recorder(), tmp_path_factory.mktemp("overfit")
    callback = ReportEachValidation(workdir, rec, trial_key(cfg), selection=None)
    build_trainer(generic, [callback], workdir).fit(module, datamodule=dm)
    return rec


def test_overfits_a_tiny_dataset_to_full_exact_match(overfit: Recorder) -> None:
    final = overfit.calls[-1][0]
    assert final["step"] == 300
    assert final["seen/exact_match"] == 1.0
    assert final["seen/token_acc"] == 1.0


def test_loss_decreases(overfit: Recorder) -> None:
    losses = [m["train/loss"] for m, _ in overfit.calls]
    assert len(losses) == 6
    assert losses[-1] < losses[0] / 10
    assert losses[1] < losses[0]


def test_bf16_autocast_with_gradient_clipping_trains(cache: Path, tmp_path: Path) -> None:
    """What a GPU trial gets by default (bf16-mixed, grad_clip 1.0), here on the CPU's autocast:
    the optimizer must be one Lightning can clip for under mixed precision."""
    cfg = trial(max_steps=4, eval_every=4, precision="bf16-mixed")
    assert cfg.train.grad_clip
    final = fit(cfg, build(cfg.data, cfg.eval, cache), report=Recorder(), workdir=tmp_path)
    assert final["step"] == 4 and math.isfinite(final["train/loss"])


def test_train_num_threads_sets_the_trials_cpu_threads(cache: Path, tmp_path: Path) -> None:
    """`train.num_threads` wins over the threads the process had (a worker sets Ray's CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = trial(max_steps=2, eval_every=2, num_threads=1)
        fit(cfg, build(cfg.data, cfg.eval, cache), workdir=tmp_path)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_metric_names_ranges_and_checkpoints(cache: Path, tmp_path: Path) -> None:
    data = {
        "task": TASK,
        "n_instructions": 8,
        "distribution": "powerlaw",
        "alpha": 0.05,
        "budget": 64,
    }
    cfg = trial(data=data, max_steps=20, eval_every=10)
    assert (allocate(cfg.data) == 0).any()  # so that some rules of the set were never trained
    rec = Recorder()
    final = fit(cfg, build(cfg.data, cfg.eval, cache), report=rec, workdir=tmp_path)
    assert [m["step"] for m, _ in rec.calls] == [10, 20]
    assert final == rec.calls[-1][0]
    assert set(final) == {
        "train/loss",
        "seen/exact_match",
        "seen/token_acc",
        "seen_head/exact_match",
        "seen_tail/exact_match",
        "seen_never_trained/exact_match",
        "unseen/exact_match",
        "unseen/token_acc",
        "unseen_noop/exact_match",
        "unseen_applied/exact_match",
        "unseen_val/exact_match",
        "unseen_val/token_acc",
        "unseen_val_noop/exact_match",
        "unseen_val_applied/exact_match",
        "step",
        "epoch",
        "examples_seen",
        "output_tokens_per_s",
        "wall_time_s",
    }
    for name, value in final.items():
        assert math.isfinite(value), name
        if "exact_match" in name or "token_acc" in name:
            assert 0.0 <= value <= 1.0, name
    assert final["examples_seen"] == 20 * 16
    assert final["epoch"] == pytest.approx(20 * 16 / 64)
    assert final["output_tokens_per_s"] > 0 and final["wall_time_s"] > 0
    # only the newest checkpoint is kept, and only after it was reported
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000020"]
    # seen metrics are over trained rules; the never-trained ones are their own split
    rows = predictions.read(tmp_path / "checkpoints" / "step-00000020" / predictions.FILE)
    seen, never = rows[rows["split"] == "seen"], rows[rows["split"] == "seen_never_trained"]
    zero = {cfg.data.task.n_unseen + i for i in np.flatnonzero(allocate(cfg.data) == 0)}
    assert set(never["rule_id"]) <= zero and zero.isdisjoint(seen["rule_id"]) and len(never)
    assert final["seen/exact_match"] == pytest.approx(seen["correct"].mean())
    assert final["seen_never_trained/exact_match"] == pytest.approx(never["correct"].mean())
    assert set(rows["split"]) == {"seen", "seen_never_trained", "unseen", "unseen_val"}


def test_resumed_run_ends_with_the_same_metrics(cache: Path, tmp_path: Path) -> None:
    # Dropout on: an exact resume needs the RNG stream as well as weights, optimizer and data.
    cfg = trial(model={"dropout": 0.1}, max_steps=40, eval_every=15)
    data = build(cfg.data, cfg.eval, cache)
    straight = fit(cfg, data, workdir=tmp_path / "straight")

    first = Recorder(stop_after=1)
    with pytest.raises(Interrupted):
        fit(cfg, data, report=first, workdir=tmp_path / "interrupted")
    ((_, checkpoint_dir),) = first.calls
    second = Recorder()
    resumed = fit(
        cfg, data, resume_from=checkpoint_dir, report=second, workdir=tmp_path / "interrupted"
    )

    assert [m["step"] for m, _ in second.calls] == [30, 40]
    assert set(resumed) == set(straight)
    for name in set(straight) - TIMING:
        assert resumed[name] == pytest.approx(straight[name], rel=1e-5, abs=1e-6), name

    # resuming a finished run trains nothing more and returns its final metrics
    third = Recorder()
    again = fit(cfg, data, resume_from=second.calls[-1][1], report=third, workdir=tmp_path / "done")
    assert again == resumed and third.calls == []


def test_notice_between_evaluations_checkpoints_that_step_and_resumes_exactly(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a fresh notice for this test: the process's own is set once and for good
    fresh = notice.Notice()
    monkeypatch.setattr(notice, "NOTICE", fresh)
    cfg = trial(model={"dropout": 0.1}, max_steps=40, eval_every=15)
    data = build(cfg.data, cfg.eval, cache)
    straight = fit(cfg, data, workdir=tmp_path / "straight")
    pauses = tmp_path / "pauses"
    monkeypatch.setenv(PAUSE_DIR, str(pauses))
    monkeypatch.setenv(PAUSE_AT_BOUNDARY, "7")  # between the evaluations at 15 and 30

    first, stopped = Recorder(), []

    def train() -> None:
        with pytest.raises(notice.Preempted) as raised:
            fit(cfg, data, report=first, workdir=tmp_path / "preempted")
        stopped.append(raised.value.step)

    trainer = threading.Thread(target=train)
    trainer.start()
    while not paused(pauses):  # the step boundary at 7, where the notice will find the trial
        trainer.join(0.05)
    fresh.give(notice.SIGTERM)
    trainer.join(120)
    assert stopped == [7]
    ((metrics, checkpoint_dir),) = first.calls  # no evaluation: the notice's checkpoint only
    assert metrics["step"] == 7 and metrics[tracking.PREEMPTIONS] == 1

    monkeypatch.setattr(notice, "NOTICE", notice.Notice())  # the retry's process
    second = Recorder()
    resumed = fit(
        cfg, data, resume_from=checkpoint_dir, report=second, workdir=tmp_path / "preempted"
    )
    assert starts(pauses, trial_key(cfg)) == [1, 8]  # trained from the next step, not from 0
    assert [m["step"] for m, _ in second.calls] == [15, 30, 40]
    assert tracking.PREEMPTIONS not in second.calls[-1][0]  # reported with the notice only
    for name in set(straight) - TIMING:
        assert resumed[name] == pytest.approx(straight[name], rel=1e-5, abs=1e-6), name


def test_max_len_too_small_is_a_spec_error(cache: Path, tmp_path: Path) -> None:
    from divsweep.errors import SpecError

    cfg = trial(model={"max_len": 8}, max_steps=2, eval_every=1)
    with pytest.raises(SpecError, match=r"^model max_len: the longest prompt \+ output is"):
        fit(cfg, build(cfg.data, cfg.eval, cache), workdir=tmp_path)
