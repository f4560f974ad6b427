"""Sweep reports. `core.py` is the report of any sweep (with collect, aggregate, intervals,
plots and render); the built-in study's own report (findings, frontier, transition, threshold,
figures, the paper's reference values) is built on it in `write.py`, whose `write_report`
writes whichever report a sweep's study has. Importing the package loads neither: the core
never loads the built-in study's modules (tests/test_report_core.py)."""

from __future__ import annotations

from typing import Any

from divsweep.orchestrator.report.render import SECTION_IDS

__all__ = ["SECTION_IDS", "write_report"]


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from divsweep.orchestrator.report.write import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
