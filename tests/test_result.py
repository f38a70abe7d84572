"""The Result type: correlations and the handling of blown-up samples."""

import numpy as np

from shaped_transformer import Result, correlations


def _result_with_blowup() -> Result:
    V = np.zeros((3, 2, 2, 2))
    V[:] = np.array([[1.0, 0.5], [0.5, 1.0]])
    V[1, 1] = np.nan  # sample 1 blew up before the last save
    return Result(V=V, t=np.array([0.0, 1.0]), exploded_at=np.array([np.inf, 0.5, np.inf]), method="exact")


def test_correlations_keep_nan_of_blown_up_samples():
    rho = correlations(_result_with_blowup().V)
    assert np.all(np.isnan(rho[1, 1]))
    np.testing.assert_allclose(rho[0, 1], [[1.0, 0.5], [0.5, 1.0]])


def test_correlations_of_zero_variance_token_are_zero_not_nan():
    V = np.array([[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(correlations(V), [[1.0, 0.0], [0.0, 1.0]])


def test_rho_pairs_drop_blown_up_samples_and_finite_keeps_the_rest():
    res = _result_with_blowup()
    np.testing.assert_allclose(res.rho_pairs(-1), [0.5, 0.5])
    np.testing.assert_allclose(res.rho_pairs(0), [0.5, 0.5, 0.5])
    kept = res.finite()
    assert kept.samples == 2 and not kept.exploded.any()
    assert list(res.exploded) == [False, True, False]


def test_rho_pairs_equals_the_correlations_of_that_time_only():
    rng = np.random.default_rng(0)
    G = rng.normal(size=(5, 3, 4, 6))
    V = G @ np.swapaxes(G, -1, -2) / 6
    res = Result(V=V, t=np.arange(3.0), exploded_at=np.full(5, np.inf), method="exact")
    a, b = np.triu_indices(4, k=1)
    for i in (0, 1, -1):
        assert np.array_equal(res.rho_pairs(i), res.rho[:, i][:, a, b].ravel())
