"""Sweep reports, read from MLflow (`collect.py`).

`core.py` is the report of any sweep, whatever its module logs (with collect, intervals,
threshold, plots and render). `builtin/` is the built-in study's own report: what only its
trainer records (per-example predictions, rewrite-rule coverage) and its paper's numbers, in
findings, figures, frontier, transition, aggregate, paper_reference and its sections in pages.
Both are pages that render.py writes as HTML and Markdown. `write_report` writes
whichever a sweep's study has. Importing the package loads neither, and the core never loads
`builtin/` (tests/test_report_core.py).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_report"]


def write_report(
    experiment: str, tracking_uri: str, out_dir: Path, log_to_mlflow: bool = True
) -> Path:
    """Build the sweep's report from MLflow into out_dir: the built-in study's for its
    sweeps, the report of any sweep for a user's module. Returns the path of report.html."""
    from divsweep import tracking
    from divsweep.orchestrator.report.collect import collect

    sweep = collect(experiment, tracking_uri)  # an unknown experiment fails before any folder
    if sweep.study == tracking.BUILTIN_STUDY:
        from divsweep.orchestrator.report.builtin.write import write_builtin_report

        return write_builtin_report(sweep, tracking_uri, out_dir, log_to_mlflow)
    from divsweep.orchestrator.report.core import write_core_report

    return write_core_report(sweep, tracking_uri, out_dir, log_to_mlflow)
