"""A trial's datasets, described for MLflow's dataset inputs, in plain JSON (no MLflow here).

The trial reports these with its first evaluation of each attempt; the driver's tracker logs
them on the trial's run (divsweep/tracking.py: `log_datasets`). Each description is read from
the cache file itself: its Arrow schema, its schema metadata (the config it was built from)
and its manifest (rows, content sha256), all O(1) in the file's size.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from divsweep.datasets.cache import META_KEY, read_manifest
from divsweep.tracking import DATASET_CONTEXTS, DIGEST_CHARS


@functools.lru_cache(maxsize=64)
def describe(path: Path, kind: str) -> dict[str, Any]:
    """`path`: a cache file of `kind` (train, eval_seen, eval_unseen, eval_unseen_val: build.py)."""
    path = Path(path).resolve()
    with pa.memory_map(str(path)) as source:
        schema = pa.ipc.open_file(source).schema
    meta = json.loads(schema.metadata[META_KEY])
    manifest = read_manifest(path)
    return {
        "context": DATASET_CONTEXTS[kind],
        "name": dataset_name(kind, meta["config"]),
        # the cache key (the file's name): what divsweep finds the file by, cut to MLflow's
        # digest length; the source holds it whole
        "digest": path.stem[:DIGEST_CHARS],
        "source": path.as_uri(),
        "schema": [_colspec(field) for field in schema],
        "profile": {
            "num_rows": manifest["rows"],
            "cache_key": path.stem,
            "sha256": manifest["sha256"],
            "generator_version": meta["generator_version"],
            "config": meta["config"],
        },
    }


def dataset_name(kind: str, config: dict[str, Any]) -> str:
    """What the set is, at a glance in the runs table: e.g. `rewrite train: 64 rules x 20`."""
    if "source" in config:  # a user's grouped table (datasets/grouped.py)
        return _grouped_name(kind, config)
    if kind in ("eval_unseen", "eval_unseen_val"):
        task, ev = config["task"], config["eval"]
        split, n = (("test", ev["unseen_instructions"]) if kind == "eval_unseen"
                    else ("validation", ev["validation_instructions"]))  # fmt: skip
        rows = f"{n} held-out rules x {ev['unseen_examples_per_instruction']}"
        return f"{task['family']} eval unseen {split}: {rows}"
    data = config["data"]
    rules = f"{data['n_instructions']} rules"
    if kind == "eval_seen":
        return f"{data['task']['family']} eval seen: {config['eval']['seen_examples']} of {rules}"
    if data["examples_per_instruction"] is not None:
        size = f"{rules} x {data['examples_per_instruction']}"
    else:
        size = f"{data['budget']} examples of {rules}"
    if data["distribution"] == "powerlaw":
        size += f", power law {data['alpha']}"
    return f"{data['task']['family']} train: {size}"


def _grouped_name(kind: str, data: dict[str, Any]) -> str:
    what = f"{data['source']['group_column']} groups"
    if kind == "eval_unseen":
        return f"grouped eval unseen test: {data['test_groups']} held-out {what}"
    if kind == "eval_unseen_val":
        return f"grouped eval unseen validation: {data['validation_groups']} held-out {what}"
    if kind == "eval_seen":
        return f"grouped eval seen: {data['seen_examples']} of {data['n_instructions']} {what}"
    size = f"{data['n_instructions']} {what} x {data['examples_per_instruction']}"
    if data["budget"] is not None:
        size = f"{data['budget']} examples of {data['n_instructions']} {what}"
    if data["distribution"] == "powerlaw":
        size += f", power law {data['alpha']}"
    return f"grouped train: {size}"


def _colspec(field: pa.Field) -> dict[str, Any]:
    """An Arrow column as one of MLflow's schema column specs (its `mlflow_colspec` JSON)."""
    return {"name": field.name, "required": not field.nullable, **_mlflow_type(field.type)}


def _mlflow_type(arrow: pa.DataType) -> dict[str, Any]:
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return {"type": "array", "items": _mlflow_type(arrow.value_type)}
    if pa.types.is_boolean(arrow):
        return {"type": "boolean"}
    if pa.types.is_integer(arrow):
        return {"type": "integer" if arrow.bit_width <= 32 else "long"}
    if pa.types.is_floating(arrow):
        return {"type": "float" if arrow.bit_width <= 32 else "double"}
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return {"type": "string"}
    return {"type": "binary"}
