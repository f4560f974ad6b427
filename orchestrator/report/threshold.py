"""How the transition moves with the budget: one logistic model over every budget of a sweep,
with its midpoint a power of the budget, I*(N) ∝ N^β.

Per trial, accuracy = low_b + (high_b - low_b) · σ(slope · (log10 I - m_b)), with a plateau pair
per budget b (the budgets' curves need not reach the same heights), one slope, and
m_b = m0 + β · log10 N_b. β = 0 is a threshold set by the number of instructions (the same I* at
every budget); β = 1 one set by examples per instruction (N / I* the same at every budget).

Trials are the replication unit: each is one seed at one (N, I), and seeds differ far more
than the binomial variation of their examples (χ²/df of 6-14 in the committed frontier study),
so a likelihood that counts examples as independent would give intervals several times too
narrow. The fit is quasi-binomial: binomial estimating equations, their variance measured from
the trials' own scatter (a sandwich over trials), and Student-t on the residual degrees of
freedom. A seed effect shared by all of a seed's trials moves every budget's I* alike and so
leaves β alone; with 2 or 3 seeds a variance between seeds could not be estimated anyway. It
needs only each trial's accuracy: with equal examples per trial the scale cancels, so trials
without per-example counts enter as proportions (n = 1). Coverage of β and the verdicts are
measured by simulation in tests/test_report_threshold.py.

A sweep's trials may differ in compute as well as budget: `compute_arms` groups them into the
arms a fit may pool (as many examples seen at every budget, or as many passes over it), and
`frontier_sentence` states β per arm. Both the core report (any sweep) and the built-in
study's findings read them.

Where the rise is sharper than the grid's steps the model cannot place I* inside a gap and
says "cannot tell"; the grid itself still bounds β: `bracket_bounds` reads it off each
budget's bracket (the most n_instructions that fail, the fewest that generalize), with no
curve and no sampling error, and the built-in findings state it beside the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import minimize

from divsweep.orchestrator.report.intervals import CONFIDENCE

MIN_BUDGETS = 2
# Per budget a plateau pair and a midpoint are free; one more level than that identifies them.
MIN_LEVELS_PER_BUDGET = 4
# A budget whose fitted curve rises by less than this (its trials all at one level: nothing
# learnt, or all learnt) has no midpoint to place: the shared slope would put it anywhere.
MIN_RISE = 0.1
MAX_EVALUATIONS = 5_000  # of the likelihood, per start
_EPS = 1e-6

INSTRUCTIONS = "instructions"  # β = 0 not rejected, β = 1 rejected
EXAMPLES_PER_INSTRUCTION = "examples per instruction"  # the reverse
CANNOT_TELL = "cannot tell"  # neither rejected
NEITHER = "neither"  # both rejected


@dataclass(frozen=True)
class Exponent:
    """β with its interval, and the two hypotheses' tests."""

    beta: float
    ci_low: float
    ci_high: float
    p_instructions: float  # two-sided p-value of β = 0
    p_examples_per_instruction: float  # of β = 1
    verdict: str  # INSTRUCTIONS, EXAMPLES_PER_INSTRUCTION, CANNOT_TELL or NEITHER
    midpoints: dict[float, float]  # budget → fitted I*
    df: int
    n_trials: int


def _curve(params: np.ndarray, x: np.ndarray, b: np.ndarray, z: np.ndarray):
    """Accuracy of every trial and its derivatives in the parameters (trials × parameters).
    params: lows (B), highs (B), m0, β, log slope; z: centred log10 budget per budget."""
    n_b = len(z)
    low, high = params[:n_b][b], params[n_b : 2 * n_b][b]
    m0, beta, slope = params[2 * n_b], params[2 * n_b + 1], np.exp(params[2 * n_b + 2])
    u = x - m0 - beta * z[b]
    sig = 1 / (1 + np.exp(-slope * u))
    p = low + (high - low) * sig
    d_u = (high - low) * sig * (1 - sig)
    jac = np.zeros((len(x), 2 * n_b + 3))
    rows = np.arange(len(x))
    jac[rows, b] = 1 - sig
    jac[rows, n_b + b] = sig
    jac[:, 2 * n_b] = -slope * d_u
    jac[:, 2 * n_b + 1] = -slope * d_u * z[b]
    jac[:, 2 * n_b + 2] = slope * u * d_u
    return p, jac


def _nll(params, x, b, z, n, k):
    p, jac = _curve(params, x, b, z)
    p = np.clip(p, _EPS, 1 - _EPS)
    nll = -(k * np.log(p) + (n - k) * np.log1p(-p)).sum()
    return nll, (jac * -(k / p - (n - k) / (1 - p))[:, None]).sum(axis=0)


def _halfway(x: np.ndarray, acc: np.ndarray, level: float) -> float:
    """The first x where the mean accuracy per x reaches `level`, between grid levels."""
    levels, where = np.unique(x, return_inverse=True)
    means = np.bincount(where, acc) / np.bincount(where)
    above = int(np.argmax(means >= level))
    if above == 0:
        return float(levels[0])
    lo, hi = means[above - 1], means[above]
    return float(levels[above - 1] + (level - lo) / (hi - lo) * (levels[above] - levels[above - 1]))


def fit(
    x: np.ndarray, b: np.ndarray, log_budget: np.ndarray, n: np.ndarray, k: np.ndarray
) -> Exponent | None:
    """Fit trials at log10 n_instructions `x`, budget index `b` into `log_budget` (log10 N per
    budget), with `k` of `n` examples right. None when the optimiser fails, when β or the
    midpoint ends on a bound, or when some budget's I* lies outside its grid or its curve
    rises by less than MIN_RISE (I* outside what the grid can place)."""
    z = log_budget - log_budget.mean()  # m0 is I* at the middle budget: less tied to β
    n_b = len(z)
    levels = np.unique(x)
    acc = k / n
    # |β| beyond this moves I* between the extreme budgets by more than the grid spans
    beta_bound = (levels[-1] - levels[0]) / (z.max() - z.min())
    bounds = ([(0, 1)] * (2 * n_b) + [(levels[0], levels[-1]), (-beta_bound, beta_bound),
              (np.log(0.1), np.log(100))])  # fmt: skip
    lows = np.array([acc[b == i].min() for i in range(n_b)])
    highs = np.array([acc[b == i].max() for i in range(n_b)])
    # Started from where each budget's accuracy first passes halfway between its extremes,
    # the budgets' midpoints joined by a line, and from β = 0 through their mean: the
    # likelihood has an optimum per gap between levels, and these are the gaps the data mark.
    mids = np.array([_halfway(x[b == i], acc[b == i], (lows[i] + highs[i]) / 2)
                     for i in range(n_b)])  # fmt: skip
    slope0, m00 = np.polyfit(z, mids, 1)
    best = None
    for m0, beta in ((m00, slope0), (mids.mean(), 0.0)):
        start = [
            *lows,
            *highs,
            np.clip(m0, *bounds[2 * n_b]),
            np.clip(beta, -beta_bound / 2, beta_bound / 2),
            np.log(4.0),
        ]
        # TNC's default (max(100, 10 per parameter): 100 here) stops short on counts of hundreds
        # per trial where the rise falls between two levels (cpu-frontier's 6,000-step arm)
        res = minimize(_nll, start, args=(x, b, z, n, k), jac=True, method="TNC",
                       bounds=bounds, options={"maxfun": MAX_EVALUATIONS})  # fmt: skip
        if res.success and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        return None
    params = best.x
    m0, beta = params[2 * n_b], params[2 * n_b + 1]
    if abs(beta) >= beta_bound - 1e-6 or not levels[0] + 1e-6 < m0 < levels[-1] - 1e-6:
        return None
    per_budget = m0 + beta * z
    rises = params[n_b : 2 * n_b] - params[:n_b]
    if (rises < MIN_RISE).any() or not all(
        x[b == i].min() < per_budget[i] < x[b == i].max() for i in range(n_b)
    ):
        return None
    p, jac = _curve(params, x, b, z)
    p = np.clip(p, _EPS, 1 - _EPS)
    # Plateaus on their bounds (0 or 1) are not free: they carry no variance and no df.
    free = np.ones(len(params), bool)
    free[: 2 * n_b] = (params[: 2 * n_b] > 1e-6) & (params[: 2 * n_b] < 1 - 1e-6)
    df = len(x) - int(free.sum())
    if df < 1:
        return None
    # A sandwich over trials, each residual scaled by its leverage (HC3): seed scatter shifts
    # the curve in log I, so it is large on the rise and small on the plateaus, which one
    # dispersion factor for all trials would average away (β's interval then undercovers).
    w = n / (p * (1 - p))
    bread = np.linalg.pinv((jac[:, free] * w[:, None]).T @ jac[:, free])
    leverage = np.einsum("ti,ij,tj->t", jac[:, free] * w[:, None], bread, jac[:, free])
    resid = (k - n * p) / (p * (1 - p)) / (1 - np.clip(leverage, 0, 0.99))
    score = jac[:, free] * resid[:, None]
    cov = bread @ (score.T @ score) @ bread
    at = int(free[: 2 * n_b + 1].sum())  # β's index among the free parameters
    se = float(np.sqrt(max(cov[at, at], 0.0)))
    t = stats.t.ppf((1 + CONFIDENCE) / 2, df)
    lo, hi = beta - t * se, beta + t * se
    p0, p1 = (float(2 * stats.t.sf(abs(beta - h) / se, df)) if se > 0 else 0.0 for h in (0, 1))
    verdict = {
        (True, True): CANNOT_TELL,
        (True, False): INSTRUCTIONS,
        (False, True): EXAMPLES_PER_INSTRUCTION,
        (False, False): NEITHER,
    }[(lo <= 0 <= hi, lo <= 1 <= hi)]
    return Exponent(
        beta=float(beta),
        ci_low=float(lo),
        ci_high=float(hi),
        p_instructions=p0,
        p_examples_per_instruction=p1,
        verdict=verdict,
        midpoints={
            float(np.round(10**nb, 6)): float(10 ** (m0 + beta * zb))
            for nb, zb in zip(log_budget, z, strict=True)
        },
        df=df,
        n_trials=len(x),
    )


def budget_exponent(trials: pd.DataFrame, metric: str) -> Exponent | None:
    """β from one slice of a sweep's trials (`n_instructions`, `total_examples`, and `metric`
    as each trial's accuracy, or `n` and `k` where per-example counts back them). None with
    fewer than MIN_BUDGETS budgets of MIN_LEVELS_PER_BUDGET n_instructions values each."""
    trials = trials[trials["n_instructions"] > 0].dropna(subset=[metric])
    per_budget = trials.groupby("total_examples")["n_instructions"].nunique()
    keep = per_budget[per_budget >= MIN_LEVELS_PER_BUDGET].index
    trials = trials[trials["total_examples"].isin(keep)]
    if len(keep) < MIN_BUDGETS:
        return None
    budgets, b = np.unique(trials["total_examples"].to_numpy(dtype=float), return_inverse=True)
    counted = {"n", "k"} <= set(trials.columns) and trials["n"].notna().all()
    n = trials["n"].to_numpy(dtype=float) if counted else np.ones(len(trials))
    k = trials["k"].to_numpy(dtype=float) if counted else trials[metric].to_numpy(dtype=float)
    x = np.log10(trials["n_instructions"].to_numpy(dtype=float))
    return fit(x, b, np.log10(budgets), n, k)


VERDICTS = {
    INSTRUCTIONS: (
        "β = 1 is rejected and β = 0 is not: consistent with a threshold set by the number of "
        "instructions (the interval bounds how far I* may still move with N)"
    ),
    EXAMPLES_PER_INSTRUCTION: (
        "β = 0 is rejected and β = 1 is not: consistent with a threshold set by examples per "
        "instruction (the interval bounds how far N / I* may still move with N)"
    ),
    CANNOT_TELL: (
        "the interval holds both 0 and 1, so this sweep cannot tell which sets the threshold "
        "(budgets too close together, or too few seeds)"
    ),
    NEITHER: "both are rejected: I* moves with the budget, but not in proportion to it",
}


def frontier_sentence(e: Exponent | None, arm: str = "") -> str | None:
    """Which sets the threshold, from the joint model of every budget (threshold.py): the
    number of instructions (β = 0) or the examples per instruction (β = 1). `arm` names the
    compute arm the trials form (compute_arms); a named arm the model cannot fit is said."""
    label = f"Threshold vs budget, {arm}" if arm else "Threshold vs budget"
    if e is None:
        if not arm:
            return None
        return (
            f"{label}: β is not estimated; the joint model does not place I* inside the grid at "
            f"every budget (no rise within the instruction counts swept, or fewer than "
            f"{MIN_LEVELS_PER_BUDGET} of them per budget)."
        )
    at = "; ".join(f"N = {amount(n)}: ~{amount(i)}" for n, i in sorted(e.midpoints.items()))
    return (
        f"{label}: one logistic curve per budget with a shared slope and I* ∝ N^β "
        f"({e.n_trials} trials, {len(e.midpoints)} budgets; quasi-binomial, trials as the "
        f"replication unit, sandwich variance, t on {e.df} df): β = {e.beta:.2f}, "
        f"{CONFIDENCE:.0%} interval {e.ci_low:.2f} to {e.ci_high:.2f}; I* {at}. Test of β = 0 "
        f"(set by the number of instructions): {_p(e.p_instructions)}; of β = 1 (set by "
        f"examples per instruction): {_p(e.p_examples_per_instruction)}. Verdict: "
        f"{VERDICTS[e.verdict]}."
    )


def bracket_bounds(brackets: dict[float, tuple[float, float]]) -> tuple[float, float] | None:
    """β's bounds from the grid alone: at each budget N (the keys), the threshold I*(N) lies
    between the most n_instructions below the threshold and the fewest above it (the values),
    so for I* ∝ N^β every pair of budgets N1 < N2 bounds β between
    log(below2 / above1) / log(N2 / N1) and log(above2 / below1) / log(N2 / N1); a power law
    must meet every pair's bounds. None with fewer than MIN_BUDGETS budgets or where the pairs'
    bounds do not overlap (no power law fits the brackets)."""
    budgets = sorted(brackets)
    if len(budgets) < MIN_BUDGETS:
        return None
    low, high = -np.inf, np.inf
    for i, n1 in enumerate(budgets):
        for n2 in budgets[i + 1 :]:
            (below1, above1), (below2, above2), span = brackets[n1], brackets[n2], np.log(n2 / n1)
            low = max(low, np.log(below2 / above1) / span)
            high = min(high, np.log(above2 / below1) / span)
    return (float(low), float(high)) if low <= high else None


def bracket_exponent_sentence(bounds: tuple[float, float], levels: str) -> str:
    """What the grid's brackets alone say of β (bracket_bounds); `levels` names the accuracy
    levels the brackets read, between which I* may be read."""
    low, high = bounds
    excluded = [f"β = {h} ({name})" for h, name in ((0, "set by the number of instructions"),
                (1, "set by examples per instruction")) if not low <= h <= high]  # fmt: skip
    verdict = (
        f"{' and '.join(excluded)} {'is' if len(excluded) == 1 else 'are'} excluded"
        if excluded
        else "neither β = 0 nor β = 1 is excluded"
    )
    return (
        f"Threshold vs budget from the brackets alone (no curve fitted): at every budget I* lies "
        f"between the most instructions that fail and the fewest that generalize ({levels}), so "
        f"β lies between {low:.2f} and {high:.2f} for I* read at any accuracy between those "
        f"levels: {verdict}. Seed means against fixed levels: no sampling error is counted, and "
        "a mean near a level could fall on its other side in a repeat."
    )


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compute_arms(trials: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The trials grouped by the compute they had, for a frontier over budgets: those that saw
    as many examples at every budget (fixed steps: the budget alone varies) and those that made
    as many passes over their budget (fixed epochs: compute grows with N), each where it spans
    MIN_BUDGETS budgets; a trial may be in both. One unnamed arm of every trial where they all
    saw about as many examples, or some did not log `examples_seen` (a user's module)."""
    seen = trials.get("examples_seen")
    if seen is None or seen.isna().any() or seen.map(_approx).nunique() <= 1:
        return [("", trials)]
    arms = [
        (f"fixed steps (~{amount(_approx(group['examples_seen'].median(), 3))} examples seen at "
         "every budget)", group)
        for _, group in trials.groupby(seen.map(_approx))
        if group["total_examples"].nunique() >= MIN_BUDGETS
    ]  # fmt: skip
    arms += [
        (f"fixed epochs ({value:g} passes over each budget)", group)
        for value, group in trials.groupby((seen / trials["total_examples"]).map(_approx))
        if group["total_examples"].nunique() >= MIN_BUDGETS
    ]
    return arms


def _approx(x: float, digits: int = 2) -> float:
    """To 2 significant digits, where compute is compared: an epoch's last batch is short where
    the batch size does not divide the budget, and `train.epochs` rounds to whole steps."""
    return float(f"{x:.{digits}g}")


def amount(x: float) -> str:
    """A count or size as the reports print it: `1,024` from 10 on, 3 significant digits below."""
    return f"{x:,.0f}" if x >= 10 else f"{x:.3g}"
