"""Model, decoding, batching and config checks of divsweep.trainer (no training loop)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from divsweep.datasets.vocab import EOS, PAD
from divsweep.errors import SpecError
from divsweep.trainer.config import ModelConfig, parse_trial_config
from divsweep.trainer.data import BucketBatchSampler, TokenTable, eval_batch, train_batch
from divsweep.trainer.decode import greedy_decode
from divsweep.trainer.model import GPT, IGNORE
from divsweep.trainer.module import lr_multiplier

VOCAB_SIZE = 32


def ragged(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.tensor([t for s in seqs for t in s], dtype=torch.uint8)
    offsets = torch.tensor(np.cumsum([0] + [len(s) for s in seqs]), dtype=torch.int64)
    return values, offsets


def token_table(prompts: list[list[int]], targets: list[list[int]]) -> TokenTable:
    return TokenTable(*ragged(prompts), *ragged(targets))


def tiny_model(positions: str) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, max_len=64, positions=positions)
    return GPT(cfg, VOCAB_SIZE).eval()


@pytest.fixture(params=["learned", "rope"])
def model(request: pytest.FixtureRequest) -> GPT:
    return tiny_model(request.param)


def random_prompts(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(2, 12, (n,), generator=gen)
    width = int(lens.max())
    prompts = torch.randint(3, VOCAB_SIZE, (n, width), generator=gen)
    valid = torch.arange(width)[None, :] >= (width - lens)[:, None]
    return prompts.masked_fill(~valid, PAD), valid


def test_kv_cache_decode_equals_uncached_decode(model: GPT) -> None:
    prompts, valid = random_prompts(24)
    cached = greedy_decode(model, prompts, valid, max_new=16, use_cache=True)
    uncached = greedy_decode(model, prompts, valid, max_new=16, use_cache=False)
    assert torch.equal(cached, uncached)
    assert len(set(map(tuple, cached.tolist()))) > 1  # not a degenerate constant output


def test_batched_left_padded_decode_equals_one_prompt_at_a_time(model: GPT) -> None:
    prompts, valid = random_prompts(8, seed=1)
    batched = greedy_decode(model, prompts, valid, max_new=10)
    for row in range(len(prompts)):
        alone = prompts[row, valid[row]][None]
        single = greedy_decode(model, alone, torch.ones_like(alone, dtype=torch.bool), max_new=10)
        assert torch.equal(single[0], batched[row])


@torch.no_grad()
def test_rope_sees_relative_positions_only_learned_sees_absolute() -> None:
    tokens = torch.randint(3, VOCAB_SIZE, (2, 12), generator=torch.Generator().manual_seed(3))
    at_zero, shifted = torch.arange(12), torch.arange(12) + 20
    rope, learned = tiny_model("rope"), tiny_model("learned")
    # float32 rotations of angles up to 31 rad: equal to rounding, not bit for bit
    torch.testing.assert_close(rope(tokens, shifted), rope(tokens, at_zero), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(learned(tokens, shifted), learned(tokens, at_zero), atol=1e-2)
    assert "pos.weight" not in dict(rope.named_parameters())


def test_decode_stops_at_eos_and_pads_after() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layers=1, d_model=16, n_heads=2, max_len=32), VOCAB_SIZE).eval()
    with torch.no_grad():  # make EOS the only sensible answer
        model.head.weight.zero_()
        model.head.weight[EOS] = 1.0
        model.ln_f.bias.fill_(1.0)
        model.ln_f.weight.zero_()
    prompts, valid = random_prompts(4)
    out = greedy_decode(model, prompts, valid, max_new=5)
    assert out.shape == (4, 5)
    assert (out[:, 0] == EOS).all() and (out[:, 1:] == PAD).all()


def test_train_batch_labels_only_target_tokens() -> None:
    table = token_table([[5, 6, 7], [8, 9]], [[10, 11, EOS], [12, EOS]])
    batch = train_batch(table, torch.tensor([0, 1]))
    assert batch["inputs"].tolist() == [[5, 6, 7, 10, 11], [8, 9, 12, EOS, PAD]]
    assert batch["labels"].tolist() == [
        [IGNORE, IGNORE, 10, 11, EOS],
        [IGNORE, 12, EOS, IGNORE, IGNORE],
    ]
    assert batch["n_tokens"] == 5


def test_eval_batch_left_pads_prompts() -> None:
    table = token_table([[5, 6, 7], [8]], [[10, EOS], [12, 13, EOS]])
    batch = eval_batch(table, torch.tensor([0, 1]))
    assert batch["prompts"].tolist() == [[5, 6, 7], [PAD, PAD, 8]]
    assert batch["valid"].tolist() == [[True, True, True], [False, False, True]]
    assert batch["targets"].tolist() == [[10, EOS, PAD], [12, 13, EOS]]
    assert batch["target_lens"].tolist() == [2, 3]


def test_sampler_order_is_seeded_covers_each_epoch_and_resumes_at_any_step() -> None:
    lengths = torch.randint(5, 50, (103,), generator=torch.Generator().manual_seed(0))
    sampler = lambda seed, start: BucketBatchSampler(lengths, 8, 4, seed, start)  # noqa: E731
    stream = iter(sampler(3, 0))
    first = [next(stream) for _ in range(3 * 13)]  # 13 batches per epoch
    for epoch in range(3):
        seen = torch.cat(first[epoch * 13 : (epoch + 1) * 13]).sort().values
        assert torch.equal(seen, torch.arange(103))
    assert not torch.equal(torch.cat(first[:13]), torch.cat(first[13:26]))  # reshuffled
    resumed = iter(sampler(3, 17))
    assert all(torch.equal(next(resumed), first[k]) for k in range(17, 39))
    other = iter(sampler(4, 0))
    assert not all(torch.equal(next(other), first[k]) for k in range(13))


def test_length_bucketing_reduces_padding() -> None:
    lengths = torch.randint(5, 100, (4096,), generator=torch.Generator().manual_seed(0))

    def padding(bucket_batches: int) -> int:
        stream = iter(BucketBatchSampler(lengths, 32, bucket_batches, 0, 0))
        batches = [lengths[next(stream)] for _ in range(128)]
        return sum(int(b.max() * len(b) - b.sum()) for b in batches)

    assert padding(32) < 0.3 * padding(1)


@pytest.mark.parametrize("decay", ["cosine", "linear"])
def test_warmup_then_decay_to_zero(decay: str) -> None:
    factors = [lr_multiplier(s, 10, 100, decay) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert factors[100] == pytest.approx(0.0)
    midway = 1.0 - 45 / 90 if decay == "linear" else 0.5 * (1 + math.cos(math.pi * 45 / 90))
    assert factors[55] == pytest.approx(midway)


TINY_DATA = {"n_instructions": 4, "examples_per_instruction": 8}


@pytest.mark.parametrize(
    ("section", "values", "field"),
    [
        ("model", {"n_layers": 0}, "trial.model.n_layers"),
        ("model", {"n_heads": 3}, "trial.model.n_heads"),
        ("model", {"dropout": 1.5}, "trial.model.dropout"),
        ("model", {"width": 3}, "trial.model.width"),
        ("train", {"max_steps": 10, "lr": 0}, "trial.train.lr"),
        ("train", {"max_steps": 10, "epochs": 2}, "trial.train.epochs"),
        ("train", {}, "trial.train.epochs"),
        ("train", {"max_steps": 10, "precision": "fp8"}, "trial.train.precision"),
        ("train", {"max_steps": 10, "batch_size": 0}, "trial.train.batch_size"),
        ("data", {"n_instructions": 0, "examples_per_instruction": 8}, "trial.data.n_instructions"),
    ],
)
def test_bad_config_names_the_field(section: str, values: dict, field: str) -> None:
    raw = {"data": TINY_DATA, "eval": {}, "train": {"max_steps": 5}, section: values}
    with pytest.raises(SpecError, match=re.escape(f"{field}:")):
        parse_trial_config(raw)


def test_good_config_uses_paper_model_defaults() -> None:
    cfg = parse_trial_config({"data": TINY_DATA, "eval": {}, "train": {"epochs": 2}})
    assert (cfg.model.n_layers, cfg.model.d_model, cfg.model.n_heads) == (6, 256, 4)
    assert cfg.train.lr == 1e-3
    assert cfg.train.total_steps(n_train=1000) == 2 * 8  # ceil(1000 / 128) batches per epoch


def test_trainer_imports_without_ray_or_mlflow() -> None:
    code = (
        "import sys, divsweep.trainer.fit, divsweep.trainer.cli;"
        "print(sorted(m for m in ('ray', 'mlflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
