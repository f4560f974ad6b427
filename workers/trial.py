"""The Ray-side trial: resolve the config, attach the data, train, report to Tune.

Tune reuses this process for many trials (`reuse_actors=True`), so what is expensive and
shared stays at module level: torch and Lightning stay imported, attached Arrow files stay
memory-mapped. Tracking is the driver's (orchestrator/tracker.py): a trial reports to Tune,
with where it runs, and this process never imports MLflow.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import socket
import tempfile
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.trainable.function_trainable import wrap_function

from divsweep.workers.inputs import describe
from divsweep.workers.sysmetrics import Sampler

# The key of what a trial adds to each result for the driver's tracking: the names of its
# metrics (the rest of a Tune result is Tune's), its total steps, where it runs (tags), its
# system metrics since the last result (`SYSTEM`), with an attempt's first result its datasets
# (`DATASETS`) and, with the checkpoint a preemption notice made, the notice's source
# (`PREEMPTED`).
TRACKING, DATASETS, SYSTEM, PREEMPTED = "divsweep", "datasets", "system", "preempted"


def preemptible(function):
    """`function` as a Tune trainable whose process hears preemption notices from its start
    (trainer/notice.py). Tune runs a function trial in a thread of its own, and only the
    main thread, where the trainable's `setup` runs, may set a SIGTERM handler."""

    class Preemptible(wrap_function(function)):
        def setup(self, config):
            # imported here: the class travels by value (cloudpickle), its globals with it;
            # both are light (no torch, no Lightning): setup must stay quick
            import ray

            from divsweep.trainer import notice

            notice.NOTICE.listen(ray.get_runtime_context().get_node_id())
            super().setup(config)

    return Preemptible


def run_trial(config: dict[str, Any]) -> None:
    """Tune function trainable. `config["trial"]` is a resolved trial: the user's LightningModule
    and datamodule (trainer/user_trial.py) or the built-in spec form, which trains as its
    class_path form (trainer/builtin.py). Each validation end is one Tune report of what the
    module logged, with its checkpoint; `config["divsweep"]` carries the cache dir and the
    selection metric."""
    import torch

    from divsweep.trainer.builtin import trained_form
    from divsweep.trainer.callback import ReportEachValidation
    from divsweep.trainer.config import parse_trial_config, trial_key
    from divsweep.trainer.fit import fit_user_trial

    ctx = config["divsweep"]
    spec_form = parse_trial_config(config["trial"])
    # keyed as the driver keys it: pause drills and logs name the spec's trial
    trial, key = trained_form(spec_form), trial_key(spec_form)
    accelerator, cpus, gpu_ids = _placement()
    torch.set_num_threads(cpus)
    data = None if trial.data is None else _build(trial.data, trial.eval, ctx.get("cache_dir"))
    unreported = (
        [] if data is None else [describe(p, k) for k, p in dataclasses.asdict(data).items()]
    )
    with (
        Sampler(gpu_ids) as sampler,
        tempfile.TemporaryDirectory(prefix="divsweep-trial-") as workdir,
    ):
        selection = ctx.get("selection_metric")
        send = _reporter(placement_tags(accelerator, gpu_ids), sampler, unreported, selection)

        def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
            # the callback knows the trial's length once training starts
            send(metrics, checkpoint_dir, callback.total_steps)

        callback = ReportEachValidation(Path(workdir), report, key, selection)
        fit_user_trial(
            trial,
            callback,
            data=data,
            resume_from=_restore_checkpoint(Path(workdir) / "restored"),
            accelerator=accelerator,
        )


def placement_tags(accelerator: str, gpu_ids: list[str]) -> dict[str, str]:
    """Where this trial runs, as its MLflow run's tags."""
    import ray

    return {
        "divsweep.node": socket.gethostname(),
        # two nodes can share a host name (several per machine, containers)
        "divsweep.node_id": ray.get_runtime_context().get_node_id(),
        "divsweep.accelerator": accelerator,
        "divsweep.gpu_ids": ",".join(gpu_ids),
    }


def _reporter(
    placement: dict[str, str], sampler: Sampler, unreported: list[dict], selection: str | None
):
    """`report(metrics, checkpoint_dir, total_steps)`: one Tune result with what the driver's
    tracking needs (metric names, where the trial runs, its system metrics since the last
    report, with an attempt's first report its datasets, with a notice's checkpoint the
    notice's source)."""
    evaluated: dict[str, float] = {}  # the selection metric's last value, this attempt

    def report(metrics: dict[str, float], checkpoint_dir: Path | None, total_steps) -> None:
        from divsweep.trainer import notice

        checkpoint = (
            None if checkpoint_dir is None else tune.Checkpoint.from_directory(checkpoint_dir)
        )
        info = {"metrics": list(metrics), "total_steps": total_steps, "tags": placement}
        info[SYSTEM] = sampler.take()
        if unreported:
            info[DATASETS] = unreported.copy()
            unreported.clear()
        carried = {}
        if selection in metrics:
            evaluated[selection] = metrics[selection]
        elif selection is not None and notice.NOTICE.given.is_set():
            # Tune's searchers and schedulers read the selection metric in every result, and
            # a notice's checkpoint comes without an evaluation: the last one's value (NaN
            # before any, which they skip), for Tune only (not in `info`: MLflow has it)
            carried[selection] = evaluated.get(selection, math.nan)
        if notice.NOTICE.given.is_set():  # after a notice, one report: its checkpoint
            info[PREEMPTED] = notice.NOTICE.source
        tune.report({**carried, **metrics, TRACKING: info}, checkpoint=checkpoint)

    return report


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
    # build_data serves every kind of data section: generated (built-in or a user trial's)
    # and a user's grouped table.
    from divsweep.trainer.user_trial import build_data

    return build_data(data, eval_cfg, None if cache_dir is None else Path(cache_dir))
