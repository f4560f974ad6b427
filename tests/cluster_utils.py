"""A real two-node Ray cluster on this machine, with token authentication on.

Two `ray start --block` processes (a head and a worker node), each in its own process group,
sharing one short temp dir. Stopping kills exactly those two process groups — never `ray stop`,
which would also take down every other Ray of this user (e.g. the test session's embedded one).

Ray 2.60 token auth: every node and every client needs `RAY_AUTH_MODE=token` plus the token from
`RAY_AUTH_TOKEN` (highest precedence), `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from conftest import free_port

RAY = str(Path(sys.executable).with_name("ray"))
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def client_env(token: str | None, home: Path) -> dict[str, str]:
    """Environment for a process talking to the cluster; `token=None` strips every auth source.

    HOME points at `home` so a token in the developer's real ~/.ray/auth_token cannot leak in.
    """
    env = {k: v for k, v in os.environ.items() if k not in _AUTH_VARS}
    env["HOME"] = str(home)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    if token is not None:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = token
    return env


@dataclass
class LocalCluster:
    address: str  # host:port of the head's GCS, for `ray.init(address=...)`
    token: str
    temp_dir: Path
    head: subprocess.Popen
    worker: subprocess.Popen | None  # None: a head-only cluster
    dashboard: str = ""  # http://host:port of the head's dashboard (and its Jobs API)

    def env(self, with_token: bool = True) -> dict[str, str]:
        return client_env(self.token if with_token else None, self.temp_dir / "home")

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet and the Ray workers under it at once, as a machine
        failure would (a worker outliving its raylet can finish its trial before it notices);
        returns the raylet's pid."""
        for child in psutil.Process(self.worker.pid).children(recursive=True):
            if child.name() == "raylet":
                for proc in [*child.children(recursive=True), child]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                _wait_dead(child)
                return child.pid
        raise RuntimeError("worker node has no raylet process")

    def reclaim_worker_node(self) -> None:
        """SIGKILL every process of the worker node at once, as a cloud reclaiming the instance
        takes them: its process group (the node, raylet, agents) in one signal, then the Ray
        workers, which lead groups of their own. Killed one by one, the raylet would see its
        agent die first and report its own death as unexpected; killed at once, nothing
        reports and the GCS finds the node gone by its health checks."""
        workers = psutil.Process(self.worker.pid).children(recursive=True)
        os.killpg(os.getpgid(self.worker.pid), signal.SIGKILL)
        for proc in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        for proc in workers:
            _wait_dead(proc)

    def stop(self) -> None:
        # Worker first, so the head does not spend the shutdown waiting on a dead peer.
        for proc in (self.worker, self.head):
            if proc is not None:
                _stop_group(proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _wait_dead(proc: psutil.Process, timeout_s: float = 10.0) -> None:
    """Until a killed process is gone or a zombie: SIGKILL lands asynchronously, and on a
    loaded machine the raylet was seen still running right after `kill()` returned."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise RuntimeError(f"process {proc.pid} still running {timeout_s:.0f} s after SIGKILL")


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Terminate the process group `proc` leads (the node and everything it spawned)."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    if pgid != proc.pid:  # not a group we created: refuse rather than kill strangers
        raise RuntimeError(f"process {proc.pid} does not lead its own process group")
    members = _group_members(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        _, alive = psutil.wait_procs(members, timeout=grace_s)
        if not alive:
            break
        members = alive
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                members.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _start_node(
    args: list[str],
    env: dict[str, str],
    log: Path,
    timeout_s: float,
    private: tuple[Path, ...] = (),
) -> subprocess.Popen:
    cmd = [RAY, "start", "--block", "--disable-usage-stats", *args]
    if private:
        cmd = _in_own_mount_namespace(cmd, private)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "Ray runtime started" in log.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.3)
    _stop_group(proc)
    raise RuntimeError(f"`{' '.join(cmd)}` not up within {timeout_s} s:\n{log.read_text()}")


def _in_own_mount_namespace(cmd: list[str], private: tuple[Path, ...]) -> list[str]:
    """`cmd` in a mount namespace of its own, with an empty tmpfs over each of `private`: the
    node sees none of this machine's files there, as a node on another machine would not
    (we are root; `exec` keeps the node's pid, so it still leads its process group)."""
    for folder in private:
        folder.mkdir(parents=True, exist_ok=True)
    mounts = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(str(p))}" for p in private)
    script = f'{mounts} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd]


def _node_ports() -> list[str]:
    """Fixed free ports for the per-node agents, so two nodes on one host never collide."""
    return [
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
        "--object-store-memory", str(100 * 1024**2),
    ]  # fmt: skip


def start_local_cluster(
    num_cpus: int = 1,
    num_gpus: int = 0,
    token: str | None = None,
    timeout_s: float = 90.0,
    worker_private: tuple[Path, ...] = (),
    env_extra: dict[str, str] | None = None,
    with_worker: bool = True,
) -> LocalCluster:
    """Start head + one worker node with token auth; the caller must call `.stop()`.
    `worker_private`: folders the worker node sees as empty (its own mount namespace), as a
    node without a shared filesystem would. `env_extra`: more environment for both nodes
    (e.g. object-storage credentials, as an instance role gives each node)."""
    token = token or secrets.token_hex(32)
    # Short path: Ray puts Unix sockets under it and socket paths are limited to ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="dsr", dir="/tmp"))
    (temp_dir / "home").mkdir()
    env = {**client_env(token, temp_dir / "home"), **(env_extra or {})}
    port, dashboard_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus)]
    common += ["--num-gpus", str(num_gpus)]
    head = None
    try:
        head = _start_node(
            [
                "--head", "--port", str(port), "--temp-dir", str(temp_dir),
                "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
                *common, *_node_ports(),
            ],
            env, temp_dir / "head.log", timeout_s,
        )  # fmt: skip
        worker = None if not with_worker else _start_node(
            ["--address", address, *common, *_node_ports()],
            env, temp_dir / "worker.log", timeout_s, tuple(worker_private),
        )  # fmt: skip
    except BaseException:
        if head is not None:
            _stop_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    return LocalCluster(address, token, temp_dir, head, worker, dashboard)


@contextmanager
def local_cluster(**kwargs) -> Iterator[LocalCluster]:
    cluster = start_local_cluster(**kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
