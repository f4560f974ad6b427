"""A user's grouped table as a diversity sweep's data: groups (instructions, tasks, rules) held
out, drawn and sized exactly as the built-in task's rules are.

The source is a Parquet file, an Arrow IPC file, a JSON Lines file, or a Hugging Face
`datasets` folder written by `save_to_disk` (Arrow underneath); one column names each row's
group, the others are whatever the user's datamodule reads. From it a data config builds four
content-addressed Arrow files (`TrialData`), the same kinds the built-in task writes:

- `eval_unseen` / `eval_unseen_val`: rows of the held-out test / validation groups, the first
  `test_groups` and the next `validation_groups` of the groups in an order fixed by
  `heldout_seed`; no row of theirs is ever in a training set;
- `train`: `n_instructions` training groups, the first of the other groups in an order fixed by
  the rule seed (so nested across `n_instructions` for one seed, different across seeds), with
  the budget split across them as for built-in rules (uniform or power law, `sampling.py`);
- `eval_seen`: up to `seen_examples` rows of the training groups that training did not use.

Every output row keeps the source's columns and adds `group_id` (the group's position in the
held-out-first order) . The source is read twice in record batches (its group column, then the
selected rows), so a file much larger than memory builds with about one batch and the outputs
in memory (`benchmarks/bench_grouped.py` measures the peak).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from divsweep.config import FrozenConfig
from divsweep.datasets.config import alpha_iff_powerlaw, one_size, total_examples
from divsweep.errors import SpecError

GROUP_ID = "group_id"
FORMATS = ("parquet", "arrow", "jsonl", "hf")
_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
             ".jsonl": "jsonl", ".ndjson": "jsonl"}  # fmt: skip
BATCH_ROWS = 65_536


class TableSource(FrozenConfig):
    """Where a user's grouped rows are and which column names the group."""

    _root: ClassVar[str] = "data.source"

    path: Path
    group_column: str = Field(min_length=1)
    format: Literal["auto", "parquet", "arrow", "jsonl", "hf"] = "auto"
    columns: tuple[str, ...] | None = Field(
        None, description="the columns trials receive besides the group's; None: all"
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # workers run in other directories: a relative path would drift
        return value.expanduser().resolve()

    @property
    def kind(self) -> str:
        if self.format != "auto":
            return self.format
        if self.path.is_dir():
            return "hf"
        kind = _SUFFIXES.get(self.path.suffix.lower())
        if kind is None:
            raise SpecError(
                f"data.source.format: cannot tell the format of {self.path.name} from its "
                f"suffix; set format to one of {', '.join(FORMATS)}"
            )
        return kind


class GroupedDataConfig(FrozenConfig):
    """One training set drawn from a grouped table; the field names are the built-in data
    config's (`n_instructions`, `budget`, `distribution`, `rule_seed`, ...), so every data axis
    of a sweep means the same on a user's table."""

    _root: ClassVar[str] = "data"

    source: TableSource
    test_groups: int = Field(ge=1, description="held-out groups the report headlines")
    validation_groups: int = Field(0, ge=0, description="held-out groups selection reads")
    heldout_seed: int = 0
    examples_per_heldout_group: int | None = Field(None, ge=1, description="None: every row")
    seen_examples: int = Field(1000, ge=0)
    n_instructions: int = Field(ge=1)
    distribution: Literal["uniform", "powerlaw"] = "uniform"
    alpha: float | None = Field(None, gt=0, validate_default=True)
    examples_per_instruction: int | None = Field(None, ge=1)
    budget: int | None = Field(None, ge=1, validate_default=True)
    seed: int = 0
    rule_seed: int | None = Field(
        None, ge=0, validate_default=True, description="order of the groups drawn; None: seed"
    )

    _alpha_iff_powerlaw = field_validator("alpha")(alpha_iff_powerlaw)
    _one_size = field_validator("budget")(one_size)

    @property
    def group_order_seed(self) -> int:
        return self.seed if self.rule_seed is None else self.rule_seed

    @property
    def total_examples(self) -> int:
        return total_examples(self)


# ---- reading the source in record batches ---------------------------------------------------


def batches(source: TableSource, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The source's rows in order, a record batch at a time (`columns`: only those)."""
    path, kind = source.path, source.kind
    if not path.exists():
        raise SpecError(f"data.source.path: not found: {path}")
    if kind == "parquet":
        import pyarrow.parquet as pq

        # one row group decoded at a time, no read-ahead threads: memory stays near a batch
        reader = pq.ParquetFile(path, pre_buffer=False)
        yield from reader.iter_batches(batch_size=BATCH_ROWS, columns=columns, use_threads=False)
    elif kind == "arrow":
        yield from _ipc_batches(path, columns)
    elif kind == "jsonl":
        import pyarrow.json as pj

        # no schema inference surprises between blocks: each block must agree with the first
        reader = pj.open_json(path, read_options=pj.ReadOptions(block_size=1 << 24))
        for batch in reader:
            yield batch.select(columns) if columns else batch
    else:
        for file in hf_data_files(path):
            yield from _ipc_batches(file, columns)


def _ipc_batches(path: Path, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    with pa.memory_map(str(path)) as mapped:
        try:
            reader = pa.ipc.open_file(mapped)
            parts = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # the stream format (what `datasets` writes)
            mapped.seek(0)
            parts = pa.ipc.open_stream(mapped)
        for batch in parts:
            yield batch.select(columns) if columns else batch


def hf_data_files(folder: Path) -> list[Path]:
    """The Arrow files of a `datasets` `save_to_disk` folder, in the order its state names."""
    state = folder / "state.json"
    if not state.is_file():
        raise SpecError(
            f"data.source.path: {folder} is a folder without state.json; a Hugging Face "
            "dataset folder is what Dataset.save_to_disk writes (a DatasetDict: name one split)"
        )
    files = [folder / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    return files


def check_columns(source: TableSource) -> None:
    """The group column and the columns asked for are in the source, which has rows."""
    have, rows = _names_and_rows(source)
    if not rows:
        raise SpecError(f"data.source.path: {source.path} holds no rows")
    for name, field in [(source.group_column, "group_column"),
                        *((c, "columns") for c in source.columns or ())]:  # fmt: skip
        if name not in have:
            raise SpecError(
                f"data.source.{field}: {name!r} is not a column of {source.path.name}; "
                f"it has {', '.join(have)}"
            )


def _names_and_rows(source: TableSource) -> tuple[list[str], bool]:
    """The source's column names and whether it has a row, from its footer where it has one
    (Parquet), else from its first batch."""
    if source.kind == "parquet" and source.path.is_file():
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(source.path).metadata
        return meta.schema.to_arrow_schema().names, meta.num_rows > 0
    first = next(batches(source), None)
    return ([], False) if first is None else (first.schema.names, first.num_rows > 0)


@functools.lru_cache(maxsize=64)
def fingerprint(source: TableSource, stamp: tuple) -> str:
    """sha256 of the source's bytes (every data file of a folder): the cache key's content
    part, so an edited file is a new dataset. `stamp` (sizes, mtimes) keys this process's
    memo: the bytes are hashed once per process per version of the file."""
    digest = hashlib.sha256()
    for file in _files(source):
        with open(file, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def _files(source: TableSource) -> list[Path]:
    return hf_data_files(source.path) if source.kind == "hf" else [source.path]


def source_digest(source: TableSource) -> str:
    if not source.path.exists():
        raise SpecError(f"data.source.path: not found: {source.path}")
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in _files(source))
    return fingerprint(source, stamp)


# ---- groups ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def group_rows(source: TableSource, digest: str) -> tuple[tuple[str, ...], np.ndarray]:
    """(group names sorted, each row's index into them), reading only the group column.
    `digest` keys the memo to the file's content."""
    column = source.group_column
    check_columns(source)
    names: dict[str, int] = {}
    codes = []
    for batch in batches(source, [column]):
        values = pc.cast(batch.column(column), pa.string())
        if values.null_count:
            raise SpecError(f"data.source.group_column: {column!r} has empty (null) values")
        encoded = pc.dictionary_encode(values)
        local = [names.setdefault(name, len(names)) for name in encoded.dictionary.to_pylist()]
        codes.append(np.asarray(local, np.int32)[encoded.indices.to_numpy(zero_copy_only=False)])
    if not codes or not names:
        raise SpecError(f"data.source.path: {source.path} holds no rows")
    first_seen = list(names)
    order = np.argsort(first_seen)  # sorted names: the order does not depend on row order
    rank = np.empty(len(first_seen), np.int32)
    rank[order] = np.arange(len(first_seen))
    return tuple(first_seen[i] for i in order), rank[np.concatenate(codes)]


def _permutation(n: int, *seeds: int) -> np.ndarray:
    return np.random.default_rng(list(seeds)).permutation(n)


def group_order(n_groups: int, cfg: GroupedDataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(held-out groups: test first, then validation; training candidates in the rule seed's
    order) as indices into the sorted group names."""
    n_heldout = cfg.test_groups + cfg.validation_groups
    if n_heldout + cfg.n_instructions > n_groups:
        raise SpecError(
            f"data.n_instructions: the table has {n_groups} groups; {cfg.test_groups} test + "
            f"{cfg.validation_groups} validation groups leave {max(0, n_groups - n_heldout)} "
            f"to train on, got {cfg.n_instructions}"
        )
    universe = _permutation(n_groups, cfg.heldout_seed, 0x6E1D)
    heldout, rest = universe[:n_heldout], np.sort(universe[n_heldout:])
    return heldout, rest[_permutation(len(rest), cfg.group_order_seed, 0x7A1E)]


# ---- building the four sets -----------------------------------------------------------------


def split_rows(cfg: GroupedDataConfig, digest: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """kind -> (source row indices in output order, group ids): which rows each file holds."""
    from divsweep.datasets.sampling import allocation

    names, row_group = group_rows(cfg.source, digest)
    heldout, candidates = group_order(len(names), cfg)
    training = candidates[: cfg.n_instructions]
    # group id: position in held-out-first order (as built-in rule ids are)
    gid = np.full(len(names), -1, np.int64)
    gid[np.concatenate([heldout, candidates])] = np.arange(len(names))
    by_group = np.argsort(row_group, kind="stable")
    starts = np.searchsorted(row_group[by_group], np.arange(len(names) + 1))

    def rows_of(group: int, *stream: int) -> np.ndarray:
        rows = by_group[starts[group] : starts[group + 1]]
        return rows[_permutation(len(rows), cfg.seed, int(group), *stream)]

    counts = allocation(
        cfg.n_instructions, cfg.total_examples, cfg.distribution, cfg.alpha, cfg.seed
    )
    train, seen_pool = [], []
    for group, count in zip(training.tolist(), counts.tolist(), strict=True):
        rows = rows_of(group, 0x7EA1)
        if count > len(rows):
            raise SpecError(
                f"data.budget: group {names[group]!r} has {len(rows)} rows and the set gives it "
                f"{count} examples; lower the budget or examples_per_instruction"
            )
        train.append(rows[:count])
        seen_pool.append(rows[count:])
    rng = np.random.default_rng([cfg.seed, 0x5EE4])
    train_rows = rng.permutation(np.concatenate(train))
    # seen eval: each training group equally likely, rows training did not use
    seen_rows = _round_robin(seen_pool, cfg.seen_examples, rng)

    def heldout_rows(groups: np.ndarray) -> np.ndarray:
        cap = cfg.examples_per_heldout_group
        picked = [rows_of(g, 0x0A5E)[:cap] for g in groups.tolist()]
        return np.concatenate(picked) if picked else np.zeros(0, np.int64)

    test, val = heldout[: cfg.test_groups], heldout[cfg.test_groups :]
    sets = {
        "train": train_rows,
        "eval_seen": seen_rows,
        "eval_unseen": heldout_rows(test),
        "eval_unseen_val": heldout_rows(val),
    }
    return {kind: (rows, gid[row_group[rows]]) for kind, rows in sets.items()}


def _round_robin(pools: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n rows, drawing a group uniformly at each turn among those with rows left."""
    left = [list(p) for p in pools]
    out: list[int] = []
    alive = [i for i, p in enumerate(left) if p]
    while len(out) < n and alive:
        i = alive[int(rng.integers(len(alive)))]
        out.append(left[i].pop())
        if not left[i]:
            alive.remove(i)
    return np.asarray(out, np.int64)


def take_rows(source: TableSource, wanted: dict[str, np.ndarray]) -> dict[str, pa.Table]:
    """kind -> the source rows `wanted[kind]` (indices, in that order), read in one streamed
    pass: each batch gives up only the rows some set asked for (the sets are disjoint)."""
    kinds = list(wanted)
    rows = np.concatenate([wanted[k] for k in kinds])
    owner = np.repeat(np.arange(len(kinds)), [len(wanted[k]) for k in kinds])
    position = np.concatenate([np.arange(len(wanted[k])) for k in kinds])
    by_row = np.argsort(rows, kind="stable")
    rows, owner, position = rows[by_row], owner[by_row], position[by_row]
    columns = None if source.columns is None else [*source.columns, source.group_column]
    pieces: dict[int, list[pa.RecordBatch]] = {i: [] for i in range(len(kinds))}
    placed: dict[int, list[np.ndarray]] = {i: [] for i in range(len(kinds))}
    start = 0
    schema = None
    for batch in batches(source, columns):
        schema = batch.schema
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        taken = batch.take(pa.array(rows[lo:hi] - start))
        for i in range(len(kinds)):
            mine = owner[lo:hi] == i
            if mine.any():
                pieces[i].append(taken.filter(pa.array(mine)))
                placed[i].append(position[lo:hi][mine])
        start += batch.num_rows
    if start <= (rows[-1] if len(rows) else -1):  # the file shrank under us
        raise SpecError(f"data.source.path: {source.path} changed while it was read")
    tables = {}
    for i, kind in enumerate(kinds):
        table = pa.Table.from_batches(pieces[i], schema=schema)
        order = np.argsort(np.concatenate(placed[i])) if placed[i] else np.zeros(0, np.int64)
        tables[kind] = table.take(pa.array(order))
    return tables


def build(cfg: GroupedDataConfig, cache_dir: Path | None = None):
    """The four files of one grouped data config (`TrialData`), each built at most once and
    reused from the content-addressed cache: the key covers the source's bytes, the column
    choice and the settings each file's rows depend on."""
    from divsweep.datasets.build import TrialData
    from divsweep.datasets.cache import cache_dir as resolve_cache_dir
    from divsweep.datasets.cache import dataset_key, ensure

    root = resolve_cache_dir(cache_dir)
    digest = source_digest(cfg.source)
    config = cfg.canonical() | {"source": {"sha256": digest, **_source_settings(cfg.source)}}
    paths = {kind: root / f"{dataset_key('grouped_' + kind, config)}.arrow" for kind in KINDS}
    split: dict[str, pa.Table] = {}

    def make(kind: str) -> pa.Table:
        if not split:  # one streamed pass makes every set; the cache may hold some already
            chosen = split_rows(cfg, digest)
            tables = take_rows(cfg.source, {k: rows for k, (rows, _) in chosen.items()})
            for k, table in tables.items():
                split[k] = table.append_column(GROUP_ID, pa.array(chosen[k][1], pa.int32()))
        return split[kind]

    for kind, path in paths.items():
        ensure(path, kind, config, lambda kind=kind: make(kind))
    return TrialData(**paths)


KINDS = ("train", "eval_seen", "eval_unseen", "eval_unseen_val")


def _source_settings(source: TableSource) -> dict:
    # not the path: the same bytes elsewhere (another node, a moved file) are the same dataset
    return {"group_column": source.group_column, "columns": source.columns}
