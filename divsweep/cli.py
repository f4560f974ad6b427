"""The `divsweep` command line: one Typer app, each folder contributes its subcommands."""

from __future__ import annotations

import os
import sys

import typer

from divsweep import __version__
from divsweep.errors import UserError

app = typer.Typer(
    name="divsweep",
    help="Distributed sweeps for data-diversity studies: Ray Tune + Lightning + MLflow + Arrow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """divsweep command line."""


def _register() -> None:
    # Each folder owns its commands; their modules import heavy libraries lazily so that
    # `divsweep --help` stays fast and `divsweep train` works without Ray or MLflow.
    from divsweep.datasets.cli import data_app
    from divsweep.orchestrator.cli import register as register_orchestrator
    from divsweep.trainer.cli import register as register_trainer

    app.add_typer(data_app, name="data")
    register_trainer(app)
    register_orchestrator(app)


def _quiet_mlflow() -> None:
    # The CLI draws its own progress and tables; MLflow's store-migration INFO lines and its
    # "View run ..." line after every closed run would interleave with them.
    # Environment, not logger levels: MLflow sets its own level when first imported, and Ray
    # workers inherit the environment.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def main() -> None:
    _register()
    _quiet_mlflow()
    # a spec's class_path is imported as `python -m` would, from the current folder (a local
    # Ray's workers get it too: Ray adds the driver's folder to their path)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        # standalone_mode=False: click hands a typer.Exit back as its code instead of exiting
        code = app(standalone_mode=False)
    except UserError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit code
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(2 if isinstance(err, click.UsageError) else err.exit_code)
        raise
    if isinstance(code, int) and code:
        sys.exit(code)
