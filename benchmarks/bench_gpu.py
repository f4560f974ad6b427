"""GPU: trials packed on one GPU vs one trial alone; bf16 + fused attention vs fp32.

`python -m benchmarks bench_gpu` on a machine with a CUDA GPU; without one it says so and
records nothing. It needs no Ray and no MLflow (scripts/device-check.sh runs it on a GPU
machine that has neither):

- packing: Ray's fractional GPUs (`resources.gpu: 0.25`) put four trial processes on one
  device and leave the rest to CUDA. So this starts PACKED trainer processes on the same GPU,
  lets them train together from one start signal, and divides their aggregate output tokens/s
  by that of one process alone on the whole GPU. Model: the cpu-repro study's (small: 3 layers
  of 128, batch 64), the kind of trial a sweep packs.
- precision: the paper-scale model (6 layers of 256, batch 256) in one process, bf16-mixed
  with a fused SDPA kernel (flash or memory-efficient) against fp32 (no TF32) with SDPA's
  math kernel; interleaved, best of REPEATS.

Throughput windows skip each run's first steps (CUDA context, kernel selection): WARMUP, or a
quarter of a shorter run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks.bench_trainer import Clock
from benchmarks.results_table import record
from benchmarks.training import training_loop
from divsweep.datasets import build
from divsweep.orchestrator.spec import load_spec
from divsweep.trainer.config import TrialConfig
from divsweep.trainer.data import TrialDataModule

ROOT = Path(__file__).parents[1]
PACKED = 4
PACKING_STEPS, PRECISION_STEPS, WARMUP = 1500, 300, 50  # seconds of training each on a GPU
REPEATS = 2
START_TIMEOUT_S = 300.0


def study_trial(spec: str, n_instructions: int, total_examples: int, steps: int) -> TrialConfig:
    """The `spec` sweep's first trial with `n_instructions`, on a smaller budget and `steps`."""
    trial = next(
        t for t in load_spec(ROOT / spec).trials() if t.data.n_instructions == n_instructions
    )
    raw = trial.model_dump(mode="json")
    raw["data"] |= {"budget": total_examples, "examples_per_instruction": None}
    raw["train"] |= {"max_steps": steps, "eval_every": steps, "epochs": None}
    return TrialConfig.model_validate(raw)


class StartTogether(pl.Callback):
    """Before the first step: says it is ready, then waits for `signal` to exist (so packed
    processes train together)."""

    def __init__(self, signal: Path) -> None:
        self.signal = signal

    def on_train_start(self, trainer, module) -> None:
        self.signal.with_suffix(f".ready{os.getpid()}").touch()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.signal.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no start signal {self.signal} in {START_TIMEOUT_S} s")
            time.sleep(0.01)


def wall_clock() -> float:
    """Wall time after the GPU's queued work: comparable across processes."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.time()


def train_window(
    cfg: TrialConfig,
    dm: TrialDataModule,
    accelerator: str,
    start_signal: Path | None = None,
    fp32_matmul: str | None = None,
) -> dict[str, float]:
    """Train `cfg` with Lightning (the trial's loop, no evaluation); its timed window.
    `fp32_matmul` overrides the GPT's TF32 setting (`torch.set_float32_matmul_precision`)."""
    torch.manual_seed(cfg.seed)
    steps = cfg.train.max_steps
    window = Clock(min(WARMUP, steps // 4), wall_clock)
    callbacks = [window] if start_signal is None else [StartTogether(start_signal), window]
    precision = {} if fp32_matmul is None else {"matmul_precision": fp32_matmul}
    trainer, module = training_loop(cfg, steps, accelerator, callbacks, **precision)
    trainer.fit(module, datamodule=dm)
    return {"tokens": window.tokens, "start": window.start, "end": window.end}


def packed_tokens_per_s(cfg: TrialConfig, n: int, cache: Path, accelerator: str) -> float:
    """Aggregate output tokens/s of `n` trainer processes training `cfg` at once."""
    windows = packed_windows(cfg, n, cache, accelerator)
    span = max(w["end"] for w in windows) - min(w["start"] for w in windows)
    return sum(w["tokens"] for w in windows) / span


def packed_windows(
    cfg: TrialConfig, n: int, cache: Path, accelerator: str
) -> list[dict[str, float]]:
    """The timed windows (`train_window`) of `n` trainer processes training `cfg` at once."""
    build(cfg.data, cfg.eval, cache)  # once, before the processes attach it
    with tempfile.TemporaryDirectory(prefix="divsweep-packing-") as tmp:
        tmp = Path(tmp)
        (tmp / "trial.json").write_text(cfg.model_dump_json())
        signal = tmp / "start"
        # this process's path first (an installed divsweep before the checkout's package-root
        # folder), the checkout last for `benchmarks`
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*sys.path, str(ROOT)])}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.bench_gpu",
                    "worker",
                    str(tmp),
                    str(cache),
                    accelerator,
                    str(tmp / f"window{i}.json"),
                ],
                env=env,
            )
            for i in range(n)
        ]
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(list(tmp.glob("start.ready*"))) < n:
                failed = [p.returncode for p in procs if p.poll() not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"packed trainers did not all start (exit codes {failed})")
                time.sleep(0.05)
            signal.touch()
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:
                p.kill()
        if any(codes):
            raise RuntimeError(f"a packed trainer failed: exit codes {codes}")
        return [json.loads((tmp / f"window{i}.json").read_text()) for i in range(n)]


def worker(tmp: str, cache: str, accelerator: str, out: str) -> None:
    """One packed trainer process (what a Ray trial with a fractional GPU runs)."""
    cfg = TrialConfig.model_validate_json((Path(tmp) / "trial.json").read_text())
    dm = TrialDataModule.attach(build(cfg.data, cfg.eval, Path(cache)), cfg.train, cfg.seed)
    Path(out).write_text(json.dumps(train_window(cfg, dm, accelerator, Path(tmp) / "start")))


def precision_tokens_per_s(cfg: TrialConfig, dm: TrialDataModule) -> dict[str, float]:
    """Best-of-REPEATS output tokens/s with bf16 + fused attention and with plain fp32."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fused = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    sides = {  # precision, fp32 matmul precision, SDPA kernels allowed
        "bf16_fused": ("bf16-mixed", "high", fused),
        "fp32_math": ("32-true", "highest", [SDPBackend.MATH]),
    }
    best = dict.fromkeys(sides, 0.0)
    for _ in range(REPEATS):
        for name, (precision, matmul, kernels) in sides.items():
            side = cfg.model_copy(
                update={"train": cfg.train.model_copy(update={"precision": precision})}
            )
            with sdpa_kernel(kernels):
                w = train_window(side, dm, "gpu", fp32_matmul=matmul)
            best[name] = max(best[name], w["tokens"] / (w["end"] - w["start"]))
    return best


def main() -> None:
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (see scripts/device-check.sh)")
        return
    small = study_trial("configs/cpu-repro.yaml", 512, 40_000, PACKING_STEPS)
    paper = study_trial("configs/paper.yaml", 1000, 200_000, PRECISION_STEPS)
    device = torch.cuda.get_device_name(0)  # in the figure names: they hold for this GPU only
    with tempfile.TemporaryDirectory() as cache:
        cache = Path(cache)
        alone = packed_tokens_per_s(small, 1, cache, "gpu")
        packed = packed_tokens_per_s(small, PACKED, cache, "gpu")
        dm = TrialDataModule.attach(build(paper.data, paper.eval, cache), paper.train, paper.seed)
        precision = precision_tokens_per_s(paper, dm)
    bf16, fp32 = precision["bf16_fused"], precision["fp32_math"]
    figures = {
        "small trial alone, output tokens/s": (alone, ""),
        f"{PACKED} small trials packed, aggregate output tokens/s": (packed, ""),
        f"{PACKED} small trials packed / one alone": (packed / alone, ">= 2.5"),
        "paper model bf16 + fused attention, output tokens/s": (bf16, ""),
        "paper model fp32 + math attention, output tokens/s": (fp32, ""),
        "paper model bf16 + fused attention / fp32": (bf16 / fp32, ""),
    }
    record("gpu", {f"gpu ({device}): {name}": value for name, value in figures.items()})


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(*sys.argv[2:])
    else:
        main()
