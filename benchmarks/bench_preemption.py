"""Checkpoint on notice (trainer/preemption.py, trainer/notice.py): the steps a preemption loses
and the time from its notice to its checkpoint reported, for the cpu-repro model and the paper
model on the CPU.

`python -m benchmarks bench_preemption`. A trial of each model (its spec's model and batch size,
on trial-tiny's data: the model's size, not the data's, sets the checkpoint) trains while notices
come at random moments from another thread, mid-step, as the SIGTERM handler and the drain
watcher give them; each attempt stops at its checkpoint on notice and the next resumes from it.
Steps lost: steps an attempt trained past the step its successor started from (trained twice;
tests/test_drills_preemption.py checks the same on real Ray). Notice to checkpoint: from
the notice to its checkpoint reported, i.e. the rest of the step in flight plus the write, the
notice a node needs at least; checkpoint write: `checkpoint.write` alone, median of three.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from benchmarks.results_table import record
from benchmarks.training import training_loop
from divsweep.datasets import build
from divsweep.orchestrator.spec import load_spec
from divsweep.trainer import checkpoint, notice
from divsweep.trainer.config import TrialConfig, load_trial_config, trial_key
from divsweep.trainer.data import TrialDataModule
from divsweep.trainer.fit import fit
from divsweep.trainer.pause import PAUSE_DIR, starts

ROOT = Path(__file__).parents[1]
MODELS = {"cpu_repro": "cpu-repro.yaml", "paper": "paper.yaml"}  # in configs/
NOTICES = 3  # per model
NOTICE_AFTER_S = (2.0, 4.0)  # when in an attempt a notice comes (uniform): after start-up
NEVER = 10**7  # steps: no attempt ends or evaluates before its notice


def model_trial(spec: Path) -> TrialConfig:
    """trial-tiny with `spec`'s model and batch size, on one thread (steadier on a shared box)."""
    first = load_spec(spec).trials()[0]
    base = load_trial_config(ROOT / "configs" / "trial-tiny.yaml")
    train = {
        "batch_size": first.train.batch_size,
        "max_steps": NEVER,
        "eval_every": NEVER,
        "num_threads": 1,
        "precision": "32-true",
    }
    return base.model_copy(
        update={"model": first.model, "train": base.train.model_copy(update=train)}
    )


def preempted_attempts(cfg: TrialConfig, data, workdir: Path, rng) -> dict:
    """NOTICES attempts, each stopped by a notice and the next resumed from its checkpoint:
    the steps each preemption lost (the stopped attempt's last step against the step its
    successor started from, as the drill hook records it), and how long each notice took."""
    resume, stopped_at, notice_to_report, sizes = None, [], [], []
    for attempt in range(NOTICES):
        # each attempt in a fresh process would hear its own notice: here, a fresh Notice
        notice.NOTICE = fresh = notice.Notice()
        given: list[float] = []
        reported: dict = {}

        def report(metrics, folder, reported=reported):
            reported.update(at=time.perf_counter(), folder=folder)

        def give(fresh=fresh, given=given):
            given.append(time.perf_counter())
            fresh.give(notice.SIGTERM)

        timer = threading.Timer(rng.uniform(*NOTICE_AFTER_S), give)
        timer.start()
        try:
            fit(cfg, data, resume_from=resume, report=report,
                           workdir=workdir / f"attempt-{attempt}", accelerator="cpu")  # fmt: skip
        except notice.Preempted as stopped:
            stopped_at.append(stopped.step)
        else:
            raise AssertionError("the attempt ended without its notice")
        notice_to_report.append(reported["at"] - given[0])
        sizes.append(sum(f.stat().st_size for f in reported["folder"].iterdir()) / 1e6)
        resume = reported["folder"]
    first_steps = starts(workdir / "pauses", trial_key(cfg))[1:]  # of each resumed attempt
    lost = [last - (first - 1) for last, first in zip(stopped_at, first_steps, strict=False)]
    return {"lost": lost, "notice_to_report_s": notice_to_report, "checkpoint_mb": sizes}


def write_s(cfg: TrialConfig, dm: TrialDataModule, workdir: Path) -> float:
    """Seconds `checkpoint.write` takes for the model (and its optimizer state) after a step."""
    trainer, module = training_loop(cfg, 1, "cpu", [])
    trainer.fit(module, datamodule=dm)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        checkpoint.write(trainer, workdir)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    rng = random.Random(0)
    torch.set_num_threads(1)
    figures: dict[str, tuple[float, str]] = {}
    lost: list[int] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, spec in MODELS.items():
            cfg = model_trial(ROOT / "configs" / spec)
            data = build(cfg.data, cfg.eval, Path(scratch) / "cache")
            dm = TrialDataModule.attach(data, cfg.train, cfg.seed)
            # the drill hook's record of where each attempt started (it pauses nowhere here)
            os.environ[PAUSE_DIR] = str(Path(scratch) / name / "pauses")
            got = preempted_attempts(cfg, data, Path(scratch) / name, rng)
            del os.environ[PAUSE_DIR]
            written = write_s(cfg, dm, Path(scratch) / name / "write")
            figures[f"preemption.{name}.checkpoint_write_s"] = (written, "")
            lost += got["lost"]
            figures[f"preemption.{name}.notice_to_checkpoint_s"] = (
                statistics.mean(got["notice_to_report_s"]),
                "",
            )
            figures[f"preemption.{name}.notice_to_checkpoint_max_s"] = (
                max(got["notice_to_report_s"]),
                "",
            )
            size = statistics.mean(got["checkpoint_mb"])
            figures[f"preemption.{name}.checkpoint_mb"] = (size, "")
    figures["preemption.steps_lost_per_preemption"] = (statistics.mean(lost), "<= 1")
    record("preemption", figures)


if __name__ == "__main__":
    main()
