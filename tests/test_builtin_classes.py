"""The built-in study as one user of the class_path interface (issue 27, item 3): its GPT and
data as `divsweep.trainer.builtin` classes build the same rows, train the same way and report
the same numbers as the built-in spec form, and sweep like any user's module."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import torch
import yaml
from mlflow import MlflowClient
from test_orchestrator_spec import merged_spec

import divsweep
from divsweep.datasets import build
from divsweep.errors import SpecError
from divsweep.orchestrator.spec import load_spec, parse_spec
from divsweep.trainer import predictions
from divsweep.trainer.builtin import DATAMODULE, MODULE, RewriteGPT, as_class_path
from divsweep.trainer.user_trial import UserTrialConfig, build_data

ROOT = Path(__file__).resolve().parents[1]

# sha256 of every row (all columns, in order) of the fewest- and most-instruction grid points'
# training sets and of the sweep's held-out test rules: the generator's output, pinned. A
# change here changes every committed result built from these specs.
PINNED = {
    "demo.yaml": {
        "train@8": "5e9d548c46f36246ab9ec8fecf4e7e1d71d9f7a056f4b82c7ee4370dbad53d2c",
        "train@1024": "a151a4de52d0e129b661038ed9694b38bd1d571e67cd36c5040023548eb80e68",
        "eval_unseen": "a0acddc8d5c81a21de2ab2d2568385c8668e2fac802110283062e40da413c20f",
    },
    "cpu-repro.yaml": {
        "train@8": "31293082e63e78749c5ca3fe4c6aaa3b36058798962424ff7e4c12a5413d7fbb",
        "train@3024": "ef77a7398b5eafe10f19ab79a4b9bbf3c06da0cdfec7d028c4a0da2fa8a8a3a5",
        "eval_unseen": "f949ea4d3e2f4d39412874ff56ff177a071f553dde60aed534cee4b6d78b0b4c",
    },
}


def rows_sha256(path: Path) -> str:
    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    digest = hashlib.sha256(json.dumps(table.column_names).encode())
    for row in table.to_pylist():
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("config", sorted(PINNED))
def test_builtin_specs_build_the_same_rows_through_the_class_path_form(
    config: str, tmp_path: Path
) -> None:
    trials = load_spec(ROOT / "configs" / config).trials()
    found = {}
    for trial in (trials[0], trials[-1]):
        sugar = build(trial.data, trial.eval, tmp_path)
        generic = as_class_path(trial)
        assert generic.model.class_path == MODULE and generic.datamodule.class_path == DATAMODULE
        # the same content-addressed files: one cache serves both forms
        assert build_data(generic.data, generic.eval, tmp_path) == sugar
        found[f"train@{trial.data.n_instructions}"] = rows_sha256(sugar.train)
        found["eval_unseen"] = rows_sha256(sugar.eval_unseen)
    assert found == PINNED[config]


# A demo trial (8 instructions, 400 steps, evaluated at 200 and 400, one thread) as the built-in
# trainer reported it before the spec form trained through these classes (commit 64b6550's
# EvaluateAndReport, since removed). Lightning logs in float32 and the CPU
# kernels may differ by machine: losses to 1e-4, accuracies to one example in 500.
DEMO_BEFORE = {
    200: {"train/loss": 2.136871795654297, "seen/exact_match": 0.0,
          "seen/token_acc": 0.24933274021352314, "unseen/token_acc": 0.2440423654015887,
          "unseen_val/token_acc": 0.23735235123690662, "epoch": 0.32, "examples_seen": 12800.0},
    400: {"train/loss": 1.3193528747558594, "seen/exact_match": 0.018,
          "seen/token_acc": 0.39679715302491103, "unseen/token_acc": 0.31112091791703445,
          "unseen_val/token_acc": 0.294406061956764, "epoch": 0.64, "examples_seen": 25600.0},
}  # fmt: skip


def test_a_demo_trial_gives_the_numbers_the_builtin_trainer_gave(tmp_path: Path) -> None:
    from divsweep.trainer.fit import fit

    torch.set_num_threads(1)
    demo = load_spec(ROOT / "configs" / "demo.yaml").trials()[0]
    short = demo.train.model_copy(update={"max_steps": 400, "eval_every": 200})
    trial = demo.model_copy(update={"train": short})
    reported: list[dict] = []
    fit(trial, build(trial.data, trial.eval, tmp_path / "cache"), workdir=tmp_path / "a",
        report=lambda metrics, _: reported.append(metrics))  # fmt: skip

    assert [int(m["step"]) for m in reported] == sorted(DEMO_BEFORE)
    for metrics in reported:
        before = DEMO_BEFORE[int(metrics["step"])]
        for name, value in before.items():
            tolerance = {"rel": 1e-4} if name == "train/loss" else {"abs": 2e-3}
            assert metrics[name] == pytest.approx(value, **tolerance), name


def test_training_time_counts_training_only(tmp_path: Path) -> None:
    """Lightning's sanity check validates before training starts: it adds nothing to the
    training time that output tokens/s divides by."""
    from divsweep.trainer.callback import ReportEachValidation
    from divsweep.trainer.config import trial_key
    from divsweep.trainer.fit import build_modules, build_trainer

    trial = load_spec(ROOT / "configs" / "demo.yaml").trials()[0]
    form = as_class_path(trial).model_dump(mode="json")
    form["trainer"] |= {"max_steps": 4, "val_check_interval": 2, "num_sanity_val_steps": 1}
    form["model"]["init_args"] |= {"n_layers": 1, "d_model": 32}
    generic = UserTrialConfig.model_validate(form)
    module, datamodule = build_modules(generic, build_data(generic.data, generic.eval, tmp_path))
    reported: list[dict] = []
    callback = ReportEachValidation(
        tmp_path, lambda metrics, _: reported.append(metrics), trial_key(generic), None
    )
    build_trainer(generic, [callback], tmp_path).fit(module, datamodule=datamodule)
    assert [m["step"] for m in reported] == [2, 4]
    assert 0 < module.train_time < reported[-1]["wall_time_s"]
    assert reported[-1]["output_tokens_per_s"] == pytest.approx(
        module.output_tokens / module.train_time, rel=1e-6
    )


def test_a_checkpoint_from_before_the_counters_moved_is_refused_in_one_line() -> None:
    with pytest.raises(RuntimeError, match=r"earlier divsweep.*resume its sweep with the version"):
        RewriteGPT(n_layers=1, d_model=32).on_load_checkpoint({"state_dict": {}})


def test_a_spec_in_the_class_path_form_takes_the_builtin_data_axes(tmp_path: Path) -> None:
    trial = load_spec(ROOT / "configs" / "demo.yaml").trials()[0]
    form = as_class_path(trial).model_dump(mode="json")
    base = {"name": "builtin-classes", **{k: form[k] for k in ("model", "datamodule", "trainer")}}
    base |= {"data": form["data"], "eval": form["eval"]}
    axes = {
        "data.n_instructions": [8, 64],
        "data.task.alphabet_size": [8],
        "eval.seen_examples": [100, 200],
        "model.init_args.lr": [1e-3, 3e-3],
    }
    spec = parse_spec(merged_spec(base, tmp_path, axes=axes))
    assert spec.user_study and len(spec.trials()) == 8
    assert len(spec.data_configs()) == 4  # lr does not change the data
    without_eval = {k: v for k, v in base.items() if k != "eval"}
    with pytest.raises(SpecError, match=r"^sweep\.eval: a generated task \(data\.task\) needs"):
        parse_spec(merged_spec(without_eval, tmp_path))
    with pytest.raises(SpecError, match=r"^sweep\.axes\.eval\.bogus: unknown setting"):
        parse_spec(merged_spec(base, tmp_path, axes={"eval.bogus": [1]}))


def test_the_builtin_classes_sweep_like_any_users_module(
    ray_session, tmp_path: Path, tracking_uri: str
) -> None:
    trial = load_spec(ROOT / "configs" / "demo.yaml").trials()[0]
    form = as_class_path(trial).model_dump(mode="json")
    form["trainer"] |= {"max_steps": 20, "val_check_interval": 10}
    form["model"]["init_args"] |= {"n_layers": 1, "d_model": 32}
    base = {"name": "builtin-classes", **{k: form[k] for k in ("model", "datamodule", "trainer")}}
    base |= {
        "data": form["data"],
        "eval": form["eval"],
        "axes": {"data.n_instructions": [8, 64], "seed": [0, 1]},
        "selection": {"metric": "unseen_val/exact_match", "mode": "max"},
        "headline": {"metric": "unseen_applied/exact_match", "mode": "max"},
        "scheduler": {"kind": "fifo"},
        "resources": {"cpu": 1},
        "max_concurrent_trials": 2,
    }
    spec = parse_spec(merged_spec(base, tmp_path))
    sweep = divsweep.run(spec, tracking_uri=tracking_uri, progress=False)
    assert sweep.outcome == {"finished": 4, "failed": 0, "stopped": 0}
    mlf = MlflowClient(tracking_uri)
    runs = mlf.search_runs(
        [sweep.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"
    )
    assert {(r.data.params["data.n_instructions"], r.data.params["seed"]) for r in runs} == {
        ("8", "0"), ("8", "1"), ("64", "0"), ("64", "1")
    }  # fmt: skip
    for run in runs:
        assert run.data.params["model.class_path"] == MODULE
        assert {"unseen/exact_match", "unseen_applied/exact_match", "seen/exact_match"} <= set(
            run.data.metrics
        )
        steps = [m.step for m in mlf.get_metric_history(run.info.run_id, "unseen/exact_match")]
        assert sorted(steps) == [10, 20]
        contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
        assert contexts == {"training", "eval_seen", "eval_unseen", "eval_unseen_val"}
        # the last validation's per-example predictions, written beside its checkpoint
        logged = mlf.list_artifacts(run.info.run_id, predictions.ARTIFACT_DIR)
        assert [a.path for a in logged] == [f"{predictions.ARTIFACT_DIR}/{predictions.FILE}"]
        rows = predictions.read(mlf.download_artifacts(run.info.run_id, logged[0].path, tmp_path))
        seen = rows[rows["split"] == "seen"]
        assert run.data.metrics["seen/exact_match"] == pytest.approx(seen["correct"].mean())
    # the report of any sweep, with the transition over its number-of-instructions axis
    html = divsweep.report(spec.name, tracking_uri=tracking_uri, out_dir=tmp_path / "r")
    text = html.read_text()
    assert 'id="frontier"' in text and "unseen_applied/exact_match vs n_instructions" in text


def test_divsweep_train_runs_the_class_path_form_of_a_builtin_trial(tmp_path: Path) -> None:
    trial = load_spec(ROOT / "configs" / "demo.yaml").trials()[0]
    form = as_class_path(trial).model_dump(mode="json")
    form["trainer"] |= {"max_steps": 10, "val_check_interval": 5}
    form["model"]["init_args"] |= {"n_layers": 1, "d_model": 32}
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(form))
    exe = str(Path(sys.executable).parent / "divsweep")
    cmd = [exe, "train", str(path), "--workdir", str(tmp_path / "w")]
    env = {"DIVSWEEP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    assert "unseen_applied/exact_match" in done.stdout and "examples_seen" in done.stdout
