"""Checkpoint on notice: a trial told that its node is going (a Ray drain) or that its process is
to end (SIGTERM) writes a checkpoint at its next step boundary, reports it, and stops; Tune's
retry resumes from that step, on another node.

How a trial process hears (`Notice.listen`, once per process, from its main thread):
- A drain. Ray 2.60 holds each draining node and its deadline in the GCS, whoever asked for it
  (`ray drain-node`, the autoscaler's DrainNode for a preempted instance, `ray start` itself on
  SIGTERM), and pushes nothing to the workers; Ray Train v2's PreemptionWatcher polls the same
  `get_draining_nodes` call. A thread here polls it every `DIVSWEEP_DRAIN_POLL_S` (default 1 s):
  one small GCS request per trial process per poll, none per step.
- SIGTERM, where `listen` runs on the process's main thread: a handler sets the notice instead
  of exiting while a trial trains (otherwise the previous handler runs). Python lets only the
  main thread set a handler, and Tune trains a function trial in a thread of its own, so a
  sweep's trials hear drains only. (Installing it from a class trainable's `setup`, on the main
  thread, made Tune run a sweep's trials one at a time: test_fractional_gpus_pack_trials.)
Both only set an Event; the step loop reads it at each step boundary (`CheckpointOnNotice`).

How the attempt ends, once the checkpoint is reported (`Notice.stop`):
- A drain with a deadline: the trial waits for its node to be taken. Ray records a draining node
  that dies past its deadline as preempted (AUTOSCALER_DRAIN_PREEMPTED), and Tune does not count
  a trial lost that way against `max_failures`. A node still there `GRACE_S` past its deadline
  (a drain nobody enforces) is left: the trial raises `Preempted`.
- SIGTERM, or a drain without a deadline: `Preempted` at once. Tune counts that as a failure,
  one of the trial's `retries`.

What a notice can lose: the step in flight when it comes, plus the checkpoint write. A notice
shorter than that loses everything since the trial's last checkpoint, as a crash would.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import NoReturn, Protocol

import pytorch_lightning as pl

from divsweep import tracking
from divsweep.trainer.pause import Pause

logger = logging.getLogger(__name__)

DRAIN, SIGTERM = "drain", "sigterm"  # where a notice came from (the run's tracking.PREEMPTED)
POLL_S = float(os.environ.get("DIVSWEEP_DRAIN_POLL_S", "1"))
# how long past its drain deadline a trial waits for its node to be taken before it leaves
GRACE_S = 30.0


class Preempted(RuntimeError):
    """The trial stopped on a preemption notice at `step`, its checkpoint there reported."""

    def __init__(self, step: int, source: str | None) -> None:
        super().__init__(f"stopped at step {step} on a {source} notice, checkpoint reported")
        self.step = step


class Notice:
    """This process's preemption notice. One per process, not per trial: Tune reuses a trial's
    process for the next trial, and a node that is going is going for all of them."""

    def __init__(self) -> None:
        self.given = threading.Event()
        self.source: str | None = None
        self.deadline_ms = 0  # the drain's deadline (Unix ms); 0: none given
        self.training = False  # a trial trains here: SIGTERM is a notice, not an exit
        self._listening = False
        self._previous_sigterm = None

    def give(self, source: str, deadline_ms: int = 0) -> None:
        if not self.given.is_set():
            self.source, self.deadline_ms = source, deadline_ms
            self.given.set()

    def listen(self, node_id: str) -> None:
        """Hear the drain of `node_id` (the Ray node this process runs on), and SIGTERM when
        called from the process's main thread; later calls do nothing."""
        if self._listening:
            return
        self._listening = True
        # Python lets only the main thread set a handler; Tune trains a function trial in a
        # thread of its own, so there a trial hears drains only (docs/cluster.md)
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        watcher = threading.Thread(
            target=self._watch_drain, args=(node_id,), name="divsweep-drain-watch", daemon=True
        )
        watcher.start()

    def _on_sigterm(self, signum, frame) -> None:
        if self.training:
            self.give(SIGTERM)
            return
        previous = self._previous_sigterm  # no trial to save: exit as Ray would have
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    def _watch_drain(self, node_id: str) -> None:
        import ray

        while not self.given.is_set():
            try:
                draining = ray._private.state.state.get_draining_nodes()
            except Exception:  # a GCS hiccup: the next poll asks again
                logger.warning("could not ask the GCS for draining nodes", exc_info=True)
                draining = {}
            if node_id in draining:
                self.give(DRAIN, draining[node_id])
                return
            time.sleep(POLL_S)

    def stop(self, step: int) -> NoReturn:
        """End this attempt, its checkpoint at `step` reported (see the module docstring)."""
        if self.source == DRAIN and self.deadline_ms:
            until = self.deadline_ms / 1000 + GRACE_S
            while time.time() < until:
                time.sleep(min(1.0, max(0.0, until - time.time())))
            logger.warning("node not taken %.0f s past its drain deadline; leaving it", GRACE_S)
        raise Preempted(step, self.source)


NOTICE = Notice()


class Checkpointer(Protocol):
    """What CheckpointOnNotice needs of the trial's reporting callback."""

    reported_step: int  # the last step it reported (with a checkpoint); -1: none

    def checkpoint_on_notice(self, trainer: pl.Trainer, metrics: dict[str, float]) -> None:
        """Checkpoint the current step and report it with `metrics` and its own cheap ones
        (no evaluation: the notice's time is short)."""


class CheckpointOnNotice(pl.Callback):
    """At each step boundary, on a notice: checkpoint and report this step through `owner`,
    then stop. Goes after `owner` in the Trainer's callbacks, so that at an evaluation step the
    evaluation reports first; a step already reported waits for the next boundary (a trial at
    its last step simply ends). The count of preemptions travels in the checkpoint."""

    def __init__(self, owner: Checkpointer, key: str) -> None:
        self.owner = owner
        self.pause = Pause(key, interrupted=NOTICE.given)  # drills only; off by default
        self.preemptions = 0

    def state_dict(self) -> dict:
        return {"preemptions": self.preemptions}

    def load_state_dict(self, state: dict) -> None:
        self.preemptions = state["preemptions"]

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        NOTICE.training = True
        self.pause.started(trainer.global_step + 1)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        NOTICE.training = False

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exc) -> None:
        NOTICE.training = False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        self.pause.between(step)
        if not NOTICE.given.is_set() or step == self.owner.reported_step:
            return
        self.preemptions += 1
        self.owner.checkpoint_on_notice(trainer, {tracking.PREEMPTIONS: float(self.preemptions)})
        NOTICE.stop(step)
