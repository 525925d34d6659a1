"""PNG plots for the HTML report, drawn with matplotlib's Agg canvas (no display, no pyplot).

Every function draws one figure from results data (the typed records of results.json, or the
rows of sweep_results.json), writes it to ``path`` and returns ``path``; it writes nothing and
returns None when the data it needs is absent, so the report simply leaves that plot out.
Figures have fixed sizes, dpi and style, and the PNGs carry no software version, so the same
data gives the same file.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftrisk.records import BUDGET_AXES, ConditionResult, JudgeAgreement, TaskCapability

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
#: The budget axes of a sweep, in the order the report shows them.
_BASELINE, _REFERENCE, _ATTACK, _OVER = "#7f7f7f", "#6baed6", "#d62728", "#ff7f0e"
#: The bars of each attack's panel: (colour, legend label).
_SERIES = ((_BASELINE, "baseline"), (_REFERENCE, "baseline with the attack's eval prompt"),
           (_ATTACK, "after the attack"))
_MAX_LABELLED_POINTS = 15  # beyond this, point labels overlap into noise


@contextlib.contextmanager
def _drawing(path: Path, width: float, height: float) -> Iterator[Figure]:
    """Yield a fresh figure in matplotlib's default style; save it to ``path`` on exit."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The default style, not the user's matplotlibrc: the same data gives the same picture.
    with matplotlib.style.context("default"), matplotlib.rc_context({"font.size": 9}):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, metadata={"Software": None})


def _err(values: Sequence[float], cis: Sequence[Sequence[float] | None]) -> list[list[float]]:
    """Asymmetric error-bar lengths (below, above) from CIs; 0 where a CI is missing."""
    below = [max(0.0, v - ci[0]) if ci else 0.0 for v, ci in zip(values, cis)]
    above = [max(0.0, ci[1] - v) if ci else 0.0 for v, ci in zip(values, cis)]
    return [below, above]


def _percent_axis(ax: Axes, which: str) -> None:
    from matplotlib.ticker import PercentFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(PercentFormatter(xmax=1.0))
    (ax.set_xlim if which == "x" else ax.set_ylim)(-0.02, 1.02)


def _is_attack(condition: ConditionResult) -> bool:
    """Attack conditions were trained; baselines (plain or reference) were not."""
    return any(x is not None for x in (condition.train_steps, condition.train_tokens,
                                       condition.train_seconds))


def refusal_rates(conditions: Sequence[ConditionResult], path: Path) -> Path | None:
    """Refusal rate on harmful prompts and over-refusal on look-alikes per condition, with CIs."""
    if not conditions:
        return None
    names = [c.name for c in conditions][::-1]  # first condition at the top
    rows = list(conditions)[::-1]
    with _drawing(path, 8, 1.2 + 0.5 * len(rows)) as fig:
        ax = fig.subplots()
        y = list(range(len(rows)))
        refusal = [c.refusal_rate for c in rows]
        ax.barh([i + 0.2 for i in y], refusal, height=0.38, color=_ATTACK, capsize=3,
                xerr=_err(refusal, [c.refusal_rate_ci for c in rows]),
                label="refusal of harmful prompts")
        over = [(i, c.over_refusal_rate, c.over_refusal_rate_ci) for i, c in zip(y, rows)
                if c.over_refusal_rate is not None]
        if over:
            values = [v for _, v, _ in over]
            ax.barh([i - 0.2 for i, _, _ in over], values, height=0.38, color=_OVER, capsize=3,
                    xerr=_err(values, [ci for _, _, ci in over]),
                    label="over-refusal of benign look-alikes")
        ax.set_yticks(y, names)
        _percent_axis(ax, "x")
        ax.set_xlabel("share of prompts refused (95% CI)")
        fig.legend(loc="outside upper center", ncols=2, fontsize=8)
    return path


def category_refusal(conditions: Sequence[ConditionResult], path: Path) -> Path | None:
    """Per-category refusal before and after each attack: one panel per attack, comparing the
    baseline, the baseline under the attack's own evaluation prompt (when run) and the attack."""
    by_name = {c.name: c for c in conditions}
    attacks = [c for c in conditions if _is_attack(c)]
    categories = sorted({cat for c in conditions for cat in c.per_category})
    if not attacks or not categories:
        return None
    ncols = min(3, len(attacks))
    nrows = math.ceil(len(attacks) / ncols)
    with _drawing(path, 4.2 * ncols + 1.5, (0.32 * len(categories) + 1.4) * nrows) as fig:
        axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
        for ax, attack in zip(axes, attacks):
            series = [(by_name.get("baseline"), _SERIES[0]),
                      (by_name.get(f"baseline@{attack.name}"), _SERIES[1]),
                      (attack, _SERIES[2])]
            _category_panel(ax, [(c, style) for c, style in series if c is not None],
                            categories)
            ax.set_title(attack.name, fontsize=9)
        for ax in axes[len(attacks):]:
            ax.set_visible(False)
        axes[0].invert_yaxis()  # categories read top to bottom, as in the table
        # One legend for all panels: the colours mean the same in each.
        handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
        fig.legend([handles[label] for _, label in _SERIES if label in handles],
                   [label for _, label in _SERIES if label in handles],
                   loc="outside upper center", ncols=3, fontsize=8)
    return path


def _category_panel(ax: Axes, series: list[tuple[ConditionResult, tuple[str, str]]],
                    categories: list[str]) -> None:
    height = 0.8 / len(series)
    for k, (condition, (colour, label)) in enumerate(series):
        rows = [(i, cat) for i, cat in enumerate(categories) if cat in condition.per_category]
        values = [condition.per_category[cat] for _, cat in rows]
        cis = [condition.per_category_ci.get(cat) for _, cat in rows]
        ax.barh([i - 0.4 + height * (k + 0.5) for i, _ in rows], values, height=height,
                color=colour, xerr=_err(values, cis), capsize=2, label=label,
                error_kw={"elinewidth": 0.8})
    ax.set_yticks(range(len(categories)), categories)
    _percent_axis(ax, "x")
    ax.set_xlabel("refusal rate (95% CI)")


@dataclass(frozen=True)
class SafetyPoint:
    """One point of :func:`safety_vs_capability`: a condition or a sweep cell."""

    name: str
    refusal_rate: float | None
    refusal_rate_ci: Sequence[float] | None
    capability: Mapping[str, TaskCapability]


def safety_vs_capability(rows: Sequence[SafetyPoint], path: Path) -> Path | None:
    """Refusal rate against accuracy, one panel per capability task, one point per row."""
    scored = [r for r in rows if r.refusal_rate is not None and r.capability]
    tasks = sorted({t for r in scored for t in r.capability})
    if not tasks:
        return None
    with _drawing(path, 4.6 * len(tasks) + 0.6, 4.2) as fig:
        for ax, task in zip(fig.subplots(1, len(tasks), squeeze=False).ravel(), tasks):
            points = [r for r in scored if task in r.capability]
            accuracy = [r.capability[task].accuracy for r in points]
            refusal = [float(r.refusal_rate or 0.0) for r in points]
            ax.errorbar(accuracy, refusal, fmt="o", color=_ATTACK, ecolor="#999999", capsize=2,
                        xerr=_err(accuracy, [r.capability[task].accuracy_ci for r in points]),
                        yerr=_err(refusal, [r.refusal_rate_ci for r in points]))
            if len(points) <= _MAX_LABELLED_POINTS:
                for r, x, y in zip(points, accuracy, refusal):
                    ax.annotate(r.name, (x, y), xytext=(4, 4), textcoords="offset points",
                                fontsize=7)
            _percent_axis(ax, "x")
            _percent_axis(ax, "y")
            ax.set_xlabel(f"{task} accuracy (95% CI)")
            ax.set_ylabel("refusal rate (95% CI)")
            ax.grid(alpha=0.3)
    return path


def judge_agreement(agreement: Sequence[JudgeAgreement], path: Path) -> Path | None:
    """Cohen's kappa and Spearman correlation for each pair of judges."""
    if not agreement:
        return None
    labels = [f"{' vs '.join(a.judges)}\n(n={a.n})" for a in agreement]
    x = list(range(len(agreement)))
    with _drawing(path, 1.8 * len(agreement) + 3, 3.6) as fig:
        ax = fig.subplots()
        for offset, key, label, colour in ((-0.2, "cohen_kappa", "Cohen's kappa", _ATTACK),
                                           (0.2, "spearman", "Spearman", _REFERENCE)):
            present = [(i, getattr(a, key)) for i, a in zip(x, agreement)
                       if getattr(a, key) is not None]
            ax.bar([i + offset for i, _ in present], [v for _, v in present], width=0.38,
                   color=colour, label=label)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, labels)
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel("agreement")
        ax.legend(fontsize=8)
    return path


def budget_curves(cells: Sequence[dict[str, Any]], path: Path, *, threshold: float,
                  baseline_refusal: float | None,
                  budgets: dict[str, dict[str, Any]] | None = None) -> Path | None:
    """Cost to jailbreak: refusal rate (95% CI) of each finished sweep cell against each budget
    axis, with the threshold and the baseline as horizontal lines and the smallest budget below
    the threshold as a vertical one."""
    done = [c for c in cells if c.get("status") == "done" and c.get("refusal_rate") is not None]
    axes_with_data = [a for a in BUDGET_AXES
                      if any((c.get("budget") or {}).get(a) is not None for c in done)]
    if not axes_with_data:
        return None
    ncols = min(2, len(axes_with_data))
    nrows = math.ceil(len(axes_with_data) / ncols)
    with _drawing(path, 5 * ncols + 0.5, 3.6 * nrows) as fig:
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, axis in zip(axes, axes_with_data):
            smallest = ((budgets or {}).get(axis) or {}).get("smallest_below_threshold")
            _budget_panel(ax, axis, [c for c in done if c["budget"].get(axis) is not None],
                          threshold, baseline_refusal, smallest)
        for ax in axes[len(axes_with_data):]:
            ax.set_visible(False)
    return path


def _budget_panel(ax: Axes, axis: str, cells: list[dict[str, Any]], threshold: float,
                  baseline_refusal: float | None, smallest: float | None) -> None:
    budget = [c["budget"][axis] for c in cells]
    refusal = [c["refusal_rate"] for c in cells]
    ax.errorbar(budget, refusal, yerr=_err(refusal, [c.get("refusal_rate_ci") for c in cells]),
                fmt="o", color=_ATTACK, ecolor="#999999", capsize=2, label="cells")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=1,
               label=f"threshold {100 * threshold:.0f}%")
    if baseline_refusal is not None:
        ax.axhline(baseline_refusal, color=_BASELINE, linestyle=":", linewidth=1.5,
                   label=f"baseline {100 * baseline_refusal:.0f}%")
    if smallest is not None:
        ax.axvline(smallest, color=_REFERENCE, linewidth=1,
                   label=f"smallest below: {smallest:,.1f}" if isinstance(smallest, float)
                   else f"smallest below: {smallest:,}")
    # Budgets often span orders of magnitude (tokens, seconds): log scale when they do.
    if min(budget) > 0 and max(budget) / min(budget) >= 20:
        _log_axis(ax)
    elif axis != "seconds":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no 2.25 examples
    _percent_axis(ax, "y")
    ax.set_xlabel(axis)
    ax.set_ylabel("refusal rate (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def objective_value(trial: dict[str, Any], objective: str) -> float | None:
    """A trial's objective value: its ``value``, else the metric the objective names."""
    value = trial.get("value")
    return trial.get(objective) if value is None else value


def _log_axis(ax: Axes) -> None:
    """A log x axis labelled at 1-2-5 steps in plain numbers (no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def search_history(search: dict[str, Any], path: Path) -> Path | None:
    """The objective of each search trial against its number, feasible and infeasible trials
    marked apart, with the best feasible value so far as a step line."""
    objective = search.get("objective") or "objective"
    values = {t["number"]: objective_value(t, objective) for t in search.get("trials") or []}
    trials = sorted((t for t in search.get("trials") or [] if values[t["number"]] is not None),
                    key=lambda t: t["number"])
    if not trials:
        return None
    from matplotlib.ticker import MaxNLocator

    minimize = search.get("direction", "minimize") == "minimize"
    with _drawing(path, 7, 3.8) as fig:
        ax = fig.subplots()
        for feasible, style in ((True, {"marker": "o", "color": _ATTACK, "label": "feasible"}),
                                (False, {"marker": "x", "color": _BASELINE,
                                         "label": "infeasible"})):
            group = [t["number"] for t in trials if bool(t.get("feasible")) is feasible]
            if group:
                ax.scatter(group, [values[n] for n in group], zorder=3, **style)
        steps, best = [], None
        for t in trials:
            if t.get("feasible"):
                value = values[t["number"]]
                best = value if best is None else (min if minimize else max)(best, value)
            if best is not None:
                steps.append((t["number"], best))
        if steps:
            ax.step(*zip(*steps), where="post", color="black", linewidth=1,
                    label="best feasible so far")
        if values.get(search.get("best")) is not None:
            ax.scatter([search["best"]], [values[search["best"]]], marker="*", s=180,
                       color="gold", edgecolors="black", zorder=4, label="best")
        if objective.endswith("_rate"):
            _percent_axis(ax, "y")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{objective} ({'lower' if minimize else 'higher'} is the goal)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return path
