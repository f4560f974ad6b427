"""From a spec's axes to Tune's search spaces, random draws and adaptive midpoints."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray import tune
from ray.tune.search.sample import Domain

from divsweep.orchestrator.spec import Point, SweepSpec


def domain(axis: list | dict) -> Domain:
    """Tune's domain for one axis: a list is a choice, `{loguniform: [a, b]}` is
    `tune.loguniform(a, b)` (the names are Tune's, so are their meanings)."""
    if isinstance(axis, list):
        return tune.choice(axis)
    [(name, args)] = axis.items()
    return tune.choice(args) if name == "choice" else getattr(tune, name)(*args)


def random_points(spec: SweepSpec) -> list[Point]:
    """`num_samples` draws of the distributions per grid point, from one generator seeded with
    `search.seed`: the same spec always draws the same values."""
    rng = np.random.default_rng(spec.search.seed)
    domains = {path: domain(axis) for path, axis in spec.sampled_axes.items()}
    points = []
    for point in spec.grid():
        for _ in range(spec.search.num_samples or 1):
            drawn = {path: d.sample(random_state=rng) for path, d in domains.items()}
            points.append({**point, **{p: _plain(v) for p, v in drawn.items()}})
    return points


def _plain(value: Any) -> Any:
    # numpy scalars would not survive the JSON of a trial config unchanged
    return value.item() if isinstance(value, np.generic) else value


def next_midpoint(
    scores: Mapping[float, float], resolution: float, integer: bool = True
) -> float | None:
    """Adaptive search step: the geometric midpoint of the adjacent pair of axis values whose
    scores differ most, or None once that pair is within `resolution` (ratio), has no integer
    between (for an integer axis), or the score does not change at all."""
    xs = sorted(scores)
    if len(xs) < 2:
        return None
    lo, hi = max(zip(xs, xs[1:], strict=False), key=lambda p: abs(scores[p[1]] - scores[p[0]]))
    if hi / lo <= resolution or scores[hi] == scores[lo]:  # bracketed, or flat everywhere
        return None
    mid = math.sqrt(lo * hi)
    if integer:
        mid = round(mid)
    return mid if lo < mid < hi else None
