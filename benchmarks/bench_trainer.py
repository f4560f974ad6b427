"""Trainer: Lightning overhead vs a plain PyTorch loop, batched KV-cache decode vs one by one,
the trial's system-metrics sampler running vs not.

`python -m benchmarks bench_trainer`. Both sides of each ratio run in this one process on the
same model, data and batch size, interleaved and repeated (best of N: the machine is shared).
On a GPU it also measures the bf16 trial throughput and its model FLOPs utilisation.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch

from benchmarks.results_table import record
from benchmarks.training import training_loop
from divsweep.datasets import build
from divsweep.trainer.builtin import builtin_gpt
from divsweep.trainer.config import TrialConfig, load_trial_config
from divsweep.trainer.data import TrialDataModule
from divsweep.trainer.decode import greedy_decode
from divsweep.trainer.evaluate import score
from divsweep.workers.sysmetrics import DEFAULT_INTERVAL_S, Sampler

CONFIG = Path(__file__).parents[1] / "configs" / "trial-tiny.yaml"
STEPS = 150
REPEATS = 3
# The sampler's cost, bounded from above: sampled 10x as often as a trial samples by default
# (workers/sysmetrics.py: every 5 s), so that the 150-step window (seconds) holds samples.
SAMPLE_EVERY_S = 0.5
SAMPLED_REPEATS = 8  # pairs, alternating order (a b, b a, ...)
H100_BF16_DENSE_FLOPS = 989e12  # peak used for MFU; other GPUs are reported against it too


def bench_config(accelerator: str) -> TrialConfig:
    base = load_trial_config(CONFIG)
    train = {"max_steps": STEPS, "eval_every": STEPS}
    if accelerator == "cpu":
        train |= {"num_threads": 1, "precision": "32-true"}  # one core: steadier on a shared box
    else:
        train |= {"num_threads": None, "precision": "bf16-mixed", "batch_size": 256}
    return base.model_copy(update={"train": base.train.model_copy(update=train)})


class Clock(pl.Callback):
    """Output tokens and time of the training steps alone (no setup, no evaluation), after the
    first `warmup` steps; `now` reads the time."""

    def __init__(self, warmup: int = 0, now: Callable[[], float] | None = None) -> None:
        self.warmup, self.now = warmup, now or clock
        self.tokens, self.start, self.end = 0, 0.0, 0.0

    def on_train_start(self, trainer, module) -> None:
        if self.warmup == 0:
            self.start = self.now()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 < self.warmup:
            return
        if batch_idx + 1 == self.warmup:
            self.start = self.now()
            return
        self.tokens += batch["n_tokens"]
        self.end = self.now()


def clock() -> float:
    # On the CPU, the process's CPU time: the shared 2-core box runs at load 5-10, and wall
    # time would measure the neighbours. On a GPU, wall time after a device sync.
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def lightning_tokens_per_s(
    cfg: TrialConfig, dm: TrialDataModule, accelerator: str, sample_every: float = 0
) -> float:
    """The trial's Lightning loop (`fit` minus evaluation), timed by a callback; with
    `sample_every` > 0, while a trial's system-metrics sampler runs at that interval (on the
    CPU the clock is the process's CPU time, so it counts the sampler thread's too)."""
    torch.manual_seed(cfg.seed)
    timer = Clock()
    trainer, module = training_loop(cfg, STEPS, accelerator, [timer])
    gpu_ids = ["0"] if accelerator == "gpu" else []
    with Sampler(gpu_ids, interval=sample_every) as sampler:
        trainer.fit(module, datamodule=dm)
    if sample_every > 0 and not sampler.samples:
        raise RuntimeError("the sampler took no sample in the timed window")
    return timer.tokens / (timer.end - timer.start)


def plain_tokens_per_s(cfg: TrialConfig, dm: TrialDataModule, device: str) -> float:
    """The same model, optimizer, schedule, clipping and batches, in a hand-written loop."""
    torch.manual_seed(cfg.seed)
    module = builtin_gpt(cfg).to(device)
    module.total_steps = STEPS  # its schedule's length: no Trainer here to say it
    conf = module.configure_optimizers()
    optimizer, schedule = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    tokens = 0
    start = clock()
    for batch in itertools.islice(dm.loader(), STEPS):
        tokens += batch["n_tokens"]
        inputs, labels = batch["inputs"].to(device), batch["labels"].to(device)
        with autocast:
            loss = module.model.loss(inputs, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.train.grad_clip)
        optimizer.step()
        schedule.step()
    return tokens / (clock() - start)


def decode_examples_per_s(
    cfg: TrialConfig, dm: TrialDataModule, device: str
) -> tuple[float, float]:
    torch.manual_seed(cfg.seed)
    model = builtin_gpt(cfg).model.to(device).eval()
    table = dm.eval_sets["seen"]
    start = clock()
    score(model, table, cfg.train.eval_batch_size, device)
    batched = len(table) / (clock() - start)
    n_single = min(64, len(table))
    start = clock()
    for i in range(n_single):
        prompt = table.prompt_values[table.prompt_offsets[i] : table.prompt_offsets[i + 1]]
        prompt = prompt.long()[None].to(device)
        max_new = int(table.target_lens[i])
        greedy_decode(model, prompt, torch.ones_like(prompt, dtype=torch.bool), max_new)
    single = n_single / (clock() - start)
    return batched, single


def sampler_figures(cfg: TrialConfig, dm: TrialDataModule) -> dict[str, tuple[float, str]]:
    """The trial's Lightning loop with its system-metrics sampler running vs without, and what
    one sample costs (CPU time), as a share of a trial at the default interval."""
    # per pair, sampled / unsampled, back to back in alternating order; the median pair: on
    # this shared box one run's throughput swings by tens of percent (neighbours), a pair's less
    ratios, sampled = [], []
    for i in range(SAMPLED_REPEATS):
        order = (0, SAMPLE_EVERY_S) if i % 2 == 0 else (SAMPLE_EVERY_S, 0)
        pair = {every: lightning_tokens_per_s(cfg, dm, "cpu", every) for every in order}
        ratios.append(pair[SAMPLE_EVERY_S] / pair[0])
        sampled.append(pair[SAMPLE_EVERY_S])
    sampler, n = Sampler([], interval=DEFAULT_INTERVAL_S), 1000
    start = time.process_time()
    for _ in range(n):
        sampler.sample()
    per_sample = (time.process_time() - start) / n
    return {
        "trainer.cpu.sampled_output_tokens_per_s": (max(sampled), ""),
        "trainer.cpu.sampled_over_unsampled_throughput": (statistics.median(ratios), ">= 0.98"),
        "trainer.sysmetrics_sample_cpu_ms": (per_sample * 1000, ""),
        # of one core, sampling every 5 s as a trial does
        "trainer.sysmetrics_percent_of_one_core": (100 * per_sample / DEFAULT_INTERVAL_S, "<= 2"),
    }


def flops_per_token(cfg: TrialConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6 x non-embedding params + attention (PaLM appendix B)."""
    m = cfg.model
    params = 12 * m.n_layers * m.d_model**2
    return 6 * params + 12 * m.n_layers * m.d_model * seq_len


def main() -> None:
    figures: dict[str, tuple[float, str]] = {}
    cfg = bench_config("cpu")
    with tempfile.TemporaryDirectory() as cache:
        data = build(cfg.data, cfg.eval, Path(cache))
        dm = TrialDataModule.attach(data, cfg.train, cfg.seed)
        torch.set_num_threads(1)
        lightning, plain = [], []
        for _ in range(REPEATS):
            lightning.append(lightning_tokens_per_s(cfg, dm, "cpu"))
            plain.append(plain_tokens_per_s(cfg, dm, "cpu"))
        figures["trainer.cpu.lightning_output_tokens_per_s"] = (max(lightning), "")
        figures |= sampler_figures(cfg, dm)
        figures["trainer.cpu.plain_output_tokens_per_s"] = (max(plain), "")
        figures["trainer.cpu.lightning_over_plain_throughput"] = (
            max(lightning) / max(plain),
            ">= 0.95",
        )
        batched, single = decode_examples_per_s(cfg, dm, "cpu")
        figures["trainer.cpu.decode_batched_examples_per_s"] = (batched, "")
        figures["trainer.cpu.decode_single_examples_per_s"] = (single, "")
        figures["trainer.cpu.decode_batched_over_single"] = (batched / single, ">= 10")

        if torch.cuda.is_available():
            gpu = bench_config("gpu")
            dm = TrialDataModule.attach(data, gpu.train, gpu.seed)
            tokens_per_s = lightning_tokens_per_s(gpu, dm, "gpu")
            sampled_gpu = lightning_tokens_per_s(gpu, dm, "gpu", SAMPLE_EVERY_S)
            plain_gpu = plain_tokens_per_s(gpu, dm, "cuda")
            lengths = (dm.train_set.prompt_lens + dm.train_set.target_lens).float()
            # every sequence position costs compute, only output tokens count as throughput
            per_output = float(lengths.sum() / dm.train_set.target_lens.sum())
            flops = tokens_per_s * per_output * flops_per_token(gpu, int(lengths.mean()))
            figures["trainer.gpu.bf16_output_tokens_per_s"] = (tokens_per_s, "")
            figures["trainer.gpu.lightning_over_plain_throughput"] = (
                tokens_per_s / plain_gpu,
                ">= 0.95",
            )
            figures["trainer.gpu.sampled_over_unsampled_throughput"] = (
                sampled_gpu / tokens_per_s,
                ">= 0.98",
            )
            figures["trainer.gpu.mfu"] = (flops / H100_BF16_DENSE_FLOPS, "")
            batched, single = decode_examples_per_s(gpu, dm, "cuda")
            figures["trainer.gpu.decode_batched_over_single"] = (batched / single, ">= 10")
    record("trainer", figures)


if __name__ == "__main__":
    main()
