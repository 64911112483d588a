"""The statistics against independent implementations (scipy, statsmodels) on fixed data."""

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from cascbench.report import stats

# Five seeds of two methods, and a few more pairs, fixed.
A = np.array([0.8731, 0.8725, 0.8740, 0.8729, 0.8736])
B = np.array([0.8679, 0.8681, 0.8670, 0.8689, 0.8675])
C = np.array([0.51, 0.47, 0.55, 0.49, 0.52, 0.50, 0.46, 0.53])
D = np.array([0.50, 0.49, 0.51, 0.47, 0.50, 0.52, 0.45, 0.50])


@pytest.mark.parametrize(("a", "b"), [(A, B), (B, A), (C, D), (A[:2], B[:2]), (C[:3], D[:3])])
def test_paired_t_test_matches_scipy(a, b):
    ours = stats.paired_t_test(a, b)
    reference = scipy_stats.ttest_rel(a, b)
    assert ours.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert ours.n == len(a)


def test_t_test_degenerate_cases_say_na_or_are_exact():
    single = stats.paired_t_test(A[:1], B[:1])
    assert np.isnan(single.p_value) and np.isnan(single.statistic) and single.n == 1
    assert np.isnan(stats.paired_t_test(np.array([]), np.array([])).p_value)
    same = stats.paired_t_test(A, A)
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    shifted = stats.paired_t_test(A + 0.01, A)  # a constant difference: no variance
    assert shifted.p_value == 0.0 and shifted.statistic == np.inf


def test_wilcoxon_matches_scipy_and_handles_small_n():
    ours = stats.wilcoxon_test(C, D)
    reference = scipy_stats.wilcoxon(C, D)
    assert ours.p_value == pytest.approx(reference.pvalue)
    assert ours.statistic == pytest.approx(reference.statistic)
    assert np.isnan(stats.wilcoxon_test(C[:1], D[:1]).p_value)
    assert stats.wilcoxon_test(C, C).p_value == 1.0
    # All five differences positive: the exact two-sided p is 2/2^5, the smallest possible.
    assert stats.wilcoxon_test(A, B).p_value == pytest.approx(2 / 32)
    assert stats.smallest_p_value("wilcoxon", 5) == pytest.approx(0.0625)
    assert stats.smallest_p_value("t", 5) == 0.0
    assert np.isnan(stats.smallest_p_value("t", 1))


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.005],
        [0.2, 0.01, 0.5, 0.04, 0.04, 0.9],
        [0.001],
        [0.03, 0.03, 0.03],
    ],
)
def test_holm_matches_statsmodels(p):
    expected = multipletests(p, method="holm")[1]
    np.testing.assert_allclose(stats.holm(np.array(p)), expected, rtol=1e-12)


def test_holm_leaves_untested_hypotheses_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04, 0.02])
    adjusted = stats.holm(p)
    assert np.isnan(adjusted[1])
    np.testing.assert_allclose(
        adjusted[[0, 2, 3]], multipletests([0.01, 0.04, 0.02], method="holm")[1]
    )
    assert np.isnan(stats.holm(np.array([np.nan, np.nan]))).all()


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(3)
    diffs = rng.normal(0.02, 0.1, size=400)
    (low,), (high,) = stats.bootstrap_mean_ci(diffs, resamples=20000, seed=1)
    reference = scipy_stats.bootstrap(
        (diffs,), np.mean, n_resamples=20000, method="percentile", random_state=2
    ).confidence_interval
    # Two Monte Carlo estimates of the same quantiles: equal up to resampling noise, far below
    # the CI's width (about 0.02).
    assert low == pytest.approx(reference.low, abs=1e-3)
    assert high == pytest.approx(reference.high, abs=1e-3)
    # And close to the normal-theory interval of a mean of 400 values.
    half = 1.96 * diffs.std(ddof=1) / np.sqrt(diffs.size)
    assert low == pytest.approx(diffs.mean() - half, abs=2e-3)
    assert high == pytest.approx(diffs.mean() + half, abs=2e-3)


def test_bootstrap_columns_share_resamples_and_skip_missing_values():
    rng = np.random.default_rng(5)
    first = rng.normal(0.0, 1.0, size=600)
    second = rng.normal(0.5, 0.2, size=600)
    second[::3] = np.nan  # a third of the requests have no value in this column
    low, high = stats.bootstrap_mean_ci(np.column_stack([first, second]), resamples=5000, seed=0)
    alone = stats.bootstrap_mean_ci(first, resamples=5000, seed=0)
    # Same draws, same column (up to the summation order of the matrix product).
    np.testing.assert_allclose([low[0], high[0]], [alone[0][0], alone[1][0]], rtol=1e-12)
    kept = second[~np.isnan(second)]
    reference = scipy_stats.bootstrap(
        (kept,), np.mean, n_resamples=5000, method="percentile", random_state=0
    ).confidence_interval
    assert low[1] == pytest.approx(reference.low, abs=4e-3)
    assert high[1] == pytest.approx(reference.high, abs=4e-3)


def test_bootstrap_is_seeded_and_chunking_does_not_change_it():
    diffs = np.random.default_rng(0).normal(size=300)
    once = stats.bootstrap_mean_ci(diffs, resamples=500, seed=4)
    chunked = stats.bootstrap_mean_ci(diffs, resamples=500, seed=4, max_chunk_elements=300 * 7)
    np.testing.assert_array_equal(once, stats.bootstrap_mean_ci(diffs, resamples=500, seed=4))
    # Same draws in the same order whatever the chunk size.
    np.testing.assert_allclose(once, chunked)


def test_bootstrap_degenerate_inputs():
    low, high = stats.bootstrap_mean_ci(np.full(50, 0.25), resamples=100)
    np.testing.assert_allclose([low[0], high[0]], [0.25, 0.25])
    assert np.isnan(stats.bootstrap_mean_ci(np.array([1.0]))).all()
    mostly_missing = np.column_stack([np.arange(5.0), [1.0, np.nan, np.nan, np.nan, np.nan]])
    low, high = stats.bootstrap_mean_ci(mostly_missing, resamples=100)
    assert np.isfinite(low[0]) and np.isnan(low[1]) and np.isnan(high[1])


def test_effect_size_and_win_tie_loss_by_hand():
    diffs = np.array([0.1, 0.1, 0.0, -0.1, 0.1, 1e-12])
    # mean = 0.2/6, std (ddof 1) computed by hand below.
    mean = 0.2 / 6
    sd = np.sqrt(sum((d - mean) ** 2 for d in diffs) / 5)
    assert stats.effect_size(diffs) == pytest.approx(mean / sd)
    assert stats.win_tie_loss(diffs) == (3, 2, 1)
    assert stats.effect_size(np.zeros(4)) == 0.0
    assert np.isnan(stats.effect_size(np.full(4, 0.5)))
    assert np.isnan(stats.effect_size(np.array([0.5])))


def test_t_interval_half_width_matches_scipy():
    std, n = np.array([0.002, 0.01, 0.5]), np.array([5, 3, 2])
    expected = [
        scipy_stats.t.interval(0.95, k - 1, scale=s / np.sqrt(k))[1]
        for s, k in zip(std, n, strict=True)
    ]
    np.testing.assert_allclose(stats.t_interval_half_width(std, n), expected)
    assert np.isnan(stats.t_interval_half_width(np.array([0.1]), np.array([1]))).all()
