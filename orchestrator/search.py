"""The sweep's search algorithms, as Tune Searchers: each hands Tune points of the spec's axes
resolved into full trial configs (`{"trial": TrialConfig as JSON}`), so the trainable only
ever sees one kind of config, whatever chose it.

- grid and random: a fixed list of points, handed out in order;
- adaptive: the grid, then midpoints along one numeric axis per group of the other axes,
  decided as each group's trials complete (one Tuner, no rounds);
- optuna: Tune's OptunaSearch (TPE) over the axes' distributions.

Tune saves a searcher's state beside the experiment (`save`) and brings it back on
`Tuner.restore` (`restore`), so a resumed sweep neither reruns nor forgets a point.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Hashable

from ray.tune.search import Searcher

from divsweep.orchestrator.space import domain, next_midpoint, random_points
from divsweep.orchestrator.spec import REPLICATE_AXES, Point, SweepSpec


class PointSearch(Searcher):
    """Hands out `points` in order; Tune reruns none of them across a driver restart."""

    def __init__(self, spec: SweepSpec, points: list[Point]):
        super().__init__(metric=spec.selection.metric, mode=spec.selection.mode)
        self.spec = spec
        self.queue: list[Point] = list(points)
        self.issued: dict[str, Point] = {}  # trial id -> point
        self.scores: dict[str, float | None] = {}  # completed trial id -> its selection metric

    @property
    def done(self) -> bool:
        """Every point handed out has completed and none is left to hand out."""
        return not self.queue and len(self.scores) == len(self.issued)

    @property
    def planned(self) -> int | None:
        """How many trials the search runs, where known before it starts."""
        return len(self.queue) + len(self.issued)

    def suggest(self, trial_id: str) -> dict | str | None:
        if not self.queue:
            # nothing now; a search that may add points waits for the trials still running
            return Searcher.FINISHED if self.done else None
        point = self.queue.pop(0)
        self.issued[trial_id] = point
        return {"trial": self.spec.resolve(point).model_dump(mode="json")}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id not in self.issued:
            return
        value = None if error or not result else result.get(self.metric)
        self.scores[trial_id] = value
        self.completed(trial_id)

    def completed(self, trial_id: str) -> None:
        """Called once a trial's score is in: a search that reacts to results adds points."""

    def get_state(self) -> dict:
        return {"queue": self.queue, "issued": self.issued, "scores": self.scores}

    def set_state(self, state: dict) -> None:
        self.queue, self.issued, self.scores = state["queue"], state["issued"], state["scores"]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))


class AdaptiveSearch(PointSearch):
    """The grid, then refinement along `search.axis` for each group of the other axes (each
    budget, distribution, no-op ratio brackets its own transition; seeds are averaged): when
    a group has no trial left running, the geometric midpoint of its steepest step is added
    (with every replicate), until the step is within `resolution` or `max_trials` is spent."""

    def __init__(self, spec: SweepSpec):
        super().__init__(spec, spec.grid())
        self.axis = spec.search.axis
        values = spec.axes[self.axis]
        self.integer = all(isinstance(v, int) for v in values)
        self.budget = spec.search.max_trials

    @property
    def planned(self) -> int | None:
        return None  # decided by the results

    def group(self, point: Point) -> Hashable:
        return _key({p: v for p, v in point.items() if p != self.axis and p not in REPLICATE_AXES})

    def completed(self, trial_id: str) -> None:
        group = self.group(self.issued[trial_id])
        members = [t for t, p in self.issued.items() if self.group(p) == group]
        waiting = any(self.group(p) == group for p in self.queue)
        if waiting or any(t not in self.scores for t in members):
            return  # the group's step is judged on all of its points
        by_value: dict[float, list[float]] = {}
        for t in members:
            if self.scores[t] is not None:
                by_value.setdefault(self.issued[t][self.axis], []).append(self.scores[t])
        mean = {v: sum(s) / len(s) for v, s in by_value.items()}
        mid = next_midpoint(mean, self.spec.search.resolution, self.integer)
        if mid is None:
            return
        # the new value with each replicate (seed) the group's trials used
        replicates = {
            _key({p: v for p, v in self.issued[t].items() if p in REPLICATE_AXES}): self.issued[t]
            for t in members
        }
        new = [{**point, self.axis: mid} for point in replicates.values()]
        if len(self.issued) + len(self.queue) + len(new) <= self.budget:
            self.queue.extend(new)


class OptunaAxes(Searcher):
    """Optuna's TPE (through Tune's OptunaSearch) over the axes: distributions as they are,
    lists as choices; `num_samples` trials in all."""

    def __init__(self, spec: SweepSpec):
        from ray.tune.search.optuna import OptunaSearch

        super().__init__(metric=spec.selection.metric, mode=spec.selection.mode)
        self.spec = spec
        self.optuna = OptunaSearch(
            space={path: domain(axis) for path, axis in spec.axes.items()},
            metric=self.metric,
            mode=self.mode,
            seed=spec.search.seed,
        )
        self.total = spec.search.num_samples or 0
        self.issued: set[str] = set()
        self.completed: set[str] = set()

    @property
    def done(self) -> bool:
        return len(self.issued) >= self.total and self.completed >= self.issued

    @property
    def planned(self) -> int | None:
        return self.total

    def suggest(self, trial_id: str) -> dict | str | None:
        if len(self.issued) >= self.total:
            return Searcher.FINISHED
        point = self.optuna.suggest(trial_id)
        if not isinstance(point, dict):
            return point
        self.issued.add(trial_id)
        return {"trial": self.spec.resolve(point).model_dump(mode="json")}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        self.completed.add(trial_id)
        self.optuna.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        # OptunaSearch saves to a file of its own: its bytes travel inside this one
        fd, inner = tempfile.mkstemp(dir=os.path.dirname(checkpoint_path) or ".")
        os.close(fd)
        try:
            self.optuna.save(inner)
            with open(inner, "rb") as f:
                study = f.read()
        finally:
            os.unlink(inner)
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"issued": self.issued, "completed": self.completed, "optuna": study}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.issued, self.completed = state["issued"], state["completed"]
        fd, inner = tempfile.mkstemp(dir=os.path.dirname(checkpoint_path) or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(state["optuna"])
            self.optuna.restore(inner)
        finally:
            os.unlink(inner)


def make_searcher(spec: SweepSpec) -> PointSearch | OptunaAxes:
    kind = spec.search.kind
    if kind == "adaptive":
        return AdaptiveSearch(spec)
    if kind == "optuna":
        return OptunaAxes(spec)
    return PointSearch(spec, random_points(spec) if kind == "random" else spec.grid())


def _key(point: Point) -> Hashable:
    return tuple(sorted((p, repr(v)) for p, v in point.items()))


def finished(spec: SweepSpec, experiment_dir: str) -> bool:
    """Whether the search saved in `experiment_dir` has nothing left to run: read back through
    Tune's own restore, as `Tuner.restore` would."""
    searcher = make_searcher(spec)
    searcher.restore_from_dir(experiment_dir)
    return searcher.done
