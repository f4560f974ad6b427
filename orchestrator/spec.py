"""The sweep spec: one YAML file with a trial template, the axes to vary, and how to search.

```yaml
name: smoke
data:                                     # the trial template: a TrialConfig without the axes
  task: {family: rewrite, ...}            #   (TaskConfig, datasets/config.py)
  examples_per_instruction: 16            #   or `budget: 4096` (examples per instruction derived)
eval: {...}                               # EvalConfig
model: {...}                              # ModelConfig (trainer/config.py)
train: {...}                              # TrainConfig
axes:                                     # any setting of the trial, by its dotted path
  data.n_instructions: [8, 32, 128]       # a list: a grid axis
  data.distribution: [uniform, {kind: powerlaw, alpha: 0.5}]  # kind + alpha together
  seed: [0, 1]                            # the trial's seed; its data's seed follows it
  train.lr: {loguniform: [1.0e-4, 1.0e-2]}  # a distribution: for random / optuna search
search: grid                              # or {random: 8}, {optuna: 32},
                                          # or {kind: adaptive, resolution: 1.5, max_trials: 40}
selection: {metric: unseen_val/exact_match, mode: max}  # what the scheduler and searches optimise
scheduler: {kind: asha, grace_period: 50} # or fifo
resources: {cpu: 1, gpu: 0.25}
cost: {gpu_hour: 2.5, cpu_hour: 0.04}     # optional prices per hour of what `resources` grants
max_concurrent_trials: 4
retries: 2
tracking: {uri: "sqlite:///mlflow.db"}    # experiment defaults to `name`
storage_path: .divsweep/ray_results       # or s3://bucket/prefix, gs://…: every node must reach it
cache_dir: null                           # $DIVSWEEP_CACHE or .divsweep/cache
```
"""

from __future__ import annotations

import copy
import itertools
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, Field, field_validator, model_validator

from divsweep.config import FrozenConfig, read_yaml
from divsweep.datasets.config import DataConfig, EvalConfig, check_eval_fits, validation_size
from divsweep.errors import SpecError
from divsweep.orchestrator import storage
from divsweep.trainer import study
from divsweep.trainer.config import TrialConfig, parse_trial_config
from divsweep.trainer.plugin import ClassSpec
from divsweep.trainer.user_trial import UserTrialConfig, is_user_trial

# distribution name -> number of arguments; the names and meanings are Tune's (ray.tune.*)
DISTRIBUTIONS = {
    "uniform": 2,
    "loguniform": 2,
    "quniform": 3,
    "qloguniform": 3,
    "randint": 2,  # [low, high): high excluded, as in Tune
    "lograndint": 2,
    "qrandint": 3,
    "choice": None,  # any number of values
}
# paths whose axis values are sugar for several settings at once
SEED, DISTRIBUTION = "seed", "data.distribution"
# axes averaged over before adaptive search compares points (replicates, not conditions)
REPLICATE_AXES = (SEED, "data.seed")
# keys of the old spec format, with where each went
MOVED = {
    "task": "data.task",
    "data.budgets": "an axis `data.budget: [...]` (or a fixed `data.budget`)",
    "data.seeds": "an axis `seed: [...]`",
    "data.distributions": "an axis `data.distribution: [...]`",
    "data.p_pattern_present": "an axis `data.task.p_pattern_present: [...]`",
    "scheduler.metric": "selection.metric",
    "scheduler.mode": "selection.mode",
    "search.max_rounds": "search.max_trials",
    "search.samples": "search.num_samples",
}
Point = dict[str, Any]  # axis path -> value
# the template's sections of each kind of trial
BUILTIN_SECTIONS = ("data", "eval", "model", "train")
USER_SECTIONS = ("model", "datamodule", "trainer")
SECTIONS = ("data", "eval", "model", "train", "datamodule", "trainer")


class Search(FrozenConfig):
    """grid: every point of the list axes; random: `num_samples` seeded draws from the
    distributions (per point of the list axes); optuna: `num_samples` trials chosen by Optuna's
    TPE (list axes become choices); adaptive: the grid, then geometric midpoints along `axis`
    where the selection metric changes most, per group of the other axes, until each group's
    steepest step spans a ratio <= `resolution` or `max_trials` trials have run."""

    kind: Literal["grid", "random", "optuna", "adaptive"] = "grid"
    num_samples: int | None = Field(default=None, ge=1)
    seed: int = 0
    axis: str = "data.n_instructions"
    resolution: float = Field(default=1.5, gt=1)
    max_trials: int = Field(default=64, ge=1)

    @model_validator(mode="after")
    def _samples_iff_sampling(self) -> Search:
        if (self.kind in ("random", "optuna")) != (self.num_samples is not None):
            raise ValueError("num_samples is required for kind random and optuna, and only there")
        return self


class Selection(FrozenConfig):
    """The one metric the scheduler and the searches optimise: by default exact match on the
    held-out validation rules, so the test rules the report headlines never steer the sweep.
    A user's module may be selected on any metric it logs (checked at its first report)."""

    metric: str = Field(study.SELECTION, min_length=1)
    mode: Literal["max", "min"] = "max"


class Headline(FrozenConfig):
    """The metric the report puts first (against every axis, on the frontier). Built-in study:
    exact match on the held-out test rules; a user's study: its selection metric unless set."""

    metric: str = Field(min_length=1)
    mode: Literal["max", "min"] = "max"


class Scheduler(FrozenConfig):
    """fifo runs every trial to the end; asha stops poor trials (by the selection metric) at
    rungs of `step`."""

    kind: Literal["fifo", "asha"] = "fifo"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2, gt=1)
    max_t: int | None = Field(default=None, ge=1)


class Resources(FrozenConfig):
    """Per-trial resources; a fractional GPU packs several small trials on one device."""

    cpu: float = Field(default=1, gt=0)
    gpu: float = Field(default=0, ge=0, le=1)


# a price: a finite number >= 0, never text or a bool that pydantic would read as one
Price = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class Prices(FrozenConfig):
    """Prices per hour of the resources Ray grants a trial (`resources`): the sweep's cost in
    money is its accelerator-hours and CPU-hours at these (orchestrator/cost.py). A price left
    out counts as 0 (a cloud that bills the node per GPU prices the CPUs with it)."""

    gpu_hour: Price = 0.0
    cpu_hour: Price = 0.0
    currency: Annotated[str, Field(min_length=1)] = "USD"


class Tracking(FrozenConfig):
    uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None


Section = dict[str, Any]
# the built-in study's: exact match on its held-out test rules
BUILTIN_HEADLINE = Headline(metric=study.HEADLINE, mode="max")


class SweepSpec(FrozenConfig):
    _root: ClassVar[str] = "sweep"

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    # the trial template, validated point by point in parse_spec: the built-in study's
    # sections (TrialConfig: data, eval, model, train), or a user trial's (UserTrialConfig:
    # model and datamodule by class_path, trainer, data) when the model names a class_path
    data: Section = {}
    eval: Section = {}
    model: Section = {}
    train: Section = {}
    datamodule: Section = {}
    trainer: Section = {}
    seed: int = Field(default=0, ge=0)
    axes: dict[str, Any] = {}
    search: Search = Search()
    selection: Selection = Selection()
    headline: Headline | None = None
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    cost: Prices | None = None
    max_concurrent_trials: int | None = Field(default=None, ge=1)
    retries: int = Field(default=0, ge=0)
    tracking: Tracking = Tracking()
    # a path or an s3:// / gs:// / file:// URI (orchestrator/storage.py), kept normalized
    storage_path: str = Field(".divsweep/ray_results", validate_default=True)
    cache_dir: Path | None = None

    @field_validator("search", mode="before")
    @classmethod
    def _search_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict) and len(value) == 1 and set(value) <= {"random", "optuna"}:
            [(kind, n)] = value.items()  # `search: {random: 8}`, `search: {optuna: 32}`
            return {"kind": kind, "num_samples": n}
        return value

    @field_validator("storage_path")
    @classmethod
    def _storage(cls, value: str | Path) -> str:
        return storage.normalize(value)

    @field_validator("cache_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Ray workers run in other directories (and on other nodes): relative paths would drift.
        return None if value is None else value.expanduser().resolve()

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def user_study(self) -> bool:
        """Whether the trials are the user's own LightningModule (model by class_path)."""
        return is_user_trial({"model": self.model})

    @property
    def headline_metric(self) -> Headline:
        if self.headline is not None:
            return self.headline
        if self.user_study:
            return Headline(metric=self.selection.metric, mode=self.selection.mode)
        return BUILTIN_HEADLINE

    @property
    def grid_axes(self) -> dict[str, list]:
        return {p: v for p, v in self.axes.items() if isinstance(v, list)}

    @property
    def sampled_axes(self) -> dict[str, dict]:
        return {p: v for p, v in self.axes.items() if not isinstance(v, list)}

    def grid(self) -> list[Point]:
        """Every point of the list axes, in the order the axes are written."""
        paths = list(self.grid_axes)
        products = itertools.product(*self.grid_axes.values())
        return [dict(zip(paths, values, strict=True)) for values in products]

    def resolve(self, point: Point) -> TrialConfig | UserTrialConfig:
        """The trial config at `point`; an invalid one is a SpecError naming the path and the
        point."""
        raw = self._raw(point)
        try:
            return parse_trial_config(raw, "sweep")
        except SpecError as err:
            message = str(err)
            for path in point:  # a value the axes set is named where the user wrote it
                message = message.replace(f"sweep.{path}:", f"sweep.axes.{path}:")
            shown = ", ".join(f"{p}={v!r}" for p, v in point.items())
            raise SpecError(f"{message} (at {shown})" if point else message) from None

    def _raw(self, point: Point) -> dict:
        # the kind's own sections, and any other that is set, which its trial config rejects
        kind = USER_SECTIONS if self.user_study else BUILTIN_SECTIONS
        names = [name for name in SECTIONS if name in kind or getattr(self, name)]
        raw: dict = {name: copy.deepcopy(getattr(self, name)) for name in names}
        raw["seed"] = self.seed
        for path, value in point.items():
            for sub_path, sub_value in expand(path, value).items():
                _set(raw, sub_path, sub_value)
        # one seed draws the trial's data and its initialisation unless data.seed is its own
        if "data" in raw:
            raw["data"].setdefault("seed", raw["seed"])
        return raw

    def trials(self) -> list[TrialConfig | UserTrialConfig]:
        """The resolved trial configs of the grid (with each distribution at its low end)."""
        low = {p: _distribution_values(p, d)[0] for p, d in self.sampled_axes.items()}
        return [self.resolve({**point, **low}) for point in self.grid()]

    def data_configs(self) -> list[tuple[DataConfig, EvalConfig]]:
        """The distinct (data, eval) pairs the sweep can build before it starts: those of
        every grid point (axes over data that only a search reaches are built by workers).
        A user study's pairs are its grouped tables' (eval None) or its generated task's;
        one without a data section has none."""
        pairs = ((t.data, t.eval) for t in self.trials() if t.data is not None)
        return list(dict.fromkeys(pairs))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def expand(path: str, value: Any) -> dict[str, Any]:
    """The settings one axis value stands for: the paper's conveniences are sugar here."""
    if path == DISTRIBUTION and isinstance(value, dict):  # {kind: powerlaw, alpha: 0.5}
        unknown = set(value) - {"kind", "alpha"}
        if unknown:
            raise SpecError(f"sweep.axes.{path}: unknown key {sorted(unknown)[0]!r} in {value!r}")
        return {"data.distribution": value.get("kind"), "data.alpha": value.get("alpha")}
    if path == SEED:
        return {"seed": value, "data.seed": value}
    return {path: value}


def _set(raw: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"sweep.{path}: {part} is a value in the template, not a section")
    node[leaf] = value


def _distribution_values(path: str, dist: Any) -> list:
    """The values that stand for a distribution when validating: its bounds or choices."""
    where = f"sweep.axes.{path}"
    if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in DISTRIBUTIONS):
        names = ", ".join(DISTRIBUTIONS)
        raise SpecError(
            f"{where}: expected a list (grid) or one of {{{names}: [...]}}, got {dist!r}"
        )
    [(name, args)] = dist.items()
    arity = DISTRIBUTIONS[name]
    if not isinstance(args, list) or not args or (arity is not None and len(args) != arity):
        need = (
            "a non-empty list" if arity is None else f"[{', '.join(['low', 'high', 'q'][:arity])}]"
        )
        raise SpecError(f"{where}.{name}: expected {need}, got {args!r}")
    if name == "choice":
        return args
    low, high = args[0], args[1]
    numeric = all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    if not numeric or not low < high or "log" in name and low <= 0:
        raise SpecError(f"{where}.{name}: expected numbers with 0 < low < high, got {args!r}")
    # randint's high is excluded (Tune's convention): the largest value drawn is high - 1
    return [low, high - 1 if name in ("randint", "lograndint") else high]


def check_path(path: str, model: type[BaseModel] = TrialConfig) -> None:
    """An axis must name a setting of the trial config `model` (or one of the sugar paths).
    Below a class's `init_args` any name passes here: the class's signature checks it as
    the points resolve."""
    if path in (SEED, DISTRIBUTION):
        return
    parts = path.split(".")
    for i, part in enumerate(parts):
        if model is ClassSpec and i and parts[i - 1] == "init_args":
            return
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the trial"
            known = ", ".join(fields)
            raise SpecError(f"sweep.axes.{path}: unknown setting; {where} has: {known}")
        field = fields[part]
        sections = _sections(field.annotation)
        is_section = bool(sections) or isinstance(field.default, BaseModel)
        if i == len(parts) - 1:
            if is_section:
                raise SpecError(
                    f"sweep.axes.{path}: a section, not a setting; name one of its fields"
                )
            return
        if not is_section and not (model is ClassSpec and part == "init_args"):
            raise SpecError(f"sweep.axes.{path}: {'.'.join(parts[: i + 1])} is not a section")
        if model is ClassSpec:
            continue
        if len(sections) != 1 or sections[0].__subclasses__():
            # its fields depend on its value (a task's family, a table or a generated task):
            # checked as points resolve
            return
        model = sections[0]


def _sections(annotation: Any) -> list[type[BaseModel]]:
    """The config classes a field may hold (`X`, `X | None`, `Annotated[X | Y, ...]`)."""
    if isinstance(annotation, type):
        return [annotation] if issubclass(annotation, BaseModel) else []
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        found += _sections(argument)
    return found


def _check_moved(raw: dict) -> None:
    for old, new in MOVED.items():
        node: Any = raw
        for part in old.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise SpecError(
                f"sweep.{old}: this spec format is gone; use {new} (README, Sweep spec)"
            )


def _check_template(spec: SweepSpec) -> None:
    # a list in the template is an old-style grid axis: say where axes go now
    for section in SECTIONS:
        for key, value in getattr(spec, section).items():
            path = f"{section}.{key}"
            if isinstance(value, list):
                raise SpecError(
                    f"sweep.{path}: a list in the template; a grid axis is "
                    f"`axes: {{{path}: {value!r}}}`"
                )


def parse_spec(raw: Any, root: str = "sweep") -> SweepSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{root}: expected a mapping of settings, got {type(raw).__name__}")
    _check_moved(raw)
    spec = SweepSpec.parse(raw, root)
    _check_template(spec)
    trial_class = UserTrialConfig if spec.user_study else TrialConfig
    for path, values in spec.axes.items():
        check_path(path, trial_class)
        if isinstance(values, list) and not values:
            raise SpecError(f"sweep.axes.{path}: an axis needs at least one value")
        if not isinstance(values, list):
            _distribution_values(path, values)
    _check_search(spec)
    # every grid point, and each distribution at its ends, resolves before any work starts;
    # cross-field limits (n_instructions vs the rule universe) live in the data layer's configs
    trials = spec.trials()
    for path, dist in spec.sampled_axes.items():
        for value in _distribution_values(path, dist)[1:]:  # the first is in `trials`
            spec.resolve({**spec.grid()[0], path: value})
    if not spec.user_study:
        _check_builtin(spec, trials, root)
    return spec


def _check_builtin(spec: SweepSpec, trials: list[TrialConfig], root: str) -> None:
    """What the built-in study's trials need of the spec: eval sets that fit the task's held-out
    pool, and a selection metric the trainer reports."""
    for name, chosen in (("selection", spec.selection), ("headline", spec.headline)):
        if chosen is not None and chosen.metric not in study.SELECTABLE:
            raise SpecError(
                f"{root}.{name}.metric: the built-in trainer reports "
                f"{', '.join(study.SELECTABLE)}; "
                f"got {chosen.metric!r}"
            )
    try:
        for task, eval_cfg in dict.fromkeys((t.data.task, t.eval) for t in trials):
            check_eval_fits(task, eval_cfg)
    except SpecError as err:  # named from the data config's root: `eval.…`
        raise SpecError(f"{root}.{err}") from None
    if spec.selection.metric.startswith("unseen_val") and any(
        validation_size(t.data.task, t.eval) == 0 for t in trials
    ):
        raise SpecError(
            f"{root}.selection.metric: {spec.selection.metric} needs validation rules, and the "
            "held-out pool has none beyond the test rules; raise data.task.n_unseen above "
            "eval.unseen_instructions (or set eval.validation_instructions), or select on "
            "another metric"
        )


def _check_search(spec: SweepSpec) -> None:
    kind = spec.search.kind
    if kind in ("grid", "adaptive") and spec.sampled_axes:
        path = next(iter(spec.sampled_axes))
        raise SpecError(
            f"sweep.axes.{path}: a distribution needs search random or optuna, not {kind}"
        )
    if kind == "optuna" and not spec.sampled_axes and not spec.grid_axes:
        raise SpecError("sweep.axes: optuna search needs at least one axis")
    if kind == "adaptive":
        axis = spec.search.axis
        values = spec.axes.get(axis)
        if values is None:
            raise SpecError(f"sweep.search.axis: {axis!r} is not one of the axes")
        numeric = all(
            isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in values
        )
        if len(values) < 2 or not numeric:
            raise SpecError(
                f"sweep.axes.{axis}: adaptive search refines it, so it needs two or more "
                f"positive numbers, got {values!r}"
            )
        n_grid = len(spec.grid())
        if spec.search.max_trials < n_grid:
            raise SpecError(
                f"sweep.search.max_trials: must be >= the {n_grid} trials of the initial grid, "
                f"got {spec.search.max_trials}"
            )


def load_spec(path: Path | str) -> SweepSpec:
    """Read and validate a sweep spec; every problem is a SpecError naming the field."""
    return parse_spec(read_yaml(path, "spec file"))
