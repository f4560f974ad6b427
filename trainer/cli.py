"""`divsweep train TRIAL.yaml`: one trial on this machine, no Ray; MLflow only when asked."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from divsweep import tracking  # no MLflow import until a run is opened
from divsweep.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("train")(train)


def train(
    config: Path = typer.Argument(
        ...,
        help="trial YAML: the built-in study's (data, eval, model, train, seed) or your own "
        "LightningModule's (model, datamodule, trainer, data, seed)",
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI; nothing is logged without one"
    ),
    workdir: Path = typer.Option(
        Path(".divsweep/trials"), "--workdir", help="checkpoints go under DIR/<trial key>/"
    ),
    experiment: str = typer.Option("divsweep-train", "--experiment", help="MLflow experiment"),
) -> None:
    """Train and evaluate one trial, print its metrics, optionally log them to MLflow."""
    # Heavy imports here, not at module level: `divsweep --help` must stay fast.
    from divsweep.trainer.config import load_trial_config, trial_key

    cfg = load_trial_config(config)
    key = trial_key(cfg)
    tracker = MlflowTrial(tracking_uri, experiment, cfg, key) if tracking_uri else None
    try:
        metrics = _fit(cfg, workdir / key, tracker.log if tracker else None)
    except BaseException:
        if tracker:
            tracker.end("failed")
        raise
    if tracker:
        tracker.end("finished")
    print_metrics(metrics, key)


def _fit(cfg, workdir: Path, report) -> dict[str, float]:
    """One trial of either kind, as a sweep's worker trains it (without Ray)."""
    from divsweep.trainer.builtin import trained_form
    from divsweep.trainer.callback import ReportEachValidation
    from divsweep.trainer.config import trial_key
    from divsweep.trainer.fit import fit_user_trial
    from divsweep.trainer.user_trial import build_data

    trial = trained_form(cfg)
    data = None if trial.data is None else build_data(trial.data, trial.eval)
    callback = ReportEachValidation(workdir, report, trial_key(cfg), selection=None)
    return fit_user_trial(trial, callback, data=data)


class MlflowTrial:
    """The trial's one MLflow run (no parent, unlike a sweep's): params up front, metrics at
    every evaluation, with the retries a sweep's trials get (divsweep/tracking.py)."""

    def __init__(self, uri: str, experiment: str, cfg, key: str) -> None:
        from divsweep.trainer.config import flat_params

        uri = tracking.absolute_uri(uri)
        tracking.check_reachable(uri, create=True)
        self.mlf = tracking.client(uri)
        try:
            exp_id = tracking.experiment_id(self.mlf, experiment)
            self.run_id = tracking.create_trial_run(
                self.mlf, exp_id, key, key, flat_params(cfg), tags={}
            )
        except Exception as err:  # a server that answers with an error: the user's to fix
            raise UserError(f"cannot log to MLflow at {uri}: {err}") from err

    def log(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        # one timestamp for every attempt: MLflow drops a resend identical to a logged point
        stamp = int(time.time() * 1000)
        step = int(metrics["step"])
        tracking.retrying(
            tracking.log_metrics, self.mlf, self.run_id, metrics, step, timestamp_ms=stamp
        )

    def end(self, status: str) -> None:
        tracking.set_status(self.mlf, self.run_id, status)


def print_metrics(metrics: dict[str, float], key: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trial {key}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4g}")
    Console().print(table)
