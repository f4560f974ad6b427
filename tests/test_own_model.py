"""A user's own LightningModule and LightningDataModule (the worked example's, defined outside
the divsweep package in examples/own_model) swept over their init_args on a grouped table:
real Ray, MLflow, Lightning and Arrow."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from bitrules.tasks import make_table
from conftest import EXAMPLE
from mlflow import MlflowClient
from test_drills_driver_kill import (
    DIVSWEEP,
    kill_group,
    kill_one_done_one_paused,
    pause_env,
    run_to_end,
    start,
)
from test_orchestrator_spec import merged_spec

import divsweep
from divsweep import tracking
from divsweep.errors import SpecError, UserError
from divsweep.orchestrator.spec import parse_spec
from divsweep.orchestrator.status import sweep_status
from divsweep.trainer.pause import PAUSE_AT_BOUNDARY, PAUSE_DIR, paused, starts

STEPS = 16  # each trial: validations at 8 and 16
OWN = {
    "name": "own",
    "model": {
        "class_path": "bitrules.model.AdderNet",
        "init_args": {"bits": 4, "hidden": 16, "layers": 1, "lr": 1.0e-2},
    },
    "datamodule": {"class_path": "bitrules.data.BitRules", "init_args": {"bits": 4}},
    "trainer": {"max_steps": STEPS, "val_check_interval": 8, "check_val_every_n_epoch": None},
    "data": {
        "source": {"group_column": "task"},
        "test_groups": 3,
        "validation_groups": 3,
        "n_instructions": 6,
        "budget": 48,
        "seen_examples": 24,
    },
    "selection": {"metric": "val/exact_match", "mode": "max"},
    "scheduler": {"kind": "fifo"},
    "resources": {"cpu": 1},
    "max_concurrent_trials": 2,
}


def own_spec(tmp_path: Path, **overrides) -> dict:
    """OWN on a 16-group table written under tmp_path, `overrides` merged one level deep."""
    source = tmp_path / "tasks.parquet"
    if not source.exists():
        pq.write_table(make_table(bits=4, rows_per_task=16), source)
    base = copy.deepcopy(OWN)
    base["data"]["source"]["path"] = str(source)
    return merged_spec(base, tmp_path, **overrides)


def children(sweep) -> list:
    mlf = MlflowClient(sweep.tracking_uri)
    return mlf.search_runs(
        [sweep.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"
    )


def test_each_point_of_two_init_args_is_one_run_with_the_modules_metrics(
    ray_session, tmp_path: Path, tracking_uri: str
) -> None:
    axes = {"model.init_args.hidden": [8, 16], "model.init_args.lr": [1.0e-2, 3.0e-3]}
    headline = {"metric": "test/exact_match", "mode": "max"}
    spec = parse_spec(own_spec(tmp_path, axes=axes, headline=headline))
    sweep = divsweep.run(spec, tracking_uri=tracking_uri, progress=False)
    assert sweep.outcome == {"finished": 4, "failed": 0, "stopped": 0}
    mlf = MlflowClient(tracking_uri)
    runs = children(sweep)
    points = {
        (r.data.params["model.init_args.hidden"], r.data.params["model.init_args.lr"]) for r in runs
    }
    assert points == {("8", "0.01"), ("8", "0.003"), ("16", "0.01"), ("16", "0.003")}
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["divsweep.status"] == "finished"
        assert run.data.params["model.class_path"] == "bitrules.model.AdderNet"
        assert run.data.params["data.n_instructions"] == "6"
        # what the module logs, as it logs it, at each validation
        assert {"train/loss", "val/exact_match", "test/exact_match", "seen/exact_match"} <= set(
            run.data.metrics
        )
        history = mlf.get_metric_history(run.info.run_id, "val/exact_match")
        assert sorted(m.step for m in history) == [8, 16]
        assert any(k.startswith("system/") for k in run.data.metrics)
        contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
        assert contexts == {"training", "eval_seen", "eval_unseen", "eval_unseen_val"}

    # `divsweep status` reads the sweep's own selection and headline metrics
    status = sweep_status("own", tracking_uri)
    assert status.best_val == max(r.data.metrics["val/exact_match"] for r in runs)
    assert status.best_unseen == max(r.data.metrics["test/exact_match"] for r in runs)
    # the example's module happens to log the built-in study's name for seen groups too
    assert status.best_seen == max(r.data.metrics["seen/exact_match"] for r in runs)

    # the report of any sweep: the headline against each axis, over seeds, its Pareto set
    # against what it cost, curves and every trial
    out = tmp_path / "report"
    html = divsweep.report("own", tracking_uri=tracking_uri, out_dir=out).read_text()
    for anchor in ("summary", "axis-model.init_args.hidden", "axis-model.init_args.lr",
                   "pareto-cpu_hours", "pareto-wall_time_s", "learning-curves",
                   "trials"):  # fmt: skip
        assert f'id="{anchor}"' in html
    assert "test/exact_match vs model.init_args.hidden" in html
    assert "Headline: test/exact_match (max); selection: val/exact_match (max)" in html
    md = (out / "report.md").read_text()
    assert md.count("![") == 5  # two axes, the Pareto sets (CPU-hours, wall s), the curves
    assert "Cost: 0 GPU-hours and " in md  # what the trials held, stated
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 4 and summary["n_seeds"].eq(1).all()
    logged = mlf.list_artifacts(sweep.parent_run_id, "report")
    assert {"report/report.html", "report/report.md"} <= {a.path for a in logged}


def test_asha_and_optuna_select_on_a_metric_the_module_logs(
    ray_session, tmp_path: Path, tracking_uri: str
) -> None:
    raw = own_spec(
        tmp_path,
        axes={"model.init_args.lr": {"loguniform": [1.0e-3, 3.0e-2]}},
        search={"optuna": 3},
        scheduler={"kind": "asha", "grace_period": 8, "max_t": STEPS},
        selection={"metric": "val/exact_match", "mode": "max"},
    )
    sweep = divsweep.run(parse_spec(raw), tracking_uri=tracking_uri, progress=False)
    assert sweep.outcome["failed"] == 0
    assert sweep.outcome["finished"] + sweep.outcome["stopped"] == 3
    lrs = {float(r.data.params["model.init_args.lr"]) for r in children(sweep)}
    assert len(lrs) == 3 and all(1.0e-3 <= lr <= 3.0e-2 for lr in lrs)


def test_a_selection_metric_never_logged_stops_the_sweep_at_its_first_report(
    ray_session, tmp_path: Path, tracking_uri: str
) -> None:
    raw = own_spec(
        tmp_path,
        axes={"data.n_instructions": [4, 6, 8]},
        selection={"metric": "val/accuracy", "mode": "max"},
        retries=2,
        max_concurrent_trials=1,
    )
    with pytest.raises(UserError) as err:
        divsweep.run(parse_spec(raw), tracking_uri=tracking_uri, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "selection.metric: 'val/accuracy' is not logged by the module; at step 8 it" in message
    assert "val/exact_match" in message and "test/exact_match" in message
    mlf = MlflowClient(tracking_uri)
    (parent,) = mlf.search_runs(
        [mlf.get_experiment_by_name("own").experiment_id], "tags.`divsweep.role` = 'sweep'"
    )
    assert parent.info.status == "FAILED"
    # stopped at once: neither retried nor followed by the other points
    assert len(mlf.search_runs([parent.info.experiment_id], "tags.`divsweep.role` = 'trial'")) == 1


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"model": {"class_path": "bitrules.nope.Net"}}, "sweep.model.class_path: cannot import"),
        (
            {"model": {"class_path": "bitrules.data.BitRules"}},
            "sweep.model.class_path: bitrules.data.BitRules is not a "
            "pytorch_lightning.core.module.LightningModule",
        ),
        (
            {"datamodule": {"class_path": "bitrules.model.AdderNet"}},
            "sweep.datamodule.class_path: bitrules.model.AdderNet is not a",
        ),
        (
            {"model": {"init_args": {"hiden": 8}}},
            "sweep.model.init_args.hiden: bitrules.model.AdderNet takes no such argument (it "
            "takes bits, hidden, layers, lr)",
        ),
        ({"model": {"init_args": {"hidden": "wide"}}}, "sweep.model.init_args.hidden: Expected"),
        ({"datamodule": {"init_args": {"data": "x"}}}, "datamodule.init_args.data: divsweep"),
        ({"trainer": {"devices": 2}}, "sweep.trainer: devices is divsweep's to set"),
        ({"trainer": {"max_steps": None}}, "give max_steps or max_epochs"),
        ({"eval": {"seen_examples": 5}}, "sweep.eval: "),
    ],
)
def test_bad_specs_are_one_line_before_any_work(tmp_path: Path, change: dict, error: str) -> None:
    raw = own_spec(tmp_path)
    for section, value in change.items():
        if section in raw and "init_args" in value:
            raw[section]["init_args"] = {**raw[section]["init_args"], **value["init_args"]}
        elif section in raw:
            raw[section] = {**raw[section], **value}
        else:
            raw[section] = value
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert error in str(err.value) and "\n" not in str(err.value)


def test_an_axis_over_init_args_is_checked_against_the_signature(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"sweep.axes.model.init_args.hidden: .*\(at model"):
        parse_spec(own_spec(tmp_path, axes={"model.init_args.hidden": [8, "wide"]}))
    with pytest.raises(SpecError, match="sweep.axes.trainer.max_step: unknown setting"):
        parse_spec(own_spec(tmp_path, axes={"trainer.max_step": [8]}))


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"source": {"group_column": "topic"}}, "data.source.group_column: 'topic' is not a"),
        ({"test_groups": 8, "validation_groups": 8}, "data.n_instructions: the table has 16"),
    ],
)
def test_bad_data_exits_2_before_any_trial(tmp_path: Path, data: dict, error: str) -> None:
    raw = own_spec(tmp_path)
    source = raw["data"]["source"] | data.pop("source", {})
    raw["data"] = raw["data"] | data | {"source": source}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, err = run_to_end([DIVSWEEP, "run", str(spec), "--tracking-uri", uri], tmp_path)
    assert code == 2 and error in err, err
    assert not (tmp_path / "ray_results").exists()  # no Tune experiment began


def test_divsweep_train_runs_one_user_trial_without_ray(tmp_path: Path) -> None:
    raw = own_spec(tmp_path)
    trial = {k: raw[k] for k in ("model", "datamodule", "trainer", "data")}
    trial["data"]["seed"] = 3
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(trial))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [DIVSWEEP, "train", str(path), "--tracking-uri", uri, "--workdir", str(tmp_path / "w")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "val/exact_match" in done.stdout and "test/exact_match" in done.stdout
    mlf = MlflowClient(uri)
    (run,) = mlf.search_runs([mlf.get_experiment_by_name("divsweep-train").experiment_id])
    assert run.data.params["model.init_args.hidden"] == "16"
    history = mlf.get_metric_history(run.info.run_id, "val/exact_match")
    assert sorted(m.step for m in history) == [8, 16]


def test_a_notice_between_validations_checkpoints_that_step_and_the_retry_goes_on_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from divsweep.datasets import grouped
    from divsweep.trainer import notice
    from divsweep.trainer.callback import ReportEachValidation
    from divsweep.trainer.config import trial_key
    from divsweep.trainer.fit import fit_user_trial

    trial = parse_spec(own_spec(tmp_path)).trials()[0]
    data = grouped.build(trial.data, cache_dir=tmp_path / "cache")
    fresh = notice.Notice()  # this test's: the process's own is set once and for good
    monkeypatch.setattr(notice, "NOTICE", fresh)
    pauses = tmp_path / "pauses"
    monkeypatch.setenv(PAUSE_DIR, str(pauses))
    monkeypatch.setenv(PAUSE_AT_BOUNDARY, "5")  # between the validations at 8 and 16
    reports: list[dict] = []

    def attempt(resume_from=None) -> ReportEachValidation:
        callback = ReportEachValidation(
            tmp_path / "w", lambda m, d: reports.append(m), trial_key(trial), "val/exact_match"
        )
        fit_user_trial(trial, callback, data=data, resume_from=resume_from, accelerator="cpu")
        return callback

    stopped: list[int] = []

    def first() -> None:
        with pytest.raises(notice.Preempted) as raised:
            attempt()
        stopped.append(raised.value.step)

    training = threading.Thread(target=first)
    training.start()
    while not paused(pauses):  # at the boundary of step 5, where the notice finds it
        training.join(0.05)
    fresh.give(notice.SIGTERM)
    training.join(120)
    assert stopped == [5]
    (at_notice,) = reports
    assert at_notice["step"] == 5 and at_notice[tracking.PREEMPTIONS] == 1
    assert "val/exact_match" not in at_notice  # no validation at 5: nothing stale reported

    monkeypatch.setattr(notice, "NOTICE", notice.Notice())  # the retry's process
    (checkpoint,) = (tmp_path / "w" / "checkpoints").glob("step-*")
    attempt(resume_from=checkpoint)
    assert starts(pauses, trial_key(trial)) == [1, 6]
    assert [m["step"] for m in reports[1:]] == [8, 16]
    assert all("val/exact_match" in m for m in reports[1:])


@pytest.mark.slow
def test_resume_after_driver_sigkill_finishes_every_user_trial_once(tmp_path: Path) -> None:
    grid = [4, 6, 8]
    raw = own_spec(tmp_path, name="own-kill", axes={"data.n_instructions": grid})
    raw["max_concurrent_trials"] = 1
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pauses = tmp_path / "pauses"
    driver = start(
        [DIVSWEEP, "run", str(spec), "--tracking-uri", uri, "--no-report"],
        tmp_path,
        pause_env(pauses, 8),
    )
    try:
        kill_one_done_one_paused(driver, pauses, uri, "own-kill", 8)
    finally:
        kill_group(driver.pid)
    code, err = run_to_end(
        [DIVSWEEP, "resume", "own-kill", "--storage-path", raw["storage_path"], "--no-report"],
        tmp_path,
    )
    assert code == 0, err
    mlf = MlflowClient(uri)
    runs = mlf.search_runs(
        [mlf.get_experiment_by_name("own-kill").experiment_id], "tags.`divsweep.role` = 'trial'"
    )
    assert len(runs) == len(grid) and len({r.data.tags["divsweep.trial_key"] for r in runs}) == 3
    for run in runs:
        assert run.data.tags["divsweep.status"] == "finished"
        history = mlf.get_metric_history(run.info.run_id, "val/exact_match")
        assert sorted(m.step for m in history) == [8, 16]  # no step twice, none missing


@pytest.mark.slow
def test_the_worked_example_runs_as_the_readme_says(tmp_path: Path) -> None:
    project = tmp_path / "own_model"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("tasks.parquet", ".divsweep"))
    started = time.monotonic()
    make = subprocess.run(
        [sys.executable, "-m", "bitrules.tasks", "tasks.parquet"], cwd=project, check=True
    )
    assert make.returncode == 0
    code, err = run_to_end([DIVSWEEP, "run", "sweep.yaml"], project)
    assert code == 0, err
    report = (project / "reports" / "own-model" / "report.md").read_text()
    assert "test/exact_match" in report
    print(f"\nworked example: {time.monotonic() - started:.0f} s")


def caesar_table(n_groups: int = 12, rows: int = 24) -> pa.Table:
    """Group k shifts each letter of a word by k: prompts and completions, no model code."""
    rng = np.random.default_rng(0)
    out = {"task": [], "instruction": [], "output": []}
    for k in range(n_groups):
        for _ in range(rows):
            word = "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(3, 7)))
            out["task"].append(f"shift-{k:02d}")
            out["instruction"].append(f"shift {k}: {word}")
            out["output"].append("".join(chr(97 + (ord(c) - 97 + k) % 26) for c in word))
    return pa.table(out)


def test_the_builtin_gpt_trains_on_a_prompt_completion_table(tmp_path: Path) -> None:
    from divsweep.datasets import grouped
    from divsweep.trainer.callback import ReportEachValidation
    from divsweep.trainer.config import parse_trial_config
    from divsweep.trainer.fit import fit_user_trial

    source = tmp_path / "shifts.parquet"
    pq.write_table(caesar_table(), source)
    trial = parse_trial_config(
        {
            "model": {
                "class_path": "divsweep.trainer.text.TextGPT",
                "init_args": {
                    "n_layers": 1,
                    "d_model": 32,
                    "max_len": 32,
                    "lr": 3e-3,
                    "warmup_steps": 5,
                },
            },  # fmt: skip
            "datamodule": {
                "class_path": "divsweep.trainer.text.TextData",
                "init_args": {
                    "prompt_column": "instruction",
                    "completion_column": "output",
                    "batch_size": 16,
                },  # fmt: skip
            },
            "trainer": {"max_steps": 60, "val_check_interval": 20, "check_val_every_n_epoch": None},
            "data": {
                "source": {"path": str(source), "group_column": "task"},
                "test_groups": 2,
                "validation_groups": 2,
                "n_instructions": 6,
                "budget": 96,
                "seen_examples": 20,
            },  # fmt: skip
        }
    )
    reports = []
    callback = ReportEachValidation(
        tmp_path / "w", lambda m, _: reports.append(m), "text", "unseen_val/exact_match"
    )
    fit_user_trial(trial, callback, data=grouped.build(trial.data, tmp_path / "cache"))
    assert [r["step"] for r in reports] == [20, 40, 60]
    for name in ("unseen_val/exact_match", "unseen/exact_match", "seen/exact_match"):
        assert all(0.0 <= r[name] <= 1.0 for r in reports)
    assert reports[-1]["train/loss"] < reports[0]["train/loss"]  # it learns the bytes
