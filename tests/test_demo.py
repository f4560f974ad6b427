"""`make demo` end to end through the CLI: configs/demo.yaml → MLflow → a report that shows the
instruction-diversity effect; configs/smoke.yaml (the tiny config) → a report with every section.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from divsweep.orchestrator.report.builtin.findings import transition_line
from divsweep.orchestrator.report.builtin.pages import SECTION_IDS
from divsweep.orchestrator.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
# What the demo must show (issue 16), on unseen inputs the rule changes: no generalization with
# the fewest instructions, clear generalization with the most, seen rules learnt throughout.
FEWEST_UNSEEN_AT_MOST, MOST_UNSEEN_AT_LEAST, SEEN_AT_LEAST = 0.05, 0.30, 0.40


def _run_sweep(config: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """`divsweep run configs/<config>` in tmp_path on its own embedded Ray, as `make demo` does;
    returns the finished process and the report folder."""
    exe = Path(sys.executable).parent / "divsweep"
    env = {**os.environ, "DIVSWEEP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [str(exe), "run", str(ROOT / "configs" / config)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done, tmp_path / "reports" / load_spec(ROOT / "configs" / config).name


@pytest.mark.slow
def test_smoke_sweep_writes_a_report_with_every_section(tmp_path: Path) -> None:
    spec = load_spec(ROOT / "configs" / "smoke.yaml")
    n_trials = len(spec.trials())
    assert n_trials >= 8
    _, out = _run_sweep("smoke.yaml", tmp_path)

    mlf = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlf.get_experiment_by_name(spec.experiment)
    trials = mlf.search_runs(
        [experiment.experiment_id], filter_string="tags.`divsweep.role` = 'trial'"
    )
    assert len(trials) == n_trials
    assert {r.data.tags["divsweep.status"] for r in trials} == {"finished"}

    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for section in SECTION_IDS:
        assert f'id="{section}"' in html, section
        assert f'id="{section}"' in markdown, section
    assert (out / "summary.parquet").is_file() and list((out / "figures").glob("*.png"))


@pytest.mark.slow
def test_demo_shows_the_transition(tmp_path: Path) -> None:
    done, out = _run_sweep("demo.yaml", tmp_path)
    summary = pd.read_parquet(out / "summary.parquet").sort_values("n_instructions")
    assert summary["n_instructions"].nunique() >= 3
    assert (summary["p_pattern_present"] < 1).all()  # no-op inputs: has-op is the measure
    has_op = summary["unseen_applied_exact_match"]
    assert has_op.iloc[0] <= FEWEST_UNSEEN_AT_MOST, summary
    assert has_op.iloc[-1] >= MOST_UNSEEN_AT_LEAST, summary
    assert (summary["seen_exact_match"] >= SEEN_AT_LEAST).all(), summary
    # the terminal and the report's headline findings say it in words
    line = transition_line(summary)
    assert line and f"report: {out / 'report.html'}" in done.stdout
    assert line in done.stdout and line in (out / "report.md").read_text()
    assert (out / "figures" / "transition.png").is_file()


def _cells(p: float, rows: list[tuple[int, float, float, float]]) -> pd.DataFrame:
    """Summary rows (n_instructions, seen, unseen, unseen has-op) at one uniform budget."""
    return pd.DataFrame(
        [
            {"distribution": "uniform", "alpha": None, "p_pattern_present": p,
             "total_examples": 4000, "n_instructions": n, "seen_exact_match": seen,
             "unseen_exact_match": unseen, "unseen_applied_exact_match": applied}
            for n, seen, unseen, applied in rows
        ]
    )  # fmt: skip


def test_transition_line_reads_the_extremes_and_the_seen_range() -> None:
    cells = _cells(0.8, [(64, 0.9, 0.3, 0.1), (8, 1.0, 0.2, 0.0), (1024, 0.6, 0.7, 0.62)])
    assert transition_line(cells) == (
        "Transition at a budget of 4,000 examples: unseen-rule exact match on inputs the rule "
        "changes 0.00 with 8 instructions, 0.62 with 1,024; seen-rule exact match 0.60–1.00 "
        "across the grid."
    )
    without_no_ops = _cells(1.0, [(8, 1.0, 0.05, 0.05), (512, 0.8, 0.5, 0.5)])
    assert "on all inputs 0.05 with 8 instructions, 0.50 with 512" in transition_line(
        without_no_ops
    )
    assert transition_line(_cells(0.8, [(8, 1.0, 0.2, 0.0)])) is None
