"""Drill: bad specs and bad command lines. Each one exits 2 with ONE line on stderr naming the
problem, and starts nothing: no MLflow store, no Tune folder, no dataset cache.

Run in-process through `divsweep.cli.main` (the same entry point as the console script) so the
table costs one import, not one interpreter start per row."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import free_port
from test_orchestrator_spec import tiny_spec

from divsweep.cli import main


def spec_file(**overrides) -> Callable[[Path], list[str]]:
    """`divsweep run SPEC` where SPEC is the tiny spec with `overrides` merged."""

    def argv(tmp: Path) -> list[str]:
        path = tmp / "spec.yaml"
        path.write_text(yaml.safe_dump(tiny_spec(tmp, **overrides)))
        return ["run", str(path)]

    return argv


def raw_file(text: str) -> Callable[[Path], list[str]]:
    def argv(tmp: Path) -> list[str]:
        path = tmp / "spec.yaml"
        path.write_text(text)
        return ["run", str(path)]

    return argv


def with_flags(*flags: str) -> Callable[[Path], list[str]]:
    """A valid spec, with the given options; `{closed}` becomes a port nothing listens on."""

    def argv(tmp: Path) -> list[str]:
        port = str(free_port())
        return [*spec_file()(tmp), *(f.replace("{closed}", port) for f in flags)]

    return argv


def existing_store(*args: str) -> Callable[[Path], list[str]]:
    """A command against an MLflow store that exists but holds no such experiment."""

    def argv(tmp: Path) -> list[str]:
        from mlflow import MlflowClient

        uri = f"sqlite:///{tmp / 'other.db'}"
        MlflowClient(uri).search_experiments()  # creates the store's tables
        return [*args, "--tracking-uri", uri]

    return argv


def command(*args: str) -> Callable[[Path], list[str]]:
    return lambda tmp: list(args)


CASES = {
    "negative n_instructions": (
        spec_file(axes={"data.n_instructions": [-4]}),
        "sweep.axes.data.n_instructions: Input should be greater than or equal to 1",
    ),
    "zero budget": (
        spec_file(data={"examples_per_instruction": None}, axes={"data.budget": [0]}),
        "sweep.axes.data.budget: ",
    ),
    "n_instructions not a number": (
        spec_file(axes={"data.n_instructions": ["many"]}),
        "sweep.axes.data.n_instructions: Input should be a valid integer",
    ),
    "axis not a list or distribution": (
        spec_file(axes={"data.n_instructions": "many"}),
        "sweep.axes.data.n_instructions: expected a list",
    ),
    "unknown axis path": (
        spec_file(axes={"model.d_modle": [32]}),
        "sweep.axes.model.d_modle: unknown setting",
    ),
    "axis value of the wrong type": (
        spec_file(axes={"train.lr": [1e-3, "fast"]}),
        "sweep.axes.train.lr: Input should be a valid number, unable to parse string as a "
        "number, got 'fast' (at data.n_instructions=4, train.lr='fast')",
    ),
    "max_steps not an int": (spec_file(train={"max_steps": "ten"}), "sweep.train.max_steps"),
    "zero examples per instruction": (
        spec_file(data={"examples_per_instruction": 0}),
        "sweep.data.examples_per_instruction",
    ),
    "more instructions than the universe": (
        spec_file(axes={"data.n_instructions": [4, 10**7]}),
        "sweep.axes.data.n_instructions: n_instructions + task.n_unseen",
    ),
    "unknown scheduler": (spec_file(scheduler={"kind": "pbt"}), "sweep.scheduler.kind"),
    "gpu fraction above 1": (spec_file(resources={"cpu": 1, "gpu": 1.5}), "sweep.resources.gpu"),
    "negative retries": (spec_file(retries=-1), "sweep.retries"),
    "zero concurrent trials": (spec_file(max_concurrent_trials=0), "sweep.max_concurrent_trials"),
    "unknown top-level key": (spec_file(seeds=[0, 1]), "sweep.seeds"),
    "negative alpha": (
        spec_file(axes={"data.distribution": [{"kind": "powerlaw", "alpha": -1}]}),
        "sweep.data.alpha",
    ),
    "alpha on uniform": (
        spec_file(axes={"data.distribution": [{"kind": "uniform", "alpha": 0.5}]}),
        "sweep.data.alpha",
    ),
    "spec is not a mapping": (raw_file("- 1\n- 2\n"), "expected a mapping"),
    "spec is not YAML": (raw_file("name: [unclosed\n"), "not valid YAML"),
    "missing spec file": (command("run", "nope.yaml"), "spec file not found: nope.yaml"),
    "unreachable tracking URI": (
        with_flags("--tracking-uri", "http://127.0.0.1:{closed}"),
        "cannot reach the MLflow tracking server at http://127.0.0.1:",
    ),
    "unreachable Ray address": (
        with_flags("--address", "127.0.0.1:{closed}"),
        "cannot reach the Ray cluster at '127.0.0.1:",
    ),
    "Ray address without a port": (
        with_flags("--address", "localhost"),
        "cannot reach the Ray cluster at 'localhost'",
    ),
    "resume of an unknown experiment": (
        command("resume", "ghost"),
        "no sweep found for experiment 'ghost'",
    ),
    "resume with an unreachable tracking URI": (
        command("resume", "ghost", "--tracking-uri", "http://127.0.0.1:9"),
        "no sweep found for experiment 'ghost'",
    ),
    "report of an unknown experiment": (
        existing_store("report", "ghost"),
        "experiment 'ghost' not found",
    ),
    "report from a missing store": (command("report", "ghost"), "no MLflow store at sqlite:///"),
    "status from a missing store": (command("status"), "no MLflow store at sqlite:///"),
    "negative price": (
        spec_file(cost={"gpu_hour": -2.5}),
        "sweep.cost.gpu_hour: Input should be greater than or equal to 0, got -2.5",
    ),
    "price not a number": (
        spec_file(cost={"cpu_hour": "0.04 USD"}),
        "sweep.cost.cpu_hour: Input should be a valid number, got '0.04 USD'",
    ),
    "data build of a bad spec": (
        lambda tmp: ["data", "build", spec_file(retries=-1)(tmp)[1]],
        "sweep.retries",
    ),
}


@pytest.mark.parametrize(("make_argv", "problem"), CASES.values(), ids=CASES.keys())
def test_bad_input_exits_2_with_one_line_and_starts_nothing(
    make_argv, problem: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)  # every default path (mlflow.db, .divsweep/) lands here
    argv = make_argv(tmp_path)
    before = set(tmp_path.iterdir())
    capsys.readouterr()  # what setting up the case printed
    monkeypatch.setattr(sys, "argv", ["divsweep", *argv])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert problem in lines[0], lines[0]
    assert set(tmp_path.iterdir()) == before  # no store, no Tune folder, no cache, no report
