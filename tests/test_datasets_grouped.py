"""A user's grouped table as sweep data (datasets/grouped.py): every source format, held-out
groups never trained on, nesting across the number of groups, exact budgets, power laws, the
cache, and each bad input as one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bitrules.tasks import make_table

from divsweep.datasets import grouped
from divsweep.datasets.grouped import GroupedDataConfig
from divsweep.datasets.sampling import allocation
from divsweep.errors import SpecError

KINDS = ("train", "eval_seen", "eval_unseen", "eval_unseen_val")


def read(path: Path) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def write_source(table: pa.Table, folder: Path, kind: str) -> Path:
    """`table` as a file (or folder) of the given kind: what a user would hand divsweep."""
    if kind == "parquet":
        pq.write_table(table, folder / "tasks.parquet", row_group_size=100)
        return folder / "tasks.parquet"
    if kind == "jsonl":
        path = folder / "tasks.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in table.to_pylist()))
        return path
    if kind == "arrow":
        path = folder / "tasks.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table, max_chunksize=100)
        return path
    # Hugging Face's `datasets` writes the folder from the table's Parquet (no download), in a
    # process of its own: here the repository's datasets/ folder (pytest's pythonpath) would
    # shadow it
    pq.write_table(table, folder / "for-hf.parquet")
    script = (
        "import sys, datasets; "
        "datasets.Dataset.from_parquet(sys.argv[1]).save_to_disk(sys.argv[2], max_shard_size=4096)"
    )
    hf = folder / "hf"
    subprocess.run(
        [sys.executable, "-c", script, str(folder / "for-hf.parquet"), str(hf)],
        cwd=folder, check=True, capture_output=True,
    )  # fmt: skip
    assert len(grouped.hf_data_files(hf)) > 1  # several shards, read in their order
    return hf


def config(path: Path, **settings) -> GroupedDataConfig:
    base = dict(test_groups=6, validation_groups=4, n_instructions=8, budget=160, seen_examples=50)
    return GroupedDataConfig(source={"path": str(path), "group_column": "task"}, **base | settings)


def groups(path: Path) -> set[str]:
    return set(read(path)["task"].to_pylist())


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "arrow", "hf"])
def test_every_format_gives_the_same_sets(tmp_path: Path, kind: str) -> None:
    table = make_table(bits=5, rows_per_task=20)
    reference = grouped.build(config(write_source(table, tmp_path, "parquet")), tmp_path / "c1")
    (tmp_path / kind).mkdir()
    data = grouped.build(config(write_source(table, tmp_path / kind, kind)), tmp_path / "c2")
    for name in KINDS:
        ours, theirs = read(getattr(data, name)), read(getattr(reference, name))
        assert ours.column("x").to_pylist() == theirs.column("x").to_pylist()
        assert ours.column("task").to_pylist() == theirs.column("task").to_pylist()
        assert ours.column("group_id").to_pylist() == theirs.column("group_id").to_pylist()


def test_held_out_groups_never_train_and_sets_nest(tmp_path: Path) -> None:
    source = write_source(make_table(bits=5, rows_per_task=32), tmp_path, "parquet")
    cache = tmp_path / "cache"
    heldout = set()
    for seed in (0, 1):
        trained = []
        for n in (5, 8, 16):
            data = grouped.build(config(source, n_instructions=n, seed=seed), cache)
            train = read(data.train)
            test, val = groups(data.eval_unseen), groups(data.eval_unseen_val)
            assert len(test) == 6 and len(val) == 4 and not test & val
            assert not groups(data.train) & (test | val)
            assert not groups(data.eval_seen) - groups(data.train)
            assert train.num_rows == 160  # the budget, exactly
            assert len(groups(data.train)) == n
            trained.append(groups(data.train))
            heldout |= test | val
        assert trained[0] < trained[1] < trained[2]  # nested across the number of groups
        if seed == 0:
            first = trained
    assert len(heldout) == 10  # the held-out groups do not depend on the seed
    assert first[1] != trained[1]  # another seed trains on other groups


def test_budget_and_power_law(tmp_path: Path) -> None:
    source = write_source(make_table(bits=7, rows_per_task=128), tmp_path, "parquet")
    per_group = grouped.build(config(source, budget=None, examples_per_instruction=7), tmp_path)
    counts = np.unique(read(per_group.train)["task"].to_numpy(), return_counts=True)[1]
    assert counts.tolist() == [7] * 8
    long_tail = config(source, n_instructions=16, budget=300, distribution="powerlaw", alpha=0.2)
    train = read(grouped.build(long_tail, tmp_path).train)
    counts = np.sort(np.unique(train["task"].to_numpy(), return_counts=True)[1])[::-1]
    # the built-in rules' power law, the same draw: a few groups hold most examples, some none
    expected = np.sort(allocation(16, 300, "powerlaw", 0.2, 0))[::-1]
    assert counts.tolist() == expected[expected > 0].tolist()
    assert train.num_rows == 300 and counts[0] > 4 * np.median(expected) and expected[-1] == 0


def test_a_second_sweep_reuses_the_cache(tmp_path: Path) -> None:
    source = write_source(make_table(bits=5, rows_per_task=20), tmp_path, "parquet")
    first = grouped.build(config(source), tmp_path)
    stamps = {k: getattr(first, k).stat().st_mtime_ns for k in KINDS}
    grouped.fingerprint.cache_clear()
    grouped.group_rows.cache_clear()
    again = grouped.build(config(source), tmp_path)
    assert again == first
    assert {k: getattr(again, k).stat().st_mtime_ns for k in KINDS} == stamps
    # new bytes in the source are a new dataset
    pq.write_table(make_table(bits=5, rows_per_task=20, seed=1), source)
    assert grouped.build(config(source), tmp_path).train != first.train


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"group_column": "nope"}, "data.source.group_column: 'nope' is not a column of"),
        ({"columns": ["x", "zz"]}, "data.source.columns: 'zz' is not a column of"),
        ({"n_instructions": 30}, "data.n_instructions: the table has 32 groups; 6 test + 4"),
        ({"budget": 20_000}, "data.budget: group"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, settings: dict, error: str) -> None:
    source = write_source(make_table(bits=5, rows_per_task=20), tmp_path, "parquet")
    raw = config(source).model_dump()
    for key, value in settings.items():
        (raw["source"] if key in ("group_column", "columns") else raw)[key] = value
    with pytest.raises(SpecError, match=re.escape(error)):
        grouped.build(GroupedDataConfig.parse(raw), tmp_path)


def test_empty_and_missing_sources(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pq.write_table(make_table(bits=3, rows_per_task=1).slice(0, 0), empty)
    with pytest.raises(SpecError, match="data.source.path: .* holds no rows"):
        grouped.build(config(empty), tmp_path)
    with pytest.raises(SpecError, match="data.source.path: not found"):
        grouped.build(config(tmp_path / "missing.parquet"), tmp_path)
    (tmp_path / "tasks.csv").write_text("task,x\na,1\n")
    with pytest.raises(SpecError, match="data.source.format: cannot tell the format"):
        grouped.build(config(tmp_path / "tasks.csv"), tmp_path)
