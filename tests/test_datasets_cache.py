"""Build + cache + attach on real Arrow files: determinism, locking, corruption, zero-copy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from divsweep.datasets import (
    CorruptDatasetError,
    DataConfig,
    EvalConfig,
    TaskConfig,
    attach,
    build,
    build_all,
    decode,
)
from divsweep.datasets.cache import manifest_path
from divsweep.datasets.cli import data_app
from divsweep.datasets.rewrite import apply_rule
from divsweep.datasets.sampling import allocate
from divsweep.errors import UserError

TASK = TaskConfig(
    alphabet_size=8, pattern_length=2, replacement_length=2, input_length=(6, 10),
    p_pattern_present=0.8, n_unseen=50,
)  # fmt: skip
CFG = DataConfig(task=TASK, n_instructions=40, budget=2000, distribution="powerlaw", alpha=0.5)
EVAL = EvalConfig(seen_examples=300, unseen_instructions=20, unseen_examples_per_instruction=5)


def test_build_is_deterministic_across_cache_dirs(tmp_path: Path) -> None:
    a = build(CFG, EVAL, tmp_path / "a")
    b = build(CFG, EVAL, tmp_path / "b")
    for x, y in zip(
        (a.train, a.eval_seen, a.eval_unseen), (b.train, b.eval_seen, b.eval_unseen), strict=True
    ):
        assert x.name == y.name
        assert x.read_bytes() == y.read_bytes()
    assert build(CFG, EVAL, tmp_path / "a") == a  # cache hit, same paths
    other = build(CFG.model_copy(update={"seed": 1}), EVAL, tmp_path / "a")
    assert other.train != a.train and other.eval_unseen == a.eval_unseen  # unseen shared


def test_files_hold_the_contract_columns_and_correct_rows(tmp_path: Path) -> None:
    trial = build(CFG, EVAL, tmp_path)
    train, seen, unseen = (attach(p) for p in (trial.train, trial.eval_seen, trial.eval_unseen))
    assert len(train) == 2000 and len(seen) == 300 and len(unseen) == 100
    assert train.table.schema.names == [
        "rule_id", "pattern", "replacement", "input", "output", "applied",
        "prompt_ids", "target_ids",
    ]  # fmt: skip
    assert seen.table.schema.field("bucket").type == pa.string()
    counts = allocate(CFG)
    for rule_id, bucket in zip(seen.table["rule_id"].to_pylist(), seen.table["bucket"].to_pylist()):  # noqa: B905
        assert (bucket == "never_trained") == (counts[rule_id - TASK.n_unseen] == 0)
    assert set(seen.table["bucket"].to_pylist()) == {"head", "tail", "never_trained"}
    assert train.metadata["kind"] == "train" and train.metadata["config"]["data"]["budget"] == 2000
    for data in (train, seen, unseen):
        rows = data.table.to_pylist()
        for i in range(0, len(rows), 37):
            r = rows[i]
            assert r["output"] == apply_rule(r["pattern"], r["replacement"], r["input"])
            assert (
                decode(data.prompt_tokens(i)) == f"{r['pattern']}>{r['replacement']}|{r['input']}="
            )
            assert decode(data.target_tokens(i)) == r["output"]
            assert data.target_tokens(i)[-1].item() == 2  # EOS

    def pairs(data) -> set:
        return set(zip(data.table["rule_id"].to_pylist(), data.table["input"].to_pylist()))  # noqa: B905

    assert not pairs(seen) & pairs(train)  # new inputs for the seen rules
    assert max(unseen.table["rule_id"].to_pylist()) < TASK.n_unseen


def test_uniform_eval_seen_bucket_is_all(tmp_path: Path) -> None:
    cfg = DataConfig(task=TASK, n_instructions=10, examples_per_instruction=5)
    seen = attach(build(cfg, EVAL, tmp_path).eval_seen)
    assert set(seen.table["bucket"].to_pylist()) == {"all"}


def test_token_tensors_are_views_of_the_mapped_file(tmp_path: Path) -> None:
    path = build(CFG, EVAL, tmp_path).train
    allocated = pa.total_allocated_bytes()
    data = attach(path)
    assert pa.total_allocated_bytes() - allocated < 4096  # nothing read into Arrow's heap
    chunk = data.table["prompt_ids"].chunk(0)
    assert data.prompts.values.data_ptr() == chunk.values.buffers()[1].address
    assert data.prompts.offsets.data_ptr() == chunk.buffers()[1].address
    assert len(data.prompts) == len(data) and int(data.prompts.lengths().min()) > 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest"])
def test_corrupt_file_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    path = build(CFG, EVAL, tmp_path).train
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
        with pytest.raises(CorruptDatasetError):
            attach(path)  # size check, before any page is read
    elif damage == "flip":
        # a byte in the middle of the data: only the full checksum on a build hit can see it
        raw = bytearray(good)
        raw[len(raw) // 2] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:
        manifest_path(path).unlink()
        with pytest.raises(CorruptDatasetError):
            attach(path)
    assert build(CFG, EVAL, tmp_path).train == path
    assert path.read_bytes() == good
    assert len(attach(path)) == 2000


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIVSWEEP_CACHE", str(tmp_path / "env"))
    assert build(CFG, EVAL).train.parent == tmp_path / "env"


_BUILDER = textwrap.dedent(
    """
    import json, logging, os, sys, time
    from pathlib import Path
    from divsweep.datasets import DataConfig, EvalConfig, attach, build

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    cfg = DataConfig(n_instructions=200, budget=20000)
    trial = build(cfg, EvalConfig(seen_examples=10, unseen_instructions=5,
                                  unseen_examples_per_instruction=2), Path(sys.argv[1]))
    print(json.dumps({"rows": len(attach(trial.train)), "path": str(trial.train)}))
    """
)


def test_two_processes_build_once_and_both_read(tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILDER, str(tmp_path / "cache"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    go.touch()  # both are imported and polling: they race for the lock
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    results = [json.loads(out) for out, _ in outs]
    assert results[0] == results[1] and results[0]["rows"] == 20000
    logs = "".join(err for _, err in outs)
    for kind in ("train", "eval_seen", "eval_unseen"):
        assert logs.count(f"built {kind} ") == 1, logs
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_build_all_dedupes_nothing_but_shares_files(tmp_path: Path) -> None:
    pairs = [(CFG, EVAL), (CFG.model_copy(update={"seed": 3}), EVAL), (CFG, EVAL)]
    trials = build_all(pairs, tmp_path, progress=False)
    assert len(trials) == 3 and trials[0] == trials[2]
    assert len({t.eval_unseen for t in trials}) == 1
    assert len(list(tmp_path.glob("*.arrow"))) == 6  # 2 train, 2 eval_seen, test and val rules


def test_cli_show(tmp_path: Path) -> None:
    path = build(CFG, EVAL, tmp_path).eval_seen
    out = CliRunner().invoke(data_app, ["show", str(path)])
    assert out.exit_code == 0, out.output
    assert "300" in out.output and "no-op fraction" in out.output and "<eos>" in out.output
    missing = CliRunner().invoke(data_app, ["show", str(tmp_path / "nope.arrow")])
    assert isinstance(missing.exception, UserError) and "no such file" in str(missing.exception)


@pytest.mark.skipif(
    importlib.util.find_spec("divsweep.orchestrator.spec") is None,
    reason="divsweep.orchestrator.spec (load_spec) is not written yet",
)
def test_cli_build_from_spec(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    if not spec.exists():
        pytest.skip("configs/smoke.yaml is not written yet")
    exe = Path(sys.executable).parent / "divsweep"
    env = {**os.environ, "DIVSWEEP_CACHE": str(tmp_path)}
    out = subprocess.run([str(exe), "data", "build", str(spec)], capture_output=True, text=True,
                         env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    files = list(tmp_path.glob("*.arrow"))
    assert files and all(len(attach(f)) > 0 for f in files)
