"""What a trial costs its machine, sampled every few seconds in a background thread.

Each sample is `[time_ms, {metric: value}]` with the metric names of divsweep/tracking.py:
this process's CPU (percent of one core) and resident memory, and, for each GPU Ray gave the
trial, through NVML where `pynvml` (package nvidia-ml-py) imports and initialises: the
device's utilisation, memory used and power draw, and this process's own memory on it. Without
NVML, or without a GPU, the GPU figures are simply absent.

Packed trials (fractional `resources.gpu`) share a device: its utilisation, memory and power
are the device's, the same figures in every trial packed on it, not each trial's share; only
`gpu_<i>_process_memory_megabytes` is the trial's own.

The samples reach the driver with the trial's Tune results (`take` at each evaluation), the
one channel a trial already has to the driver, whose tracker logs them on the trial's run:
a side channel (an actor, a queue) would add a moving part per trial for charts that then
update between evaluations rather than at them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from types import TracebackType
from typing import Any

import psutil

from divsweep.tracking import GPU_FIGURES, PROCESS_CPU, PROCESS_RSS, gpu_metric

INTERVAL_ENV = "DIVSWEEP_SYSTEM_METRICS_INTERVAL_S"  # 0: no sampling
DEFAULT_INTERVAL_S = 5.0
log = logging.getLogger(__name__)

Sample = list  # [time_ms, {metric name: value}]


def interval_s() -> float:
    return float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))


class Sampler:
    """Samples this process (and `gpu_ids`, as Ray names them) every `interval` seconds while
    in its `with` block; `take` hands over what was sampled since the last `take`."""

    def __init__(self, gpu_ids: list[str], interval: float | None = None) -> None:
        self.interval = interval_s() if interval is None else interval
        self.process = psutil.Process()
        self.process.cpu_percent(None)  # the first call only starts the CPU clock
        self.gpus = _nvml_handles(gpu_ids) if self.interval > 0 else {}
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="divsweep-sysmetrics", daemon=True)

    def __enter__(self) -> Sampler:
        if self.interval > 0:
            self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.gpus:
            _nvml().nvmlShutdown()

    def take(self) -> list[Sample]:
        """The samples since the last call, and one taken now (a trial shorter than the
        interval still gets one); none when sampling is off."""
        if self.interval <= 0:
            return []
        self.sample()
        with self.lock:
            taken, self.samples = self.samples, []
        return taken

    def sample(self) -> None:
        figures = {
            PROCESS_CPU: self.process.cpu_percent(None),
            PROCESS_RSS: self.process.memory_info().rss / 1e6,
        }
        for gpu_id, handle in self.gpus.items():
            figures |= _gpu_figures(gpu_id, handle, self.process.pid)
        with self.lock:
            self.samples.append([int(time.time() * 1000), figures])

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()


def _nvml() -> Any:
    import pynvml

    return pynvml


def _nvml_handles(gpu_ids: list[str]) -> dict[str, Any]:
    """NVML handles of the trial's GPUs (Ray's ids are the machine's indices, or UUIDs where
    CUDA_VISIBLE_DEVICES named them so); {} without NVML."""
    if not gpu_ids:
        return {}
    try:
        nvml = _nvml()
        nvml.nvmlInit()
    except Exception as err:  # not installed, no driver: GPU figures are left out
        log.debug("no NVML (%s): GPU system metrics are left out", err)
        return {}
    handles = {}
    for gpu_id in gpu_ids:
        try:
            if gpu_id.startswith("GPU-"):
                handles[gpu_id] = nvml.nvmlDeviceGetHandleByUUID(gpu_id)
            else:
                handles[gpu_id] = nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
        except Exception as err:
            log.debug("NVML has no GPU %s (%s)", gpu_id, err)
    if not handles:
        nvml.nvmlShutdown()
    return handles


def _gpu_figures(gpu_id: str, handle: Any, pid: int) -> dict[str, float]:
    """What NVML answers for one GPU; a figure it refuses (no power sensor...) is left out."""
    nvml = _nvml()
    utilization, memory, power, own = GPU_FIGURES
    reads = {
        utilization: lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
        memory: lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used / 1e6,
        power: lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
        own: lambda: _process_memory(nvml, handle, pid),
    }
    figures = {}
    for figure, read in reads.items():
        try:
            value = read()
        except Exception:
            continue
        if value is not None:
            figures[gpu_metric(gpu_id, figure)] = float(value)
    return figures


def _process_memory(nvml: Any, handle: Any, pid: int) -> float | None:
    """This process's memory on the GPU; None where NVML does not see it (another PID
    namespace, as in some containers)."""
    for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
        if proc.pid == pid and proc.usedGpuMemory is not None:
            return proc.usedGpuMemory / 1e6
    return None
