"""Family `semantic` (Only-IF's constrained rules): generator vs reference, the train/test split,
config errors, and the rewrite family's data unchanged by the registry's new seam."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divsweep.datasets import DataConfig, EvalConfig, SemanticTask, TaskConfig, attach, build
from divsweep.datasets import semantic_reference as ref
from divsweep.datasets.rewrite import apply_rule
from divsweep.datasets.semantic import SEMANTIC_FAMILIES, construct, divisors, rules
from divsweep.errors import SpecError

SMALL = {
    "family": "semantic",
    "alphabet_size": 4,
    "pattern_length": 12,
    "input_length": [14, 20],
    "train_k": [3, 12],
    "n_unseen": 60,
    "p_pattern_present": 0.8,
}
EVAL = EvalConfig(seen_examples=400, unseen_instructions=60, unseen_examples_per_instruction=20)

families = st.sampled_from(SEMANTIC_FAMILIES)
bases = st.text(alphabet="abcd", min_size=1, max_size=8)


@settings(max_examples=3000, deadline=None)
@given(families, bases, st.integers(1, 8))
def test_construct_matches_the_reference(family: str, base: str, k: int) -> None:
    s = construct(family, base, k)
    assert s == ref.build(family, base, k)
    assert ref.is_member(s, family, k)


@settings(max_examples=3000, deadline=None)
@given(families, st.text(alphabet="ab", min_size=1, max_size=12), st.integers(1, 6))
def test_membership_agrees_with_construction(family: str, s: str, k: int) -> None:
    # a string is a member iff building from its own base gives it back
    if len(s) % k:
        assert not ref.is_member(s, family, k)
        return
    base = s[::k] if family == "repeated" else s[: len(s) // k]
    assert ref.is_member(s, family, k) == (construct(family, base, k) == s)


def test_the_papers_examples() -> None:
    assert construct("repeated", "abc", 3) == "aaabbbccc"
    assert construct("periodic", "abc", 2) == "abcabc"
    assert construct("mirrored", "abc", 3) == "abccbaabc"
    assert divisors(60, (3, 60)) == [3, 4, 5, 6, 10, 12, 15, 20, 30, 60]


def _rows(path: Path) -> list[dict]:
    return attach(path).table.select(["rule_id", "pattern", "replacement", "input", "output",
                                      "applied"]).to_pylist()  # fmt: skip


@pytest.mark.parametrize(
    "split",
    [
        {},  # all three families, k 3-12 vs k 1-2: the paper's set-up
        {"train_families": ["repeated"], "test_families": ["periodic", "mirrored"]},
        {"train_families": ["periodic"], "train_k": [4, 6], "test_k": [2, 3]},
    ],
    ids=["mix-vs-low-k", "by-family", "by-k"],
)
def test_rows_follow_the_reference_and_held_out_rules_never_train(
    split: dict, tmp_path: Path
) -> None:
    task = SemanticTask.parse({**SMALL, **split})
    cfg = DataConfig(task=task, n_instructions=300, budget=3000, seed=1)
    trial = build(cfg, EVAL, tmp_path)
    train_ks = divisors(task.pattern_length, task.train_k)
    test_ks = divisors(task.pattern_length, task.test_k)
    train, unseen = _rows(trial.train), _rows(trial.eval_unseen)
    assert len(train) == 3000 and len(unseen) == 60 * 20
    for rows, fams, ks in ((train, task.train_families, train_ks),
                           (unseen, task.test_families, test_ks)):  # fmt: skip
        for r in rows:
            x, y = r["pattern"], r["replacement"]
            assert len(x) == len(y) == 12 and x != y
            # x and y share one (family, k) of their side of the split
            assert ref.structures(x, fams, ks) & ref.structures(y, fams, ks)
            assert r["output"] == apply_rule(x, y, r["input"])
            assert r["applied"] == (x in r["input"])
    for r in unseen:  # held out: no training family's structure at any training k
        for s in (r["pattern"], r["replacement"]):
            assert not ref.structures(s, task.train_families, train_ks)
    train_rules = {(r["pattern"], r["replacement"]) for r in train}
    unseen_rules = {(r["pattern"], r["replacement"]) for r in unseen}
    assert not train_rules & unseen_rules
    assert {r["rule_id"] for r in unseen} <= set(range(60)) and min(
        r["rule_id"] for r in train
    ) >= 60


def test_every_training_family_and_level_is_used() -> None:
    task = SemanticTask.parse(SMALL)
    used = set()
    for x, _ in rules(task, 60 + 600)[60:]:
        used |= ref.structures(x, task.train_families, divisors(12, task.train_k))
    assert used == {(f, k) for f in SEMANTIC_FAMILIES for k in (3, 4, 6, 12)}


def test_rules_are_nested_and_independent_of_the_held_out_pool_size() -> None:
    task = SemanticTask.parse(SMALL)
    assert rules(task, 60 + 100) == rules(task, 60 + 300)[:160]
    other = SemanticTask.parse({**SMALL, "n_unseen": 30})
    assert rules(task, 60 + 100)[60:] == rules(other, 30 + 100)[30:]
    assert rules(task, 100) != rules(SemanticTask.parse({**SMALL, "universe_seed": 1}), 100)


def test_same_arrow_layout_as_rewrite(tmp_path: Path) -> None:
    semantic = build(DataConfig(task=SMALL, n_instructions=10, budget=50), EVAL, tmp_path)
    rewrite_task = TaskConfig(alphabet_size=8, pattern_length=2, replacement_length=2,
                              input_length=(6, 10), n_unseen=60)  # fmt: skip
    rewrite = build(DataConfig(task=rewrite_task, n_instructions=10, budget=50), EVAL, tmp_path)
    for kind in ("train", "eval_seen", "eval_unseen"):
        schemas = [attach(getattr(t, kind)).table.schema for t in (semantic, rewrite)]
        assert schemas[0].remove_metadata() == schemas[1].remove_metadata()
    assert attach(semantic.train).metadata["config"]["data"]["task"]["family"] == "semantic"


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"family": "nope"}, "data.task.family"),
        ({"family": "semantic", "train_k": [7, 9]}, "data.task.train_k"),
        ({"family": "semantic", "test_k": [1, 3]}, "data.task.test_k"),  # k 3 is trained on
        ({"family": "semantic", "train_families": ["spiral"]}, "data.task.train_families[0]"),
        ({"family": "semantic", "test_families": ["periodic", "periodic"]},
         "data.task.test_families"),
        ({"family": "semantic", "pattern_length": 60, "input_length": 50},
         "data.task.input_length"),
        ({"family": "semantic", "alphabet_size": 2, "pattern_length": 2, "train_k": 2,
          "train_families": ["repeated"], "test_k": 1, "input_length": 4},
         "data.n_instructions"),  # aa -> bb and bb -> aa: 2 training rules
        ({"family": "semantic", "mode": "all"}, "data.task.mode"),  # rewrite-only setting
    ],
)  # fmt: skip
def test_bad_semantic_config_names_the_field(task: dict, field: str) -> None:
    with pytest.raises(SpecError) as err:
        DataConfig(task={"n_unseen": 2, **task}, n_instructions=4, budget=8)
    assert str(err.value).startswith(f"{field}:"), str(err.value)


@pytest.mark.parametrize(
    ("alphabet", "error"),
    [(4, r"^task.n_unseen: only 0 held-out rules"), (26, r"^task.test_k: held-out rules keep")],
    ids=["pool-runs-dry", "endless-rejections"],
)
def test_held_out_settings_that_cannot_avoid_training_structure_fail_clearly(
    alphabet: int, error: str
) -> None:
    # every periodic string of level 4 is periodic of level 2: no held-out rule can avoid it
    periodic = {"train_families": ["periodic"], "train_k": 2, "test_families": ["periodic"]}
    task = SemanticTask.parse({**SMALL, **periodic, "alphabet_size": alphabet, "test_k": 4})
    with pytest.raises(SpecError, match=error):
        rules(task, 10)


# The rewrite family's rows as built at 4655166 (before the registry took config classes and a
# second family, rule seeds and validation rules): sha256 of each file's rows (its Arrow data
# without the schema metadata, which holds the config and so changes with every new field).
# `rules: prefix` keeps those rows, except the long-tail seen set, whose rules without a
# training example became bucket `never_trained` (they were `tail`).
REWRITE_TASK = {"alphabet_size": 8, "pattern_length": 2, "replacement_length": 2,
                "input_length": [6, 10], "p_pattern_present": 0.8, "n_unseen": 200}  # fmt: skip
REWRITE_BUILT = [
    (
        DataConfig(task=REWRITE_TASK, n_instructions=8, budget=40_000, rules="prefix"),
        EvalConfig(seen_examples=500, unseen_instructions=100, unseen_examples_per_instruction=5),
        {
            "train": "57065a75c2e0fbc0a3ae33e660af4f0f008b7c6ae4047d85eb368ce893dc044f",
            "eval_seen": "1de8619eb1719e302fcb402bdc2d54ac172d31e144efc4eec217179977c4624a",
            "eval_unseen": "f4c8c7c74443ab224f3036324ce5df13b47b690a21f602dfa5e0c347ddb47489",
        },
    ),
    (
        DataConfig(task=REWRITE_TASK, n_instructions=3072, budget=40_000, rules="prefix",
                   distribution="powerlaw", alpha=0.1, seed=1),
        EvalConfig(seen_examples=500, unseen_instructions=100, unseen_examples_per_instruction=5),
        {
            "train": "b5d7161e367c420ce933e14705b531636ddba218563fe97496e7f908a674864f",
            # never_trained bucket
            "eval_seen": "00901c4aa7ed06ced1dce94770fa1a0a29de14810aa8be103245bf4e7f0416c5",
        },
    ),
    (
        DataConfig(task=TaskConfig(n_unseen=20, mode="all", replacement_length=(3, 9)),
                   n_instructions=50, distribution="powerlaw", alpha=0.5, budget=500, seed=3,
                   rules="prefix"),
        EvalConfig(seen_examples=100, unseen_instructions=20, unseen_examples_per_instruction=3),
        {
            "train": "12dacf239baea1a794975adc857d00f35cb4803630f664006cbe7f07819ea3ff",
            "eval_unseen": "b1e2a2c60fb04adf185463959366dcfa4d48d657a089109f5794ff6bb4bb6ac7",
        },
    ),
]  # fmt: skip


def rows_sha256(path: Path) -> str:
    table = pa.ipc.open_file(str(path)).read_all().replace_schema_metadata(None)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


@pytest.mark.parametrize(
    ("cfg", "eval_cfg", "expected"), REWRITE_BUILT, ids=["uniform", "long-tail", "sampled"]
)
def test_rewrite_prefix_sets_keep_their_rows(
    cfg: DataConfig, eval_cfg: EvalConfig, expected: dict, tmp_path: Path
) -> None:
    built = build(cfg, eval_cfg, tmp_path)
    for kind, sha256 in expected.items():
        assert rows_sha256(getattr(built, kind)) == sha256, kind


def test_task_dumps_carry_the_familys_fields() -> None:
    cfg = DataConfig(task=SMALL, n_instructions=10, budget=50)
    dumped = cfg.model_dump(mode="json")
    assert dumped["task"]["train_k"] == [3, 12] and dumped["task"]["family"] == "semantic"
    again = DataConfig.parse(json.loads(json.dumps(dumped)))
    assert again == cfg and isinstance(again.task, SemanticTask)


def test_divsweep_train_runs_a_semantic_trial_end_to_end(tmp_path: Path, tracking_uri: str) -> None:
    from mlflow import MlflowClient

    config = Path(__file__).parents[1] / "configs" / "trial-semantic-tiny.yaml"
    divsweep = str(Path(sys.executable).with_name("divsweep"))
    cmd = [
        divsweep,
        "train",
        str(config),
        "--tracking-uri",
        tracking_uri,
        "--workdir",
        str(tmp_path),
    ]
    env = {**os.environ, "DIVSWEEP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(tracking_uri=tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("divsweep-train").experiment_id])
    assert run.data.tags["divsweep.status"] == "finished"
    params = run.data.params
    assert params["data.task.family"] == "semantic" and params["data.task.train_k"] == "[3, 6]"
    steps = client.get_metric_history(run.info.run_id, "unseen/exact_match")
    assert sorted(m.step for m in steps) == [100, 200]
    assert run.data.metrics["train/loss"] < 3.0  # it trained: ~3.5 (uniform over 32) at start
