"""`divsweep run | resume | status | report`: the sweep commands of the one CLI.

Exit codes: 0 every trial finished (or was stopped early by the scheduler); 1 the sweep ran
to its end but some trials failed (the report still shows what finished); 2 bad input or a
sweep that could not start (spec, unreachable MLflow or Ray, storage a node cannot reach);
130 interrupted (Ctrl-C): `divsweep resume NAME` goes on.
"""

from __future__ import annotations

from pathlib import Path

import typer

from divsweep.errors import UserError
from divsweep.tracking import Status

DEFAULT_URI = "sqlite:///mlflow.db"
REPORTS = Path("reports")  # a sweep's report goes to reports/NAME (divsweep.report's default)
ADDRESS = typer.Option(
    None, "--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001."
)
STORAGE_HELP = (
    "Where sweeps live: s3://bucket/prefix, gs://..., file://... or a path "
    "(default: the spec's storage_path, .divsweep/ray_results)."
)
FAILED_EXIT = 1  # the sweep ended, some of its trials failed
TRACKING_HELP = (
    f"MLflow tracking URI (default: the sweep's, with --storage-path; else {DEFAULT_URI})."
)
LOCATE_HELP = "Find the sweep's MLflow URI from its sweep.json there (s3://..., a path)."


def _tracking_uri(experiment: str | None, given: str | None, storage_path: str | None) -> str:
    """The MLflow store to read: as given, else the one the sweep in `storage_path` wrote to."""
    if given is not None or storage_path is None:
        return given or DEFAULT_URI
    if experiment is None:
        raise UserError("--storage-path needs the sweep's name (or pass --tracking-uri)")
    from divsweep.orchestrator.run import locate

    return locate(experiment, storage_path=_storage(storage_path)).tracking_uri


def _storage(value: str | None) -> str | None:
    from divsweep.orchestrator import storage

    try:
        return None if value is None else storage.normalize(value)
    except ValueError as err:
        raise UserError(f"--storage-path: {err}") from None


def run(
    spec: Path = typer.Argument(..., help="Sweep spec YAML."),
    address: str | None = ADDRESS,
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: the spec's)."
    ),
    storage_path: str | None = typer.Option(None, "--storage-path", help=STORAGE_HELP),
    no_report: bool = typer.Option(
        False, "--no-report", help="No report: neither refreshed while it runs nor at the end."
    ),
) -> None:
    """Run a sweep: every trial scheduled by Ray Tune, tracked in MLflow, then the report.
    Exits 1 if any trial failed, 2 if the sweep could not start."""
    from divsweep.orchestrator.run import run as run_sweep
    from divsweep.orchestrator.spec import load_spec

    loaded = load_spec(spec)  # a bad spec fails here, before Ray or MLflow start
    if storage_path is not None:
        loaded = loaded.model_copy(update={"storage_path": _storage(storage_path)})
    report_dir = None if no_report else REPORTS / loaded.experiment
    sweep = run_sweep(loaded, address=address, tracking_uri=tracking_uri, report_dir=report_dir)
    _finish(sweep, report_dir)


def resume(
    experiment: str = typer.Argument(..., help="Experiment (sweep) name to continue."),
    address: str | None = ADDRESS,
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Where the sweep's parent run is (to find its folder)."
    ),
    storage_path: str | None = typer.Option(None, "--storage-path", help=STORAGE_HELP),
    no_report: bool = typer.Option(
        False, "--no-report", help="No report: neither refreshed while it runs nor at the end."
    ),
) -> None:
    """Continue an interrupted sweep (Ctrl-C, driver crash) from its trials' checkpoints, on
    this machine or any other that reaches its storage. Exits 1 if any trial failed."""
    from divsweep.orchestrator.run import resume as resume_sweep

    report_dir = None if no_report else REPORTS / experiment
    sweep = resume_sweep(
        experiment,
        address=address,
        tracking_uri=tracking_uri,
        storage_path=_storage(storage_path),
        report_dir=report_dir,
    )
    _finish(sweep, report_dir)


def status(
    experiment: str | None = typer.Argument(None, help="One sweep; default: every sweep."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    storage_path: str | None = typer.Option(None, "--storage-path", help=LOCATE_HELP),
    watch: bool = typer.Option(
        False, "--watch", help="Refresh in place until the sweep ends (exit 1 if trials failed)."
    ),
) -> None:
    """Trials by state, best accuracy so far, progress and ETA (read from MLflow)."""
    from rich.console import Console

    from divsweep.orchestrator.status import reports, sweep_names, sweep_status, table
    from divsweep.orchestrator.status import watch as watch_sweep
    from divsweep.tracking import absolute_uri, check_reachable

    if watch and experiment is None:
        raise UserError("status --watch: name the sweep to watch (EXPERIMENT)")
    tracking_uri = _tracking_uri(experiment, tracking_uri, storage_path)
    check_reachable(absolute_uri(tracking_uri))
    if watch:
        if watch_sweep(experiment, tracking_uri).counts.get(Status.FAILED):
            raise typer.Exit(FAILED_EXIT)
        return

    names = [experiment] if experiment else sweep_names(tracking_uri)
    if not names:
        raise UserError(f"no divsweep sweeps in {tracking_uri}")
    statuses = [sweep_status(name, tracking_uri) for name in names]
    Console().print(table(statuses))
    for line in reports(statuses):
        typer.echo(line)


def report(
    experiment: str = typer.Argument(..., help="Experiment (sweep) name."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default reports/NAME)."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_HELP),
    storage_path: str | None = typer.Option(None, "--storage-path", help=LOCATE_HELP),
) -> None:
    """Write the sweep's report (HTML, Markdown, figures) and log it to its parent run."""
    from divsweep import report as write
    from divsweep.tracking import absolute_uri, check_reachable

    tracking_uri = _tracking_uri(experiment, tracking_uri, storage_path)
    check_reachable(absolute_uri(tracking_uri))
    path = write(experiment, tracking_uri=tracking_uri, out_dir=out)
    typer.echo(f"report: {path.resolve()}")  # absolute: openable from anywhere


def _finish(sweep, report_dir: Path | None) -> None:
    if sweep.interrupted:
        typer.echo(
            f"sweep interrupted; continue with: divsweep resume {sweep.experiment}", err=True
        )
        raise typer.Exit(130)  # as for any Ctrl-C
    ended = ", ".join(f"{n} {status}" for status, n in sweep.outcome.items())
    failed = sweep.outcome.get(Status.FAILED, 0)
    verdict = "ended with failed trials" if failed else "finished"
    typer.echo(f"sweep {sweep.name} {verdict}: {ended}; MLflow: {sweep.tracking_uri}")
    # what finished is reported even when some trials failed; the exit code says they did
    if report_dir is not None:
        _report(report_dir, builtin=not sweep.spec.user_study)
    if failed:
        typer.echo(f"{failed} trial(s) failed: see their runs in MLflow", err=True)
        raise typer.Exit(FAILED_EXIT)


def _report(report_dir: Path, builtin: bool) -> None:
    """Where the sweep's final report is (its run wrote it), and for the built-in study its
    transition line (it reads the built-in metrics)."""
    path = report_dir / "report.html"
    typer.echo(f"report: {path.resolve()}")  # absolute: openable from anywhere
    if not builtin:
        return
    import pandas as pd

    from divsweep.orchestrator.report.builtin.findings import transition_line

    # the report's own summary table, so the terminal says what the report says
    line = transition_line(pd.read_parquet(report_dir / "summary.parquet"))
    if line:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    for command in (run, resume, status, report):
        app.command(command.__name__)(command)
