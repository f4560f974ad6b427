"""Family `semantic` (Only-IF's constrained rules): generator vs reference, the train/test split,
config errors, and the rewrite family's data unchanged by the registry's new seam."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from divsweep.datasets import DataConfig, EvalConfig, SemanticTask, TaskConfig, attach, build
from divsweep.datasets import semantic_reference as ref
from divsweep.datasets.cache import read_manifest
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


# The rewrite family's files, built at 4655166 (before the registry took config classes and a
# second family): names (cache keys) and sha256 of the bytes. Other results depend on them.
REWRITE_TASK = {"alphabet_size": 8, "pattern_length": 2, "replacement_length": 2,
                "input_length": [6, 10], "p_pattern_present": 0.8, "n_unseen": 200}  # fmt: skip
REWRITE_BUILT = [
    (
        DataConfig(task=REWRITE_TASK, n_instructions=8, budget=40_000),
        EvalConfig(seen_examples=500, unseen_instructions=100, unseen_examples_per_instruction=5),
        {
            "train": ("c41e145ad9a0a0e26e1c483e77da949247e865240cb8240bdddac6bdb35f889a",
                      "0a9bdbf2da099c99156406945f28f1e06b90652d7472e364566ac2e901348c8c"),
            "eval_seen": ("04f513803e0bce5af0c0d995263c13fb6f7662fcccaf5d99ffccf16ce1106c60",
                          "53d7db82a47d1082f218e54bf00d8459ad665ec2be804d4206c987f343e50105"),
            "eval_unseen": ("630d802a46bbd67bd5b1469387a13a0362a0e21cd86c590e58a83675f92128d9",
                            "b27c2d950da445fca71b6338b199d2e3b5e489636e7011699270a6deafaaf9ae"),
        },
    ),
    (
        DataConfig(task=REWRITE_TASK, n_instructions=3072, budget=40_000,
                   distribution="powerlaw", alpha=0.1, seed=1),
        EvalConfig(seen_examples=500, unseen_instructions=100, unseen_examples_per_instruction=5),
        {
            "train": ("6cdca2cf423b2ad1e7264d311b1103cc2a11fe5b2174faf9d86ef5d336e12a10",
                      "d6ef2594a98638016109db93c290646517e19ee362e0d2ad81cefd2be5516bd9"),
            "eval_seen": ("d1a1b824e5a104c8b21af25696533b172302e29be14f892c02c1835cd912803b",
                          "03e33f8555d04e3ecefc0e1c8e4ae2a4fb73372f09bb987fdc0e2d86d01518ea"),
        },
    ),
    (
        DataConfig(task=TaskConfig(n_unseen=20, mode="all", replacement_length=(3, 9)),
                   n_instructions=50, distribution="powerlaw", alpha=0.5, budget=500, seed=3),
        EvalConfig(seen_examples=100, unseen_instructions=20, unseen_examples_per_instruction=3),
        {
            "train": ("0453e5e5bc7ab2f7d89f35b864b94288e2ea72fdbf23542245977f05e8865b0e",
                      "aa85222eb7b8ea88f30ae55f254daeab94a166ed17a85f21d8469f09c580e11f"),
            "eval_unseen": ("5e6ed55144bf8b49d67fd0cdc29246fe4afab98b9ef486216f8642b48030b2f6",
                            "adc0f603abaeed431cca609c530b70166d6614b78888c2743e3c66f99c477603"),
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cfg", "eval_cfg", "expected"), REWRITE_BUILT, ids=["uniform", "long-tail", "sampled"]
)
def test_rewrite_cache_keys_and_bytes_are_unchanged(
    cfg: DataConfig, eval_cfg: EvalConfig, expected: dict, tmp_path: Path
) -> None:
    built = build(cfg, eval_cfg, tmp_path)
    for kind, (key, sha256) in expected.items():
        path = getattr(built, kind)
        assert path.stem == key, kind
        assert read_manifest(path)["sha256"] == sha256, kind


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
