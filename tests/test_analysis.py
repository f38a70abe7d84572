"""Analysis helpers against SciPy and against known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy import stats as scipy_stats

from shaped_transformer import analysis as an
from shaped_transformer._result import Result

# ---------------------------------------------------------------------------
# Observables
# ---------------------------------------------------------------------------


def test_correlations_match_result_and_propagate_nan():
    from shaped_transformer._result import correlations as base

    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 4, 6))
    V = A @ np.swapaxes(A, 1, 2) / 6
    np.testing.assert_array_equal(an.correlations(V), base(V))
    V[1] = np.nan  # a blown-up sample: NaN, never a silent 0
    assert np.all(np.isnan(an.correlations(V)[1])) and np.all(np.isfinite(an.correlations(V)[[0, 2]]))


def test_effective_rank_known_cases():
    m = 5
    rng = np.random.default_rng(0)
    v = rng.normal(size=m)
    Vs = np.stack([np.eye(m) * 3.0, np.outer(v, v), np.diag([1.0, 1.0, 0.0, 0.0, 0.0]), np.full((m, m), np.nan)])
    er = an.effective_rank(Vs)
    np.testing.assert_allclose(er[:3], [m, 1.0, 2.0], rtol=1e-12)
    assert np.isnan(er[3])
    # against eigenvalues of a random covariance
    A = rng.normal(size=(m, 2 * m))
    V = A @ A.T
    w = np.linalg.eigvalsh(V)
    assert an.effective_rank(V) == pytest.approx(w.sum() ** 2 / (w**2).sum(), rel=1e-12)


def test_smallest_eigenvalue_and_normalization():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 6, 6))
    V = A @ np.swapaxes(A, 1, 2)
    lam = an.smallest_eigenvalue(V)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(V)[:, 0], rtol=1e-10)
    lamn = an.smallest_eigenvalue(V, normalized=True)
    np.testing.assert_allclose(lamn, lam / (np.trace(V, axis1=1, axis2=2) / 6), rtol=1e-10)
    assert an.smallest_eigenvalue(np.eye(3) * 7, normalized=True) == pytest.approx(1.0)
    bad = V.copy()
    bad[2, 0, 0] = np.nan
    assert np.isnan(an.smallest_eigenvalue(bad)[2]) and np.all(np.isfinite(an.smallest_eigenvalue(bad)[[0, 1, 3]]))


def test_off_diagonal_and_mean_correlation():
    V = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, -0.5], [0.0, -0.5, 1.0]])
    np.testing.assert_allclose(an.off_diagonal(an.correlations(V)), [1.0, 0.0, -0.5])
    assert an.mean_correlation(V) == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="A must have shape"):
        an.off_diagonal(np.zeros(3))


def test_final_pairs_drops_exploded_samples():
    V = np.tile(np.array([[1.0, 0.5], [0.5, 1.0]]), (3, 2, 1, 1))
    V[1, 1] = np.nan
    res = Result(V=V, t=np.array([0.0, 1.0]), exploded_at=np.array([np.inf, 0.5, np.inf]), method="exact")
    fp = an.final_pairs(res)
    assert fp.shape == (2, 1)
    np.testing.assert_allclose(fp, 0.5)
    np.testing.assert_allclose(an.final_pairs(res, 0), np.full((3, 1), 0.5))


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def test_summarize_matches_numpy_and_counts_dropped():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5, 3))
    x[:7, 3:, 1] = np.nan  # 7 samples explode at the 4th saved time
    x[10, 4, 0] = np.inf
    t = np.linspace(0, 1, 5)
    s = an.summarize(x, t=t, levels=(0.1, 0.5, 0.9))
    np.testing.assert_array_equal(s.count, [200, 200, 200, 193, 192])
    np.testing.assert_array_equal(s.dropped, [0, 0, 0, 7, 8])
    for j in range(5):
        keep = np.all(np.isfinite(x[:, j]), axis=1)
        pooled = x[keep, j].ravel()
        assert s.median[j] == pytest.approx(np.median(pooled))
        np.testing.assert_allclose(s.quantiles[:, j], np.quantile(pooled, [0.1, 0.5, 0.9]))
        per = x[keep, j].mean(axis=1)
        assert s.mean[j] == pytest.approx(per.mean())
        assert s.sem[j] == pytest.approx(per.std(ddof=1) / math.sqrt(per.size))
    np.testing.assert_allclose(s.quantile(0.5), s.median)
    d = s.to_dict()
    assert d["count"][3] == 193 and len(d["quantiles"]) == 3 and d["t"][-1] == 1.0
    with pytest.raises(ValueError, match="level 0.3"):
        s.quantile(0.3)


def test_summarize_2d_and_all_exploded():
    x = np.array([[1.0, np.nan], [3.0, np.nan]])
    s = an.summarize(x)
    assert s.median[0] == 2.0 and np.isnan(s.median[1]) and s.dropped[1] == 2
    with pytest.raises(ValueError, match="values must have shape"):
        an.summarize(np.zeros(3))
    with pytest.raises(ValueError, match="t must have shape"):
        an.summarize(np.zeros((2, 3)), t=np.zeros(2))


# ---------------------------------------------------------------------------
# KDE and distances against SciPy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dist", ["normal", "exponential", "beta"])
def test_kde_equals_scipy_gaussian_kde(dist):
    rng = np.random.default_rng(3)
    x = {"normal": rng.normal(size=700), "exponential": rng.exponential(size=700), "beta": rng.beta(2, 5, size=700)}[
        dist
    ]
    g = np.linspace(x.min() - 1, x.max() + 1, 101)
    _, d = an.kde(x, g)
    np.testing.assert_allclose(d, scipy_stats.gaussian_kde(x)(g), rtol=1e-10, atol=1e-14)
    _, d2 = an.kde(x, g, bandwidth="silverman")
    np.testing.assert_allclose(d2, scipy_stats.gaussian_kde(x, bw_method="silverman")(g), rtol=1e-10, atol=1e-14)


def test_binned_kde_is_close_to_exact():
    x = np.random.default_rng(8).normal(size=30000)
    g = np.linspace(-4, 4, 81)
    _, exact = an.kde(x, g, binned=False)
    _, binned = an.kde(x, g)  # auto: binned above 20000 samples
    np.testing.assert_allclose(binned, exact, atol=1e-4 * exact.max())
    np.testing.assert_allclose(exact, scipy_stats.gaussian_kde(x)(g), rtol=1e-9, atol=1e-14)


def test_bounded_kde_keeps_its_mass_inside():
    rng = np.random.default_rng(4)
    x = rng.beta(0.7, 0.7, size=2000) * 2 - 1  # piles up at both ends, like correlations near +-1
    g, d = an.kde(x, 2001, bounds=(-1, 1))
    assert np.trapezoid(d, g) == pytest.approx(1.0, abs=2e-3)
    _, d_unb = an.kde(x, g)
    assert np.trapezoid(d_unb, g) < 0.97  # the unreflected kernel leaks mass out of [-1, 1]
    with pytest.raises(ValueError, match="bounds"):
        an.kde(x, 10, bounds=(1, -1))
    with pytest.raises(ValueError, match="bandwidth"):
        an.kde(x, 10, bandwidth=-1.0)
    with pytest.raises(ValueError, match="samples"):
        an.kde([1.0], 10)


@pytest.mark.parametrize("case", range(5))
def test_ks_and_wasserstein_equal_scipy(case):
    rng = np.random.default_rng(10 + case)
    x, y = [
        (rng.normal(size=500), rng.normal(0.3, 1.2, size=333)),
        (rng.exponential(size=100), rng.exponential(2.0, size=1000)),
        (rng.integers(0, 5, size=300).astype(float), rng.integers(0, 6, size=200).astype(float)),  # ties
        (rng.normal(size=50), rng.normal(size=50)),
        (rng.uniform(size=1), rng.uniform(size=7)),
    ][case]
    assert an.ks_distance(x, y) == pytest.approx(scipy_stats.ks_2samp(x, y).statistic, abs=1e-12)
    assert an.wasserstein_distance(x, y) == pytest.approx(scipy_stats.wasserstein_distance(x, y), rel=1e-10, abs=1e-14)
    d = an.ks(x, y)
    assert float(d) == pytest.approx(an.ks_distance(x, y)) and math.isnan(d.low)


def test_distances_ignore_non_finite_and_validate():
    x = np.array([0.0, 1.0, np.nan, 2.0])
    y = np.array([0.5, np.inf, 1.5])
    assert an.wasserstein_distance(x, y) == pytest.approx(scipy_stats.wasserstein_distance([0, 1, 2], [0.5, 1.5]))
    with pytest.raises(ValueError, match="bootstrap"):
        an.ks(x, y, bootstrap=-1)
    with pytest.raises(ValueError, match="level"):
        an.wasserstein(x, y, bootstrap=10, level=1.5)
    with pytest.raises(ValueError, match="x contains no finite"):
        an.ks([np.nan], y)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=300), rng.normal(0.2, size=300)
    a = an.wasserstein(x, y, bootstrap=200, seed=7)
    b = an.wasserstein(x, y, bootstrap=200, seed=7)
    c = an.wasserstein(x, y, bootstrap=200, seed=8)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low <= a.value <= a.high
    assert set(a.to_dict()) >= {"metric", "value", "low", "high", "level", "bootstrap"}


def test_bootstrap_intervals_cover_the_truth():
    """Coverage of the 90% (basic) bootstrap interval over independent experiments.

    X ~ N(0, 1), Y ~ N(0.5, 1): W1 = 0.5 exactly and KS = 2 Phi(0.25) - 1.
    In 200 such experiments (n = 400) the basic interval covered 85% for both
    distances (the bootstrap is only asymptotically exact).  With 60 experiments
    at a true rate of 0.85 the count is Binomial(60, 0.85): mean 51, sd 2.8; we
    require >= 44 (2.5 sd below).  A broken interval (resampling only x, a wrong
    quantile, or the percentile interval for KS, which covered 70%) fails.
    """
    truth = {"wasserstein1": 0.5, "ks": 2 * scipy_stats.norm.cdf(0.25) - 1}
    rng = np.random.default_rng(6)
    hits = {"wasserstein1": 0, "ks": 0}
    n_exp = 60
    for e in range(n_exp):
        x, y = rng.normal(size=400), rng.normal(0.5, 1.0, size=400)
        d = an.compare(x, y, bootstrap=200, level=0.9, seed=e)
        for k in hits:
            hits[k] += d[k].low <= truth[k] <= d[k].high
    assert hits["wasserstein1"] >= 44, hits
    assert hits["ks"] >= 44, hits


def test_cluster_bootstrap_widens_for_dependent_rows():
    """With k identical values per row the effective sample size is the number of
    rows: resampling rows must give a wider interval than treating the values as
    independent (about sqrt(k) = 3 times wider here)."""
    rng = np.random.default_rng(7)
    base_x, base_y = rng.normal(size=300), rng.normal(0.3, size=300)
    X, Y = np.repeat(base_x[:, None], 9, axis=1), np.repeat(base_y[:, None], 9, axis=1)
    rows = an.wasserstein(X, Y, bootstrap=300, seed=1)
    flat = an.wasserstein(X.ravel(), Y.ravel(), bootstrap=300, seed=1)
    assert rows.value == pytest.approx(flat.value)
    assert (rows.high - rows.low) > 2.0 * (flat.high - flat.low)


def test_hand_written_bootstrap_agrees_with_scipy_on_independent_values():
    """On 1-d input the cluster bootstrap of `wasserstein` is the ordinary bootstrap:
    its basic interval agrees with scipy.stats.bootstrap's up to Monte Carlo error
    (both with 4000 replicates; the interval ends' Monte Carlo error is ~0.003)."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(0.0, 1.0, 400), rng.normal(0.3, 1.0, 500)
    mine = an.wasserstein(x, y, bootstrap=4000, seed=1)
    ref = stats.bootstrap(
        (x, y),
        lambda a, b: stats.wasserstein_distance(a, b),
        n_resamples=4000,
        method="basic",
        vectorized=False,
        random_state=np.random.default_rng(2),
    )
    assert mine.value == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)
    assert mine.low == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert mine.high == pytest.approx(ref.confidence_interval.high, abs=0.02)


def test_newcombe_interval_known_answer():
    """Newcombe (1998), Table II, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339."""
    iv = an.newcombe_interval(56, 70, 48, 80, level=0.95)
    assert iv.value == pytest.approx(0.2)
    assert iv.low == pytest.approx(0.0524, abs=5e-5) and iv.high == pytest.approx(0.3339, abs=5e-5)
    # it covers the truth at its level: 2000 experiments with p1 = p2 = 0.01 (rare events)
    rng = np.random.default_rng(0)
    k1, k2 = rng.binomial(600, 0.01, 2000), rng.binomial(4000, 0.01, 2000)
    cover = np.mean([not an.newcombe_interval(a, 600, b, 4000).excludes(0.0) for a, b in zip(k1, k2)])
    assert cover > 0.93  # nominal 0.95; a 1-sigma binomial error is 0.005


def test_mean_and_quantile_differences_and_slope():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.2, 1.0, 3000), rng.normal(0.0, 1.0, 3000)
    d = an.mean_difference(x, np.append(y, np.nan))
    assert d.low < 0.2 < d.high and d.excludes(0.0)
    ref = stats.ttest_ind(x, y, equal_var=False).confidence_interval()
    assert (d.low, d.high) == pytest.approx((ref.low, ref.high))
    q = an.quantile_difference(x, y, 0.9, seed=1)
    assert q.value == pytest.approx(np.quantile(x, 0.9) - np.quantile(y, 0.9)) and q.low < 0.2 < q.high
    w = np.array([32, 64, 128, 256, 512])
    s = an.loglog_slope(w, 3.0 * w**-0.5 * np.exp(rng.normal(0, 0.05, 5)))
    assert s.low < -0.5 < s.high and s.high < 0
    assert an.loglog_slope(w[:2], [1.0, 0.5]) is None


def test_blowup_probability_and_sample_observables():
    V = np.tile(np.eye(3), (4, 2, 1, 1))
    V[1, 1] = np.nan
    res = Result(V=V, t=np.array([0.0, 1.0]), exploded_at=np.array([np.inf, 0.5, np.inf, np.inf]), method="exact")
    k, n, p = an.blowup_probability(res)
    assert (k, n) == (1, 4) and p.value == 0.25 and p.low < 0.25 < p.high
    assert an.blowup_probability(res, t=0.4)[0] == 0
    obs = an.sample_observables(res)
    assert set(obs) == set(an.OBSERVABLES)
    assert np.isnan(obs["log_trace"][1]) and obs["effective_rank"][0] == pytest.approx(3.0)
    assert obs["log_max_diag"][0] == pytest.approx(0.0) and obs["mean_rho"][2] == pytest.approx(0.0)


def test_mean_correlation_in_blocks_is_the_whole_stack_formula():
    """mean_correlation works through a large stack in blocks of samples (for speed):
    the result equals the formula on the whole stack bit for bit, NaN samples stay
    NaN, the leading shape is kept, and m = 1 gives NaN."""
    from shaped_transformer import analysis

    rng = np.random.default_rng(3)
    for m in (2, 9, 130):  # 130: blocks of 7 samples, a partial one at the end
        G = rng.standard_normal((40, m, m + 3))
        V = G @ G.transpose(0, 2, 1)
        V[4] = np.nan
        whole = analysis.off_diagonal(analysis.correlations(V)).mean(axis=-1)
        got = analysis.mean_correlation(V)
        assert np.array_equal(got, whole, equal_nan=True) and np.isnan(got[4])
        assert analysis.mean_correlation(V.reshape(4, 10, m, m)).shape == (4, 10)
    assert np.isnan(analysis.mean_correlation(np.ones((3, 1, 1)))).all()
    with pytest.raises(ValueError, match="V must have shape"):
        analysis.mean_correlation(np.ones((3, 2, 4)))
