"""`divsweep status`: where a sweep stands, read from MLflow (works while it runs elsewhere);
`--watch` refreshes it in place until the sweep ends."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from divsweep import tracking
from divsweep.errors import UserError
from divsweep.orchestrator.spec import BUILTIN_HEADLINE, Selection
from divsweep.tracking import ENDED, Status
from divsweep.trainer import study

STATES = (Status.RUNNING, Status.FINISHED, Status.STOPPED, Status.FAILED)
DONE = ENDED
SLOWEST = 5  # trials listed by `--watch`
WATCH_EVERY_S = 2.0


@dataclass(frozen=True)
class TrialTime:
    name: str
    state: str
    elapsed_s: float  # since the run started: until now while it runs, else until it ended
    step: float | None
    tokens_per_s: float | None


@dataclass(frozen=True)
class SweepStatus:
    experiment: str
    state: str  # the parent run's divsweep.status (running/finished/stopped)
    n_trials: int
    counts: dict[str, int]  # trials by divsweep.status; trials not started yet are absent
    best_seen: float | None  # the built-in study's seen rules (None for other trials)
    best_val: float | None  # the selection metric (held-out validation rules or groups)
    best_unseen: float | None  # the headline metric (held-out test rules or groups)
    elapsed_s: float
    eta_s: float | None
    slowest: tuple[TrialTime, ...] = ()  # the longest-running trials, longest first
    # the latest report written (a path on the machine that wrote it) and what it holds
    report: str | None = None
    report_state: str | None = None

    @property
    def done(self) -> int:
        return _done(self.counts)


def sweep_status(experiment: str, tracking_uri: str) -> SweepStatus:
    mlf = tracking.client(tracking.absolute_uri(tracking_uri))
    exp_id = tracking.experiment_id(mlf, experiment, create=False)
    parent = tracking.find_parent(mlf, exp_id)
    if parent is None:
        raise UserError(f"experiment {experiment!r} has no divsweep sweep run")
    runs = tracking.trial_runs(mlf, exp_id, parent.info.run_id)
    counts: dict[str, int] = {}
    for r in runs:
        state = r.data.tags.get(tracking.STATUS, Status.RUNNING)
        counts[state] = counts.get(state, 0) + 1
    n_trials = max(int(parent.data.tags.get(tracking.N_TRIALS, 0)), len(runs))
    state = parent.data.tags.get(tracking.STATUS, Status.RUNNING)
    end = parent.info.end_time if state != Status.RUNNING and parent.info.end_time else None
    elapsed = ((end or time.time() * 1000) - parent.info.start_time) / 1000
    done = _done(counts)
    # throughput so far (trials done per second of sweep) projected over what is left
    eta = (
        elapsed / done * (n_trials - done)
        if 0 < done < n_trials and state == Status.RUNNING
        else None
    )
    return SweepStatus(
        experiment=experiment,
        state=state,
        n_trials=n_trials,
        counts=counts,
        best_seen=_best(runs, study.SEEN, "max"),
        best_val=_best(runs, *_metric(parent, tracking.SELECTION, Selection())),
        best_unseen=_best(runs, *_metric(parent, tracking.HEADLINE, BUILTIN_HEADLINE)),
        elapsed_s=elapsed,
        eta_s=eta,
        slowest=_slowest(runs),
        report=parent.data.tags.get(tracking.REPORT),
        report_state=parent.data.tags.get(tracking.REPORT_STATE),
    )


def _slowest(runs) -> tuple[TrialTime, ...]:
    now_ms = time.time() * 1000
    times = [
        TrialTime(
            name=r.info.run_name,
            state=r.data.tags.get(tracking.STATUS, Status.RUNNING),
            elapsed_s=((r.info.end_time or now_ms) - r.info.start_time) / 1000,
            step=r.data.metrics.get("step"),
            tokens_per_s=r.data.metrics.get("output_tokens_per_s"),
        )
        for r in runs
    ]
    return tuple(sorted(times, key=lambda t: t.elapsed_s, reverse=True)[:SLOWEST])


def watch(
    experiment: str,
    tracking_uri: str,
    every_s: float = WATCH_EVERY_S,
    console: Console | None = None,
) -> SweepStatus:
    """Show the sweep's status, refreshed every `every_s` seconds (Rich Live) until its parent
    run is no longer running; the last status."""
    from rich.live import Live

    current = sweep_status(experiment, tracking_uri)
    with Live(watch_view(current), console=console, auto_refresh=False) as live:
        while current.state == Status.RUNNING:
            time.sleep(every_s)
            current = sweep_status(experiment, tracking_uri)
            live.update(watch_view(current), refresh=True)
    return current


def watch_view(status: SweepStatus) -> Group:
    """The sweep's row (as `divsweep status` shows it), its slowest trials, and where its
    latest report is."""
    slow = Table(title="slowest trials", title_justify="left")
    slow.add_column("trial", no_wrap=True)
    slow.add_column("state", no_wrap=True)
    for column in ("elapsed", "step", "output tokens/s"):
        slow.add_column(column, justify="right")
    for t in status.slowest:
        slow.add_row(
            t.name,
            t.state,
            _duration(t.elapsed_s),
            "-" if t.step is None else f"{t.step:.0f}",
            "-" if t.tokens_per_s is None else f"{t.tokens_per_s:,.0f}",
        )
    # Text, not str: Rich would colour the path's parts, as it highlights any str
    return Group(table([status]), slow, *map(Text, reports([status])))


def _done(counts: dict[str, int]) -> int:
    return sum(counts.get(s, 0) for s in DONE)


def _metric(parent, tag: str, untagged) -> tuple[str, str]:
    """(metric, mode) of a parent's `metric (mode)` tag; a sweep run before the tag existed
    ran the built-in study with its default `untagged`."""
    text = parent.data.tags.get(tag)
    return (untagged.metric, untagged.mode) if text is None else tracking.read_metric_tag(text)


def _best(runs, metric: str, mode: str) -> float | None:
    values = [r.data.metrics[metric] for r in runs if metric in r.data.metrics]
    return (max if mode == "max" else min)(values, default=None)


def sweep_names(tracking_uri: str) -> list[str]:
    """Experiments holding at least one divsweep sweep, newest first."""
    mlf = tracking.client(tracking.absolute_uri(tracking_uri))
    runs = mlf.search_runs(
        [e.experiment_id for e in mlf.search_experiments()],
        filter_string=f"tags.`{tracking.ROLE}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
    )
    names = {mlf.get_experiment(r.info.experiment_id).name: None for r in runs}
    return list(names)


def table(statuses: list[SweepStatus]) -> Table:
    out = Table(
        title="divsweep sweeps",
        caption="best of any trial so far: seen = the built-in study's exact match on its "
        "training rules; val = the sweep's selection metric, test = its headline metric "
        "(held-out validation / test rules or groups)",
    )
    out.add_column("sweep", no_wrap=True)
    out.add_column("state", no_wrap=True)
    for column in ("done", *STATES, "best seen", "best val", "best test", "ETA"):
        out.add_column(column, justify="right")
    for s in statuses:
        out.add_row(
            s.experiment,
            s.state,
            f"{s.done}/{s.n_trials}",
            *(str(s.counts.get(state, 0)) for state in STATES),
            _fmt(s.best_seen),
            _fmt(s.best_val),
            _fmt(s.best_unseen),
            "-" if s.eta_s is None else _duration(s.eta_s),
        )
    return out


def reports(statuses: list[SweepStatus]) -> list[str]:
    """Where each sweep's latest report is: its local file and its parent run's artifacts."""
    return [
        f"{s.experiment}: latest report ({s.report_state}) at {s.report}, also under report/ "
        "in the sweep's MLflow run"
        for s in statuses
        if s.report is not None
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
