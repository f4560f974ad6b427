"""Configs for one trial: model shape, optimisation, and the data it trains on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from divsweep.config import FrozenConfig, read_yaml
from divsweep.datasets.config import DataConfig, EvalConfig

if TYPE_CHECKING:
    from divsweep.trainer.user_trial import UserTrialConfig


class ModelConfig(FrozenConfig):
    """GPT-2-style decoder; defaults are the paper's (6 layers, width 256, 4 heads)."""

    _root: ClassVar[str] = "model"

    n_layers: int = Field(6, ge=1)
    d_model: int = Field(256, ge=8)
    n_heads: int = Field(4, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    max_len: int = Field(256, ge=8, description="longest prompt + output, in tokens")
    positions: Literal["learned", "rope"] = Field(
        "learned",
        description="learned: GPT-2 absolute position embeddings (paper); rope: rotary "
        "embeddings on queries and keys (relative positions, no position table)",
    )

    @field_validator("n_heads")
    @classmethod
    def _heads_divide_width(cls, value: int, info: ValidationInfo) -> int:
        width = info.data.get("d_model")
        if width is not None and width % value:
            raise ValueError(f"must divide d_model ({width})")
        return value


class TrainConfig(FrozenConfig):
    """Optimisation and cadence. Give `max_steps` or `epochs` (fractional allowed), not both."""

    _root: ClassVar[str] = "train"

    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.1, ge=0.0)
    warmup_steps: int = Field(100, ge=0)
    max_steps: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0.0, validate_default=True)
    batch_size: int = Field(128, ge=1)
    schedule: Literal["cosine", "linear"] = Field(
        "cosine", description="decay after warmup, down to 0 at the last step; paper: linear"
    )
    grad_clip: float | None = Field(1.0, gt=0.0)
    eval_every: int = Field(500, ge=1, description="optimizer steps between evaluations")
    eval_batch_size: int = Field(512, ge=1)
    bucket_batches: int = Field(
        50, ge=1, description="batches per length-sorting chunk (1 = no length bucketing)"
    )
    precision: Literal["auto", "bf16-mixed", "32-true"] = "auto"
    compile: bool = False
    num_threads: int | None = Field(None, ge=1)

    @field_validator("epochs")
    @classmethod
    def _one_length(cls, value: float | None, info: ValidationInfo) -> float | None:
        if "max_steps" in info.data and (value is None) == (info.data["max_steps"] is None):
            raise ValueError("give exactly one of max_steps and epochs")
        return value

    def total_steps(self, n_train: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, round(self.epochs * -(-n_train // self.batch_size)))


class TrialConfig(FrozenConfig):
    """One trial: what data, how it is evaluated, the model, the optimisation, the seed."""

    _root: ClassVar[str] = "trial"

    data: DataConfig
    eval: EvalConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig
    seed: int = Field(0, ge=0)


def parse_trial_config(raw: object, root: str = "trial") -> TrialConfig | UserTrialConfig:
    """Validate a plain dict (a trial YAML, a spec's template at one point, or a resolved
    trial's JSON): the built-in study's config, or a user trial's where the model is named by
    `class_path`. Every problem becomes one line naming its field path."""
    from divsweep.trainer.user_trial import UserTrialConfig, is_user_trial

    return (UserTrialConfig if is_user_trial(raw) else TrialConfig).parse(raw, root)


def load_trial_config(path: Path) -> TrialConfig | UserTrialConfig:
    """Read and validate a trial YAML; every problem is a SpecError naming the field."""
    return parse_trial_config(read_yaml(path, "trial config"))


def trial_key(config: TrialConfig | UserTrialConfig) -> str:
    """sha256[:16] of the canonical resolved config: the same trial always gets the same key,
    so a retried or resumed trial finds its own MLflow run and checkpoints."""
    canonical = json.dumps(config.canonical(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flat_params(config: TrialConfig | UserTrialConfig) -> dict[str, str]:
    """The resolved config as dotted keys (`model.d_model`, `model.init_args.lr`,
    `data.task.alphabet_size`, ...), plus `data.total_examples`: the MLflow params of a
    trial."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}.{key}" if prefix else key, sub)
        else:
            flat[prefix] = str(value)

    walk("", config.model_dump(mode="json"))
    if config.data is not None:
        flat["data.total_examples"] = str(config.data.total_examples)
    return flat
