"""Write one pilot trial YAML: the cpu-repro task (strict hold-out, resampled rules) with a
model/optimisation setting. Usage:
  python make_trial.py NAME --layers 4 --width 128 --steps 3000 --lr 3e-3 --warmup 50 \
      --batch 64 --instructions 3024 [--seed 0] [--eval-every 1000]
Writes trials/NAME.yaml (relative to this file)."""

import argparse
from pathlib import Path

import yaml

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("--layers", type=int, required=True)
p.add_argument("--width", type=int, required=True)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--steps", type=int, required=True)
p.add_argument("--lr", type=float, required=True)
p.add_argument("--warmup", type=int, default=50)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--instructions", type=int, required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--eval-every", type=int, default=1000)
p.add_argument("--holdout", type=int, default=16)
a = p.parse_args()

trial = {
    "seed": a.seed,
    "data": {
        "task": {
            "family": "rewrite",
            "alphabet_size": 8,
            "pattern_length": 2,
            "replacement_length": 2,
            "input_length": [6, 10],
            "p_pattern_present": 0.8,
            "mode": "leftmost",
            "n_unseen": 200,
            "holdout_patterns": a.holdout,
        },
        "n_instructions": a.instructions,
        "budget": 40000,
        "seed": a.seed,
    },
    "eval": {
        "seen_examples": 500,
        "unseen_instructions": 100,
        "unseen_examples_per_instruction": 5,
        "validation_instructions": 100,
    },
    "model": {
        "n_layers": a.layers,
        "d_model": a.width,
        "n_heads": a.heads,
        "max_len": 32,
        "positions": "rope",
    },
    "train": {
        "max_steps": a.steps,
        "batch_size": a.batch,
        "warmup_steps": a.warmup,
        "lr": a.lr,
        "schedule": "cosine",
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "eval_every": a.eval_every,
        "eval_batch_size": 500,
        "num_threads": 1,
    },
}
out = Path(__file__).parent / "trials" / f"{a.name}.yaml"
out.write_text(
    f"# pilot {a.name}: the cpu-repro task (configs/cpu-repro.yaml) as one trial\n"
    + yaml.safe_dump(trial, sort_keys=False)
)
print(out)
