"""One trial trained and evaluated with Lightning, without Ray or MLflow: the user's
LightningModule and datamodule by `class_path` (`user_trial.py`), or the built-in GPT on a
generated task, whose spec form is a spelling of its class_path form (`builtin.py`).

Public API: `fit`, `TrialConfig` (with `ModelConfig`, `TrainConfig`), `load_trial_config`,
`parse_trial_config`, `flat_params`. Importing this package is cheap: torch and Lightning load
on first use of `fit`, so `divsweep --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from divsweep.trainer.config import (
    ModelConfig,
    TrainConfig,
    TrialConfig,
    flat_params,
    load_trial_config,
    parse_trial_config,
)

if TYPE_CHECKING:
    from divsweep.trainer.fit import fit

__all__ = [
    "ModelConfig",
    "TrainConfig",
    "TrialConfig",
    "fit",
    "flat_params",
    "load_trial_config",
    "parse_trial_config",
]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from divsweep.trainer.fit import fit

        return fit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
