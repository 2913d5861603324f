"""Warmup phases and the adaptation functions."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_dilation.adaptation import (
    MIN_ADAPT_STEPS,
    MIN_ANNEAL_STEPS,
    MIN_DRAWS_PER_DIM,
    MIN_TERMINAL_BUFFER,
    POOLED_ACCEPT_FLOOR,
    adaptation_windows,
    initial_curvature,
    pooled_acceptance,
    short_warmup_message,
    update_curvature,
    warmup_phases,
    window_adapter,
)
from numpyro_dilation.metric import (
    gradient_informed_covariance,
    make_metric,
    mass_matrix_sqrt,
    metric_norm_sq,
    regularize_covariance,
    whitening_of,
)


def test_default_split_is_half_the_warmup():
    assert warmup_phases(1000, None) == (500, 500)
    assert warmup_phases(21, None) == (10, 11)
    assert warmup_phases(300, 120) == (120, 180)
    assert warmup_phases(50, 50) == (50, 0)


def test_any_warmup_is_split_and_long_annealing_is_cut_to_it():
    # NumPyro's kernels accept any num_warmup >= 0
    assert warmup_phases(0, None) == (0, 0)
    assert warmup_phases(1, None) == (0, 1)
    assert warmup_phases(10, None) == (5, 5)
    assert warmup_phases(100, 500) == (100, 0)


@pytest.mark.parametrize(
    "num_warmup,num_anneal,adapting,needed",
    [
        (0, None, True, 2 * MIN_ANNEAL_STEPS),
        (19, None, True, 2 * MIN_ANNEAL_STEPS),
        (100, 95, True, 95 + MIN_ADAPT_STEPS),
        (40, 50, False, 50),
    ],
)
def test_too_short_warmup_says_how_many_iterations_are_needed(
    num_warmup, num_anneal, adapting, needed
):
    message = short_warmup_message(num_warmup, num_anneal, adapting)
    assert re.search(f"num_warmup={num_warmup}.*num_warmup >= {needed}", message)


def test_zero_warmup_points_to_post_warmup_state():
    assert "post_warmup_state" in short_warmup_message(0, None, True)
    # no warmup and nothing to adapt is a deliberate choice: nothing to report
    assert short_warmup_message(0, None, False) is None
    assert short_warmup_message(1000, None, True) is None


def test_windows_restart_after_the_annealing():
    ends, estimates = adaptation_windows(500, 1000)
    assert ends[-1] == 999
    assert 499 in ends  # the annealing's last window closes with it
    # Stan's buffers: first and last window of each half do not estimate
    first_after = list(ends).index(499) + 1
    assert not estimates[0] and not estimates[first_after - 1]
    assert not estimates[first_after] and not estimates[-1]
    assert estimates[1 : first_after - 1].all() and estimates[first_after + 1 : -1].all()


@pytest.mark.parametrize("num_warmup", [40, 50, 80, 100, 200, 299, 300, 1000])
def test_short_warmups_end_with_step_size_adaptation_alone(num_warmup):
    num_anneal, _ = warmup_phases(num_warmup, None)
    ends, estimates = adaptation_windows(num_anneal, num_warmup)
    last_estimate = ends[:-1][estimates[:-1]]
    if num_warmup - num_anneal >= 2 * MIN_TERMINAL_BUFFER + 6:
        # the stationary phase estimates its own metric ...
        assert last_estimate.size and last_estimate[-1] >= num_anneal
    # ... and leaves dual averaging at least 20 iterations after it
    if last_estimate.size:
        assert num_warmup - 1 - last_estimate[-1] >= MIN_TERMINAL_BUFFER


def test_fifty_warmup_iterations_leave_a_step_size_that_accepts():
    """A 2000-observation posterior after 50 warmup iterations (NumPyro's quick checks).

    With Stan's 10% final buffer (2 iterations) dual averaging ended on an
    overshoot (step 5.8 in the whitened metric) and every draw was rejected.
    """
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC

    from numpyro_dilation import DilationLangevin

    def model(data):
        mean = numpyro.sample("mean", dist.Normal(0, 1).mask(False))
        std = numpyro.sample("std", dist.LogNormal(0, 1).mask(False))
        numpyro.sample("obs", dist.Normal(mean, std), obs=data)

    data = 1.0 + 2.0 * jax.random.normal(jax.random.PRNGKey(1), (2000,))
    mcmc = MCMC(DilationLangevin(model), num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), data, extra_fields=("accept_prob",))
    assert mcmc.get_extra_fields()["accept_prob"].mean() > 0.5
    assert np.unique(np.asarray(mcmc.get_samples()["mean"])).size > 25


def test_initial_curvature_reads_the_stiff_direction_raises_10x_and_never_lowers():
    scales = jnp.array([1e-2, 1.0, 10.0])
    pag = jax.value_and_grad(lambda x: 0.5 * jnp.sum((x / scales) ** 2))
    y = jnp.array([1.0, 1.0, 1.0])
    _, grad = pag(y)
    metric = make_metric(jnp.ones(3))
    # far out, the gradient points along the stiffest axis: curvature 1e4
    got = float(initial_curvature(pag, y, grad, metric, jnp.array(1e3)))
    np.testing.assert_allclose(got, 1e4, rtol=1e-2)
    # raised by at most 10x, as one annealing secant would
    assert float(initial_curvature(pag, y, grad, metric, jnp.array(1.0))) == 10.0
    # an estimate already above the secant stays; a zero gradient probes nothing
    assert float(initial_curvature(pag, y, grad, metric, jnp.array(1e6))) == 1e6
    zero = jnp.zeros(3)
    assert float(initial_curvature(pag, zero, pag(zero)[1], metric, jnp.array(2.0))) == 2.0


def test_initial_curvature_on_a_crest_between_heavy_tailed_modes_follows_the_units():
    # Two Student-t modes (df 3) at +-8 along x: near the origin between them the
    # potential has a crest (negative curvature along the gradient).  Its curvature
    # still sizes the first step, in the posterior's units: scaled by 0.01 the
    # estimate is 1e4 times the unscaled one.  Taken as a positive secant would be
    # (capped at 10x the start's 1 / step_size) it stayed at 1 and the first steps
    # threw chains thousands of scales out.
    d, df = 4, 3.0

    def probe(factor, start):
        mean = jnp.zeros(d).at[0].set(8.0) * factor

        def potential(x):
            def log_t(m, w):
                r2 = jnp.sum(((x - m) / factor) ** 2)
                return jnp.log(w) - 0.5 * (df + d) * jnp.log1p(r2 / df)

            return -jnp.logaddexp(log_t(mean, 0.4), log_t(-mean, 0.6))

        pag = jax.value_and_grad(potential)
        y = jnp.zeros(d).at[1].set(0.5 * factor)
        _, grad = pag(y)
        direction = grad / jnp.linalg.norm(grad)
        h = 1e-3 * factor
        signed = float(jnp.dot(pag(y - h * direction)[1] - grad, -direction) / h)
        got = float(initial_curvature(pag, y, grad, make_metric(jnp.ones(d)), jnp.array(start)))
        return signed, got

    signed, unscaled = probe(1.0, 1e-8)
    assert signed < 0
    np.testing.assert_allclose(unscaled, abs(signed), rtol=0.05)
    _, scaled = probe(1e-2, 1e-8)
    np.testing.assert_allclose(scaled, 1e4 * unscaled, rtol=0.05)
    # from the default start (1 / step_size = 1) the scaled crest still gets its own curvature
    _, from_default = probe(1e-2, 1.0)
    np.testing.assert_allclose(from_default, scaled, rtol=1e-6)


def random_gaussian(d, key, condition=1e4):
    q, _ = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    eig = jnp.logspace(0, jnp.log10(condition), d)
    return (q * eig) @ q.T


@pytest.mark.parametrize("d", [2, 5])
def test_gradient_informed_estimate_is_exact_for_gaussians_from_any_positions(d):
    """Positions that barely explore (a drifting, tiny cloud) still give the exact covariance."""
    jax.config.update("jax_enable_x64", True)
    try:
        cov = random_gaussian(d, jax.random.PRNGKey(d)).astype(jnp.float64)
        mean = jnp.arange(d, dtype=jnp.float64)
        positions = (
            mean + 50.0 + 1e-3 * jax.random.normal(jax.random.PRNGKey(1), (40, d), jnp.float64)
        )
        grads = (positions - mean) @ jnp.linalg.inv(cov)
        estimate = gradient_informed_covariance(jnp.cov(positions.T), jnp.cov(grads.T))
        np.testing.assert_allclose(estimate, cov, rtol=1e-6)
        diag_cov = jnp.diag(jnp.diag(cov))
        grads = (positions - mean) @ jnp.linalg.inv(diag_cov)
        diag = gradient_informed_covariance(jnp.var(positions, 0), jnp.var(grads, 0))
        np.testing.assert_allclose(diag, jnp.diag(cov), rtol=1e-6)
    finally:
        jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("x64", [False, True])
def test_regularization_shrinks_log_eigenvalues_by_stans_weight(x64):
    jax.config.update("jax_enable_x64", x64)
    try:
        n = 500
        weight = 5.0 / (n + 5.0)
        # a correlation matrix (unit diagonal): its log eigenvalues are shrunk
        eig = np.array([0.05, 0.95, 2.0])
        q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
        corr = (q * eig) @ q.T
        sd = np.sqrt(np.diag(corr))
        corr = corr / np.outer(sd, sd)
        eig = np.linalg.eigvalsh(corr)
        expected = (1 - weight) * np.log(eig) + weight * np.log(eig).mean()
        got = np.asarray(regularize_covariance(jnp.asarray(corr), n), dtype=np.float64)
        np.testing.assert_allclose(np.log(np.linalg.eigvalsh(got)), expected, atol=0.02)
        # variances spanning 1e8 (beyond float32 eigh): only the correlations are
        # shrunk, so an uncorrelated one keeps its variances (not floored at eps * max)
        # (float64 resolves them: there its eigenvalues, the variances, are shrunk)
        var = np.array([1e-4, 1.0, 1e4])
        expected = (1 - weight) * np.log(var) + weight * np.log(var).mean()
        dense = np.diag(np.asarray(regularize_covariance(jnp.diag(jnp.asarray(var)), n)))
        np.testing.assert_allclose(np.log(dense), expected if x64 else np.log(var), atol=1e-3)
        # a diagonal (1-D) one has its log variances shrunk
        diag = regularize_covariance(jnp.asarray(var), n)
        np.testing.assert_allclose(np.log(np.asarray(diag)), expected, atol=1e-3)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_gradient_informed_estimate_resolves_scales_beyond_float32_eigh():
    """Scales 1e-2 ... 1e2 with correlations (variances over 1e8): still exact in float32."""
    d = 6
    sd = np.logspace(-2, 2, d)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(d, d)))
    corr = (q * np.linspace(0.3, 2.0, d)) @ q.T
    corr = corr / np.sqrt(np.outer(np.diag(corr), np.diag(corr)))
    cov = corr * np.outer(sd, sd)
    ys = np.random.default_rng(2).multivariate_normal(np.zeros(d), cov, size=400)
    gs = ys @ np.linalg.inv(cov)
    est = gradient_informed_covariance(
        jnp.asarray(np.cov(ys.T), jnp.float32), jnp.asarray(np.cov(gs.T), jnp.float32)
    )
    est = np.asarray(est, dtype=np.float64)
    np.testing.assert_allclose(np.sqrt(np.diag(est)) / sd, 1.0, rtol=0.02)
    est_corr = est / np.sqrt(np.outer(np.diag(est), np.diag(est)))
    np.testing.assert_allclose(est_corr, corr, atol=0.02)


@pytest.mark.parametrize("dense", [False, True])
def test_adapter_learns_the_covariance_in_its_windows(dense):
    d = 3
    cov = random_gaussian(d, jax.random.PRNGKey(3), condition=1e3)
    if not dense:
        cov = jnp.diag(jnp.diag(cov))
    adapter = window_adapter(100, 300, dense_mass=dense, regularize_mass_matrix=False)
    state = adapter.init(d, 0.1, None, jnp.float32)
    prec = jnp.linalg.inv(cov)
    key = jax.random.PRNGKey(0)
    ends = []
    for i in range(300):
        key, sub = jax.random.split(key)
        y = jax.random.multivariate_normal(sub, jnp.zeros(d), cov)
        state = adapter.update(i, 0.6, y, prec @ y, state, i >= 100)
        if adapter.is_window_end(i):
            ends.append(i)
            state = adapter.end_window(state)
    assert ends and max(ends) < 300 - 1
    P = state.inverse_mass_matrix if dense else jnp.diag(state.inverse_mass_matrix)
    np.testing.assert_allclose(np.diag(P), np.diag(cov), rtol=2e-3)
    L = mass_matrix_sqrt(state.inverse_mass_matrix)
    recon = L @ L.T if dense else L**2
    np.testing.assert_allclose(recon, state.inverse_mass_matrix, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("num_draws, dense_expected", [(150, False), (400, True)])
def test_dense_window_needs_enough_draws_per_dimension(num_draws, dense_expected):
    """d = 100, correlated draws: too few of them give a diagonal estimate, not a broken dense one."""
    d = 100
    cov = random_gaussian(d, jax.random.PRNGKey(5), condition=10.0)
    adapter = window_adapter(10, 10, dense_mass=True, regularize_mass_matrix=False)
    state = adapter.init(d, 0.1, None, jnp.float32)
    ys = jax.random.multivariate_normal(jax.random.PRNGKey(6), jnp.zeros(d), cov, (num_draws,))
    prec = jnp.linalg.inv(cov)
    for y in ys:  # accumulate one window by hand
        state = state._replace(
            position_state=_welford(y, state.position_state),
            gradient_state=_welford(prec @ y, state.gradient_state),
        )
    P = np.asarray(adapter.end_window(state).inverse_mass_matrix)
    off_diagonal = P - np.diag(np.diag(P))
    assert (num_draws > MIN_DRAWS_PER_DIM * d + 10) == dense_expected
    if dense_expected:  # the gradient-informed estimate is exact for a Gaussian
        np.testing.assert_allclose(P, cov, rtol=0.05, atol=0.05 * float(jnp.max(jnp.diag(cov))))
    else:
        assert np.all(off_diagonal == 0)
        assert np.all(np.isfinite(P)) and np.all(np.diag(P) > 0)


def _welford(x, state):
    from numpyro.infer.hmc_util import welford_covariance

    _, update, _ = welford_covariance(diagonal=False)
    return update(x, state)


def test_dual_averaging_only_runs_when_told():
    adapter = window_adapter(20, 40)
    state = adapter.init(2, 0.5, None, jnp.float32)
    frozen = adapter.update(3, 0.0, jnp.zeros(2), jnp.zeros(2), state, False)
    assert float(frozen.step_size) == pytest.approx(0.5)
    moved = state
    for i in range(20):  # every proposal rejected: the step size must come down
        moved = adapter.update(i, 0.0, jnp.zeros(2), jnp.zeros(2), moved, True)
    assert float(moved.step_size) < 0.5


def test_curvature_tracks_secants_and_divergences():
    y, y_new = jnp.zeros(2), jnp.array([0.1, 0.0])
    grad, grad_new = jnp.zeros(2), jnp.array([5.0, 0.0])  # curvature 50 along the move
    up = update_curvature(jnp.array(10.0), y, grad, y_new, grad_new, jnp.ones(2), False)
    assert float(up) == pytest.approx(50.0, rel=1e-5)
    capped = update_curvature(jnp.array(1.0), y, grad, y_new, grad_new, jnp.ones(2), False)
    assert float(capped) == pytest.approx(10.0, rel=1e-5)  # at most 10x a step
    down = update_curvature(jnp.array(500.0), y, grad, y_new, grad_new, jnp.ones(2), False)
    assert 50.0 < float(down) < 500.0  # decreases slowly
    diverged = update_curvature(jnp.array(10.0), y, grad, y_new, grad_new, jnp.ones(2), True)
    assert float(diverged) == pytest.approx(40.0)
    # a move too small to resolve leaves the estimate alone
    tiny = update_curvature(jnp.array(10.0), y, grad, y, grad, jnp.ones(2), False)
    assert float(tiny) == pytest.approx(10.0)


@pytest.mark.parametrize("dense", [False, True])
def test_metric_norm_is_the_inverse_metric_quadratic_form(dense):
    P = random_gaussian(4, jax.random.PRNGKey(7), condition=1e2)
    P = P if dense else jnp.diag(P)
    v = jnp.array([1.0, -2.0, 0.5, 3.0])
    exact = v @ jnp.linalg.solve(P if dense else jnp.diag(P), v)
    got = metric_norm_sq(whitening_of(mass_matrix_sqrt(P)), v)
    np.testing.assert_allclose(float(got), float(exact), rtol=1e-4)


def test_pooled_acceptance_is_the_floored_geometric_mean():
    """Chains that reject weigh more than in the mean, a divergent one counts at the floor."""
    np.testing.assert_allclose(float(pooled_acceptance(jnp.full(8, 0.8))), 0.8, rtol=1e-6)
    probs = jnp.asarray([1.0, 1.0, 1.0, 0.2])
    np.testing.assert_allclose(float(pooled_acceptance(probs)), 0.2**0.25, rtol=1e-6)
    assert float(pooled_acceptance(probs)) < float(jnp.mean(probs))
    # a divergent chain (acceptance 0) pulls the pool down, but finitely
    with_divergent = jnp.asarray([0.9, 0.9, 0.9, 0.0])
    expected = (0.9**3 * POOLED_ACCEPT_FLOOR) ** 0.25
    np.testing.assert_allclose(float(pooled_acceptance(with_divergent)), expected, rtol=1e-6)
    assert float(pooled_acceptance(jnp.zeros(4))) == pytest.approx(POOLED_ACCEPT_FLOOR)
