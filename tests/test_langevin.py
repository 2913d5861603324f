"""The Langevin core: proposal law, MH ratio, divergence handling, invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import multivariate_normal

from numpyro_dilation.langevin import langevin_move, langevin_proposal, mala_log_accept_ratio
from numpyro_dilation.metric import make_metric, precondition

from .conftest import assert_mean_close, assert_sd_close


def gaussian_potential(mean, cov):
    prec = jnp.linalg.inv(cov)
    return lambda y: 0.5 * (y - mean) @ prec @ (y - mean)


def brute_force_log_ratio(U, y, y_new, h, P):
    """log p(y') q(y|y') - log p(y) q(y'|y) with the Gaussian proposal densities written out."""
    g, g_new = jax.grad(U)(y), jax.grad(U)(y_new)
    P = jnp.diag(P) if P.ndim == 1 else P
    q_fwd = multivariate_normal.logpdf(y_new, y - h * P @ g, 2 * h * P)
    q_rev = multivariate_normal.logpdf(y, y_new - h * P @ g_new, 2 * h * P)
    return -U(y_new) + q_rev + U(y) - q_fwd


@pytest.mark.parametrize("dense", [False, True])
def test_log_accept_ratio_matches_proposal_densities(dense):
    jax.config.update("jax_enable_x64", True)
    try:
        key = jax.random.PRNGKey(1)
        A = jax.random.normal(key, (4, 4), dtype=jnp.float64)
        cov = A @ A.T + jnp.eye(4)
        U = lambda y: gaussian_potential(jnp.arange(4.0), cov)(y) + 0.1 * jnp.sum(y**4)  # noqa: E731
        P = cov if dense else jnp.diag(cov)
        y = jnp.array([0.3, -1.0, 2.0, 0.5])
        y_new = y + jnp.array([0.2, 0.1, -0.3, 0.4])
        h = 0.17
        ours = mala_log_accept_ratio(y, U(y), jax.grad(U)(y), y_new, U(y_new), jax.grad(U)(y_new), h, P)
        np.testing.assert_allclose(ours, brute_force_log_ratio(U, y, y_new, h, P), rtol=1e-8)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("dense", [False, True])
def test_proposal_has_preconditioned_langevin_law(dense):
    cov = jnp.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    P = cov if dense else jnp.diag(cov)
    metric = make_metric(P)
    y, g, h = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.5, 1.0, -1.0]), 0.3
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    draws = jax.vmap(lambda k: langevin_proposal(k, y, g, h, metric))(keys)
    np.testing.assert_allclose(draws.mean(0), y - h * precondition(P, g), atol=0.03)
    expected_cov = 2 * h * (P if dense else jnp.diag(P))
    np.testing.assert_allclose(np.cov(np.asarray(draws).T), expected_cov, atol=0.03)


def test_nonfinite_proposal_is_rejected_and_divergent():
    # potential is +inf outside the unit ball: large steps land there
    U = lambda y: jnp.where(jnp.sum(y**2) < 1.0, 0.5 * jnp.sum(y**2), jnp.inf)  # noqa: E731
    pag = jax.value_and_grad(U)
    y = jnp.array([0.1, 0.1])
    pe, g = pag(y)
    for adjusted in (True, False):
        move = langevin_move(
            jax.random.PRNGKey(3), y, pe, g, pag, 50.0, make_metric(jnp.ones(2)), adjusted=adjusted
        )
        assert bool(move.diverging)
        assert float(move.accept_prob) == 0.0
        np.testing.assert_array_equal(move.y, y)
        assert np.isfinite(move.potential_energy)


def test_overflowing_ratio_is_a_divergence_not_a_move():
    # steep far-away region: the kinetic terms of the ratio overflow float32
    U = lambda y: jnp.exp(jnp.clip(y[0], -50, 80)) + 0.5 * y[1] ** 2  # noqa: E731
    pag = jax.value_and_grad(U)
    y = jnp.array([0.0, 0.0])
    pe, g = pag(y)
    far = lambda key, y, g, h, metric: jnp.array([70.0, 0.0])  # noqa: E731
    import numpyro_dilation.langevin as lang

    original = lang.langevin_proposal
    lang.langevin_proposal = far
    try:
        move = lang.langevin_move(
            jax.random.PRNGKey(0), y, pe, g, pag, 1.0, make_metric(jnp.ones(2))
        )
    finally:
        lang.langevin_proposal = original
    assert bool(move.diverging)
    np.testing.assert_array_equal(move.y, y)


@pytest.mark.parametrize("dense", [False, True])
def test_mala_leaves_gaussian_invariant(dense):
    """Many MALA steps with a large fixed step: exact moments (no step-size bias)."""
    mean = jnp.array([1.0, -2.0])
    cov = jnp.array([[1.0, 0.8], [0.8, 2.0]])
    U = gaussian_potential(mean, cov)
    pag = jax.value_and_grad(U)
    P = jnp.diag(jnp.array([0.5, 3.0])) if dense else jnp.array([0.5, 3.0])
    metric = make_metric(P)
    h = 0.9  # far too large for unadjusted Langevin to be accurate

    def step(carry, key):
        y, pe, g = carry
        move = langevin_move(key, y, pe, g, pag, h, metric)
        return (move.y, move.potential_energy, move.grad), move.y

    def chain(key):
        key0, key_run = jax.random.split(key)
        y0 = mean + jax.random.normal(key0, (2,)) * jnp.sqrt(jnp.diag(cov))
        _, ys = jax.lax.scan(step, (y0, *pag(y0)), jax.random.split(key_run, 4000))
        return ys[500:]

    draws = jax.vmap(chain)(jax.random.split(jax.random.PRNGKey(7), 8))
    assert_mean_close(draws, mean, jnp.sqrt(jnp.diag(cov)))
    assert_sd_close(draws, jnp.sqrt(jnp.diag(cov)))
    corr = np.corrcoef(np.asarray(draws).reshape(-1, 2).T)[0, 1]
    assert abs(corr - 0.8 / np.sqrt(2.0)) < 0.05
