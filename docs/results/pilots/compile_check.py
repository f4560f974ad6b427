"""Eager vs `train.compile: true` (torch.compile of the loss, dynamic shapes) from the same
initialisation on the same batches: the training losses of the first STEPS steps.

  python compile_check.py TRIAL.yaml [STEPS]"""

import sys
import time
from pathlib import Path

import torch

from divsweep.datasets import build
from divsweep.datasets.vocab import VOCAB
from divsweep.trainer.config import load_trial_config
from divsweep.trainer.data import TrialDataModule, train_batch
from divsweep.trainer.module import TrialModule

cfg = load_trial_config(Path(sys.argv[1]))
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
torch.set_num_threads(1)
data = build(cfg.data, cfg.eval)
dm = TrialDataModule.attach(data, cfg.train, cfg.seed)
losses = {}
for compiled in (False, True):
    torch.manual_seed(0)
    module = TrialModule(cfg, len(VOCAB), steps)
    model = module.model
    loss_fn = torch.compile(model.loss, dynamic=True) if compiled else model.loss
    opt = module.configure_optimizers()["optimizer"]
    sampler = iter(dm.sampler(0))
    out = []
    cpu = time.process_time()
    for _ in range(steps):
        b = train_batch(dm.train_set, next(sampler))
        loss = loss_fn(b["inputs"], b["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        out.append(loss.item())
    losses[compiled] = out
    print(
        f"compiled={compiled}: {steps} steps, {time.process_time() - cpu:.1f} s CPU "
        f"(compilation included), loss {out[0]:.4f} -> {out[-1]:.4f}"
    )
diff = max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True))
print(f"largest |eager - compiled| training loss over {steps} steps: {diff:.2e}")
