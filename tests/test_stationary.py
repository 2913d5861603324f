"""The stationary kernels after the annealing: HMC (default), MALA and NUTS.

Exactness is checked against Gaussians with known moments and a conjugate
model; tolerances are Monte Carlo errors from the effective sample size (4.5
standard errors), never numbers picked to pass.  The pooled adaptation of
vectorised chains is checked against the covariance it should estimate.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin
from numpyro_dilation.metric import make_metric
from numpyro_dilation.trajectory import (
    MAX_NUM_STEPS,
    UTURN_CAP,
    chees_gradient,
    final_length,
    halton,
    hmc_move,
    init_trajectory,
    mean_uturn_time,
    num_leapfrog_steps,
    update_trajectory,
    update_uturns,
    uturn_observation,
)

from .conftest import assert_mean_close, assert_sd_close, run_mcmc

# A correlated 3-D Gaussian with scales 0.1 to 10.
SCALES = np.array([0.1, 1.0, 10.0])
ROTATION = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
COV = (ROTATION * SCALES**2) @ ROTATION.T
WHITEN = jnp.asarray(ROTATION / SCALES)  # |x @ WHITEN|^2 = x^T COV^-1 x
MEAN = np.array([1.0, -2.0, 3.0])


def gaussian_potential(x):
    return 0.5 * jnp.sum(((x - MEAN) @ WHITEN) ** 2)


def run(kernel, num_chains=4, chain_method="vectorized", seed=0, num_samples=2000):
    return run_mcmc(
        kernel,
        num_warmup=500,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        seed=seed,
        init_params=jnp.zeros((num_chains, 3)),
        extra_fields=("num_steps", "accept_prob", "num_grad_evals"),
    )


def assert_gaussian_moments(draws):
    """Means, sds, and the variances of sums and differences (the covariances)."""
    sds = np.sqrt(np.diag(COV))
    assert_mean_close(draws, MEAN, sds)
    assert_sd_close(draws, sds)
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        for sign in (1.0, -1.0):
            combined = draws[..., i] + sign * draws[..., j]
            sd = np.sqrt(COV[i, i] + COV[j, j] + 2 * sign * COV[i, j])
            assert_sd_close(combined, sd)


# lone chains (NumPyro's default on one device) in the default run; vectorised chains'
# exactness is checked there on the conjugate models (test_exactness)
@pytest.mark.parametrize(
    "chain_method", [pytest.param("vectorized", marks=pytest.mark.integration), "sequential"]
)
def test_hmc_is_exact_on_a_correlated_gaussian(chain_method):
    # NumPyro compiles the loop once per sequential chain: two lone chains, twice the
    # draws each, for the same number of draws as four vectorised chains
    lone = chain_method == "sequential"
    mcmc = run(
        DilationLangevin(potential_fn=gaussian_potential),
        num_chains=2 if lone else 4,
        num_samples=4000 if lone else 2000,
        chain_method=chain_method,
    )
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_gaussian_moments(draws)
    fields = mcmc.get_extra_fields()
    # multi-step: ChEES's jittered length (about 1.5 whitened units here, a step near
    # 0.9) takes one or two leapfrog steps
    assert fields["num_steps"].mean() > 1.2
    assert fields["num_steps"].max() >= 2
    assert 0.5 < fields["accept_prob"].mean() < 0.99


# the integration tier: MALA's invariance is checked in the default run on its own
# (test_langevin), and the option is not the default
@pytest.mark.integration
def test_mala_option_is_exact_on_a_correlated_gaussian():
    mcmc = run(DilationLangevin(potential_fn=gaussian_potential, stationary="mala"))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_gaussian_moments(draws)
    np.testing.assert_array_equal(mcmc.get_extra_fields()["num_steps"], 1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 9))
def test_hmc_is_exact_on_a_correlated_gaussian_many_seeds(seed):
    mcmc = run(DilationLangevin(potential_fn=gaussian_potential), seed=seed)
    assert_gaussian_moments(np.asarray(mcmc.get_samples(group_by_chain=True)))


@pytest.mark.parametrize(
    "chain_method", ["vectorized", pytest.param("sequential", marks=pytest.mark.integration)]
)
def test_nuts_option_on_a_conjugate_model(chain_method):
    y = np.random.default_rng(1).normal(2.0, 3.0, size=15)

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(-1.0, 4.0))
        numpyro.sample("y", dist.Normal(mu, 3.0), obs=y)

    precision = 1 / 16 + len(y) / 9
    mean = (-1.0 / 16 + y.sum() / 9) / precision
    mcmc = MCMC(
        DilationLangevin(model, stationary="nuts"),
        num_warmup=500,
        num_samples=2000,
        num_chains=4,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), jnp.asarray(y), extra_fields=("t", "num_steps"))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"])
    assert_mean_close(draws, mean, precision**-0.5)
    assert_sd_close(draws, precision**-0.5)
    fields = mcmc.get_extra_fields()
    np.testing.assert_array_equal(fields["t"], 1.0)
    assert np.all(fields["num_steps"] >= 1)
    # NUTS's own state rides along, and it took over after the annealing
    assert mcmc.last_state.nuts is not None
    assert int(np.max(mcmc.last_state.nuts.i)) == 500 - 250 + 2000


def test_pooled_adaptation_estimates_the_covariance_and_shares_it():
    mcmc = MCMC(
        DilationLangevin(potential_fn=gaussian_potential),
        num_warmup=1000,
        num_samples=1,
        num_chains=8,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((8, 3)))
    adapt = mcmc.last_state.adapt_state
    # every chain holds the same step size, metric and trajectory length
    for leaf in (adapt.step_size, adapt.inverse_mass_matrix, adapt.trajectory.length):
        np.testing.assert_array_equal(leaf, jnp.broadcast_to(leaf[0], leaf.shape))
    # the metric is the posterior covariance: whitened by it, COV is the identity
    # up to the estimate's error (Stan-style regularisation included)
    metric = make_metric(adapt.inverse_mass_matrix[0])
    whitened = np.asarray(metric.whitening) @ COV @ np.asarray(metric.whitening).T
    eigenvalues = np.linalg.eigvalsh(whitened)
    assert np.all((eigenvalues > 0.7) & (eigenvalues < 1.4)), eigenvalues


def test_pooled_metric_is_the_within_chain_covariance_across_separated_modes():
    # two unit Gaussians 20 apart: the total covariance along the axis is ~100,
    # the within-chain one 1; chains spread over both modes must not inflate the metric
    def potential(x):
        a = jnp.sum((x - 10.0) ** 2) / 2
        b = jnp.sum((x + 10.0) ** 2) / 2
        return -jnp.logaddexp(-a, -b)

    mcmc = MCMC(
        DilationLangevin(potential_fn=potential, dense_mass=False),
        num_warmup=1000,
        num_samples=200,
        num_chains=16,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((16, 2)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    in_positive = (x[:, :, 0] > 0).mean(1)
    assert 0 < in_positive.sum() < 16, "the annealing should reach both modes"
    variances = np.asarray(mcmc.last_state.adapt_state.inverse_mass_matrix[0])
    assert np.all((variances > 0.5) & (variances < 2.0)), variances


# ----------------------------------------------------------------------------- pure functions


def test_halton_jitter_is_the_van_der_corput_sequence():
    np.testing.assert_allclose(
        [float(halton(i)) for i in range(7)], [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    )


def test_number_of_leapfrog_steps_is_jittered_and_bounded():
    # one compiled call over the iterations (op-by-op dispatch of 64 calls takes seconds)
    steps_at = jax.jit(jax.vmap(lambda i: num_leapfrog_steps(i, 10.0, 0.5)))
    steps = np.asarray(steps_at(jnp.arange(64)))
    assert steps.min() >= 1 and steps.max() <= 20
    assert len(set(steps)) > 10
    assert int(num_leapfrog_steps(0, jnp.inf, 0.1)) == MAX_NUM_STEPS
    assert int(num_leapfrog_steps(0, 1.0, 1e-12)) == MAX_NUM_STEPS
    assert int(num_leapfrog_steps(0, 1e-6, 1.0)) == 1


def test_hmc_move_conserves_energy_for_small_steps_and_flags_divergences():
    def potential(y):
        return 0.5 * jnp.sum(y**2)

    y = jnp.ones(5)
    metric = make_metric(jnp.ones(5))
    move = hmc_move(
        jax.random.PRNGKey(0),
        y,
        potential(y),
        y,
        potential,
        1e-3,
        50,
        metric,
        max_delta_energy=1000.0,
    )
    assert float(move.accept_prob) > 0.999 and not bool(move.diverging)
    assert int(move.num_steps) == 50
    # a step far beyond the stability limit 2 blows the energy up: a divergence, no move
    move = hmc_move(
        jax.random.PRNGKey(0),
        y,
        potential(y),
        y,
        potential,
        50.0,
        20,
        metric,
        max_delta_energy=1000.0,
    )
    assert bool(move.diverging) and float(move.accept_prob) == 0.0
    np.testing.assert_array_equal(move.y, y)


def test_chees_lengthens_short_trajectories_and_shortens_long_ones():
    # On N(0, I) a trajectory of length T from x ~ N(0, I) with fresh momentum moves
    # along cos/sin: ChEES grows with T up to about pi/2 and falls after.
    rng = np.random.default_rng(0)
    d = 20

    def mean_gradient(length):
        grads = []
        for _ in range(400):
            x, p = rng.normal(size=d), rng.normal(size=d)
            end = x * np.cos(length) + p * np.sin(length)
            velocity = -x * np.sin(length) + p * np.cos(length)
            grads.append(
                float(chees_gradient(x, end, velocity, np.zeros(d), np.zeros(d), np.ones(d)))
            )
        return np.mean(grads)

    assert mean_gradient(0.3) > 0
    assert mean_gradient(2.8) < 0
    state = init_trajectory(d, jnp.float32, 0.3)
    for _ in range(20):
        state = update_trajectory(state, 1.0, 1.0, 0.01)
    assert float(state.length) > 0.3


@pytest.mark.parametrize("max_steps", [None, 400])
def test_hmc_move_records_the_first_u_turn(max_steps):
    # a standard Gaussian in 1-D from its mean: x(t) = p sin t turns back at t = pi / 2
    eps = 0.01
    metric = make_metric(jnp.ones(1))
    potential = lambda y: 0.5 * jnp.sum(y**2)
    y = jnp.zeros(1)

    def move(num_steps, key=0):
        return hmc_move(
            jax.random.PRNGKey(key),
            y,
            potential(y),
            y,
            potential,
            eps,
            num_steps,
            metric,
            max_delta_energy=1000.0,
            max_steps=max_steps,
        )

    for key in range(3):
        turned = move(300, key)
        assert abs(int(turned.uturn_steps) * eps - np.pi / 2) <= 2 * eps
    short = move(100)
    assert int(short.uturn_steps) == 0  # did not turn within its 100 steps: censored
    exposure, event = uturn_observation(short, eps)
    assert float(event) == 0.0 and float(exposure) == pytest.approx(100 * eps)


def test_sampling_length_is_capped_by_the_censored_mean_u_turn_time():
    state = init_trajectory(2, jnp.float32, 20.0)
    # no trajectory turned: no cap
    assert float(mean_uturn_time(state)) == np.inf
    assert float(final_length(state)) == pytest.approx(20.0)
    for _ in range(50):
        state = update_uturns(state, 3.0, 1.0)
    assert float(mean_uturn_time(state)) == pytest.approx(3.0)
    assert float(final_length(state)) == pytest.approx(min(20.0, UTURN_CAP * 3.0))
    # censored trajectories (no U-turn) add time but no event: the estimate errs long
    for _ in range(50):
        state = update_uturns(state, 2.0, 0.0)
    assert float(mean_uturn_time(state)) > 3.0
    # a ChEES length below the cap is left alone
    short = init_trajectory(2, jnp.float32, 1.0)
    short = update_uturns(short, 3.0, 1.0)
    assert float(final_length(short)) == pytest.approx(1.0)
