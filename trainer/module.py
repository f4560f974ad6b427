"""The LightningModule: loss on output tokens, AdamW, linear warmup then cosine/linear decay."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from divsweep.trainer.config import ModelConfig
from divsweep.trainer.model import GPT


def lr_multiplier(step: int, warmup: int, total: int, decay: str = "cosine") -> float:
    """Linear warmup from ~0 to 1 over `warmup` steps, then `decay` (cosine or linear) to 0
    at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if decay == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class GPTModule(pl.LightningModule):
    """The GPT (trainer/model.py) with its loss on output tokens, AdamW, and warmup then
    decay to 0 at the last step (`total_steps`; None: the Trainer's estimate of it)."""

    def __init__(
        self,
        model: ModelConfig,
        vocab_size: int,
        *,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        schedule: str = "cosine",
        compile: bool = False,
        total_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.schedule, self.total_steps = warmup_steps, schedule, total_steps
        self.model = GPT(model, vocab_size)
        # Compiling the loss (not the module) keeps checkpoint keys free of `_orig_mod.`
        # and leaves decoding eager. Batch widths vary with bucketing: dynamic shapes, or
        # every new width would recompile.
        self._loss = torch.compile(self.model.loss, dynamic=True) if compile else self.model.loss
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch["inputs"], batch["labels"])
        # Summed on the device: reading it every step (.item()) would stall the GPU queue.
        detached = loss.detach()
        self._loss_sum = detached if self._loss_sum is None else self._loss_sum + detached
        self._loss_count += 1
        return loss

    def pop_mean_loss(self) -> float:
        """Mean training loss since the last call (one host sync, at evaluation time)."""
        if not self._loss_count:
            return float("nan")
        mean = float(self._loss_sum) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        return mean

    def configure_optimizers(self):
        total = self.total_steps or int(self.trainer.estimated_stepping_batches)
        params = [p for p in self.parameters() if p.requires_grad]
        # nanoGPT: decay matrices and embeddings, not biases or LayerNorm gains.
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        # not fused: Lightning refuses to clip gradients (`train.grad_clip`) for an optimizer that
        # unscales inside its own step under mixed precision, as fused AdamW does on a GPU
        optimizer = torch.optim.AdamW(groups, lr=self.lr, betas=(0.9, 0.95))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_multiplier(s, self.warmup_steps, total, self.schedule)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # Lightning does not checkpoint RNG streams; dropout needs them for an exact resume.
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng", {})
        if "cpu" in rng:
            torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
