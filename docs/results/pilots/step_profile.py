"""Where one training step's time goes on this CPU (one thread): data collation, forward,
backward, gradient clipping, AdamW + schedule, and the Lightning trainer around them.

  python step_profile.py TRIAL.yaml [STEPS] [--lightning] [--bf16] [--compile]

Times STEPS plain-loop steps (after 20 warm-up steps), each phase separately, and, with
--lightning, the same number of steps through `fit` (evaluation pushed past the end, so the
figure is training only; it still includes one final evaluation, timed and subtracted)."""

import sys
import time
from pathlib import Path

import torch

from divsweep.datasets import build
from divsweep.datasets.vocab import VOCAB
from divsweep.trainer.config import load_trial_config
from divsweep.trainer.data import TrialDataModule, train_batch
from divsweep.trainer.evaluate import eval_metrics
from divsweep.trainer.module import TrialModule

cfg = load_trial_config(Path(sys.argv[1]))
steps = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 200
torch.set_num_threads(cfg.train.num_threads or 1)
torch.manual_seed(0)
data = build(cfg.data, cfg.eval)
dm = TrialDataModule.attach(data, cfg.train, cfg.seed)
module = TrialModule(cfg, len(VOCAB), 10_000)
model = module.model
opt_cfg = module.configure_optimizers()
opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
sampler = iter(dm.sampler(0))
params = [p for p in model.parameters()]
print(
    f"model {cfg.model.n_layers}x{cfg.model.d_model}: {model.num_params():,} parameters, "
    f"batch {cfg.train.batch_size}, threads {torch.get_num_threads()}"
)

BF16 = "--bf16" in sys.argv  # CPU autocast to bfloat16 (what precision: bf16-mixed does)
print(f"autocast bf16: {BF16}")
COMPILE = "--compile" in sys.argv  # what train.compile: true does (the loss, dynamic shapes)
LOSS = torch.compile(model.loss, dynamic=True) if COMPILE else model.loss
print(f"compiled: {COMPILE}")
phases = dict.fromkeys(["data", "forward", "backward", "clip", "optimizer"], 0.0)
widths = []


def one(timed: bool):
    t = time.perf_counter()
    batch = train_batch(dm.train_set, next(sampler))
    t1 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        loss = LOSS(batch["inputs"], batch["labels"])
    t2 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t3 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
    t4 = time.perf_counter()
    opt.step()
    sched.step()
    t5 = time.perf_counter()
    if timed:
        for k, a, b in (
            ("data", t, t1),
            ("forward", t1, t2),
            ("backward", t2, t3),
            ("clip", t3, t4),
            ("optimizer", t4, t5),
        ):
            phases[k] += b - a
        widths.append(batch["inputs"].shape[1])


model.train()
t_warm = time.perf_counter()
for _ in range(20):
    one(False)
print(f"20 warm-up steps (compilation included): {time.perf_counter() - t_warm:.1f} s")
cpu0, t0 = time.process_time(), time.perf_counter()
for _ in range(steps):
    one(True)
wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
total = sum(phases.values())
print(
    f"plain loop: {steps} steps, {1000 * wall / steps:.1f} ms/step wall, "
    f"{1000 * cpu / steps:.1f} ms/step CPU; mean sequence width {sum(widths) / len(widths):.1f}"
)
for k, v in phases.items():
    print(f"  {k:<10} {1000 * v / steps:6.2f} ms  {100 * v / total:5.1f}%")

# one evaluation (what eval_every costs)
t = time.perf_counter()
with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
    eval_metrics(model, dm.eval_sets, cfg.train.eval_batch_size, "cpu")
t_eval = time.perf_counter() - t
print(
    f"one evaluation (seen + unseen + validation, {sum(len(s) for s in dm.eval_sets.values())}"
    f" examples): {t_eval:.1f} s"
)

if "--lightning" in sys.argv:
    from divsweep.trainer.fit import fit_datamodule

    lcfg = cfg.model_copy(
        update={
            "train": cfg.train.model_copy(
                update={
                    "max_steps": steps + 20,
                    "eval_every": 10**6,
                    "precision": "bf16-mixed" if BF16 else "32-true",
                }
            )
        }
    )
    dm2 = TrialDataModule.attach(data, lcfg.train, lcfg.seed)
    cpu0, t0 = time.process_time(), time.perf_counter()
    fit_datamodule(lcfg, dm2, workdir=Path("/tmp/pilots-work/profile-lightning"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    per = 1000 * (wall - t_eval) / (steps + 20)
    print(
        f"lightning fit: {steps + 20} steps in {wall:.1f} s wall incl. one evaluation "
        f"(~{t_eval:.1f} s) -> ~{per:.1f} ms/step; CPU {cpu:.1f} s"
    )
