"""A trial's system-metrics sampler (workers/sysmetrics.py) on this machine's real process."""

from __future__ import annotations

import time

import pytest

from divsweep import tracking
from divsweep.workers.sysmetrics import Sampler


def busy_until(sampler: Sampler, count: int, timeout_s: float = 30.0) -> None:
    """Burn CPU until the sampler's thread has taken `count` samples."""
    deadline = time.monotonic() + timeout_s
    while len(sampler.samples) < count:
        sum(i * i for i in range(20_000))
        assert time.monotonic() < deadline, "the sampler thread took no samples"


def test_samples_the_process_in_the_background_and_hands_each_over_once() -> None:
    with Sampler(gpu_ids=[], interval=0.05) as sampler:
        busy_until(sampler, 3)
        first = sampler.take()
        second = sampler.take()
    assert len(first) >= 4 and len(second) == 1  # the thread's, then one taken at take()
    times = [at for at, _ in first + second]
    assert times == sorted(times) and abs(times[-1] - time.time() * 1000) < 60_000
    for _, figures in first:
        assert set(figures) == {tracking.PROCESS_CPU, tracking.PROCESS_RSS}
        assert figures[tracking.PROCESS_RSS] > 10  # MB: this Python process at least
    assert max(f[tracking.PROCESS_CPU] for _, f in first) > 10  # the busy loop shows
    assert not sampler.thread.is_alive()


def test_interval_zero_samples_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIVSWEEP_SYSTEM_METRICS_INTERVAL_S", "0")
    with Sampler(gpu_ids=["0"]) as sampler:
        assert sampler.take() == []
    assert not sampler.thread.is_alive() and sampler.gpus == {}


def test_gpu_figures_are_left_out_without_nvml() -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("NVML answers here: the GPU figures are not left out")
    except Exception:
        pass
    with Sampler(gpu_ids=["0"], interval=60) as sampler:
        (sample,) = sampler.take()
    assert set(sample[1]) == {tracking.PROCESS_CPU, tracking.PROCESS_RSS}
