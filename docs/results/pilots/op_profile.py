"""torch.profiler over 20 training steps (after 10 warm-up) of a trial YAML.

python op_profile.py TRIAL.yaml"""

import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from divsweep.datasets import build
from divsweep.datasets.vocab import VOCAB
from divsweep.trainer.config import load_trial_config
from divsweep.trainer.data import TrialDataModule, train_batch
from divsweep.trainer.module import TrialModule

cfg = load_trial_config(Path(sys.argv[1]))
torch.set_num_threads(1)
data = build(cfg.data, cfg.eval)
dm = TrialDataModule.attach(data, cfg.train, cfg.seed)
m = TrialModule(cfg, len(VOCAB), 10000).model
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
it = iter(dm.sampler(0))


def step():
    b = train_batch(dm.train_set, next(it))
    loss = m.loss(b["inputs"], b["labels"])
    opt.zero_grad()
    loss.backward()
    opt.step()


for _ in range(10):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(20):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
