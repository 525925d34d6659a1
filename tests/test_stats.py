"""Tests for ftrisk.stats: every statistic against a hand computation or an independent library.

Z below is the two-sided 95% normal quantile, z = 1.959963984540054, z^2 = 3.841458820694124.
Wilson score interval (reference formula used throughout):
    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
For k = 0 this collapses to [0, z^2 / (n + z^2)], for k = n to [n / (n + z^2), 1].
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from ftrisk.stats import (
    bootstrap_ci,
    cohen_kappa,
    design_effect,
    equivalence,
    holm,
    mean_interval,
    paired_difference,
    proportion_interval,
    spearman,
    wilson_interval,
)

Z = 1.959963984540054
Z2 = Z * Z  # 3.841458820694124


def _wilson(k: float, n: float, z: float = Z) -> tuple[float, float]:
    """Independent textbook Wilson interval (no statsmodels)."""
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _width(ci) -> float:
    return ci[1] - ci[0]


# --- wilson_interval ------------------------------------------------------------------------


def test_z_constant_is_the_normal_quantile() -> None:
    assert Z == pytest.approx(st.norm.ppf(0.975), abs=1e-12)


def test_wilson_23_of_24_hand_computed() -> None:
    # p = 23/24 = 0.958333, z^2/n = 3.841459/24 = 0.160061, z^2/(2n) = 0.080030
    # centre = (0.958333 + 0.080030) / 1.160061 = 1.038364 / 1.160061 = 0.895095
    # p(1-p)/n = 0.958333 * 0.041667 / 24 = 0.00166377; z^2/(4n^2) = 3.841459/2304 = 0.00166730
    # half = 1.959964 / 1.160061 * sqrt(0.00333107) = 1.689535 * 0.0577154 = 0.097512
    # -> [0.797583, 0.992607]
    low, high = wilson_interval(23, 24)
    assert low == pytest.approx(0.797583, abs=2e-6)
    assert high == pytest.approx(0.992607, abs=2e-6)


def test_wilson_all_successes_hand_computed() -> None:
    # k = n = 24: lower = n / (n + z^2) = 24 / 27.841459 = 0.862024; upper = 1
    low, high = wilson_interval(24, 24)
    assert low == pytest.approx(24 / (24 + Z2), abs=1e-9)
    assert low == pytest.approx(0.862024, abs=1e-6)
    assert high == 1.0


def test_wilson_no_successes_hand_computed() -> None:
    # k = 0, n = 10: upper = z^2 / (n + z^2) = 3.841459 / 13.841459 = 0.277533; lower = 0
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(Z2 / (10 + Z2), abs=1e-9)
    assert high == pytest.approx(0.277533, abs=1e-6)


def test_wilson_23_of_24_is_not_narrower_than_the_naive_bootstrap() -> None:
    # The naive percentile bootstrap of 23 ones and a zero has lower bound 21/24 = 0.875 (or
    # higher): it understates uncertainty near 100%. Wilson must reach below 0.875.
    naive = bootstrap_ci([1] * 23 + [0])
    low, high = wilson_interval(23, 24)
    assert low < 0.875
    assert low < naive[0]
    assert _width((low, high)) >= _width(naive) - 1e-12


@pytest.mark.parametrize(("k", "n"), [(2.5, 7.3), (0.0, 3.6), (3.6, 3.6), (11.2, 40.0),
                                      (1, 2), (137, 200)])
def test_wilson_matches_formula_including_fractional_n(k: float, n: float) -> None:
    low, high = wilson_interval(k, n)
    ref = _wilson(k, n)
    assert low == pytest.approx(ref[0], abs=1e-9)
    assert high == pytest.approx(ref[1], abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_other_confidence_level() -> None:
    # 90%: z = 1.644854
    z90 = st.norm.ppf(0.95)
    low, high = wilson_interval(7, 20, confidence=0.90)
    ref = _wilson(7, 20, z=z90)
    assert (low, high) == pytest.approx(ref, abs=1e-9)
    assert _width((low, high)) < _width(wilson_interval(7, 20))


@pytest.mark.parametrize("n", [0, -1, 0.0])
def test_wilson_rejects_non_positive_n(n: float) -> None:
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, n)


# --- design_effect --------------------------------------------------------------------------


def test_design_effect_hand_computed_cr1() -> None:
    # values 1,1 | 0,0 | 1,0 in clusters A | B | C; n = 6, G = 3, mean = 0.5
    # residuals: +.5 +.5 | -.5 -.5 | +.5 -.5
    # SRS variance of mean = sum(r^2)/(n-1)/n = 1.5 / 5 / 6 = 0.05
    # cluster residual sums: A = 1, B = -1, C = 0 -> sum of squares = 2
    # CR1 variance = G/(G-1) * 2 / n^2 = 1.5 * 2 / 36 = 0.083333
    # deff = 0.083333 / 0.05 = 5/3 = 1.666667
    deff = design_effect([1, 1, 0, 0, 1, 0], ["A", "A", "B", "B", "C", "C"])
    assert deff == pytest.approx(5 / 3, rel=1e-12)


def test_design_effect_second_hand_example_unequal_clusters() -> None:
    # values 1,1,1 | 0 | 1,0 in clusters x | y | z; n = 6, G = 3, mean = 4/6 = 2/3
    # residuals: 1/3 1/3 1/3 | -2/3 | 1/3 -2/3
    # sum(r^2) = 4 * 1/9 + 2 * 4/9 = 12/9 = 4/3; SRS = (4/3) / 5 / 6 = 4/90 = 0.044444
    # cluster sums: x = 1, y = -2/3, z = -1/3 -> squares 1 + 4/9 + 1/9 = 14/9
    # CR1 = 3/2 * (14/9) / 36 = 21/324 = 0.064815; deff = (21/324) / (4/90) = 1.458333
    deff = design_effect([1, 1, 1, 0, 1, 0], ["x", "x", "x", "y", "z", "z"])
    assert deff == pytest.approx((21 / 324) / (4 / 90), rel=1e-12)
    assert deff == pytest.approx(1.458333, abs=1e-6)


def test_design_effect_cluster_ids_need_not_be_contiguous() -> None:
    # Same data as the first hand example with clusters interleaved: A B A C B C.
    values = [1, 0, 1, 1, 0, 0]
    clusters = ["A", "B", "A", "C", "B", "C"]
    assert design_effect(values, clusters) == pytest.approx(5 / 3, rel=1e-12)


def test_design_effect_is_one_for_singleton_clusters() -> None:
    values = [1, 0, 1, 1, 0, 1, 0, 0, 1]
    assert design_effect(values, list(range(len(values)))) == 1.0


def test_design_effect_is_one_for_constant_values() -> None:
    assert design_effect([1, 1, 1, 1, 1, 1], ["a", "a", "b", "b", "c", "c"]) == 1.0
    assert design_effect([0.0] * 6, ["a", "a", "a", "b", "b", "b"]) == 1.0


def test_design_effect_is_one_for_a_single_cluster_and_tiny_input() -> None:
    assert design_effect([1, 0, 1, 0], ["a"] * 4) == 1.0
    assert design_effect([1.0], ["a"]) == 1.0
    assert design_effect([], []) == 1.0


def test_design_effect_clamps_negative_correlation_to_one() -> None:
    # 1,0 | 1,0: cluster residual sums are 0 and 0 -> CR1 = 0, raw ratio 0 -> clamped to 1
    assert design_effect([1, 0, 1, 0], ["a", "a", "b", "b"]) == 1.0


def test_design_effect_perfectly_clustered_equals_cr1_formula() -> None:
    # 4 clusters of 3 identical values 1,1,1 | 0,0,0 | 1,1,1 | 0,0,0; n = 12, mean 0.5
    # sum(r^2) = 12 * 0.25 = 3; SRS = 3 / 11 / 12 = 1/44
    # cluster sums = +-1.5 -> squares 4 * 2.25 = 9; CR1 = 4/3 * 9 / 144 = 1/12
    # deff = (1/12) / (1/44) = 44/12 = 3.666667 (close to the cluster size 3, times 4/3 * 11/12)
    values = [1] * 3 + [0] * 3 + [1] * 3 + [0] * 3
    clusters = [g for g in range(4) for _ in range(3)]
    assert design_effect(values, clusters) == pytest.approx(44 / 12, rel=1e-12)


def test_design_effect_is_at_least_one_on_random_data() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        values = rng.integers(0, 2, size=n).astype(float)
        clusters = rng.integers(0, max(1, n // 2), size=n).tolist()
        assert design_effect(values, clusters) >= 1.0


def test_design_effect_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="clusters has 2 ids for 3 values"):
        design_effect([1, 0, 1], ["a", "b"])


# --- proportion_interval --------------------------------------------------------------------


def test_proportion_interval_without_clusters_is_wilson() -> None:
    outcomes = [True] * 17 + [False] * 6
    assert proportion_interval(outcomes) == wilson_interval(17, 23)
    assert proportion_interval(outcomes) == pytest.approx(_wilson(17, 23), abs=1e-9)


def test_proportion_interval_with_clusters_hand_computed() -> None:
    # First design-effect example: deff = 5/3, so n_eff = 6 / (5/3) = 3.6, k_eff = 3/6 * 3.6 = 1.8
    # Wilson(1.8, 3.6): p = 0.5, z^2/n = 1.067072, centre = (0.5 + 0.533536) / 2.067072 = 0.5
    # half = 1.959964 / 2.067072 * sqrt(0.25/3.6 + 3.841459/51.84)
    #      = 0.948184 * sqrt(0.069444 + 0.074103) = 0.948184 * 0.378876 = 0.359244
    # -> [0.140756, 0.859244]
    outcomes = [True, True, False, False, True, False]
    clusters = ["A", "A", "B", "B", "C", "C"]
    low, high = proportion_interval(outcomes, clusters)
    assert (low, high) == pytest.approx(_wilson(1.8, 3.6), abs=1e-9)
    assert low == pytest.approx(0.140756, abs=2e-6)
    assert high == pytest.approx(0.859244, abs=2e-6)
    # strictly wider than the unclustered Wilson(3, 6)
    assert _width((low, high)) > _width(wilson_interval(3, 6))


def test_proportion_interval_singleton_clusters_equal_unclustered() -> None:
    outcomes = [True, False, True, True, False, True, True]
    assert proportion_interval(outcomes, list("abcdefg")) == pytest.approx(
        proportion_interval(outcomes), abs=1e-12)


def test_proportion_interval_clustered_never_narrower() -> None:
    rng = np.random.default_rng(11)
    for _ in range(150):
        n = int(rng.integers(2, 60))
        outcomes = (rng.random(n) < rng.random()).tolist()
        clusters = rng.integers(0, max(1, n // 3), size=n).tolist()
        plain = proportion_interval(outcomes)
        clustered = proportion_interval(outcomes, clusters)
        assert _width(clustered) >= _width(plain) - 1e-12
        share = sum(outcomes) / n
        assert clustered[0] - 1e-12 <= share <= clustered[1] + 1e-12


def test_proportion_interval_rejects_empty() -> None:
    with pytest.raises(ValueError, match="at least one outcome"):
        proportion_interval([])


# --- bootstrap_ci ---------------------------------------------------------------------------


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    values = [1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0.5, 0.25] * 4
    first = bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) == first
    assert bootstrap_ci(values, seed=4) != first
    low, high = first
    assert low < float(np.mean(values)) < high


def test_bootstrap_distinct_cluster_ids_equal_unclustered_exactly() -> None:
    values = [0.1, 0.9, 0.4, 0.4, 0.7, 0.0, 1.0, 0.3, 0.8, 0.2, 0.6]
    for seed in (0, 1, 99):
        plain = bootstrap_ci(values, seed=seed, n_resamples=500)
        clustered = bootstrap_ci(values, seed=seed, n_resamples=500,
                                 clusters=[f"c{i}" for i in range(len(values))])
        assert clustered == plain


def test_bootstrap_equal_sized_identical_clusters_resample_the_clusters() -> None:
    # Each cluster holds 3 copies of one value: resampling whole clusters is the same as the
    # plain bootstrap of the 5 cluster values (same seed -> same picks), up to rounding.
    base = [0.2, 0.9, 0.5, 0.0, 0.7]
    values = [v for v in base for _ in range(3)]
    clusters = [g for g in range(len(base)) for _ in range(3)]
    clustered = bootstrap_ci(values, clusters=clusters, seed=5)
    assert clustered == pytest.approx(bootstrap_ci(base, seed=5), abs=1e-12)
    # ...which is much wider than treating the 15 copies as independent
    assert _width(clustered) > _width(bootstrap_ci(values, seed=5))


def test_bootstrap_matches_normal_approximation_on_a_large_sample() -> None:
    # n = 2000 draws; the percentile interval of the mean should be close to
    # mean +- 1.96 * sd / sqrt(n) (CLT). Tolerance: 10% of the half-width.
    rng = np.random.default_rng(2024)
    x = rng.exponential(1.0, size=2000)
    low, high = bootstrap_ci(x, n_resamples=4000, seed=1)
    mean = float(x.mean())
    half = Z * float(x.std(ddof=1)) / math.sqrt(x.size)
    assert low == pytest.approx(mean - half, abs=0.1 * half)
    assert high == pytest.approx(mean + half, abs=0.1 * half)
    # Also close to scipy's percentile bootstrap (different RNG, so not identical).
    ref = st.bootstrap((x,), np.mean, method="percentile", n_resamples=4000,
                       random_state=np.random.default_rng(9)).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.1 * half)
    assert high == pytest.approx(ref.high, abs=0.1 * half)


def test_bootstrap_confidence_level_narrows_interval() -> None:
    x = np.random.default_rng(3).normal(size=300)
    assert _width(bootstrap_ci(x, confidence=0.8)) < _width(bootstrap_ci(x, confidence=0.95))


def test_bootstrap_edge_cases() -> None:
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)
    assert bootstrap_ci([0.4, 0.4, 0.4]) == (0.4, 0.4)
    assert bootstrap_ci([True, True]) == (1.0, 1.0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"confidence": 0.0}, "confidence"),
    ({"confidence": 1.0}, "confidence"),
    ({"n_resamples": 0}, "n_resamples"),
    ({"clusters": ["a", "b"]}, "clusters has 2 ids for 3 values"),
])
def test_bootstrap_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bootstrap_ci([0.1, 0.5, 0.9], **kwargs)


def test_bootstrap_rejects_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([0.1, math.nan, 0.9])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([0.1, math.inf])


# --- mean_interval --------------------------------------------------------------------------


def test_mean_interval_constant_sample_on_scale_hand_computed() -> None:
    # u = Wilson upper bound of 0/24 = z^2 / (24 + z^2) = 3.841459 / 27.841459 = 0.137976
    # all values 1 on scale (1, 5): [1 - u*(1-1), 1 + u*(5-1)] = [1, 1 + 4 * 0.137976]
    #                                                           = [1, 1.551905]
    u = Z2 / (24 + Z2)
    assert u == pytest.approx(0.137976, abs=1e-6)
    low, high = mean_interval([1.0] * 24, scale=(1, 5))
    assert low == pytest.approx(1.0, abs=1e-12)
    assert high == pytest.approx(1 + 4 * u, abs=1e-9)
    assert high == pytest.approx(1.551905, abs=2e-6)


def test_mean_interval_constant_in_the_middle_of_the_scale() -> None:
    # all values 3 on (1, 5), n = 10: u = z^2 / 13.841459 = 0.277533
    # [3 - u*2, 3 + u*2] = [2.444935, 3.555065]
    u = Z2 / (10 + Z2)
    low, high = mean_interval([3] * 10, scale=(1, 5))
    assert (low, high) == pytest.approx((3 - 2 * u, 3 + 2 * u), abs=1e-9)


def test_mean_interval_constant_with_clusters_uses_cluster_count() -> None:
    # 24 items in 6 clusters: u = z^2 / (6 + z^2) = 3.841459 / 9.841459 = 0.390334
    u = Z2 / (6 + Z2)
    clusters = [g for g in range(6) for _ in range(4)]
    low, high = mean_interval([1.0] * 24, clusters, scale=(1, 5))
    assert low == pytest.approx(1.0, abs=1e-12)
    assert high == pytest.approx(1 + 4 * u, abs=1e-9)


def test_mean_interval_constant_without_scale_is_a_point() -> None:
    assert mean_interval([2.5] * 5) == (2.5, 2.5)


def test_mean_interval_non_constant_is_the_bootstrap() -> None:
    values = [1, 2, 5, 4, 4, 3, 1, 5, 2, 2]
    clusters = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
    assert mean_interval(values, scale=(1, 5), seed=7, n_resamples=800) == bootstrap_ci(
        values, seed=7, n_resamples=800)
    assert mean_interval(values, clusters, scale=(1, 5), seed=7, n_resamples=800) == (
        bootstrap_ci(values, clusters=clusters, seed=7, n_resamples=800))


def test_mean_interval_rejects_empty() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


# --- paired_difference ----------------------------------------------------------------------


def _pairs(both: int, gained: int, lost: int, neither: int) -> tuple[list[bool], list[bool]]:
    after = [True] * both + [True] * gained + [False] * lost + [False] * neither
    before = [True] * both + [False] * gained + [True] * lost + [False] * neither
    return after, before


def test_paired_difference_mcnemar_matches_binomtest_and_hand_value() -> None:
    # 8 both true, 7 became true, 2 became false, 3 neither; n = 20
    # exact McNemar: 2 * P(Bin(9, 0.5) <= 2) = 2 * (1 + 9 + 36) / 512 = 92/512 = 0.1796875
    after, before = _pairs(8, 7, 2, 3)
    result = paired_difference(after, before)
    assert result["became_true"] == 7
    assert result["became_false"] == 2
    assert result["n"] == 20
    assert result["mcnemar_p"] == pytest.approx(st.binomtest(2, 9, 0.5).pvalue, rel=1e-12)
    assert result["mcnemar_p"] == pytest.approx(92 / 512, rel=1e-12)
    # difference = mean(after - before) = (7 - 2) / 20 = 0.25
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    assert result["difference"] == pytest.approx(float(diff.mean()), abs=1e-15)
    assert result["difference"] == pytest.approx(0.25, abs=1e-15)


def test_paired_difference_mcnemar_is_symmetric_in_direction() -> None:
    # 1 gained vs 10 lost: 2 * P(Bin(11, .5) <= 1) = 2 * 12 / 2048 = 0.01171875
    after, before = _pairs(5, 1, 10, 4)
    forward = paired_difference(after, before)
    backward = paired_difference(before, after)
    assert forward["mcnemar_p"] == pytest.approx(24 / 2048, rel=1e-12)
    assert backward["mcnemar_p"] == pytest.approx(forward["mcnemar_p"], rel=1e-12)
    assert forward["mcnemar_p"] == pytest.approx(st.binomtest(1, 11, 0.5).pvalue, rel=1e-12)
    assert backward["difference"] == pytest.approx(-forward["difference"])
    assert forward["difference"] == pytest.approx(-9 / 20)


def test_paired_difference_ci_is_the_bootstrap_of_differences() -> None:
    after, before = _pairs(8, 7, 2, 3)
    diff = [float(a) - float(b) for a, b in zip(after, before)]
    clusters = [i // 2 for i in range(20)]
    result = paired_difference(after, before, seed=4, n_resamples=700)
    assert result["difference_ci"] == list(bootstrap_ci(diff, seed=4, n_resamples=700))
    clustered = paired_difference(after, before, clusters, seed=4, n_resamples=700)
    assert clustered["difference_ci"] == list(
        bootstrap_ci(diff, clusters=clusters, seed=4, n_resamples=700))


def test_paired_difference_without_discordant_pairs() -> None:
    # 30 concordant pairs: p = 1.0; CI = 0 +- u, u = z^2 / (30 + z^2) = 3.841459 / 33.841459
    # = 0.113514
    after, before = _pairs(18, 0, 0, 12)
    result = paired_difference(after, before)
    u = Z2 / (30 + Z2)
    assert result["mcnemar_p"] == 1.0
    assert result["difference"] == 0.0
    low, high = result["difference_ci"]
    assert low == pytest.approx(-u, abs=1e-9)
    assert high == pytest.approx(u, abs=1e-9)
    assert u == pytest.approx(0.113514, abs=1e-6)
    assert low == pytest.approx(-high, abs=1e-12)


def test_paired_difference_without_discordant_pairs_clustered() -> None:
    # 30 pairs in 10 clusters: u = z^2 / (10 + z^2) = 0.277533
    after, before = _pairs(18, 0, 0, 12)
    clusters = [i // 3 for i in range(30)]
    low, high = paired_difference(after, before, clusters)["difference_ci"]
    assert (low, high) == pytest.approx((-Z2 / (10 + Z2), Z2 / (10 + Z2)), abs=1e-9)


def test_paired_difference_all_gained_is_clipped_at_one() -> None:
    # every pair became true: diff = 1 everywhere; CI [1 - u, 1] with u = z^2 / (10 + z^2)
    after, before = _pairs(0, 10, 0, 0)
    result = paired_difference(after, before)
    assert result["difference"] == 1.0
    assert result["difference_ci"] == pytest.approx([1 - Z2 / (10 + Z2), 1.0], abs=1e-9)
    # 2 * P(Bin(10, .5) <= 0) = 2 / 1024
    assert result["mcnemar_p"] == pytest.approx(2 / 1024, rel=1e-12)


def test_paired_difference_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([True, False], [True])
    with pytest.raises(ValueError, match="at least one pair"):
        paired_difference([], [])


# --- holm -----------------------------------------------------------------------------------


def test_holm_hand_computed_keeps_input_order() -> None:
    # sorted: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> running max 0.03, 0.06, 0.06
    # back in input order [0.01, 0.04, 0.03] -> [0.03, 0.06, 0.06]
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-12)


def test_holm_second_hand_example() -> None:
    # input [0.2, 0.01, 0.5, 0.02]; sorted 0.01*4 = 0.04, 0.02*3 = 0.06, 0.2*2 = 0.4, 0.5*1 = 0.5
    # running max: 0.04, 0.06, 0.4, 0.5 -> input order [0.4, 0.04, 0.5, 0.06]
    assert holm([0.2, 0.01, 0.5, 0.02]) == pytest.approx([0.4, 0.04, 0.5, 0.06], abs=1e-12)


def test_holm_caps_at_one_and_handles_trivial_input() -> None:
    # [0.6, 0.7]: 0.6 * 2 = 1.2 -> 1; max(1, 0.7) = 1
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    # [0.4, 0.6]: 0.4 * 2 = 0.8, max(0.8, 0.6 * 1) = 0.8
    assert holm([0.4, 0.6]) == pytest.approx([0.8, 0.8])
    assert holm([0.03]) == pytest.approx([0.03])
    assert holm([]) == []


# --- equivalence ----------------------------------------------------------------------------


def _tost_reference(after, before, margin: float) -> float:
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    lower = st.ttest_1samp(diff, -margin, alternative="greater").pvalue
    upper = st.ttest_1samp(diff, margin, alternative="less").pvalue
    return float(max(lower, upper))


def test_equivalence_p_is_the_larger_one_sided_t_test() -> None:
    rng = np.random.default_rng(5)
    before = (rng.random(120) < 0.7).tolist()
    after = [b if rng.random() > 0.15 else not b for b in before]
    for margin in (0.03, 0.05, 0.1, 0.2):
        result = equivalence(after, before, margin=margin)
        assert result["tost_p"] == pytest.approx(_tost_reference(after, before, margin),
                                                 rel=1e-9)


def test_equivalence_ci_is_the_one_minus_two_alpha_t_interval() -> None:
    rng = np.random.default_rng(6)
    before = (rng.random(80) < 0.6).tolist()
    after = [b if rng.random() > 0.2 else not b for b in before]
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    result = equivalence(after, before, alpha=0.05)
    ref = st.ttest_1samp(diff, 0.0).confidence_interval(confidence_level=0.90)
    assert result["difference_ci"] == pytest.approx([ref.low, ref.high], abs=1e-12)
    assert result["difference"] == pytest.approx(float(diff.mean()), abs=1e-15)
    assert result["confidence"] == pytest.approx(0.90)
    assert result["n"] == 80


def test_equivalence_kept_with_a_few_swaps() -> None:
    # 200 items, 140 right before; after swaps 3 right->wrong and 3 wrong->right.
    # diff: three +1, three -1, mean 0, sd = sqrt(6/199) = 0.173640, se = 0.012278
    # t against +-0.05: 0.05 / 0.012278 = 4.07 -> p ~ 3e-5 < 0.05
    before = [True] * 140 + [False] * 60
    after = list(before)
    for i in (0, 1, 2):
        after[i] = False
    for i in (140, 141, 142):
        after[i] = True
    result = equivalence(after, before)
    assert result["verdict"] == "kept"
    assert result["difference"] == 0.0
    se = math.sqrt(6 / 199) / math.sqrt(200)
    assert se == pytest.approx(0.012278, abs=1e-6)
    # p = P(T_199 > 0.05 / se)
    assert result["tost_p"] == pytest.approx(st.t.sf(0.05 / se, 199), rel=1e-9)
    assert result["tost_p"] < 1e-4


def test_equivalence_lost_on_a_forty_percent_drop() -> None:
    # before all right, after 60% right: diff = -1 on 80 items, 0 on 120; mean -0.4
    before = [True] * 200
    after = [True] * 120 + [False] * 80
    result = equivalence(after, before)
    assert result["difference"] == pytest.approx(-0.4)
    assert result["difference_ci"][1] < -0.05
    assert result["tost_p"] == pytest.approx(_tost_reference(after, before, 0.05), rel=1e-9)
    assert result["tost_p"] > 0.05
    assert result["verdict"] == "lost"


def test_equivalence_gained_on_a_forty_percent_rise() -> None:
    before = [True] * 120 + [False] * 80
    after = [True] * 200
    result = equivalence(after, before)
    assert result["difference"] == pytest.approx(0.4)
    assert result["difference_ci"][0] > 0.05
    assert result["verdict"] == "gained"


def test_equivalence_inconclusive_on_tiny_n() -> None:
    # 5 items, diff = [+1, -1, 0, 0, 0]: mean 0, sd = sqrt(2/4) = 0.7071, se = 0.3162
    # t = 0.05 / 0.3162 = 0.158 -> p = P(T_4 > 0.158) ~ 0.44; 90% CI 0 +- 2.1318 * 0.3162 = +-0.674
    after = [True, False, True, False, True]
    before = [False, True, True, False, True]
    result = equivalence(after, before)
    assert result["tost_p"] == pytest.approx(st.t.sf(0.05 / math.sqrt(0.5 / 5), 4), rel=1e-9)
    assert result["tost_p"] > 0.4
    assert result["difference_ci"] == pytest.approx([-0.674, 0.674], abs=1e-3)
    assert result["verdict"] == "inconclusive"


def test_equivalence_inconclusive_when_the_drop_straddles_the_margin() -> None:
    # 100 items: 8 lost, 2 gained -> mean -0.06, sd large enough that the CI crosses -0.05
    before = [True] * 70 + [False] * 30
    after = [False] * 8 + [True] * 62 + [True] * 2 + [False] * 28
    result = equivalence(after, before)
    assert result["difference"] == pytest.approx(-0.06)
    low, high = result["difference_ci"]
    assert low < -0.05 < high
    assert result["verdict"] == "inconclusive"


def test_equivalence_no_spread_large_n() -> None:
    # identical outcomes on 200 items: no t-test; the unseen discordant share is bounded by
    # the 90% Wilson upper bound of 0/200 = z^2 / (200 + z^2), z = 1.6449: 2.7055 / 202.7055
    same = [True] * 150 + [False] * 50
    result = equivalence(same, same)
    assert result["tost_p"] is None
    assert result["difference_ci"] == pytest.approx([-0.013347, 0.013347], abs=1e-5)
    assert result["verdict"] == "kept"
    # every item lost: difference -1 everywhere -> lost
    result = equivalence([False] * 50, [True] * 50)
    assert result["verdict"] == "lost"


@pytest.mark.parametrize("n", [1, 3])
def test_equivalence_tiny_identical_sample_is_not_kept(n: int) -> None:
    result = equivalence([True] * n, [True] * n)
    assert result["verdict"] == "inconclusive"


@pytest.mark.parametrize(("after", "before", "kwargs", "match"), [
    ([True, False], [True], {}, "same length"),
    ([], [], {}, "non-empty"),
    ([True, False], [True, True], {"margin": 0.0}, "margin"),
    ([True, False], [True, True], {"margin": 1.0}, "margin"),
    ([True, False], [True, True], {"margin": -0.1}, "margin"),
])
def test_equivalence_rejects_bad_input(after, before, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        equivalence(after, before, **kwargs)


# --- cohen_kappa ----------------------------------------------------------------------------


def test_cohen_kappa_hand_computed() -> None:
    # a: 6 true, 4 false; b: 5 true, 5 false
    # table: both true 4, a-only 2, b-only 1, both false 3
    # po = (4 + 3) / 10 = 0.7; pe = 0.6 * 0.5 + 0.4 * 0.5 = 0.5
    # kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    a = [True] * 6 + [False] * 4
    b = [True] * 4 + [False] * 2 + [True] + [False] * 3
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)
    assert cohen_kappa(b, a) == pytest.approx(0.4, abs=1e-12)


def test_cohen_kappa_second_hand_example_negative() -> None:
    # table: both true 1, a-only 4, b-only 3, both false 2; n = 10
    # po = 3/10 = 0.3; pa = 0.5, pb = 0.4; pe = 0.5 * 0.4 + 0.5 * 0.6 = 0.5
    # kappa = (0.3 - 0.5) / 0.5 = -0.4
    a = [True] * 5 + [False] * 5
    b = [True] + [False] * 4 + [True] * 3 + [False] * 2
    assert cohen_kappa(a, b) == pytest.approx(-0.4, abs=1e-12)


def test_cohen_kappa_perfect_and_undefined() -> None:
    labels = [True, False, True, True, False]
    assert cohen_kappa(labels, labels) == pytest.approx(1.0)
    assert cohen_kappa([True] * 4, [True] * 4) is None
    assert cohen_kappa([False] * 4, [False] * 4) is None
    assert cohen_kappa([], []) is None
    # constant but opposite raters: po = 0, pe = 1*0 + 0*1 = 0 -> kappa = 0
    assert cohen_kappa([True] * 4, [False] * 4) == pytest.approx(0.0)


def test_cohen_kappa_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        cohen_kappa([True], [True, False])


# --- spearman -------------------------------------------------------------------------------


def test_spearman_matches_scipy_with_ties() -> None:
    a = [1, 2, 2, 3, 4, 4, 5, 1]
    b = [2, 1, 3, 3, 5, 4, 4, 2]
    expected = st.spearmanr(a, b).statistic
    assert spearman(a, b) == pytest.approx(float(expected), abs=1e-12)
    # and it equals Pearson's r on average ranks
    ra, rb = st.rankdata(a), st.rankdata(b)
    assert spearman(a, b) == pytest.approx(float(np.corrcoef(ra, rb)[0, 1]), abs=1e-12)
    assert 0.5 < spearman(a, b) < 1.0


def test_spearman_hand_computed_without_ties() -> None:
    # ranks a = 1..5, b = 2,1,4,3,5; d = -1,1,-1,1,0; sum d^2 = 4
    # rho = 1 - 6 * 4 / (5 * 24) = 1 - 0.2 = 0.8
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0, abs=1e-12)


def test_spearman_undefined_cases() -> None:
    assert spearman([3, 3, 3], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [0.5, 0.5, 0.5]) is None
    assert spearman([1], [2]) is None
    assert spearman([], []) is None


def test_spearman_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_clustered_mcnemar_hand_value_and_its_unclustered_limit():
    from scipy.stats import chi2

    from ftrisk.stats import clustered_mcnemar

    # Cluster nets d_k: +2, 0, -1, +3 -> X^2 = (2 + 0 - 1 + 3)^2 / (4 + 0 + 1 + 9) = 16 / 14.
    after = [1, 1, 0, 1, 0, 0, 1, 1, 1, 0]
    before = [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    clusters = ["k1", "k1", "k1", "k2", "k2", "k3", "k4", "k4", "k4", "k4"]
    assert clustered_mcnemar(after, before, clusters) == pytest.approx(chi2.sf(16 / 14, 1))
    assert clustered_mcnemar(after, before, clusters) == pytest.approx(0.2850, abs=1e-4)
    # One pair per cluster: McNemar chi-square without continuity correction, (6-2)^2/(6+2).
    singletons = list(range(len(after)))
    assert clustered_mcnemar(after, before, singletons) == pytest.approx(chi2.sf(16 / 8, 1))
    assert clustered_mcnemar([1, 0], [1, 0], ["a", "b"]) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        clustered_mcnemar([1], [1, 0], ["a"])


def test_paired_difference_adds_the_clustered_p_only_with_clusters():
    from ftrisk.stats import paired_difference

    after, before = [True, True, False, True], [False, False, False, True]
    assert "clustered_p" not in paired_difference(after, before)
    out = paired_difference(after, before, ["a", "a", "b", "b"], n_resamples=200)
    # Both discordant pairs sit in cluster a: one unit of evidence, X^2 = 2^2 / 2^2 = 1.
    assert out["clustered_p"] == pytest.approx(0.3173, abs=1e-4)
    assert out["mcnemar_p"] == pytest.approx(0.5)
