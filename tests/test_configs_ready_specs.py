"""The ready specs in configs/: each validates, resolves the grid its header promises, and names
the figure or section it reproduces; the CPU variants run end to end at a tiny size (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import divsweep
from divsweep.orchestrator.report import write_report
from divsweep.orchestrator.spec import load_spec, parse_spec
from divsweep.orchestrator.status import sweep_status

CONFIGS = Path(__file__).parents[1] / "configs"
ALPHAS = {None, 2, 1, 0.5, 0.2, 0.1, 0.07, 0.03}  # None: uniform (Only-IF Fig. 3)


def grid(name: str) -> set[tuple]:
    """(n_instructions, distribution, alpha, p_pattern_present, train_k, seed, budget, steps) of
    every trial."""
    return {
        (t.data.n_instructions, t.data.distribution, t.data.alpha,
         t.data.task.p_pattern_present, getattr(t.data.task, "train_k", None), t.seed,
         t.data.total_examples, t.train.max_steps)
        for t in load_spec(CONFIGS / f"{name}.yaml").trials()
    }  # fmt: skip


def axis(name: str, i: int) -> set:
    return {point[i] for point in grid(name)}


@pytest.mark.parametrize(
    ("name", "n_trials", "instructions"),
    [
        ("paper", 32, {10, 20, 50, 100, 200, 300, 400, 500, 600, 1000, 2000, 2500, 5000,
                       10_000, 100_000, 1_000_000}),  # Only-IF Fig. 2a ticks
        ("cpu-repro", 18, {8, 32, 128, 512, 1024, 3024}),  # x 3 rule seeds
        ("cpu-capable", 18, {8, 32, 128, 512, 1024, 3024}),  # cpu-repro, 4x64, 6,000 steps
        ("cpu-frontier", 60, {16, 64, 256, 1024, 3024}),  # x 2 budgets x 2 run lengths x 3 seeds
        ("paper-noop", 80, {100, 200, 300, 400, 500, 1000, 10_000, 100_000}),  # Fig. 2b ticks
        ("paper-longtail", 48, {1000, 10_000, 100_000}),  # §2.3.3
        ("paper-semantic", 48, {500, 1000, 5000, 10_000}),  # Fig. 4
        ("cpu-noop", 16, {8, 128, 512, 3024}),
        ("cpu-longtail", 24, {512, 3024}),  # x 6 distributions x 2 seeds
        ("cpu-semantic", 12, {64, 512, 3072}),  # x 2 k ranges x 2 seeds
    ],
)  # fmt: skip
def test_ready_spec_resolves_its_grid(name: str, n_trials: int, instructions: set) -> None:
    points = grid(name)
    assert len(points) == n_trials  # distinct trials: no axis value collapses onto another
    assert axis(name, 0) == instructions
    header = (CONFIGS / f"{name}.yaml").read_text().split("\nname:")[0]
    assert "§" in header or "Fig." in header, "the header names what it reproduces"
    assert "divsweep run configs/" in header


def test_noop_specs_sweep_the_papers_ratios() -> None:
    assert axis("paper-noop", 3) == {0.9, 0.8, 0.7, 0.6, 0.5}  # 1:9 ... 5:5
    assert axis("cpu-noop", 3) == {1.0, 0.9, 0.7, 0.5}
    assert {p[1] for p in grid("paper-noop")} == {"uniform"}


@pytest.mark.parametrize(
    ("name", "alphas"),
    [("paper-longtail", ALPHAS), ("cpu-longtail", ALPHAS - {2, 1})],  # CPU: near-uniform two out
)  # fmt: skip
def test_longtail_specs_cross_their_alphas_with_every_count(name: str, alphas: set) -> None:
    pairs = {(p[0], p[2]) for p in grid(name)}
    assert pairs == {(n, a) for n in axis(name, 0) for a in alphas}


def test_semantic_specs_train_on_the_papers_k_ranges_and_test_below_3() -> None:
    ranges = {(3, 4), (3, 6), (3, 12), (3, 20), (3, 30), (3, 60)}  # Only-IF Fig. 4
    assert axis("paper-semantic", 4) == ranges
    assert axis("cpu-semantic", 4) == {(3, 3), (3, 6)}  # every k |x| = 6 has from 3 on
    for name, length in (("paper-semantic", 60), ("cpu-semantic", 6)):
        for t in load_spec(CONFIGS / f"{name}.yaml").trials():
            task = t.data.task
            assert task.family == "semantic" and task.pattern_length == length
            assert task.test_k == (1, 2) and len(task.train_families) == 3


def test_paper_scale_specs_keep_the_papers_model_and_budget() -> None:
    for name in ("paper-noop", "paper-longtail", "paper-semantic"):
        for t in load_spec(CONFIGS / f"{name}.yaml").trials()[:1]:
            assert (t.model.n_layers, t.model.d_model, t.model.n_heads) == (6, 256, 4)
            assert (t.train.lr, t.train.epochs, t.train.schedule) == (1e-3, 50, "linear")
            assert t.data.total_examples == 1_000_000


TINY = {
    "model": {"n_layers": 1, "d_model": 32, "n_heads": 2},
    "train": {"max_steps": 4, "eval_every": 4, "warmup_steps": 1, "batch_size": 16,
              "eval_batch_size": 64},
    "eval": {"seen_examples": 16, "unseen_instructions": 4, "unseen_examples_per_instruction": 2},
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cpu-noop", "cpu-longtail", "cpu-semantic"])
def test_cpu_variant_runs_end_to_end_at_a_tiny_size(name: str, ray_session, tmp_path: Path) -> None:
    """The spec as written, every axis kept; only steps, model and eval sizes shrink (and the
    budget to 4,000 examples: still >= every n_instructions)."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for section, settings in TINY.items():
        raw[section] = {**raw[section], **settings}
    raw["data"]["budget"] = 4000
    raw["storage_path"] = str(tmp_path / "ray")
    raw["cache_dir"] = str(tmp_path / "cache")
    spec = parse_spec(raw)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = divsweep.run(spec, tracking_uri=uri, progress=False)
    assert not sweep.interrupted
    status = sweep_status(spec.experiment, uri)
    assert status.counts == {"finished": len(spec.trials())}
    write_report(spec.experiment, uri, tmp_path / "report", log_to_mlflow=False)
    expected_figure = {"cpu-noop": "no-op.png", "cpu-longtail": "long-tail.png",
                       "cpu-semantic": "settings.png"}[name]  # fmt: skip
    assert (tmp_path / "report" / "figures" / expected_figure).is_file()
