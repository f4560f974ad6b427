"""Preemption notices. A trial told that its node is going (a Ray drain) or that its process is
to end (SIGTERM) writes a checkpoint at its next step boundary, reports it, and stops
(trainer/preemption.py); Tune's retry resumes from that step, on another node.

How a trial process hears (`Notice.listen`, once per process, from its main thread):
- A drain. Ray 2.60 holds each draining node and its deadline in the GCS, whoever asked for it
  (`ray drain-node`, the autoscaler's DrainNode for a preempted instance, `ray start` itself on
  SIGTERM), and pushes nothing to the workers; Ray Train v2's PreemptionWatcher polls the same
  `get_draining_nodes` call. A thread here polls it every `DIVSWEEP_DRAIN_POLL_S` (default 1 s):
  one small GCS request per trial process per poll, none per step.
- SIGTERM: a handler sets the notice instead of exiting while a trial trains (otherwise Ray's
  own handler runs). Python lets only the main thread set a handler, and Tune trains a function
  trial in a thread of its own: the trainable's `setup`, on the main thread, installs it
  (workers/trial.py). This module imports no torch or Lightning, so that `setup` stays quick:
  with Lightning imported there, Tune started a sweep's trials one after another
  (test_fractional_gpus_pack_trials).
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
from typing import NoReturn

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
        called from the process's main thread (a trainable's `setup`); later calls do nothing."""
        if self._listening:
            return
        self._listening = True
        # Python lets only the main thread set a handler
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
