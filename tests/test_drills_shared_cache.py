"""Drill: two sweeps started at the same moment (two `divsweep run` processes, different names,
the same data settings, one cache folder) build each dataset file exactly once between them;
the other process waits on the file's lock and reuses it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from test_drills_driver_kill import kill_group
from test_orchestrator_spec import tiny_spec

# `divsweep run` through its entry point, with the data layer's INFO log ("built <kind> <path>",
# one line per file a process builds) on stderr
RUN = (
    "import logging, sys; logging.basicConfig(level=logging.WARNING);"
    "logging.getLogger('divsweep.datasets').setLevel(logging.INFO);"
    "from divsweep.cli import main; sys.argv[0] = 'divsweep'; main()"
)
BUILT = re.compile(r"built (train|eval_seen|eval_unseen|eval_unseen_val) (\S+\.arrow)")
N_INSTRUCTIONS = [32, 64]
# train + eval_seen per data config; one eval_unseen (test rules), one eval_unseen_val
FILES = 2 * len(N_INSTRUCTIONS) + 2


@pytest.mark.slow
def test_two_sweeps_at_once_build_each_dataset_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    drivers = {}
    started = time.monotonic()
    for name in ("drill-cache-a", "drill-cache-b"):
        raw = tiny_spec(
            tmp_path,
            name=name,
            data={"examples_per_instruction": 64},
            axes={"data.n_instructions": N_INSTRUCTIONS},
            train={"max_steps": 4, "eval_every": 4},
        )
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump(raw))
        uri = f"sqlite:///{tmp_path / name}.db"
        cmd = [sys.executable, "-c", RUN, "run", str(spec), "--tracking-uri", uri, "--no-report"]
        drivers[name] = (
            uri,
            subprocess.Popen(
                cmd, cwd=tmp_path, env=env, start_new_session=True, text=True,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            ),
        )  # fmt: skip
    built: dict[str, list[str]] = {}
    try:
        for name, (_, proc) in drivers.items():
            _, err = proc.communicate(timeout=400)
            assert proc.returncode == 0, err
            built[name] = [m.group(2) for m in BUILT.finditer(err)]
    finally:
        for _, proc in drivers.values():
            kill_group(proc.pid)
    elapsed = time.monotonic() - started

    files = sorted((tmp_path / "cache").glob("*.arrow"))
    assert len(files) == FILES
    every_build = [path for paths in built.values() for path in paths]
    assert sorted(every_build) == sorted(str(f) for f in files)  # each built once, by one of them
    pids = {proc.pid for _, proc in drivers.values()}
    for f in files:
        assert json.loads(f.with_suffix(".manifest.json").read_text())["built_by"]["pid"] in pids
    assert not list((tmp_path / "cache").glob(".*.tmp"))  # no half-written leftovers
    for name, (uri, _) in drivers.items():
        mlf = MlflowClient(uri)
        runs = mlf.search_runs(
            [mlf.get_experiment_by_name(name).experiment_id],
            filter_string="tags.`divsweep.role` = 'trial' and tags.`divsweep.status` = 'finished'",
        )
        assert len(runs) == len(N_INSTRUCTIONS), name
    split = " + ".join(str(len(paths)) for paths in built.values())
    print(f"\ndrill shared cache: {elapsed:.1f} s for both sweeps; {FILES} files, built "
          f"{split} = {len(every_build)} times by the two drivers")  # fmt: skip
