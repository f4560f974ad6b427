"""The LightningModule: an MLP from the bits of (x, k) to the bits of the sum."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from bitrules.data import VALIDATION_SETS


class AdderNet(pl.LightningModule):
    def __init__(self, bits: int = 6, hidden: int = 128, layers: int = 2, lr: float = 3e-3):
        super().__init__()
        self.save_hyperparameters()
        sizes = [2 * bits] + [hidden] * layers
        pairs = zip(sizes, sizes[1:], strict=False)
        blocks = [m for a, b in pairs for m in (nn.Linear(a, b), nn.GELU())]
        self.net = nn.Sequential(*blocks, nn.Linear(sizes[-1], bits))
        self.lr = lr

    def training_step(self, batch, batch_idx):
        features, target = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self.net(features), target)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        features, target = batch
        exact = ((self.net(features) > 0).float() == target).all(-1).float().mean()
        name = list(VALIDATION_SETS)[dataloader_idx]
        self.log(f"{name}/exact_match", exact, add_dataloader_idx=False, batch_size=len(target))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)
