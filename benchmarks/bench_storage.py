"""Sweep storage on S3 vs local disk, and what the storage preflight adds to a sweep's start.

`python -m benchmarks bench_storage`. (1) The 100 short trials of bench_orchestration run by
`divsweep.run` with `storage_path` on a local S3-protocol server (moto, 127.0.0.1: every
checkpoint, Tune's experiment state, sweep.json and the journal mirror go over S3 HTTP) and
with local storage, in the order l s s l, on one local Ray; the best of each counts. Beside
the ratio, the two figures that travel to other machines: requests per trial the S3 server
answered, and its CPU seconds per trial (on this 2-core machine moto's CPU competes with the
trials for the same cores; a real S3 endpoint costs the nodes none).
(2) The preflight on a two-node Ray (ray.cluster_utils: a 0-CPU head and a worker node on this
machine): its first call (each node starts a worker for the probe) and the median of five
later ones. One local Ray has no preflight: the driver's own write proves it.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import ray

import divsweep
from benchmarks.bench_orchestration import CPUS, N_TRIALS, bench_spec
from benchmarks.results_table import record
from divsweep.datasets import build_all
from divsweep.orchestrator import storage

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# one access-log line per request moto answered (werkzeug's format: "METHOD /path HTTP/1.1",
# with terminal colour codes before METHOD on answers other than 200, such as a 404 or 206)
REQUEST_LINE = re.compile(rb'"(?:\x1b\[[0-9;]*m)*(?:GET|PUT|HEAD|POST|DELETE) /')


def server_load(server: subprocess.Popen, log: Path) -> tuple[int, float]:
    """Requests answered and CPU seconds spent by the S3 server so far."""
    cpu = psutil.Process(server.pid).cpu_times()
    return len(REQUEST_LINE.findall(log.read_bytes())), cpu.user + cpu.system


def start_s3(port: int, log: Path) -> subprocess.Popen:
    """moto's S3 server on 127.0.0.1, in its own process group; returns once it answers."""
    server = str(Path(sys.executable).with_name("moto_server"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [server, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("moto_server did not answer within 60 s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep_time(spec, uri: str) -> float:
    start = time.perf_counter()
    sweep = divsweep.run(spec, tracking_uri=uri, progress=False)
    elapsed = time.perf_counter() - start
    assert sweep.outcome.get("finished") == N_TRIALS, sweep.outcome
    return elapsed


def s3_vs_local(root: Path) -> dict[str, float]:
    """Best sweep time on each side, and the S3 server's requests and CPU per S3 trial."""
    from pyarrow import fs

    port = free_port()
    log = root / "s3.log"
    server = start_s3(port, log)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})  # before Ray: workers inherit
    try:
        s3 = fs.S3FileSystem(
            endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True
        )
        s3.create_dir("bench")
        local = bench_spec(root)
        remote = local.model_copy(update={"storage_path": "s3://bench/sweeps"})
        build_all(local.data_configs(), cache_dir=local.cache_dir, progress=False)
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
        try:
            uri = f"sqlite:///{root / 'mlflow.db'}"
            times: dict[str, list[float]] = {"l": [], "s": []}
            requests, cpu_s = 0, 0.0
            for side in "lssl":
                before = server_load(server, log)
                times[side].append(sweep_time(local if side == "l" else remote, uri))
                after = server_load(server, log)
                if side == "s":
                    requests += after[0] - before[0]
                    cpu_s += after[1] - before[1]
            print("local storage runs (s):", " ".join(f"{t:.2f}" for t in times["l"]))
            print("S3 storage runs (s):   ", " ".join(f"{t:.2f}" for t in times["s"]))
        finally:
            ray.shutdown()
    finally:
        server.kill()
        server.wait()
    s3_trials = 2 * N_TRIALS
    return {
        "s3": min(times["s"]),
        "local": min(times["l"]),
        "requests_per_trial": requests / s3_trials,
        "server_cpu_s_per_trial": cpu_s / s3_trials,
    }


def preflight_times(root: Path) -> tuple[float, float]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        location = str(root / "preflight")
        times = []
        for _ in range(6):
            start = time.perf_counter()
            storage.preflight(location)
            times.append(time.perf_counter() - start)
        ray.shutdown()
    finally:
        cluster.shutdown()
    return times[0], statistics.median(times[1:])


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        sides = s3_vs_local(root)
        first, later = preflight_times(root)
    s3, local = sides["s3"], sides["local"]
    record(
        "storage",
        {
            "storage.s3_over_local": (s3 / local, "<= 1.3"),
            "storage.s3_sweep_s_per_trial": (s3 / N_TRIALS, ""),
            "storage.local_sweep_s_per_trial": (local / N_TRIALS, ""),
            "storage.s3_requests_per_trial": (sides["requests_per_trial"], ""),
            "storage.s3_server_cpu_s_per_trial": (sides["server_cpu_s_per_trial"], ""),
            "storage.preflight_first_s": (first, ""),
            "storage.preflight_s": (later, ""),
        },
    )


if __name__ == "__main__":
    main()
