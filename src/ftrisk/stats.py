"""Statistics behind every number an audit reports.

Library code first: Wilson intervals, the exact McNemar test, Holm's adjustment, the paired
TOST equivalence test and Cohen's kappa come from statsmodels, Spearman's rho from scipy.
Hand-written here is only what those libraries lack: the seeded cluster bootstrap, the
cluster design effect that turns a clustered sample into a Wilson interval, and intervals
for constant samples on a bounded scale.

Conventions: intervals are two-sided 95% unless said otherwise; a *cluster* is the unit whose
items are correlated (the built-in benchmark's action behind three phrasings, a user
benchmark's ``cluster_field``), and intervals never get narrower for being clustered.
scipy and statsmodels are imported inside the functions, so ``ftrisk --help`` stays fast.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

# Bounds the index matrix of one bootstrap chunk (resamples x groups) to ~16 MB of int64.
_CHUNK_CELLS = 2_000_000


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95
                    ) -> tuple[float, float]:
    """Wilson score interval of ``successes`` out of ``n`` (statsmodels); both may be
    fractional (an effective sample size). ``n`` must be positive."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n!r}")
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    # Exact at the edges, where the formula gives 0 or 1 up to float rounding.
    low = 0.0 if successes <= 0 else max(0.0, float(low))
    high = 1.0 if successes >= n else min(1.0, float(high))
    return (low, high)


def _codes(clusters: Sequence[Hashable]) -> np.ndarray:
    """Cluster ids as 0..G-1 in order of first appearance."""
    codes: dict[Hashable, int] = {}
    return np.fromiter((codes.setdefault(c, len(codes)) for c in clusters), dtype=np.intp,
                       count=len(clusters))


def design_effect(values: Sequence[float], clusters: Sequence[Hashable]) -> float:
    """Kish's design effect of the mean of ``values`` under cluster sampling, at least 1.

    The cluster-robust (CR1) variance of the mean divided by its simple-random-sampling
    variance. 1 when every item is its own cluster, when there is a single cluster, or when
    the values are constant (no information about the correlation; the plain n is used).
    """
    x = np.asarray(values, dtype=float)
    if len(clusters) != x.size:
        raise ValueError(f"clusters has {len(clusters)} ids for {x.size} values")
    index = _codes(clusters)
    groups = int(index.max()) + 1 if x.size else 0
    if x.size < 2 or groups < 2 or groups == x.size:
        return 1.0
    residual = x - x.mean()
    srs = float(np.sum(residual**2)) / (x.size - 1) / x.size
    if srs == 0.0:
        return 1.0
    sums = np.bincount(index, weights=residual)
    robust = groups / (groups - 1) * float(np.sum(sums**2)) / x.size**2
    return max(1.0, robust / srs)


def proportion_interval(outcomes: Sequence[bool], clusters: Sequence[Hashable] | None = None,
                        *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of the share of true ``outcomes``; with ``clusters``, Wilson on the
    effective sample size n / design effect (Korn & Graubard's approach), so correlated items
    count for less. Raises ValueError on empty input."""
    n = len(outcomes)
    if n == 0:
        raise ValueError("proportion_interval needs at least one outcome")
    k = float(sum(bool(o) for o in outcomes))
    if clusters is None:
        return wilson_interval(k, n, confidence=confidence)
    n_eff = n / design_effect([float(o) for o in outcomes], clusters)
    return wilson_interval(k / n * n_eff, n_eff, confidence=confidence)


def bootstrap_ci(
    values: Sequence[float] | Sequence[bool],
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    clusters: Sequence[Hashable] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    The same ``seed`` always gives the same interval. With ``clusters`` (one id per value),
    whole clusters are resampled and the interval is for the item-weighted mean; when every id
    is distinct this equals the unclustered interval exactly. Returns ``(nan, nan)`` for empty
    input and ``(v, v)`` when all values equal ``v`` (see :func:`mean_interval` for an interval
    that stays honest there). Raises ValueError for non-finite values, a ``clusters`` of the
    wrong length, or ``confidence``/``n_resamples`` out of range.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples!r}")
    x = np.asarray(values, dtype=float).reshape(-1)
    if clusters is not None and len(clusters) != x.size:
        raise ValueError(f"clusters has {len(clusters)} ids for {x.size} values")
    if x.size == 0:
        return (math.nan, math.nan)
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci values must be finite")
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    if clusters is None:
        sums, counts = x, np.ones_like(x)
    else:
        index = _codes(clusters)
        sums = np.bincount(index, weights=x)
        counts = np.bincount(index).astype(float)
    n_groups = sums.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, _CHUNK_CELLS // n_groups)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        picks = rng.integers(0, n_groups, size=(stop - start, n_groups))
        means[start:stop] = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def mean_interval(values: Sequence[float], clusters: Sequence[Hashable] | None = None, *,
                  scale: tuple[float, float] | None = None, seed: int = 0,
                  n_resamples: int = 2000) -> tuple[float, float]:
    """CI of a mean score: the (cluster) bootstrap, except for a constant sample.

    When every value equals ``v`` the bootstrap would claim certainty; on a bounded ``scale``
    (lo, hi) the interval is then the range the mean could take if the share of items away
    from ``v`` were as large as the Wilson upper bound for 0 such items allows:
    ``[v - u (v - lo), v + u (hi - v)]``. Without a scale a constant sample gives ``(v, v)``.
    """
    x = [float(v) for v in values]
    if not x:
        raise ValueError("mean_interval needs at least one value")
    if scale is not None and all(v == x[0] for v in x):
        lo, hi = scale
        n_eff = len(x) if clusters is None else len(set(clusters))
        upper = wilson_interval(0, n_eff)[1]
        return (x[0] - upper * (x[0] - lo), x[0] + upper * (hi - x[0]))
    return bootstrap_ci(x, clusters=clusters, seed=seed, n_resamples=n_resamples)


def paired_difference(after: Sequence[bool], before: Sequence[bool],
                      clusters: Sequence[Hashable] | None = None, *, seed: int = 0,
                      n_resamples: int = 2000) -> dict[str, float | int | list[float]]:
    """Compare two paired binary outcomes on the same items (``after`` minus ``before``).

    Returns the difference of shares with a 95% CI (cluster bootstrap of the per-item
    differences; when every difference is equal, +-the Wilson upper bound of the discordant
    share), the discordant counts and the exact McNemar p-value (statsmodels, binomial on the
    discordant pairs; 1.0 when there are none). With ``clusters``, also ``clustered_p``:
    McNemar's test for clustered pairs (:func:`clustered_mcnemar`), which does not take pairs
    in one cluster (three phrasings of an action, or one prompt answered by several seeds) as
    independent.
    """
    from statsmodels.stats.contingency_tables import mcnemar

    if len(after) != len(before):
        raise ValueError(f"paired outcomes differ in length: {len(after)} and {len(before)}")
    if len(after) == 0:
        raise ValueError("paired_difference needs at least one pair")
    a = np.asarray(after, dtype=bool)
    b = np.asarray(before, dtype=bool)
    gained, lost = int(np.sum(a & ~b)), int(np.sum(~a & b))
    table = [[int(np.sum(a & b)), gained], [lost, int(np.sum(~a & ~b))]]
    p_value = 1.0 if gained + lost == 0 else float(mcnemar(table, exact=True).pvalue)
    diff = a.astype(float) - b.astype(float)
    if np.all(diff == diff[0]):
        n_eff = a.size if clusters is None else len(set(clusters))
        half = wilson_interval(0, n_eff)[1]
        ci = [float(diff[0]) - half, float(diff[0]) + half]
        ci = [max(-1.0, ci[0]), min(1.0, ci[1])]
    else:
        ci = list(bootstrap_ci(diff, clusters=clusters, seed=seed, n_resamples=n_resamples))
    result: dict[str, float | int | list[float]] = {
        "difference": float(diff.mean()), "difference_ci": ci, "n": int(a.size),
        "became_true": gained, "became_false": lost, "mcnemar_p": p_value}
    if clusters is not None:
        result["clustered_p"] = clustered_mcnemar(a, b, clusters)
    return result


def clustered_mcnemar(after: Sequence[bool], before: Sequence[bool],
                      clusters: Sequence[Hashable]) -> float:
    """p-value of McNemar's test for clustered matched pairs (Durkalski et al. 2003,
    Statistics in Medicine 22:2417): with d_k the pairs of cluster k that became true minus
    those that became false, X^2 = (sum d_k)^2 / sum d_k^2 on 1 degree of freedom. With one
    pair per cluster it is McNemar's chi-square without continuity correction; 1.0 when no
    pair is discordant. Not in scipy or statsmodels, hence written here.
    """
    from scipy.stats import chi2

    if not len(after) == len(before) == len(clusters):
        raise ValueError("after, before and clusters differ in length")
    net: dict[Hashable, int] = {}
    for a, b, k in zip(after, before, clusters):
        net[k] = net.get(k, 0) + int(bool(a)) - int(bool(b))
    spread = sum(d * d for d in net.values())
    if spread == 0:
        return 1.0
    return float(chi2.sf(sum(net.values()) ** 2 / spread, df=1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (statsmodels ``multipletests``), in the input order."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


def equivalence(after: Sequence[float], before: Sequence[float], *, margin: float = 0.05,
                alpha: float = 0.05) -> dict[str, object]:
    """Paired TOST of accuracy ``after`` vs ``before`` on the same questions, within +-margin.

    statsmodels ``ttost_paired`` on the per-question outcomes: 0/1, or the share of
    replicates that answered a question right when several seeds ran. The (1 - 2 alpha) CI
    of the difference is the interval TOST decides with (when every pair differs alike, a
    Wilson bound on the unseen discordant share, and ``tost_p`` is None). Verdict: ``kept``
    when equivalence is shown (p < alpha), ``lost`` when the whole CI lies below -margin,
    ``gained`` when it lies above +margin, otherwise ``inconclusive``.
    """
    from scipy import stats as st
    from statsmodels.stats.weightstats import ttost_paired

    if len(after) != len(before) or len(after) == 0:
        raise ValueError("equivalence needs two non-empty outcome lists of the same length")
    if not 0 < margin < 1:
        raise ValueError(f"margin must be between 0 and 1, got {margin!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be between 0 and 0.5, got {alpha!r}")
    a = np.asarray(after, dtype=float)
    b = np.asarray(before, dtype=float)
    diff = a - b
    mean = float(diff.mean())
    n = diff.size
    p_value: float | None
    if np.all(diff == diff[0]):
        # No spread, so no t-test: bound the unseen discordant share by Wilson instead, so
        # that three identical answers cannot show equivalence but two hundred can.
        half = wilson_interval(0, n, confidence=1 - 2 * alpha)[1]
        ci = (max(-1.0, mean - half), min(1.0, mean + half))
        p_value = None
    else:
        p_value = float(ttost_paired(a, b, -margin, margin)[0])
        sd = float(diff.std(ddof=1))
        half = float(st.t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n)
        ci = (mean - half, mean + half)
    within = -margin < ci[0] and ci[1] < margin
    if (p_value < alpha) if p_value is not None else within:
        verdict = "kept"
    elif ci[1] < -margin:
        verdict = "lost"
    elif ci[0] > margin:
        verdict = "gained"
    else:
        verdict = "inconclusive"
    return {"difference": mean, "difference_ci": list(ci), "confidence": 1 - 2 * alpha,
            "margin": margin, "tost_p": p_value, "verdict": verdict, "n": n}


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' binary labels (statsmodels); None when undefined (no
    items, or both raters constant and equal)."""
    from statsmodels.stats.inter_rater import cohens_kappa

    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two label lists of the same length")
    if not a:
        return None
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    table = np.array([[np.sum(x & y), np.sum(x & ~y)], [np.sum(~x & y), np.sum(~x & ~y)]])
    expected = float(np.mean(x) * np.mean(y) + np.mean(~x) * np.mean(~y))
    if expected == 1.0:
        return None
    return float(cohens_kappa(table, return_results=False))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (scipy; average ranks for ties); None when a side is
    constant or there are fewer than two pairs."""
    from scipy.stats import spearmanr

    if len(a) != len(b):
        raise ValueError("spearman needs two score lists of the same length")
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)
