"""`divsweep run | resume | status | report`: the sweep commands of the one CLI."""

from __future__ import annotations

from pathlib import Path

import typer

from divsweep.errors import UserError

DEFAULT_URI = "sqlite:///mlflow.db"
ADDRESS = typer.Option(
    None, "--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001."
)


def run(
    spec: Path = typer.Argument(..., help="Sweep spec YAML."),
    address: str | None = ADDRESS,
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: the spec's)."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the report at the end."),
) -> None:
    """Run a sweep: every trial scheduled by Ray Tune, tracked in MLflow, then the report."""
    from divsweep.orchestrator.run import run as run_sweep
    from divsweep.orchestrator.spec import load_spec

    loaded = load_spec(spec)  # a bad spec fails here, before Ray or MLflow start
    sweep = run_sweep(loaded, address=address, tracking_uri=tracking_uri)
    _finish(sweep, no_report)


def resume(
    experiment: str = typer.Argument(..., help="Experiment (sweep) name to continue."),
    address: str | None = ADDRESS,
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Where the sweep's parent run is (to find its folder)."
    ),
    storage_path: Path | None = typer.Option(
        None, "--storage-path", help="The spec's storage_path, if not the default."
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the report at the end."),
) -> None:
    """Continue an interrupted sweep (Ctrl-C, driver crash) from its trials' checkpoints."""
    from divsweep.orchestrator.run import resume as resume_sweep

    sweep = resume_sweep(
        experiment, address=address, tracking_uri=tracking_uri, storage_path=storage_path
    )
    _finish(sweep, no_report)


def status(
    experiment: str | None = typer.Argument(None, help="One sweep; default: every sweep."),
    tracking_uri: str = typer.Option(DEFAULT_URI, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Trials by state, best accuracy so far, progress and ETA (read from MLflow)."""
    from rich.console import Console

    from divsweep.orchestrator.status import sweep_names, sweep_status, table
    from divsweep.tracking import absolute_uri, check_reachable

    check_reachable(absolute_uri(tracking_uri))

    names = [experiment] if experiment else sweep_names(tracking_uri)
    if not names:
        raise UserError(f"no divsweep sweeps in {tracking_uri}")
    Console().print(table([sweep_status(name, tracking_uri) for name in names]))


def report(
    experiment: str = typer.Argument(..., help="Experiment (sweep) name."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default reports/NAME)."),
    tracking_uri: str = typer.Option(DEFAULT_URI, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Write the sweep's report (HTML, Markdown, figures) and log it to its parent run."""
    from divsweep import report as write
    from divsweep.tracking import absolute_uri, check_reachable

    check_reachable(absolute_uri(tracking_uri))
    path = write(experiment, tracking_uri=tracking_uri, out_dir=out)
    typer.echo(f"report: {path}")


def _finish(sweep, no_report: bool) -> None:
    if sweep.interrupted:
        typer.echo(
            f"sweep interrupted; continue with: divsweep resume {sweep.experiment}", err=True
        )
        raise typer.Exit(130)  # as for any Ctrl-C
    typer.echo(f"sweep {sweep.name} finished; MLflow: {sweep.tracking_uri}")
    if no_report:
        return
    try:
        from divsweep import report as write

        path = write(sweep.experiment, tracking_uri=sweep.tracking_uri)
    except ModuleNotFoundError as err:
        if "report" not in str(err):
            raise
        typer.echo("report module not installed; skipping the report", err=True)
        return
    typer.echo(f"report: {path}")


def register(app: typer.Typer) -> None:
    for command in (run, resume, status, report):
        app.command(command.__name__)(command)
