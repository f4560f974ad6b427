"""A trial of the user's own LightningModule and LightningDataModule, named the LightningCLI way.

```yaml
model: {class_path: mylab.models.TinyLM, init_args: {width: 64, lr: 1.0e-3}}
datamodule: {class_path: mylab.data.Tasks, init_args: {batch_size: 32}}
trainer: {max_steps: 2000, val_check_interval: 250}   # what a sweep may set of Lightning's
data: {source: {path: tasks.parquet, group_column: task}, n_instructions: 64, ...}  # optional
seed: 0
```

With a `data` section the datamodule gets the built sets as its `data` argument (a
`divsweep.datasets.TrialData` of four memory-mappable Arrow files): drawn from the user's
grouped table (`data.source`, datasets/grouped.py), or generated as the built-in study's are
(`data.task`, with an `eval` section; trainer/builtin.py trains the built-in GPT on them).
divsweep owns where the trial runs and what it writes (devices, loggers, checkpoints), so a
spec that sets those Trainer arguments is told so.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from divsweep.config import FrozenConfig
from divsweep.datasets.config import DataConfig, EvalConfig
from divsweep.datasets.grouped import GroupedDataConfig
from divsweep.trainer.plugin import ClassSpec, check_init_args

DATA_ARGUMENT = "data"  # the datamodule's argument that receives the built sets
# Trainer arguments divsweep sets itself, with why
OWNED = {
    "accelerator": "Ray places each trial",
    "devices": "Ray places each trial",
    "strategy": "each trial trains on one device",
    "num_nodes": "each trial trains on one device",
    "logger": "divsweep logs every trial to MLflow",
    "callbacks": "divsweep's callback reports and checkpoints",
    "enable_checkpointing": "divsweep checkpoints at every validation",
    "default_root_dir": "divsweep chooses where a trial writes",
    "enable_progress_bar": "trials run in the background",
}


class TrainerArgs(FrozenConfig):
    """The `pytorch_lightning.Trainer` arguments a sweep may set (and sweep over)."""

    _root: ClassVar[str] = "trainer"

    max_steps: int | None = Field(None, ge=1)
    max_epochs: int | None = Field(None, ge=1)
    val_check_interval: int | float | None = Field(None, gt=0)
    check_val_every_n_epoch: int | None = Field(1, ge=1)
    limit_train_batches: int | float | None = Field(None, gt=0)
    limit_val_batches: int | float | None = Field(None, ge=0)
    precision: Literal["32-true", "bf16-mixed", "16-mixed", "64-true", "auto"] = "auto"
    gradient_clip_val: float | None = Field(None, gt=0)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    accumulate_grad_batches: int = Field(1, ge=1)
    log_every_n_steps: int = Field(50, ge=1)
    num_sanity_val_steps: int = Field(2, ge=-1)
    deterministic: bool = False

    @model_validator(mode="before")
    @classmethod
    def _not_owned(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            for key in raw:
                if key in OWNED:
                    raise ValueError(f"{key} is divsweep's to set ({OWNED[key]}); remove it")
        return raw

    @model_validator(mode="after")
    def _ends(self) -> TrainerArgs:
        if self.max_steps is None and self.max_epochs is None:
            raise ValueError("give max_steps or max_epochs: a sweep's trials must end")
        return self

    def lightning(self) -> dict[str, Any]:
        """Keyword arguments for `pl.Trainer`; None is Lightning's own default for each (an
        explicit `check_val_every_n_epoch: null` included: steps, not epochs, time validation)."""
        args = self.model_dump(exclude={"precision"})
        # -1: no limit; the other of the two ends the trial
        args["max_steps"] = args["max_steps"] or -1
        args["max_epochs"] = args["max_epochs"] or -1
        return args


def _as_data(value: Any) -> Any:
    """A data section with a `source` is a user's grouped table; otherwise a generated task."""
    if not isinstance(value, dict):
        return value
    kind = GroupedDataConfig if "source" in value else DataConfig
    return kind.model_validate(value)


DataSection = Annotated[GroupedDataConfig | DataConfig, BeforeValidator(_as_data)]


class UserTrialConfig(FrozenConfig):
    """One trial of the user's module on the user's datamodule (and, if given, grouped data)."""

    _root: ClassVar[str] = "trial"

    model: ClassSpec
    datamodule: ClassSpec
    trainer: TrainerArgs
    data: DataSection | None = None
    eval: EvalConfig | None = Field(
        None, validate_default=True, description="the eval sets of a generated task"
    )
    seed: int = Field(0, ge=0)

    @field_validator("eval")
    @classmethod
    def _eval_iff_generated(cls, value: EvalConfig | None, info: ValidationInfo):
        generated = isinstance(info.data.get("data"), DataConfig)
        if generated and value is None:
            raise ValueError("a generated task (data.task) needs an eval section")
        if value is not None and not generated:
            raise ValueError("only a generated task (data.task) has an eval section")
        return value

    @model_validator(mode="after")
    def _signatures(self) -> UserTrialConfig:
        # imported here: the trial config must parse in processes that never train
        import pytorch_lightning as pl

        check_init_args(self.model, pl.LightningModule, "model")
        supplied = (DATA_ARGUMENT,) if self.data is not None else ()
        check_init_args(self.datamodule, pl.LightningDataModule, "datamodule", supplied)
        return self

    @property
    def total_steps(self) -> int | None:
        return self.trainer.max_steps


def is_user_trial(raw: Any) -> bool:
    """Whether a trial template (or a resolved trial's JSON) names its model by class_path."""
    model = raw.get("model") if isinstance(raw, dict) else None
    return isinstance(model, dict) and "class_path" in model


def build_data(data: GroupedDataConfig | DataConfig, eval_cfg: EvalConfig | None, cache_dir=None):
    """The `divsweep.datasets.TrialData` of a user trial's data section (and its eval section,
    for a generated task): built once per content, or found in the cache (`cache_dir`: the
    default cache if None)."""
    if isinstance(data, DataConfig):
        from divsweep.datasets import build

        return build(data, eval_cfg, cache_dir)
    from divsweep.datasets import grouped

    return grouped.build(data, cache_dir=cache_dir)
