"""Numerical safety: non-finite potentials, exploding steps, precision, unadjusted mode."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin
from numpyro_dilation.health import SamplerHealthWarning, warn_if_unhealthy

from .conftest import assert_mean_close, assert_sd_close, run_python


def mcmc_run(kernel, init, num_warmup=400, num_samples=1000, num_chains=4, extra=("diverging",)):
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), init_params=init, extra_fields=extra)
    return mcmc


# the integration tier: test_faults checks a NaN region (with +inf and -inf ones, and
# the truncated moments) in the default run; this one adds a large first step
@pytest.mark.integration
def test_nan_region_is_never_entered():
    # log of a negative number: NaN for x[0] > 1; the posterior is a Gaussian cut there
    def U(x):
        return 0.5 * jnp.sum(x**2) - 0.0 * jnp.log(1.0 - x[0])

    mcmc = mcmc_run(
        DilationLangevin(potential_fn=U, step_size=5.0),
        jnp.zeros((4, 2)),
        num_warmup=300,
        num_samples=500,
        extra=("diverging", "potential_energy"),
    )
    x = np.asarray(mcmc.get_samples())
    assert np.all(np.isfinite(x)) and np.all(x[:, 0] < 1.0)
    assert np.all(np.isfinite(mcmc.get_extra_fields()["potential_energy"]))


def test_too_large_eps_gives_divergences_not_nan_draws():
    def U(x):
        return 0.5 * jnp.sum(x**2 / jnp.array([1.0, 0.01]))

    mcmc = MCMC(DilationLangevin(potential_fn=U, eps=50.0), num_warmup=400, num_samples=1000,
                num_chains=4, chain_method="vectorized", progress_bar=False)
    mcmc.warmup(jax.random.PRNGKey(0), init_params=jnp.zeros((4, 2)), collect_warmup=True,
                extra_fields=("diverging", "t"))
    warm = mcmc.get_extra_fields(group_by_chain=True)
    assert np.all(np.isfinite(np.asarray(mcmc.get_samples())))
    assert warm["diverging"][:, :200].sum() > 0  # the hot annealing diverged ...
    np.testing.assert_array_equal(np.asarray(warm["t"])[:, -1], 1.0)  # ... and still reached t = 1
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((4, 2)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_mean_close(x, np.zeros(2), np.array([1.0, 0.1]))
    assert_sd_close(x, np.array([1.0, 0.1]))


def test_infinite_potential_outside_support():
    def U(x):  # uniform on the unit square, in flat coordinates
        inside = jnp.all((x > 0) & (x < 1))
        return jnp.where(inside, 0.0, jnp.inf)

    mcmc = mcmc_run(DilationLangevin(potential_fn=U, center=jnp.array([0.5, 0.5])), jnp.full((4, 2), 0.5))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert np.all((x > 0) & (x < 1))
    assert_mean_close(x, np.full(2, 0.5), np.full(2, np.sqrt(1 / 12)))


def test_unadjusted_mode_has_the_known_step_size_bias():
    """ULA on N(0, 1) with step h has stationary variance 1 / (1 - h/2)."""
    h = 0.5
    kernel = DilationLangevin(
        potential_fn=lambda x: 0.5 * jnp.sum(x**2),
        adjust=False,
        stationary="mala",
        step_size=h,
        adapt_step_size=False,
        adapt_mass_matrix=False,
    )
    mcmc = mcmc_run(kernel, jnp.zeros((4, 3)), num_samples=4000, extra=("accept_prob",))
    np.testing.assert_array_equal(mcmc.get_extra_fields()["accept_prob"], 1.0)
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_sd_close(x, np.full(3, np.sqrt(1 / (1 - h / 2))))


def test_float64_end_to_end():
    out = run_python(
        """
import jax, numpy as np, numpyro, numpyro.distributions as dist
numpyro.enable_x64()
from numpyro.infer import MCMC
from numpyro_dilation import DilationLangevin
def model():
    numpyro.sample("x", dist.Normal(1.0, 1e-3))
    numpyro.sample("s", dist.LogNormal(0.0, 1.0))
mcmc = MCMC(DilationLangevin(model), num_warmup=500, num_samples=2000, num_chains=4,
            chain_method="vectorized", progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), extra_fields=("potential_energy",))
x = mcmc.get_samples()["x"]
assert x.dtype == np.float64, x.dtype
assert mcmc.get_extra_fields()["potential_energy"].dtype == np.float64
assert abs(float(x.mean()) - 1.0) < 1e-4 and abs(float(x.std()) / 1e-3 - 1) < 0.1
print("ok")
"""
    )
    assert "ok" in out


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
def test_collapsed_acceptance_warns(chain_method):
    kernel = DilationLangevin(potential_fn=lambda x: 0.5 * jnp.sum(x**2), step_size=200.0, adapt_step_size=False)
    # one lone chain (NumPyro compiles the loop once per sequential chain)
    num_chains = 1 if chain_method == "sequential" else 2
    init = jnp.zeros(3) if num_chains == 1 else jnp.zeros((num_chains, 3))
    mcmc = MCMC(
        kernel,
        num_warmup=100,
        num_samples=1000,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    with pytest.warns(SamplerHealthWarning, match="mean acceptance probability after warmup is below 0.05"):
        mcmc.run(jax.random.PRNGKey(0), init_params=init)


def test_stuck_chain_during_sampling_warns_and_healthy_run_is_silent():
    kernel = DilationLangevin(potential_fn=lambda x: 0.5 * jnp.sum(x**2))
    mcmc = MCMC(kernel, num_warmup=100, num_samples=1000, num_chains=2, chain_method="vectorized", progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerHealthWarning)
        # healthy acceptance and step size; the R-hat of 2 chains after 100 warmup
        # iterations may exceed 1.01 (the convergence checks: test_convergence.py)
        warnings.filterwarnings("ignore", "DilationLangevin: the chains ha", SamplerHealthWarning)
        mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((2, 3)))
    # the same chains continued with a broken (enormous) step size stop moving
    state = mcmc.last_state
    broken = state._replace(adapt_state=state.adapt_state._replace(step_size=jnp.full(2, 500.0)))
    mcmc.post_warmup_state = broken
    with pytest.warns(SamplerHealthWarning, match=r"before iteration 1400 is below 0.05 for chain\(s\) \[0, 1\]"):
        mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((2, 3)))


def test_collapsed_acceptance_names_each_sampling_chain_once_per_run():
    """The sampling check runs every ACCEPT_CHECK_EVERY iterations; a chain is named once."""
    reported: set[int] = set()
    accept = np.array([0.01, 0.8, 0.02])
    step = np.full(3, 0.5)
    with pytest.warns(SamplerHealthWarning, match=r"for chain\(s\) \[0, 2\]"):
        warn_if_unhealthy(True, 299, accept, step, reported=reported)
    assert reported == {0, 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerHealthWarning)
        warn_if_unhealthy(True, 399, accept, step, reported=reported)
    accept[1] = 0.0
    with pytest.warns(SamplerHealthWarning, match=r"for chain\(s\) \[1\]"):
        warn_if_unhealthy(True, 499, accept, step, reported=reported)
    # the end-of-warmup check always names every chain
    with pytest.warns(SamplerHealthWarning, match=r"after warmup .* chain\(s\) \[0, 1, 2\]"):
        warn_if_unhealthy(False, 99, accept, step, reported=reported)


def test_check_health_warns_at_sampling_checkpoints_only():
    """run_checks.check_health on a stand-in state: a warning at a checkpoint, none between
    checkpoints, none when the host call is off."""
    from typing import NamedTuple

    from numpyro_dilation import run_checks

    class Adapt(NamedTuple):
        step_size: jax.Array

    class Stub(NamedTuple):
        i: jax.Array
        num_anneal_steps: jax.Array
        num_warmup: jax.Array
        recent_accept_prob: jax.Array
        mean_accept_prob: jax.Array
        adapt_state: Adapt

    def state(i):
        chains = 3
        return Stub(
            i=jnp.full(chains, i),
            num_anneal_steps=jnp.full(chains, 50),
            num_warmup=jnp.full(chains, 100),
            recent_accept_prob=jnp.array([0.01, 0.8, 0.9]),
            mean_accept_prob=jnp.full(chains, 0.8),
            adapt_state=Adapt(step_size=jnp.full(chains, 0.5)),
        )

    def check(i, enabled, reported):
        run_checks.check_health(
            state(i),
            True,
            check_warmup=True,
            check_large_step=True,
            reported=reported,
            call=run_checks.host_call(enabled),
        )
        jax.effects_barrier()

    # the counter has moved past the iteration just run: i = 400 closes sampling iteration 299
    with pytest.warns(SamplerHealthWarning, match=r"before iteration 400 .* chain\(s\) \[0\]"):
        check(400, True, set())
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerHealthWarning)
        check(401, True, set())  # not a checkpoint
        check(400, False, set())  # host calls off
        check(500, True, {0})  # chain 0 already named
