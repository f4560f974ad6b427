"""divsweep: distributed sweep orchestration for data-diversity studies.

Public API (mirrors the CLI): `run(spec)`, `resume(name)`, `report(name)`.
Everything else is internal. Heavy libraries (Ray, MLflow, torch) load on first call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from divsweep.orchestrator.run import resume, run

__version__ = "0.1.0"
__all__ = ["__version__", "report", "resume", "run"]


def __getattr__(name: str) -> Any:
    # `run` and `resume` are the orchestrator's own functions, imported on first use so that
    # `import divsweep` stays light (no Ray, MLflow or torch).
    if name in ("run", "resume"):
        from divsweep.orchestrator import run as orchestrator_run

        return getattr(orchestrator_run, name)
    raise AttributeError(f"module 'divsweep' has no attribute {name!r}")


def report(
    name: str,
    *,
    tracking_uri: str = "sqlite:///mlflow.db",
    out_dir: str | Path | None = None,
    log_to_mlflow: bool = True,
) -> Path:
    """Write the report of experiment `name` (default folder reports/NAME); returns report.html."""
    from divsweep.orchestrator.report import write_report
    from divsweep.tracking import absolute_uri

    out = Path(out_dir) if out_dir is not None else Path("reports") / name
    return write_report(name, absolute_uri(tracking_uri), out, log_to_mlflow=log_to_mlflow)
