"""Headline findings in words and the paper-vs-ours comparison, computed from the tables."""

from __future__ import annotations

import math

import pandas as pd

from divsweep.orchestrator.report.builtin.aggregate import (
    AGGREGATED_STATUSES,
    COMPUTE_SETTINGS,
    metric_counts,
    reference_slice,
)
from divsweep.orchestrator.report.builtin.frontier import least_examples, targets
from divsweep.orchestrator.report.builtin.paper_reference import PAPER_VALUES, SEMANTIC_K
from divsweep.orchestrator.report.builtin.transition import (
    FAILS,
    GENERALIZES,
    MIN_LEVELS,
    Bracket,
    Transition,
    bracket,
    crossing,
)
from divsweep.orchestrator.report.collect import Sweep, preemption_line, setting_order
from divsweep.orchestrator.report.threshold import (
    Exponent,
    amount,
    bracket_bounds,
    bracket_exponent_sentence,
    budget_exponent,
    compute_arms,
    frontier_sentence,
)
from divsweep.tracking import Status

UNSEEN, SEEN = "unseen_exact_match", "seen_exact_match"
APPLIED = "unseen_applied_exact_match"  # unseen inputs that contain the rule's pattern
# "Never generalizes" / "always generalizes" thresholds used to read I_min and I_max off our grid.
NEVER, ALWAYS = FAILS, 0.9
REGIME_DEFINITIONS = (
    f"I_min: the smallest n_instructions of the grid above every one whose unseen exact match is "
    f"below {NEVER:g} (below it models never generalize); I_max: the smallest n_instructions from "
    f"which every larger one reaches {ALWAYS:g} (from it they always do). The paper's I_min = 300 "
    "and I_max = 1,000 read the same way off its grid."
)
# a power-law cell is "robust" when it keeps this share of the uniform cell's unseen accuracy
ROBUST_SHARE = 0.8


def inputs_words(metric: str) -> str:
    """Which unseen inputs a generalization metric reads, for labels and sentences."""
    return "inputs the rule changes" if metric == APPLIED else "all inputs"


def _metric_words(metric: str) -> str:
    return f"on {inputs_words(metric)}"


def bracket_sentence(b: Bracket, metric: str) -> str:
    """The grid's own reading of the transition: no model, always reported."""
    at = f"At a budget of {amount(b.total_examples)} examples"
    rule = (
        f"unseen exact match {_metric_words(metric)}; fails: below {FAILS:g}, generalizes: "
        f"{GENERALIZES:g} or more"
    )
    if _places_a_threshold(b):
        return (
            f"{at}, the transition lies between {amount(b.fails)} instructions (the most that "
            f"fails) and {amount(b.generalizes)} (the fewest that generalizes) ({rule})."
        )
    if b.fails is not None and b.generalizes is not None:
        return (
            f"{at}, accuracy is not monotone in the number of instructions: "
            f"{amount(b.fails)} fails while {amount(b.generalizes)} generalizes ({rule})."
        )
    if b.generalizes is not None:
        already = f"{amount(b.generalizes)} instructions already generalize"
        return f"{at}, none fails: {already} ({rule})."
    if b.fails is not None:
        fail = f"up to {amount(b.fails)} instructions fail"
        return f"{at}, no value swept generalizes; {fail} ({rule})."
    return f"{at}, no value swept either fails or generalizes ({rule})."


def transition_sentence(t: Transition, metric: str) -> str:
    text = (
        f"Logistic fit ({t.n_levels} n_instructions values, {t.n_trials} trials, binomial "
        f"likelihood over every example), budget {amount(t.total_examples)}: unseen exact match "
        f"{_metric_words(metric)} rises from {t.low:.2f} to {t.high:.2f}; midpoint "
        f"~{amount(t.midpoint)} instructions (95% interval {amount(t.ci_low)}–{amount(t.ci_high)}, "
        f"{t.interval_method})."
    )
    at_half = crossing(t, 0.5)
    if at_half is not None:
        text += f" It crosses 50% at ~{amount(at_half)} instructions."
    if t.high - t.low < 0.2:
        text += " The rise is small: no clear transition in the range swept."
    return text


def budget_exponents_of(
    trials: pd.DataFrame, examples: pd.DataFrame | None, metric: str
) -> list[tuple[str, Exponent | None]]:
    """β per compute arm (compute_arms) from the finished trials of the reference slice, which
    keeps every compute setting, on per-example counts of `metric` where they back every
    trial (else on each trial's value)."""
    done = reference_slice(trials[trials["status"].isin(AGGREGATED_STATUSES)], COMPUTE_SETTINGS)
    counts = metric_counts(examples, metric)
    if counts is not None:
        per_run = counts.groupby("run_id")[["n", "k"]].sum()
        done = done.join(per_run, on="run_id")
    return [(arm, budget_exponent(group, metric)) for arm, group in compute_arms(done)]


def search_cost_sentence(trials: pd.DataFrame) -> str | None:
    """What an adaptive search's n_instructions values cost against a full grid at the finest
    step it reached: per budget, geometric levels from its smallest to its largest I at that
    step, times the seeds."""
    ref = reference_slice(trials[trials["status"] != Status.FAILED]).dropna(
        subset=["n_instructions"]
    )
    if ref.empty:
        return None
    grid = 0
    finest = float("inf")
    for _, group in ref.groupby("total_examples"):
        levels = sorted(group["n_instructions"].unique())
        if len(levels) < 2:
            return None
        step = min(b / a for a, b in zip(levels, levels[1:], strict=False))
        finest = min(finest, step)
        n_levels = math.ceil(math.log(levels[-1] / levels[0]) / math.log(step) - 1e-9) + 1
        grid += n_levels * max(1, group["seed"].nunique())
    if grid <= len(ref):
        return None  # an even grid: nothing was saved
    return (
        f"Search cost: {len(ref)} trials on the main grid's budgets; a full grid at the finest "
        f"step they reached (ratio {finest:.2f} between neighbouring n_instructions) over the "
        f"same ranges would take {grid} ({len(ref) / grid:.0%})."
    )


def brackets(cells: pd.DataFrame) -> list[Bracket]:
    """One per budget of the reference slice, on the generalization metric."""
    ref = reference_slice(cells)
    metric = generalization_metric(ref)
    ref = ref.dropna(subset=[metric])
    return [
        bracket(group.groupby("n_instructions")[metric].mean(), budget)
        for budget, group in ref.groupby("total_examples", sort=True)
        if group["n_instructions"].nunique() >= 2
    ]


def _places_a_threshold(b: Bracket) -> bool:
    """A budget whose grid both fails and generalizes, in that order."""
    return b.fails is not None and b.generalizes is not None and b.fails < b.generalizes


def main_budget(cells: pd.DataFrame) -> float | None:
    """The budget with the most n_instructions values in the reference slice."""
    ref = reference_slice(cells).dropna(subset=[UNSEEN])
    if ref.empty:
        return None
    return float(ref.groupby("total_examples")["n_instructions"].nunique().idxmax())


def generalization_metric(ref: pd.DataFrame) -> str:
    """Unseen accuracy on inputs the rule changes when the grid has no-op inputs (whose copies
    a memorizing model also gets right), else on all unseen inputs."""
    no_ops = ref["p_pattern_present"].lt(1).any() if "p_pattern_present" in ref else False
    return APPLIED if no_ops and APPLIED in ref and ref[APPLIED].notna().any() else UNSEEN


def _regime_bounds(cells: pd.DataFrame, budget: float) -> tuple[float | None, float | None]:
    """(I_min, I_max) as REGIME_DEFINITIONS states them."""
    ref = reference_slice(cells)
    metric = generalization_metric(ref)
    per_i = ref[ref["total_examples"] == budget].groupby("n_instructions")[metric].mean()
    per_i = per_i.dropna().sort_index()
    never = per_i[per_i < NEVER]
    above = per_i[per_i.index > never.index.max()] if len(never) else per_i
    i_min = float(above.index.min()) if len(never) and len(above) else None
    i_max = None
    for n_instr in per_i.index[::-1]:
        if per_i.loc[n_instr] < ALWAYS:
            break
        i_max = float(n_instr)
    return i_min, i_max


def long_tail_robust_from(cells: pd.DataFrame) -> tuple[float, float] | None:
    """(smallest I from which every larger I keeps ROBUST_SHARE of its uniform unseen accuracy
    under every power law tried, budget) — only I whose uniform cell generalizes at all
    (unseen >= NEVER) count; None without such a comparison. Read on inputs the rule changes
    where the grid has no-ops (generalization_metric)."""
    power = cells[cells["distribution"] == "powerlaw"]
    metric = generalization_metric(power)
    power = power.dropna(subset=[metric])
    uniform = cells[cells["distribution"] == "uniform"].dropna(subset=[metric])
    keys = ["n_instructions", "total_examples"]
    paired = power.merge(uniform[[*keys, metric]], on=keys, suffixes=("", "_uniform"))
    paired = paired[paired[f"{metric}_uniform"] >= NEVER]
    if paired.empty:
        return None
    budget = paired["total_examples"].value_counts().idxmax()
    paired = paired[paired["total_examples"] == budget]
    robust = (
        (paired[metric] >= ROBUST_SHARE * paired[f"{metric}_uniform"])
        .groupby(paired["n_instructions"])
        .all()
    )
    start = None
    for n_instr in robust.index[::-1]:
        if not robust.loc[n_instr]:
            break
        start = float(n_instr)
    return None if start is None else (start, float(budget))


def has_op_sentence(cells: pd.DataFrame) -> str | None:
    """With no-op inputs in the main grid, overall unseen accuracy has a floor (a memorizing
    model still copies inputs the rule leaves alone): say what happens where the rule applies."""
    ref = reference_slice(cells)
    if generalization_metric(ref) != APPLIED:
        return None
    ref = ref.dropna(subset=[APPLIED])
    if ref["n_instructions"].nunique() < 2:
        return None
    budget = main_budget(cells)
    per_i = ref[ref["total_examples"] == budget].groupby("n_instructions")
    applied, overall = per_i[APPLIED].mean(), per_i[UNSEEN].mean()
    lo, hi = applied.index.min(), applied.index.max()
    no_op = 1 - float(ref["p_pattern_present"].iloc[0])
    return (
        f"Inputs the rule changes ({1 - no_op:.0%} of them; the other {no_op:.0%} are no-ops to "
        f"copy): unseen exact match {applied[lo]:.2f} with {amount(lo)} instructions and "
        f"{applied[hi]:.2f} with {amount(hi)} "
        f"(all inputs: {overall[lo]:.2f} and {overall[hi]:.2f})."
    )


def _means_per_instruction(cells: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Mean `metric` and seen exact match per n_instructions over the cells that report both;
    None with fewer than two instruction counts (no ends to compare)."""
    cells = cells.dropna(subset=[metric, SEEN])
    if cells["n_instructions"].nunique() < 2:
        return None
    return cells.groupby("n_instructions")[[metric, SEEN]].mean()


def memorization_sentence(cells: pd.DataFrame, metric: str) -> str | None:
    """Seen vs unseen exact match at the fewest and the most instructions of the reference
    slice, unseen read on the same inputs as every other headline sentence (`metric`): on all
    inputs a model that memorizes still copies the no-ops, which reads as generalization."""
    per_i = _means_per_instruction(reference_slice(cells), metric)
    if per_i is None:
        return None
    lo, hi = per_i.index.min(), per_i.index.max()
    return (
        f"Memorization vs generalization (unseen {_metric_words(metric)}): with {amount(lo)} "
        f"instructions seen/unseen exact match is {per_i.loc[lo, SEEN]:.2f}/"
        f"{per_i.loc[lo, metric]:.2f}; with {amount(hi)} it is {per_i.loc[hi, SEEN]:.2f}/"
        f"{per_i.loc[hi, metric]:.2f}."
    )


def transition_line(cells: pd.DataFrame) -> str | None:
    """The one line a sweep ends on: unseen-rule exact match at the fewest and the most
    instructions of the main grid (on inputs the rule changes when there are no-ops), and the
    range of seen-rule exact match across it; None with fewer than two instruction counts."""
    ref = reference_slice(cells)
    metric = generalization_metric(ref)
    budget = main_budget(cells)
    per_i = _means_per_instruction(ref[ref["total_examples"] == budget], metric)
    if per_i is None:
        return None
    lo, hi = per_i.index.min(), per_i.index.max()
    inputs = inputs_words(metric)
    return (
        f"Transition at a budget of {amount(budget)} examples: unseen-rule exact match on {inputs} "
        f"{per_i.loc[lo, metric]:.2f} with {amount(lo)} instructions, {per_i.loc[hi, metric]:.2f} "
        f"with {amount(hi)}; seen-rule exact match {per_i[SEEN].min():.2f}–{per_i[SEEN].max():.2f} "
        "across the grid."
    )


def per_setting_reading(cells: pd.DataFrame, name: str, label) -> str | None:
    """Per value of a setting (`p_pattern_present`, a swept setting column), the unseen exact
    match at the fewest and the most instructions and the fewest that reach GENERALIZES, the
    other settings at their reference values; None unless it takes two values or more.
    `label` names a value (`0.8` -> `no-op 20%`)."""
    ref = reference_slice(cells, keep=(name,))
    metric = generalization_metric(ref)
    ref = ref.dropna(subset=[metric, name])
    if ref[name].nunique() < 2:
        return None
    budget = ref["total_examples"].mode().iloc[0]
    ref = ref[ref["total_examples"] == budget]
    parts = []
    for value in sorted(ref[name].unique(), key=setting_order):
        per_i = ref[ref[name] == value].groupby("n_instructions")[metric].mean().sort_index()
        lo, hi = per_i.index.min(), per_i.index.max()
        reach = bracket(per_i, budget).generalizes
        reached = f"none reaches {GENERALIZES:g}"
        if reach:
            reached = f"{GENERALIZES:g} from {amount(reach)}"
        parts.append(
            f"{label(value)}: {per_i[lo]:.2f} at {amount(lo)} → {per_i[hi]:.2f} at {amount(hi)}, "
            + reached
        )
    return f"{'; '.join(parts)} (unseen EM {_metric_words(metric)}, budget {amount(budget)})"


def coverage_sentence(trials: pd.DataFrame, examples: pd.DataFrame, metric: str) -> str | None:
    """Vocabulary coverage, the confound of small alphabets: per n_instructions of the main
    grid, the share of unseen rules whose pattern is also a training rule's, and unseen exact
    match on those vs on rules with a new pattern."""
    if examples.empty or examples["pattern_in_training"].isna().all():
        return None
    unseen = examples[examples["split"] == "unseen"]
    if metric == APPLIED:
        unseen = unseen[unseen["applied"]]
    ref = reference_slice(trials[trials["status"] == Status.FINISHED])
    budget = ref["total_examples"].value_counts().idxmax() if len(ref) else None
    ref = ref[ref["total_examples"] == budget][["run_id", "n_instructions"]]
    rows = unseen.merge(ref, on="run_id")
    if rows.empty:
        return None
    parts = []
    for n_instr, group in rows.groupby("n_instructions", sort=True):
        covered = group.groupby("rule_id")["pattern_in_training"].first()
        acc = group.groupby("pattern_in_training")["correct"].mean()
        new = f"{acc[False]:.2f}" if False in acc else "none"
        old = f"{acc[True]:.2f}" if True in acc else "none"
        parts.append(
            f"{amount(n_instr)} instructions: {covered.mean():.0%} of unseen rules (exact match "
            f"{old} on them, {new} on new patterns)"
        )
    return (
        f"Coverage (unseen rules whose pattern is also a training rule's pattern; budget "
        f"{amount(budget)}, {_metric_words(metric)}): " + "; ".join(parts) + ". A rise that "
        "follows coverage may be vocabulary, not instruction diversity."
    )


def best_and_targets(cells: pd.DataFrame, metric: str) -> list[str]:
    """The best cell and the least data reaching each target, both read on the main grid (the
    reference slice): a best power-law cell beside "no configuration reached" a level it
    passes would contradict itself; the power laws and other settings have their own sections."""
    ref = reference_slice(cells)
    if not ref[metric].notna().any():
        return []
    words = _metric_words(metric)
    subset = len(ref) < len(cells)
    of, on = (" of the main grid", " on the main grid") if subset else ("", "")
    what = " (uniform distribution, other settings at their most common value)" if subset else ""
    best = ref.loc[ref[metric].idxmax()]
    out = [
        f"Best cell{of}{what}: {amount(best['n_instructions'])} instructions × "
        f"{amount(best['examples_per_instruction'])} examples reaches unseen exact match "
        f"{best[metric]:.2f} {words} (seen {best[SEEN]:.2f})."
    ]
    levels = targets(cells, metric)
    least = least_examples(cells, levels, metric).dropna(subset=["total_examples"])
    for target in levels:
        hit = least[least["target"] == target]
        if hit.empty:
            out.append(f"No cell{of} reached unseen exact match {target:g} {words}.")
            continue
        row = hit.loc[hit["total_examples"].idxmin()]
        out.append(
            f"Unseen exact match {words} ≥ {target:g} is first reached{on} with "
            f"{amount(row['total_examples'])} examples, "
            f"using {amount(row['n_instructions'])} instructions."
        )
    return out


def headline(
    sweep: Sweep,
    cells: pd.DataFrame,
    fits: list[Transition],
    examples: pd.DataFrame | None = None,
) -> list[str]:
    out = []
    if cells.dropna(subset=[UNSEEN]).empty:
        return ["No finished trial has reported unseen accuracy yet."]
    metric = generalization_metric(reference_slice(cells))
    per_budget = brackets(cells)
    out.extend(bracket_sentence(b, metric) for b in per_budget)
    out.extend(transition_sentence(t, metric) for t in fits)
    if not fits:
        out.append(
            f"No logistic fit of the transition: four parameters need at least {MIN_LEVELS} "
            "n_instructions values at one budget, and per-example predictions of its trials."
        )
    words = _metric_words(metric)
    out.extend(best_and_targets(cells, metric))
    memorization = memorization_sentence(cells, metric)
    if memorization:
        out.append(memorization)
    line = transition_line(cells)
    if line:
        out.append(line)
    cost = search_cost_sentence(sweep.trials) if sweep.search == "adaptive" else None
    arms = budget_exponents_of(sweep.trials, examples, metric)
    bounded = bracket_bounds({b.total_examples: (b.fails, b.generalizes)
                              for b in per_budget if _places_a_threshold(b)})  # fmt: skip
    levels = f"fails: below {FAILS:g}, generalizes: {GENERALIZES:g} or more, unseen EM {words}"
    from_brackets = None if bounded is None else bracket_exponent_sentence(bounded, levels)
    for extra in (*(frontier_sentence(e, arm) for arm, e in arms), from_brackets, cost):
        if extra:
            out.append(extra)
    has_op = has_op_sentence(cells)
    if has_op:
        out.append(has_op)
    coverage = None if examples is None else coverage_sentence(sweep.trials, examples, metric)
    if coverage:
        out.append(coverage)
    # on inputs the rule changes where the power-law cells have no-ops and record them
    power = cells[cells["distribution"] == "powerlaw"]
    tail_metric = generalization_metric(power)
    power = power.dropna(subset=[tail_metric])
    for n_instr, group in power.groupby("n_instructions"):
        worst = group.loc[group["alpha"].idxmin()]
        uniform = cells[(cells["distribution"] == "uniform") & (cells["n_instructions"] == n_instr)
                        & (cells["total_examples"] == worst["total_examples"])]  # fmt: skip
        base = f"{uniform[tail_metric].mean():.2f}" if len(uniform) else "not run"
        effective = worst.get("effective_instructions", float("nan"))
        trained = (
            ""
            if pd.isna(effective)
            else (
                f"; {effective:,.0f} of the {amount(n_instr)} got at least one training example, "
                "the rest are scored apart as never trained"
            )
        )
        out.append(
            f"Long tail, {amount(n_instr)} instructions: unseen exact match "
            f"{_metric_words(tail_metric)} {worst[tail_metric]:.2f} at alpha {worst['alpha']:g} "
            f"(uniform: {base}){trained}."
        )
    if sweep.trials["status"].isin([Status.FAILED, Status.STOPPED]).any():
        n_failed = int((sweep.trials["status"] == Status.FAILED).sum())
        n_stopped = int((sweep.trials["status"] == Status.STOPPED).sum())
        out.append(f"{n_failed} trial(s) failed and {n_stopped} were stopped early (listed below).")
    out += filter(None, [preemption_line(sweep.trials)])
    return out


def splits_note(selection: str | None) -> str:
    """Which held-out rules are which: the report's unseen figures are the test rules; the
    sweep chose (stopped trials, refined the grid) on the validation rules."""
    chose = (
        f"The sweep's scheduler and searches optimised {selection}"
        if selection
        else ("The sweep recorded no selection metric (run before it was tagged)")
    )
    return (
        "Unseen-rule figures are on the held-out test rules (metrics unseen/…); validation "
        f"rules, held out apart from them, are reported as unseen_val/…. {chose}; a report "
        "figure on test rules that a selection on test rules chose would be optimistic."
    )


def paper_vs_ours(cells: pd.DataFrame, fits: list[Transition]) -> list[tuple[str, str, str]]:
    """Rows (quantity, paper value with budget and source, ours)."""
    budget = main_budget(cells)
    fit = next((f for f in fits if f.total_examples == budget), None)
    i_min, i_max = (None, None) if budget is None else _regime_bounds(cells, budget)
    at = f" (budget {amount(budget)})" if budget is not None else ""
    between = next((b for b in brackets(cells) if b.total_examples == budget), None)
    ours = {
        "transition": (
            f"~{amount(fit.midpoint)}{at}, 95% interval {amount(fit.ci_low)}–{amount(fit.ci_high)}"
            if fit
            else f"between {amount(between.fails)} and {amount(between.generalizes)}{at} "
            "(grid bracket)"
            if between and between.fails and between.generalizes
            else "not estimable"
        ),
        "I_min": f"{amount(i_min)}{at}" if i_min else f"no I with unseen EM < {NEVER}",
        "I_max": f"{amount(i_max)}{at}" if i_max else f"no I with unseen EM ≥ {ALWAYS} onward",
    }
    if generalization_metric(reference_slice(cells)) == APPLIED:
        for key in ("I_min", "I_max"):
            ours[key] += " (has-op inputs: no-op copies excluded)"
    robust = long_tail_robust_from(cells)
    if robust is not None:
        ours["long_tail_robust_I"] = (
            f">= {amount(robust[0])} (budget {amount(robust[1])}; power law keeps "
            f"≥ {ROBUST_SHARE:.0%} of uniform unseen EM)"
        )
    elif (cells["distribution"] == "powerlaw").any():
        ours["long_tail_robust_I"] = "no I robust to every alpha tried"
    noop = per_setting_reading(cells, "p_pattern_present", lambda p: f"no-op {1 - p:.0%}")
    if noop is not None:
        ours["transition_noop"] = noop
    if SEMANTIC_K in cells:
        semantic = per_setting_reading(cells, SEMANTIC_K, lambda k: f"train k {k}")
        if semantic is not None:
            ours["semantic_k"] = semantic
    rows = []
    for ref in PAPER_VALUES:
        budget = f"N={ref.budget:,}" if ref.budget is not None else "N not stated"
        paper = f"{ref.value} ({budget}; {ref.source})"
        rows.append((ref.quantity, paper, ours.get(ref.key, "not measured by this report")))
    return rows
