"""Report built from synthetic sweeps logged to a real MLflow store (layout per architecture.md)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from divsweep import tracking
from divsweep.datasets.sampling import allocation
from divsweep.errors import UserError
from divsweep.orchestrator.report import write_report
from divsweep.orchestrator.report.builtin.aggregate import aggregate, metric_counts, reference_slice
from divsweep.orchestrator.report.builtin.frontier import TARGETS, least_examples, pareto, targets
from divsweep.orchestrator.report.builtin.pages import SECTION_IDS
from divsweep.orchestrator.report.builtin.transition import RULES_ONLY, SEEDS_THEN_RULES, estimate
from divsweep.orchestrator.report.collect import collect, examples, swept_settings
from divsweep.orchestrator.report.intervals import NO_INTERVAL, SEEDS_AND_RULES, SEEDS_ONLY
from divsweep.trainer import predictions

MIDPOINT = 100.0  # n_instructions where the synthetic unseen accuracy is halfway up
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow sqlite store: creating the schema takes seconds."""
    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(empty_store: Path, tmp_path: Path) -> str:
    """A fresh store per test (a copy of the empty one), as conftest's but without the migration."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def true_unseen(n_instructions: float) -> float:
    return 0.05 + 0.9 / (1 + math.exp(-4 * (math.log10(n_instructions) - math.log10(MIDPOINT))))


def trial(
    n_instructions: int,
    unseen: float,
    *,
    budget: int = 10_000,
    seed: int = 0,
    status: str = "finished",
    distribution: str = "uniform",
    alpha: float | None = None,
    p_present: float = 0.8,
    seen: float = 0.95,
    steps: int = 3,
) -> dict:
    return {
        "params": {
            "data.n_instructions": n_instructions,
            "data.examples_per_instruction": budget // n_instructions,
            "data.total_examples": budget,
            "data.distribution": distribution,
            "data.alpha": alpha,
            "data.task.p_pattern_present": p_present,
            "seed": seed,
            "model.n_layer": 2,
            "train.lr": 0.001,
        },
        "status": status,
        "unseen": unseen,
        "seen": seen,
        "steps": steps,
    }


def log_sweep(
    tracking_uri: str,
    name: str,
    trials: list[dict],
    n_trials: int | None = None,
    spec: dict | None = None,
    parent_tags: dict[str, str] | None = None,
) -> str:
    """A parent run and one child run per trial, tagged exactly as the orchestrator does
    (with the sweep's spec as its artifact where one is given)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    exp = found.experiment_id if found else client.create_experiment(name)
    parent = client.create_run(
        exp,
        tags={
            "divsweep.role": "sweep",
            "divsweep.sweep": name,
            "divsweep.n_trials": str(n_trials if n_trials is not None else len(trials)),
            **(parent_tags or {}),
        },
    )
    if spec is not None:
        client.log_text(parent.info.run_id, yaml.safe_dump(spec), tracking.SPEC_ARTIFACT)
    for t in trials:
        params = {k: str(v) for k, v in t["params"].items()}
        key = t.get("key") or hashlib.sha256(json.dumps(params, sort_keys=True).encode())
        key = key if isinstance(key, str) else key.hexdigest()[:16]
        run = client.create_run(
            exp,
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "divsweep.role": "trial",
                "divsweep.sweep": name,
                "divsweep.trial_key": key,
                "divsweep.node": "node-a",
                "divsweep.accelerator": "cpu",
                "divsweep.status": t["status"],
                **t.get("tags", {}),
            },
        )
        # A learning curve that ends at the trial's final values; one batch per run keeps the
        # sqlite store fast.
        metrics = []
        for step in range(1, t["steps"] + 1):
            frac = step / t["steps"]
            values = {
                "unseen/exact_match": t["unseen"] * frac,
                "seen/exact_match": t["seen"] * frac,
                "train/loss": 2.0 / step,
                "step": step * 10.0,
                "wall_time_s": step * 1.5,
            }
            if step == t["steps"]:
                values.update(t.get("extra", {}))
            metrics += [Metric(k, v, 0, step) for k, v in values.items()]
        client.log_batch(
            run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()]
        )
        if "examples" in t:
            folder = Path(tempfile.mkdtemp())
            path = predictions.write(t["examples"], folder)
            client.log_artifact(run.info.run_id, str(path), predictions.ARTIFACT_DIR)
        if t["status"] != "running":
            client.set_terminated(run.info.run_id, MLFLOW_STATUS[t["status"]])
    return parent.info.run_id


N_RULES, PER_RULE = 40, 10


def with_examples(t: dict, rng: np.random.Generator, rule_effects: np.ndarray) -> dict:
    """Give a synthetic trial per-example unseen predictions around its unseen accuracy (rules
    shared by every trial, as a sweep's eval set is); its metric becomes their mean."""
    logit = np.log(
        np.clip(t["unseen"], 1e-3, 1 - 1e-3) / (1 - np.clip(t["unseen"], 1e-3, 1 - 1e-3))
    )
    p = 1 / (1 + np.exp(-(logit + rule_effects)))
    correct = rng.random((PER_RULE, N_RULES)) < p
    n = correct.size
    t["examples"] = {
        "split": ["unseen"] * n,
        "rule_id": np.tile(np.arange(N_RULES), PER_RULE).tolist(),
        "input": ["abc"] * n,
        "target": ["abd"] * n,
        "prediction": np.where(correct.ravel(), "abd", "abc").tolist(),
        "correct": correct.ravel().tolist(),
        "applied": [True] * n,
        # the first half of the rules share a pattern with a training rule
        "pattern_in_training": (np.tile(np.arange(N_RULES), PER_RULE) < N_RULES // 2).tolist(),
    }
    t["unseen"] = float(correct.mean())
    return t


def logistic_sweep(seeds: int = 3, noise: float = 0.02, per_example: bool = False) -> list[dict]:
    rng = np.random.default_rng(7)
    rules = rng.normal(0, 0.3, N_RULES)
    trials = [
        trial(i, float(np.clip(true_unseen(i) + rng.normal(0, noise), 0, 1)), seed=s)
        for i in (10, 20, 50, 100, 200, 500, 1000)
        for s in range(seeds)
    ]
    return [with_examples(t, rng, rules) for t in trials] if per_example else trials


# ------------------------------------------------------------------ aggregation


def test_means_and_cis_match_hand_computed_values(tracking_uri: str) -> None:
    trials = [
        trial(10, 0.2, seed=0),
        trial(10, 0.4, seed=1),
        trial(10, 0.9, seed=2, status="failed"),  # failed: not averaged
        trial(100, 0.7, seed=0),
        trial(1000, 0.8, seed=0),
        trial(1000, 0.8, seed=1),
        trial(1000, 0.8, seed=2),
    ]
    # The same trial key logged twice (a resumed trial): an abandoned running run, then the
    # finished one. It must count once, with the finished run's value.
    dup = trial(100, 0.1, seed=1, status="running")
    dup["key"] = "resumed-trial-01"
    done = trial(100, 0.5, seed=1)
    done["key"] = "resumed-trial-01"
    log_sweep(tracking_uri, "agg", [*trials, dup, done])
    sweep = collect("agg", tracking_uri)
    assert len(sweep.trials) == 8
    cells = aggregate(sweep.trials, ["unseen_exact_match"]).set_index("n_instructions")
    # I=10: mean of {0.2, 0.4}; two seeds get no interval (it would be 12.7 s.e. wide), only
    # the seeds' values.
    assert cells.loc[10, "n_seeds"] == 2
    assert cells.loc[10, "unseen_exact_match"] == pytest.approx(0.3)
    assert np.isnan(cells.loc[10, "unseen_exact_match_lo"])
    assert cells.loc[10, "unseen_exact_match_interval"] == NO_INTERVAL
    assert cells.loc[10, "unseen_exact_match_seeds"] == "0.20, 0.40"
    # I=100: seeds {0.7, 0.5} (the duplicate's running value 0.1 is dropped).
    assert cells.loc[100, "unseen_exact_match"] == pytest.approx(0.6)
    assert cells.loc[100, "unseen_exact_match_seeds"] == "0.70, 0.50"
    # I=1000: three equal seeds → a zero-width interval at the value, over seeds only (no
    # per-example predictions were logged).
    assert cells.loc[1000, "unseen_exact_match"] == pytest.approx(0.8)
    assert cells.loc[1000, ["unseen_exact_match_lo", "unseen_exact_match_hi"]].tolist() == (
        pytest.approx([0.8, 0.8])
    )
    assert cells.loc[1000, "unseen_exact_match_interval"] == SEEDS_ONLY
    # best-so-far comes from the history: the curve rises to the final value.
    assert sweep.trials["best_unseen_exact_match"].tolist() == pytest.approx(
        sweep.trials["unseen_exact_match"].tolist()
    )


def test_single_seed_gets_no_interval(tracking_uri: str) -> None:
    log_sweep(tracking_uri, "one-seed", [trial(10, 0.3), trial(100, 0.6)])
    cells = aggregate(collect("one-seed", tracking_uri).trials, ["unseen_exact_match"])
    assert cells["unseen_exact_match_lo"].isna().all()
    assert cells["unseen_exact_match_hi"].isna().all()


def test_many_seeds_without_predictions_get_the_t_interval(tracking_uri: str) -> None:
    values = np.random.default_rng(1).normal(0.5, 0.1, size=30).clip(0, 1)
    log_sweep(tracking_uri, "many", [trial(10, float(v), seed=s) for s, v in enumerate(values)])
    cell = aggregate(collect("many", tracking_uri).trials, ["unseen_exact_match"]).iloc[0]
    half = 2.04523 * values.std(ddof=1) / np.sqrt(values.size)  # t(0.975, 29)
    assert cell["unseen_exact_match"] == pytest.approx(values.mean())
    assert cell["unseen_exact_match_lo"] == pytest.approx(values.mean() - half, abs=1e-4)
    assert cell["unseen_exact_match_hi"] == pytest.approx(values.mean() + half, abs=1e-4)


def test_per_example_predictions_add_the_rules_to_cell_intervals(tracking_uri: str) -> None:
    """Logged predictions are read back; with them a cell's interval also covers the shared
    evaluation rules, and a two-seed cell lists each seed with its within-trial interval."""
    log_sweep(tracking_uri, "rules", logistic_sweep(seeds=3, per_example=True))
    sweep = collect("rules", tracking_uri)
    rows = examples(tracking_uri, sweep.trials["run_id"])
    assert len(rows) == len(sweep.trials) * N_RULES * PER_RULE
    by_trial = rows.groupby("run_id")["correct"].mean()
    assert by_trial.to_dict() == pytest.approx(
        sweep.trials.set_index("run_id")["unseen_exact_match"].to_dict()
    )
    cells = aggregate(sweep.trials, ["unseen_exact_match"], rows)
    assert (cells["unseen_exact_match_interval"] == SEEDS_AND_RULES).all()
    assert (cells["unseen_exact_match_lo"] <= cells["unseen_exact_match"]).all()
    assert (cells["unseen_exact_match"] <= cells["unseen_exact_match_hi"]).all()
    two = sweep.trials[sweep.trials["seed"] < 2]
    cell = aggregate(two, ["unseen_exact_match"], rows).iloc[0]
    assert re.fullmatch(r"0\.\d\d \[0\.\d\d–0\.\d\d\], 0\.\d\d \[0\.\d\d–0\.\d\d\]",
                        cell["unseen_exact_match_seeds"])  # fmt: skip


# ------------------------------------------------------------------ frontier


def test_frontier_matches_hand_computed_values(tracking_uri: str) -> None:
    acc = {  # (budget, n_instructions) → unseen accuracy
        (1_000, 10): 0.1, (1_000, 100): 0.6, (1_000, 1000): 0.85,
        (10_000, 10): 0.3, (10_000, 100): 0.9, (10_000, 1000): 0.97,
        (100_000, 10): 0.55, (100_000, 100): 0.96, (100_000, 1000): 0.99,
    }  # fmt: skip
    log_sweep(tracking_uri, "front", [trial(i, a, budget=b) for (b, i), a in acc.items()])
    cells = aggregate(collect("front", tracking_uri).trials, ["unseen_exact_match"])
    least = least_examples(cells).set_index(["target", "n_instructions"])["total_examples"]
    expected = {
        (0.5, 10): 100_000, (0.5, 100): 1_000, (0.5, 1000): 1_000,
        (0.8, 10): None, (0.8, 100): 10_000, (0.8, 1000): 1_000,
        (0.95, 10): None, (0.95, 100): 100_000, (0.95, 1000): 10_000,
    }  # fmt: skip
    for key, value in expected.items():
        if value is None:
            assert math.isnan(least.loc[key]), key
        else:
            assert least.loc[key] == value, key
    front = pareto(cells, "total_examples")
    assert list(zip(front["total_examples"], front["unseen_exact_match"], strict=True)) == [
        (1_000, 0.85),
        (10_000, 0.97),
        (100_000, 0.99),
    ]


def test_a_sweep_below_every_fixed_target_gets_targets_it_reaches(tracking_uri: str) -> None:
    # reduced compute: the best cell is 0.31, below 0.5; the frontier is drawn at 0.15 and 0.25
    acc = {(10_000, 10): 0.0, (10_000, 100): 0.2, (10_000, 1000): 0.31,
           (40_000, 10): 0.02, (40_000, 100): 0.28, (40_000, 1000): 0.3}  # fmt: skip
    log_sweep(tracking_uri, "low", [trial(i, a, budget=b) for (b, i), a in acc.items()])
    cells = aggregate(collect("low", tracking_uri).trials, ["unseen_exact_match"])
    assert targets(cells) == (0.15, 0.25, *TARGETS)
    least = least_examples(cells, targets(cells)).set_index(["target", "n_instructions"])
    assert least.loc[(0.15, 100), "total_examples"] == 10_000
    assert least.loc[(0.25, 100), "total_examples"] == 40_000
    assert least.loc[(0.25, 1000), "total_examples"] == 10_000
    assert math.isnan(least.loc[(0.15, 10), "total_examples"])
    assert targets(cells.assign(unseen_exact_match=0.6)) == TARGETS  # reached: the fixed ones


# ------------------------------------------------------------------ transition


def _fit_from_mlflow(tracking_uri: str, name: str):
    sweep = collect(name, tracking_uri)
    counts = metric_counts(examples(tracking_uri, sweep.trials["run_id"]), "unseen_exact_match")
    return estimate(sweep.trials, counts)


def test_transition_recovers_known_midpoint(tracking_uri: str) -> None:
    log_sweep(tracking_uri, "logistic", logistic_sweep(per_example=True))
    result = _fit_from_mlflow(tracking_uri, "logistic")
    assert result is not None and result.interval_method == SEEDS_THEN_RULES
    assert result.midpoint == pytest.approx(MIDPOINT, rel=0.15)
    assert result.ci_low <= MIDPOINT <= result.ci_high
    assert result.ci_low > 0.5 * MIDPOINT and result.ci_high < 2 * MIDPOINT
    assert result.low == pytest.approx(0.05, abs=0.05)
    assert result.high == pytest.approx(0.95, abs=0.05)


def test_transition_with_one_seed_resamples_rules_only(tracking_uri: str) -> None:
    log_sweep(tracking_uri, "logistic1", logistic_sweep(seeds=1, noise=0.0, per_example=True))
    result = _fit_from_mlflow(tracking_uri, "logistic1")
    assert result is not None and result.interval_method == RULES_ONLY
    assert result.midpoint == pytest.approx(MIDPOINT, rel=0.15)
    assert result.ci_low <= result.midpoint <= result.ci_high


def test_transition_needs_more_levels_than_parameters(tracking_uri: str) -> None:
    rng, rules = np.random.default_rng(0), np.zeros(N_RULES)
    trials = [with_examples(trial(i, true_unseen(i), seed=s), rng, rules)
              for i in (10, 30, 100, 1000) for s in range(3)]  # fmt: skip
    log_sweep(tracking_uri, "four", trials)
    assert _fit_from_mlflow(tracking_uri, "four") is None


# ------------------------------------------------------------------ whole report


def section(html: str, sid: str) -> str:
    match = re.search(f'<section id="{sid}">(.*?)</section>', html, re.S)
    assert match, f"section {sid} missing"
    return match.group(1)


def test_report_of_a_complete_sweep(tracking_uri: str, tmp_path: Path) -> None:
    parent = log_sweep(tracking_uri, "complete", logistic_sweep(per_example=True))
    html_path = write_report("complete", tracking_uri, tmp_path / "out")
    html = html_path.read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    for sid in SECTION_IDS:
        section(html, sid)
        assert f'<a id="{sid}"></a>' in md
    assert "PARTIAL" not in html and "PARTIAL" not in md
    findings = section(html, "findings")
    assert re.search(r"midpoint ~(\d+) instructions \(95% interval (\d+)–(\d+), seeds", findings)
    assert re.search(r"the transition lies between (\d+) instructions .* and (\d+)", findings)
    assert "I_min: the smallest n_instructions" in findings
    assert re.search(
        r"Coverage .*: 10 instructions: 50% of unseen rules \(exact match 0\.\d\d", findings
    )
    # Absent data is one line, not a failure.
    assert "No power-law trials" in section(html, "long-tail")
    assert "does not vary data.task.p_pattern_present" in section(html, "no-op")
    assert section(html, "transition").count("<img") == 1
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert "figures/transition.png" in links
    assert all((tmp_path / "out" / link).is_file() for link in links), links
    summary = pd.read_parquet(tmp_path / "out" / "summary.parquet")
    assert len(summary) == 7 and (summary["n_seeds"] == 3).all()
    assert pd.read_csv(tmp_path / "out" / "summary.csv").shape == summary.shape
    logged = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent, "report")}
    assert {"report/report.html", "report/report.md", "report/summary.parquet",
            "report/summary.csv", "report/figures"} <= logged  # fmt: skip
    figs = MlflowClient(tracking_uri).list_artifacts(parent, "report/figures")
    assert {Path(a.path).name for a in figs} == {
        p.name for p in (tmp_path / "out" / "figures").glob("*.png")
    }


def test_every_report_tells_status_where_it_is(tracking_uri: str, tmp_path: Path) -> None:
    """The report of a user's module (the core) tags its parent as the built-in one does, so
    `divsweep status` shows where the latest report is and what it holds."""
    tags = {tracking.STUDY: tracking.USER_STUDY, tracking.HEADLINE: "unseen/exact_match (max)"}
    parent = log_sweep(tracking_uri, "own", logistic_sweep()[:5], n_trials=9, parent_tags=tags)
    html_path = write_report("own", tracking_uri, tmp_path / "out")
    html = html_path.read_text()
    assert "Headline: unseen/exact_match (max)" in html and 'id="findings"' not in html  # core
    banner = "PARTIAL: sweep still running — 5 of 9 trials done."
    assert f'<p class="banner">{banner}</p>' in section(html, "summary")
    assert f"> **{banner}**" in (tmp_path / "out" / "report.md").read_text()
    written = MlflowClient(tracking_uri).get_run(parent).data.tags
    assert written[tracking.REPORT] == str(html_path.resolve())
    assert written[tracking.REPORT_STATE] == "partial: 5 of 9 trials"


def test_the_brackets_alone_bound_the_budget_exponent(tracking_uri: str, tmp_path: Path) -> None:
    """Both budgets (16x apart) fail at 64 instructions and generalize at 256: whatever the
    curve, I* moves at most 4x, so β lies within ±0.5 and β = 1 is excluded."""
    unseen = {16: 0.0, 64: 0.05, 256: 0.7, 1024: 0.8}
    trials = [trial(i, u, budget=b, seed=s) for b in (10_000, 160_000) for i, u in unseen.items()
              for s in range(2)]  # fmt: skip
    log_sweep(tracking_uri, "brackets", trials)
    html = write_report("brackets", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    findings = section(html, "findings")
    assert "β lies between -0.50 and 0.50" in findings
    assert "β = 1 (set by examples per instruction) is excluded" in findings
    assert "β = 0 (set by the number of instructions) is excluded" not in findings


def test_partial_sweep_is_marked(tracking_uri: str, tmp_path: Path) -> None:
    trials = [trial(10, 0.1), trial(100, 0.5), trial(1000, 0.9, status="running")]
    log_sweep(tracking_uri, "partial", trials, n_trials=10)
    html = write_report("partial", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    banner = "PARTIAL: sweep still running — 2 of 10 trials done."
    assert f'<p class="banner">{banner}</p>' in section(html, "summary")
    assert f"> **{banner}**" in (tmp_path / "report.md").read_text()


def test_failed_trials_are_listed_and_report_still_written(
    tracking_uri: str, tmp_path: Path
) -> None:
    trials = logistic_sweep(seeds=1)
    broken = trial(300, 0.0, status="failed", steps=1)
    broken["key"] = "deadbeefdeadbeef"
    stopped = trial(30, 0.05, status="stopped", steps=1)
    stopped["key"] = "cafecafecafecafe"
    log_sweep(tracking_uri, "failing", [*trials, broken, stopped])
    html = write_report("failing", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    failed = section(html, "failed-trials")
    assert "deadbeefdeadbeef" in failed and "cafecafecafecafe" in failed
    assert failed.count("<tr>") == 3  # header + two rows
    assert "1 trial(s) failed and 1 were stopped early" in section(html, "findings")
    assert "No logistic fit of the transition" in section(html, "findings")


def test_unknown_experiment_is_a_user_error(tracking_uri: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no-such-sweep"):
        write_report("no-such-sweep", tracking_uri, tmp_path)


# ------------------------------------------------------------------ browser


def full_sweep() -> list[dict]:
    """Every section has data: two budgets, power-law trials, a no-op axis, head/tail buckets."""
    trials = logistic_sweep(seeds=2)
    trials += [trial(i, true_unseen(i * 3), budget=30_000) for i in (10, 100, 1000)]
    for i in (100, 1000):
        for alpha in (0.1, 0.5, 1.0):
            t = trial(i, true_unseen(i) * (0.5 + alpha / 2), distribution="powerlaw", alpha=alpha)
            t["extra"] = {"seen_head/exact_match": 0.95, "seen_tail/exact_match": 0.4 + alpha / 2}
            trials.append(t)
    for i in (10, 100, 1000):
        for p in (0.5, 0.9):
            t = trial(i, true_unseen(i), p_present=p)
            t["extra"] = {"unseen_noop/exact_match": 0.9, "unseen_applied/exact_match": 0.5 * p}
            trials.append(t)
    return trials


def test_report_renders_in_headless_chromium(tracking_uri: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (scripts/test-setup.sh installs Debian's chromium)")
    log_sweep(tracking_uri, "browser", full_sweep())
    html_path = write_report("browser", tracking_uri, tmp_path / "out", log_to_mlflow=False)
    figures = list((tmp_path / "out" / "figures").glob("*.png"))
    assert len(figures) == 6
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=5000",
    ]  # fmt: skip
    url = html_path.resolve().as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, f"no DOM dumped; stderr: {dom.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("images-total") == "6", attrs
    assert attrs.get("images-loaded") == "6", attrs
    assert attrs.get("errors") == "0", attrs
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = artifacts / "report-screenshot.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,4000", url],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 10_000


def test_gpu_hours_pareto_and_newest_parent_only(tracking_uri: str, tmp_path: Path) -> None:
    # An earlier run of the same sweep name: its trials must not be mixed into the report.
    log_sweep(tracking_uri, "gpu", [trial(10, 0.99), trial(100, 0.99)])
    # what each trial held, as the driver logs it (orchestrator/cost.py): half a GPU, one CPU
    held = {10: 20.0, 100: 60.0, 1000: 90.0}
    trials = [trial(10, 0.2, steps=2), trial(100, 0.7, steps=4), trial(1000, 0.6, steps=6)]
    for t in trials:
        seconds = held[t["params"]["data.n_instructions"]]
        t["extra"] = {tracking.HELD_S: seconds, tracking.GPU_HOURS: 0.5 * seconds / 3600,
                      tracking.CPU_HOURS: seconds / 3600}  # fmt: skip
    log_sweep(tracking_uri, "gpu", trials)
    sweep = collect("gpu", tracking_uri)
    assert len(sweep.trials) == 3 and sweep.trials["unseen_exact_match"].max() == 0.7
    hours = sweep.trials.set_index("n_instructions")["gpu_hours"]
    assert hours.to_dict() == pytest.approx({n: 0.5 * s / 3600 for n, s in held.items()})
    cells = aggregate(sweep.trials, ["unseen_exact_match", "gpu_hours", "cpu_hours"])
    front = pareto(cells, "gpu_hours")
    assert front["n_instructions"].tolist() == [10, 100]
    # the frontier in compute: the least GPU-hours reaching 0.5 unseen accuracy is I=100's
    html = write_report("gpu", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    least = f"≥ 0.5: {0.5 * 60 / 3600:.4g} (I=100, 100 per instruction); ≥ 0.8: none reached"
    assert least in section(html, "summary")
    assert "against examples and GPU-hours per trial" in section(html, "frontier")
    assert "Cost: 0.02361 GPU-hours and 0.04722 CPU-hours" in section(html, "summary")


def test_sweep_with_no_trial_yet_still_reports(tracking_uri: str, tmp_path: Path) -> None:
    log_sweep(tracking_uri, "just-started", [], n_trials=8)
    html = write_report("just-started", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    assert "PARTIAL: sweep still running — 0 of 8" in section(html, "summary")
    assert "No finished trial has reported unseen accuracy yet." in section(html, "findings")
    assert "<img src" not in html


def test_power_law_cells_count_effective_instructions_and_the_report_names_the_splits(
    tracking_uri: str, tmp_path: Path
) -> None:
    trials = [trial(i, true_unseen(i), seed=s) for i in (10, 100, 1000) for s in (0, 1)]
    for s in (0, 1):
        t = trial(1000, 0.2, seed=s, distribution="powerlaw", alpha=0.1)
        t["params"]["data.seed"] = s
        trials.append(t)
    log_sweep(tracking_uri, "tail", trials)
    client = MlflowClient(tracking_uri=tracking_uri)
    [parent] = client.search_runs(
        [client.get_experiment_by_name("tail").experiment_id], "tags.`divsweep.role` = 'sweep'"
    )
    client.set_tag(parent.info.run_id, "divsweep.selection", "unseen_val/exact_match (max)")
    sweep = collect("tail", tracking_uri)
    power = sweep.trials[sweep.trials["distribution"] == "powerlaw"].sort_values("seed")
    expected = [int((allocation(1000, 10_000, "powerlaw", 0.1, s) > 0).sum()) for s in (0, 1)]
    assert power["effective_instructions"].tolist() == expected
    assert 0 < expected[0] < 1000 and expected[0] != expected[1]  # a real, seed-dependent count
    uniform = sweep.trials[sweep.trials["distribution"] == "uniform"]
    assert (uniform["effective_instructions"] == uniform["n_instructions"]).all()
    html = write_report("tail", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    mean = f"{sum(expected) / 2:,.0f}"
    assert f"{mean} of the 1,000 got at least one training example" in section(html, "findings")
    assert "optimised unseen_val/exact_match (max)" in html
    assert "held-out test rules (metrics unseen/" in html


def test_a_setting_swept_beyond_the_built_in_axes_gets_its_own_cells_and_figure(
    tracking_uri: str, tmp_path: Path
) -> None:
    # a semantic sweep's k ranges: the wider range generalizes later; pooling them would
    # average two different curves into one
    shift = {"[3, 4]": 1.0, "[3, 12]": 10.0}
    trials = []
    for k_range, later in shift.items():
        for i in (10, 100, 1000, 10_000):
            t = trial(i, true_unseen(i / later), p_present=1.0)
            t["params"]["data.task.train_k"] = k_range
            trials.append(t)
    axes = {"data.task.train_k": [[3, 4], [3, 12]], "data.n_instructions": [10, 100, 1000, 10_000]}
    log_sweep(tracking_uri, "semantic", trials, spec={"name": "semantic", "axes": axes})
    sweep = collect("semantic", tracking_uri)
    assert swept_settings(sweep.trials) == ["data.task.train_k"]
    cells = aggregate(sweep.trials, ["unseen_exact_match"])
    assert len(cells) == 8
    by_k = cells.set_index(["data.task.train_k", "n_instructions"])["unseen_exact_match"]
    assert by_k[("[3, 4]", 100)] == pytest.approx(true_unseen(100))
    assert by_k[("[3, 12]", 100)] == pytest.approx(true_unseen(10))
    # ties: the reference slice takes the first value in its natural order ([3, 4] < [3, 12])
    assert set(reference_slice(cells)["data.task.train_k"]) == {"[3, 4]"}
    html = write_report("semantic", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    figure = section(html, "settings")
    assert "<img" in figure and "data.task.train_k = [3, 4]" in figure
    assert (tmp_path / "figures" / "settings.png").is_file()
    assert "<th" in section(html, "trials") and ">data.task.train_k</th>" in html
    # the spec's built-in axes add no column, and a parent without a spec adds none at all
    log_sweep(tracking_uri, "plain", logistic_sweep(seeds=1))
    plain = write_report("plain", tracking_uri, tmp_path / "plain", log_to_mlflow=False)
    assert swept_settings(collect("plain", tracking_uri).trials) == []
    assert "varies no setting beyond the built-in axes" in section(plain.read_text(), "settings")


def test_share_vs_rank_draws_the_allocation_each_alpha_trained_on(
    tracking_uri: str, tmp_path: Path
) -> None:
    trials = [trial(1000, 0.5)]
    for alpha in (1.0, 0.1):
        t = trial(1000, 0.3, distribution="powerlaw", alpha=alpha)
        t["params"]["data.seed"] = 3
        trials.append(t)
    log_sweep(tracking_uri, "shares", trials)
    html = write_report("shares", tracking_uri, tmp_path, log_to_mlflow=False).read_text()
    figure = section(html, "share-rank")
    assert "<img" in figure and "at I = 1000" in figure
    log_sweep(tracking_uri, "flat", [trial(1000, 0.5)])
    flat = write_report("flat", tracking_uri, tmp_path / "flat", log_to_mlflow=False)
    assert "No power-law trials" in section(flat.read_text(), "share-rank")
