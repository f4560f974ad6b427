"""The built-in study's figures (transition, heatmap, frontier, long tail, no-op, settings, its
learning curves), drawn with the shared helpers of plots.py; each returns a Figure, or a
one-line reason it is absent."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster heads or CI; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from divsweep.datasets.sampling import allocation  # noqa: E402
from divsweep.orchestrator.cost import HOURS_WORDS, hours_axis  # noqa: E402
from divsweep.orchestrator.report.builtin.aggregate import (  # noqa: E402
    AGGREGATED_STATUSES,
    reference_slice,
    reference_value,
)
from divsweep.orchestrator.report.builtin.findings import (  # noqa: E402
    generalization_metric,
    inputs_words,
)
from divsweep.orchestrator.report.builtin.frontier import least_examples, pareto, targets  # noqa: E402
from divsweep.orchestrator.report.builtin.transition import Transition, logistic  # noqa: E402
from divsweep.orchestrator.report.collect import setting_order, swept_settings  # noqa: E402
from divsweep.orchestrator.report.plots import Figure, errorbar, save, style  # noqa: E402

UNSEEN, SEEN = "unseen_exact_match", "seen_exact_match"


def transition_plot(cells: pd.DataFrame, fits: list[Transition], out_dir: Path) -> Figure:
    # inputs the rule changes where the grid has no-ops: copying them is no generalization
    unseen = generalization_metric(reference_slice(cells))
    ref = reference_slice(cells).dropna(subset=[unseen])
    if ref["n_instructions"].nunique() < 2:
        return Figure("transition", None, "Fewer than two n_instructions values finished.")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    budgets = sorted(ref["total_examples"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(budgets)))
    fit_by_budget = {f.total_examples: f for f in fits}
    for budget, color in zip(budgets, colors, strict=True):
        group = ref[ref["total_examples"] == budget]
        errorbar(ax, group, "n_instructions", unseen, color=color, label=f"unseen, N={budget:g}")
        if group[SEEN].notna().any():
            errorbar(ax, group, "n_instructions", SEEN, color=color, linestyle="--",
                      alpha=0.6, label=f"seen, N={budget:g}")  # fmt: skip
        fit = fit_by_budget.get(budget)
        if fit is not None:
            xs = np.logspace(*np.log10(group["n_instructions"].agg(["min", "max"])), 200)
            ax.plot(xs, logistic(np.log10(xs), fit.low, fit.high, np.log10(fit.midpoint),
                                 fit.slope), color=color, linewidth=0.8)  # fmt: skip
            ax.axvline(fit.midpoint, color=color, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    style(ax, "number of instructions (log)", "exact match", unit_y=True)
    if len(budgets) == 1:
        n = budgets[0]
        # matplotlib probes the mapping at 0 too; keep that finite instead of a divide warning.
        per = lambda v: n / np.maximum(v, 1e-9)  # noqa: E731 - its own inverse
        top = ax.secondary_xaxis("top", functions=(per, per))
        top.set_xlabel("examples per instruction")
    inputs = inputs_words(unseen)
    caption = (
        f"Exact match on unseen (solid; {inputs}) and seen (dashed) instructions vs number of "
        "instructions at each fixed budget N, mean over seeds; bars: 95% intervals where a cell "
        "has 3 seeds or more (see the note under the findings); thin line: logistic fit in log "
        "n_instructions where the grid identifies one, dotted: its midpoint."
    )
    return save(fig, out_dir / "transition.png", "transition", caption)


def heatmap(cells: pd.DataFrame, out_dir: Path) -> Figure:
    ref = reference_slice(cells).dropna(subset=[UNSEEN])
    if ref.empty:
        return Figure("heatmap", None, "No finished uniform trials.")
    metrics = [m for m in (UNSEEN, SEEN) if ref[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        grid = ref.pivot_table(index="examples_per_instruction", columns="n_instructions",
                               values=metric, aggfunc="mean")  # fmt: skip
        im = ax.imshow(grid.to_numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1,
                       aspect="auto")  # fmt: skip
        ax.set_xticks(range(grid.shape[1]), [f"{v:g}" for v in grid.columns], rotation=45)
        ax.set_yticks(range(grid.shape[0]), [f"{v:g}" for v in grid.index])
        for (r, c), v in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.5 else "black")  # fmt: skip
        ax.set_xlabel("number of instructions")
        ax.set_ylabel("examples per instruction")
        ax.set_title(metric.replace("_", " "))
        fig.colorbar(im, ax=ax)
    caption = (
        "Mean exact match (over seeds) on unseen and seen instructions over the grid of "
        "n_instructions × examples per instruction (uniform distribution); blank: not run."
    )
    return save(fig, out_dir / "heatmap.png", "heatmap", caption)


def frontier_plot(cells: pd.DataFrame, out_dir: Path) -> Figure:
    if cells.dropna(subset=[UNSEEN]).empty:
        return Figure("frontier", None, "No finished trials.")
    # the transition's metric: on inputs the rule changes where the grid has no-ops
    metric = generalization_metric(reference_slice(cells))
    inputs = inputs_words(metric)
    least = least_examples(cells, targets(cells, metric), metric)
    least = least.dropna(subset=["total_examples"])
    costs = [c for c in ("total_examples", hours_axis(cells)) if c is not None]
    fig, axes = plt.subplots(1, 1 + len(costs), figsize=(5 * (1 + len(costs)), 4))
    ax = axes[0]
    for target, group in least.groupby("target"):
        ax.plot(group["n_instructions"], group["total_examples"], marker="o",
                label=f"unseen EM ≥ {target:g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # labels would overlap
    style(ax, "number of instructions", "least total examples reaching target",
           legend=8 if len(least) else None)  # fmt: skip
    if not len(least):
        ax.text(0.5, 0.5, "no cell reached any target", ha="center", transform=ax.transAxes)
    for ax, cost in zip(axes[1:], costs, strict=True):
        front = pareto(cells, cost, metric)
        ax.scatter(cells[cost], cells[metric], color="0.6", s=15, label="grid cells")
        ax.step(front[cost], front[metric], where="post", color="C3", marker="o",
                label="Pareto set")  # fmt: skip
        ax.set_xscale("log")
        style(ax, cost.replace("_", " ") + " (log)", f"unseen exact match, {inputs}")
    caption = (
        f"Unseen-rule (test) exact match on {inputs}. Left: least total training examples whose "
        "mean reaches each target, per number of instructions (missing points: no budget tried "
        "reached it). Right: Pareto set of (unseen accuracy ↑, cost ↓) over all grid cells"
        + (
            f", against examples and {HOURS_WORDS[costs[1]]} per trial."
            if len(costs) > 1
            else ", against examples."
        )
    )
    return save(fig, out_dir / "frontier.png", "frontier", caption)


def alpha_axis(ax, alphas: list[float]) -> None:
    """A log axis ticked at the alphas tried: the default log ticks label every minor tick
    between them, and those labels overlap."""
    ax.set_xscale("log")
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    ax.xaxis.set_minor_formatter(NullFormatter())


def seed_spread(ax, trials: pd.DataFrame, metric: str, color: str) -> None:
    """One number of instructions' finished trials: each power-law seed as a hollow point at its
    alpha, and the uniform control's seed range as a band."""
    trials = trials[trials[metric].notna()]
    tail = trials[trials["distribution"] == "powerlaw"]
    ax.scatter(tail["alpha"], tail[metric], s=16, facecolors="none", edgecolors=color)
    control = trials[trials["distribution"] == "uniform"][metric]
    if len(control) > 1:
        ax.axhspan(control.min(), control.max(), color=color, alpha=0.12, linewidth=0)


def long_tail_plot(cells: pd.DataFrame, done: pd.DataFrame, out_dir: Path) -> Figure:
    """Only-IF Fig. 3 at matched budget: cells' means with their intervals and, since a long-tail
    grid often has 2 seeds (no interval), each finished trial (`done`) as a hollow point and the
    uniform control's seed range as a band: an effect reads against the control's spread."""
    power = cells[(cells["distribution"] == "powerlaw") & cells[UNSEEN].notna()]
    if power.empty:
        return Figure("long-tail", None, "No power-law trials in this sweep.")
    budgets = power["total_examples"].unique()
    uniform = cells[(cells["distribution"] == "uniform") & cells["total_examples"].isin(budgets)]
    has_buckets = power["seen_head_exact_match"].notna().any()
    metric = generalization_metric(power)
    inputs = inputs_words(metric)
    fig, axes = plt.subplots(1, 2 if has_buckets else 1, figsize=(11 if has_buckets else 6, 4),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    seeds = done[done["total_examples"].isin(budgets)]
    for i, (n_instr, group) in enumerate(power.groupby("n_instructions")):
        errorbar(ax, group, "alpha", metric, color=f"C{i}", label=f"I={n_instr:g}")
        base = uniform[uniform["n_instructions"] == n_instr][metric]
        if len(base):
            ax.axhline(base.mean(), color=f"C{i}", linestyle="--", linewidth=1)
        seed_spread(ax, seeds[seeds["n_instructions"] == n_instr], metric, f"C{i}")
    alphas = sorted(power["alpha"].unique())
    alpha_axis(ax, alphas)
    style(ax, "power-law alpha (log; dashed: uniform)", f"unseen exact match, {inputs}",
           unit_y=True)  # fmt: skip
    if has_buckets:
        ax = axes[0][1]
        for i, (n_instr, group) in enumerate(power.groupby("n_instructions")):
            group = group.sort_values("alpha")
            ax.plot(group["alpha"], group["seen_head_exact_match"], marker="o", color=f"C{i}",
                    label=f"I={n_instr:g} head")  # fmt: skip
            ax.plot(group["alpha"], group["seen_tail_exact_match"], marker="s", color=f"C{i}",
                    linestyle="--", label=f"I={n_instr:g} tail")  # fmt: skip
        alpha_axis(ax, alphas)
        style(ax, "power-law alpha (log)", "seen exact match", unit_y=True, legend=7)
    caption = (
        f"Long-tail robustness at matched budget: unseen-rule (test) exact match on {inputs} vs "
        "power-law alpha, one line per number of instructions I (mean over seeds; hollow "
        "points: each seed; dashed: the uniform distribution at the same I, its band the range "
        "of its seeds)"
        + ("; right: seen accuracy on head vs tail instructions." if has_buckets else ".")
    )
    return save(fig, out_dir / "long-tail.png", "long-tail", caption)


# Only-IF §2.3.3: instructions below a 0.1% share are barely represented in training.
RARE_SHARE = 1e-3


def share_rank_plot(trials: pd.DataFrame, out_dir: Path) -> Figure:
    """Only-IF Fig. 7: each instruction's share of the training examples against its rank, one
    line per power-law alpha, from the allocation the trials trained on (a function of their
    logged data config, datasets/sampling.py)."""
    done = trials[trials["status"].isin(AGGREGATED_STATUSES)]
    power = done[(done["distribution"] == "powerlaw")].dropna(
        subset=["n_instructions", "total_examples", "alpha", "data_seed"]
    )
    if power.empty:
        return Figure("share-rank", None, "No power-law trials in this sweep.")
    n_instr = power["n_instructions"].max()
    power = power[power["n_instructions"] == n_instr].sort_values(["alpha", "data_seed"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ranks = np.arange(1, int(n_instr) + 1)
    alphas = sorted(power["alpha"].unique(), reverse=True)
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(alphas)))
    for alpha, color in zip(alphas, colors, strict=True):
        first = power[power["alpha"] == alpha].iloc[0]  # lowest data seed: one draw per alpha
        counts = allocation(int(n_instr), int(first["total_examples"]), "powerlaw", alpha,
                            int(first["data_seed"]))  # fmt: skip
        share = np.sort(counts)[::-1] / counts.sum()
        ax.plot(ranks, np.where(share > 0, share, np.nan), color=color, label=f"α = {alpha:g}")
    ax.axhline(1 / n_instr, color="0.3", linestyle="--", linewidth=1, label="uniform")
    ax.axhline(RARE_SHARE, color="C3", linestyle=":", linewidth=1, label="0.1% share")
    ax.set_xscale("log")
    ax.set_yscale("log")
    style(ax, "instruction rank (log)", "share of training examples (log)", legend=7)
    caption = (
        f"Each instruction's share of the training examples against its rank, per power-law "
        f"alpha, at I = {n_instr:g} (the allocation of the lowest-seed trial of each alpha; "
        "instructions with no example are not drawn); dashed: uniform, dotted: the 0.1% share "
        "below which Only-IF finds instructions barely represented (§2.3.3, Fig. 7)."
    )
    return save(fig, out_dir / "share-rank.png", "share-rank", caption)


def settings_plot(cells: pd.DataFrame, out_dir: Path) -> Figure:
    """Unseen accuracy vs n_instructions, one line per value of each setting the sweep varied
    beyond the built-in axes (a semantic sweep's `data.task.train_k`, a model width, ...)."""
    settings = swept_settings(cells)
    if not settings:
        return Figure("settings", None, "The sweep varies no setting beyond the built-in axes.")
    metric = generalization_metric(reference_slice(cells))
    inputs = inputs_words(metric)
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4.5), squeeze=False)
    for ax, name in zip(axes[0], settings, strict=True):
        ref = reference_slice(cells, keep=(name,)).dropna(subset=[metric])
        budget = ref["total_examples"].mode().iloc[0] if len(ref) else None
        ref = ref[ref["total_examples"] == budget]
        values = sorted(ref[name].dropna().unique(), key=setting_order)
        for i, value in enumerate(values):
            errorbar(ax, ref[ref[name] == value], "n_instructions", metric, color=f"C{i}",
                      label=f"{value}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(f"{name} (budget {budget:g})" if budget is not None else name)
        style(ax, "number of instructions (log)", f"unseen exact match, {inputs}", unit_y=True,
               legend=8 if values else None)  # fmt: skip
    held = ", ".join(f"{name} = {reference_value(cells[name].dropna())}" for name in settings)
    caption = (
        f"Unseen-rule (test) exact match on {inputs} vs number of instructions, one line per "
        "value of each setting the sweep varied beyond the built-in axes, the others held at "
        "their reference value (uniform distribution, the main no-op ratio and budget); bars: "
        "95% intervals where a cell has 3 seeds or more. The transition, heatmap and frontier "
        f"sections read the reference values: {held} (the most common; the first among ties)."
    )
    return save(fig, out_dir / "settings.png", "settings", caption)


NOOP_METRICS = ("unseen_noop_exact_match", "unseen_applied_exact_match", UNSEEN)


def noop_plot(cells: pd.DataFrame, out_dir: Path) -> Figure:
    uniform = cells[(cells["distribution"] == "uniform") & cells[UNSEEN].notna()]
    if uniform["p_pattern_present"].nunique() < 2:
        return Figure("no-op", None, "The sweep does not vary data.task.p_pattern_present.")
    # One budget: the one where p_pattern_present was varied the most.
    budget = uniform.groupby("total_examples")["p_pattern_present"].nunique().idxmax()
    uniform = uniform[uniform["total_examples"] == budget]
    # Only instruction counts seen at several no-op ratios make a line; lone points are noise here.
    varied = uniform.groupby("n_instructions")["p_pattern_present"].transform("nunique") > 1
    uniform = uniform[varied].assign(noop_ratio=1 - uniform["p_pattern_present"])
    metrics = [m for m in NOOP_METRICS if uniform[m].notna().any()]
    titles = {NOOP_METRICS[0]: "no-op inputs", NOOP_METRICS[1]: "has-op inputs",
              UNSEEN: "average"}  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (n_instr, group) in enumerate(uniform.groupby("n_instructions")):
            errorbar(ax, group, "noop_ratio", metric, color=f"C{i}", label=f"I={n_instr:g}")
        ax.set_title(titles[metric])
        style(ax, "no-op ratio (1 − p_pattern_present)", "unseen exact match", unit_y=True,
               legend=7)  # fmt: skip
    caption = (
        "Unseen exact match vs the fraction of no-op examples (pattern absent), on no-op inputs, "
        f"inputs where the rule applies, and overall, at a budget of {budget:g} examples; one "
        "line per number of instructions."
    )
    return save(fig, out_dir / "no-op.png", "no-op", caption)


def learning_curves(history: pd.DataFrame, labels: dict[str, str], out_dir: Path) -> Figure:
    if history.empty:
        return Figure("learning-curves", None, "No metric history logged yet.")
    metrics = [m for m in ("unseen/exact_match", "seen/exact_match", "train/loss")
               if (history["metric"] == m).any()]  # fmt: skip
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (run_id, label) in enumerate(labels.items()):
            h = history[(history["run_id"] == run_id) & (history["metric"] == metric)]
            h = h.sort_values("step")
            ax.plot(h["step"], h["value"], marker=".", color=f"C{i}", label=label)
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if metric == "train/loss":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    caption = "Learning curves of representative trials (lowest seed; fewest, middle and most "
    caption += "instructions at the largest budget)."
    return save(fig, out_dir / "learning-curves.png", "learning-curves", caption)
