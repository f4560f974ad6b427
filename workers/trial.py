"""The Ray-side trial: resolve the config, attach the data, train, report to Tune and MLflow.

Tune reuses this process for many trials (`reuse_actors=True`), so what is expensive and
shared stays at module level: torch and Lightning stay imported, attached Arrow files stay
memory-mapped, the MLflow client stays connected (tracking.client is cached).
"""

from __future__ import annotations

import functools
import socket
import tempfile
from pathlib import Path
from typing import Any

from ray import tune

from divsweep import tracking
from divsweep.trainer.config import flat_params, trial_key

# Evaluations not yet in MLflow (tracking server away), in the trial's Tune folder, so a
# retry or resume of the trial finds and sends them before anything newer.
BUFFER_FILE = "mlflow-pending.jsonl"


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. `config["trial"]` is a resolved TrialConfig; `config["divsweep"]`
    carries the tracking URI, experiment id, parent run id, sweep name and cache dir."""
    import ray
    import torch

    from divsweep.trainer.config import TrialConfig
    from divsweep.trainer.data import TrialDataModule
    from divsweep.trainer.fit import fit_datamodule

    ctx = config["divsweep"]
    trial = TrialConfig.model_validate(config["trial"])
    accelerator, cpus, gpu_ids = _placement()
    torch.set_num_threads(cpus)
    data = _build(trial.data, trial.eval, ctx.get("cache_dir"))
    eval_sets = {"seen": _attached(data.eval_seen), "unseen": _attached(data.eval_unseen)}
    datamodule = TrialDataModule(_attached(data.train), eval_sets, trial.train, trial.seed)

    mlf = tracking.client(ctx["tracking_uri"])
    tags = {
        tracking.SWEEP: ctx["sweep"],
        "divsweep.node": socket.gethostname(),
        # two nodes can share a host name (several per machine, containers)
        "divsweep.node_id": ray.get_runtime_context().get_node_id(),
        "divsweep.accelerator": accelerator,
        "divsweep.gpu_ids": ",".join(gpu_ids),
    }
    run_id, logged_step = tracking.open_trial(
        mlf, ctx["experiment_id"], ctx["parent_run_id"], trial_key(trial), flat_params(trial), tags
    )
    buffer = tracking.MetricBuffer(
        mlf, run_id, Path(tune.get_context().get_trial_dir()) / BUFFER_FILE
    )
    logged_step = max(logged_step, buffer.last_step())
    buffer.flush(wait=True)

    total_steps = trial.train.total_steps(len(datamodule.train_set))
    closed = False  # whether this attempt marked the run finished

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        nonlocal closed
        step = int(metrics["step"])
        # Marked finished before tune.report: a scheduler may end the trial inside it
        # (SystemExit) even at its last step (ASHA stops every trial that reaches max_t).
        last = step >= total_steps
        # A resumed trial repeats evaluations after its last Tune checkpoint; MLflow already
        # holds those up to `logged_step`, so they are not logged twice.
        if step > logged_step:
            buffer.log(metrics, step, last=last)
        elif last:
            tracking.set_status(mlf, run_id, "finished")
        closed = closed or last
        checkpoint = (
            None if checkpoint_dir is None else tune.Checkpoint.from_directory(checkpoint_dir)
        )
        tune.report(metrics, checkpoint=checkpoint)

    with tempfile.TemporaryDirectory(prefix="divsweep-trial-") as workdir:
        resume_from = _restore_checkpoint(Path(workdir) / "restored")
        try:
            fit_datamodule(
                trial,
                datamodule,
                resume_from=resume_from,
                report=report,
                workdir=Path(workdir),
                accelerator=accelerator,
            )
        except Exception:
            tracking.set_status(mlf, run_id, "failed")
            raise
    # A trial stopped early by the scheduler ends inside `tune.report` (SystemExit) and never
    # gets here; the driver marks it `stopped`. One restored from its final checkpoint (the
    # driver died after the trial ended, before Tune saved that) trains and reports nothing:
    # its reopened run is closed here.
    if not closed:
        tracking.set_status(mlf, run_id, "finished")


def _placement() -> tuple[str, int, list[str]]:
    """(Lightning accelerator, CPU threads, GPU ids) from what Ray assigned to this trial."""
    import ray
    import torch

    resources = tune.get_context().get_trial_resources().required_resources
    cpus = max(1, int(resources.get("CPU", 1)))
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPU(s); with none assigned, or no CUDA
    # (fake GPUs in tests), the trial trains on CPU.
    accelerator = "gpu" if gpu_ids and torch.cuda.is_available() else "cpu"
    return accelerator, cpus, gpu_ids


def _restore_checkpoint(target: Path) -> Path | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    return Path(checkpoint.to_directory(str(target)))


@functools.lru_cache(maxsize=64)
def _build(data, eval_cfg, cache_dir: str | None):
    # The driver built every dataset before trials started, so this is a cache hit; on a
    # node that lacks the file (no shared cache) it builds it once, under the data lock.
    from divsweep.datasets import build

    return build(data, eval_cfg, cache_dir=None if cache_dir is None else Path(cache_dir))


@functools.lru_cache(maxsize=32)
def _attached(path: Path):
    from divsweep.datasets import attach
    from divsweep.trainer.data import TokenTable

    return TokenTable.from_attached(attach(path))
