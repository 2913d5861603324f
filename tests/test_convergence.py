"""Convergence checks: online split R-hat and batch-means ESS in the kernel, check_convergence after.

The case that started them: NumPyro's ``test_binomial_stable_x64`` (a Beta(1, 1)
prior, 3849 successes out of 5 000 000, 200 warmup and 200 sampling iterations),
where a chain was still travelling when warmup ended and nothing warned.  The
kernel now reaches that posterior (a start that far out is first moved towards it,
:mod:`numpyro_dilation.locate`), so the kernel tests below make a chain travel on
purpose: a fixed, tiny MALA step from ten standard deviations out.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import MCMC

from numpyro_dilation import (
    DilationLangevin,
    SamplerHealthWarning,
    check_convergence,
    to_inference_data,
)
from numpyro_dilation import convergence as online

from .conftest import divergence_counts, run_python

# ------------------------------------------------------------------ online sums


def ar1(rng, shape, phi):
    """AR(1) draws of unit stationary variance along axis 1 of ``shape``."""
    x = np.empty(shape)
    x[:, 0] = rng.normal(size=(shape[0], *shape[2:]))
    noise = rng.normal(size=shape) * np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def online_sums(x, batched=True):
    """Feed draws ``x`` (chains, n, d) through the kernel's update; the window is the n draws.

    Returns the sums that :func:`summarize` takes: ``(count, mean, m2)``.
    """
    n = x.shape[1]

    def one_chain(draws):
        def body(state, k):
            return online.update(state, draws[k], k, n), None

        state, _ = jax.lax.scan(body, online.init(draws.shape[-1], draws.dtype), jnp.arange(n))
        return state.count, state.mean, state.m2

    if batched:
        return jax.jit(jax.vmap(one_chain))(jnp.asarray(x, jnp.float32))
    return jax.jit(one_chain)(jnp.asarray(x[0], jnp.float32))


@pytest.mark.parametrize("num_chains", [1, 3])
def test_online_split_rhat_equals_numpyro_split_gelman_rubin(num_chains):
    rng = np.random.default_rng(0)
    x = ar1(rng, (num_chains, 200, 4), 0.8) + np.array([0.0, 0.0, 0.4, 50.0])
    x[..., 1] += np.linspace(0.0, 1.0, 200)  # a drift: R-hat well above 1
    x = x.astype(np.float32).astype(np.float64)
    sums = online_sums(x, batched=num_chains > 1)
    summary = online.summarize(*sums)
    np.testing.assert_allclose(summary.rhat, split_gelman_rubin(x), rtol=2e-5)
    assert summary.num_draws == 200 and summary.num_chains == num_chains
    assert summary.rhat[1] > 1.05


def test_batch_means_ess_tracks_the_autocorrelation():
    rng = np.random.default_rng(1)
    iid = online.summarize(*online_sums(rng.normal(size=(4, 1000, 3))))
    np.testing.assert_allclose(iid.ess, 4000, rtol=0.5)
    phi = 0.9  # ESS = N (1 - phi) / (1 + phi) = 210
    slow = online.summarize(*online_sums(ar1(rng, (4, 1000, 3), phi)))
    assert np.all((slow.ess > 100) & (slow.ess < 400)), slow.ess


def test_windows_cover_the_end_of_warmup_and_each_sampling_block():
    i = jnp.arange(2600)
    k, length = online.window_position(i, 500, 1000, 1000)
    k, length = np.asarray(k), np.asarray(length)
    warm = (i >= 750) & (i < 1000)  # the last half of the 500 adaptation iterations
    np.testing.assert_array_equal(k[:1000] >= 0, warm[:1000])
    np.testing.assert_array_equal(k[750:1000], np.arange(250))
    np.testing.assert_array_equal(k[1000:], np.arange(1600) % 1000)
    assert set(length[k >= 0].tolist()) == {250, 1000}
    # equal halves, NUM_BATCHES // 2 batches in each
    batches = np.asarray(online.batch_index(jnp.arange(1000), 1000))
    sizes = np.bincount(batches, minlength=online.NUM_BATCHES)
    assert sizes.size == online.NUM_BATCHES and set(sizes.tolist()) == {62, 63}
    assert sizes[: online.NUM_BATCHES // 2].sum() == 500
    batches = np.asarray(online.batch_index(jnp.arange(250), 250))
    assert (
        np.bincount(batches, minlength=online.NUM_BATCHES)[: online.NUM_BATCHES // 2].sum() == 125
    )
    # too short an adaptation phase has no warmup window
    k_short, _ = online.window_position(jnp.arange(100), 50, 100, 1000)
    assert np.all(np.asarray(k_short) < 0)


# ------------------------------------------------------------------ in the kernel


def slow_normal():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


def slow_kernel():
    # Started 10 sd out without annealing and with a fixed MALA step of 1e-3, the
    # chain drifts about 0.01 a step: still travelling when warmup ends, which is the
    # failure the checks must report.
    return DilationLangevin(
        slow_normal,
        stationary="mala",
        center={"x": 10.0},
        num_anneal_steps=0,
        step_size=1e-3,
        adapt_step_size=False,
    )


@pytest.fixture(scope="module")
def travelling_run():
    mcmc = MCMC(slow_kernel(), num_warmup=200, num_samples=200, progress_bar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerHealthWarning)
        mcmc.run(jax.random.PRNGKey(0))
    health = [str(w.message) for w in caught if issubclass(w.category, SamplerHealthWarning)]
    return mcmc, health


def test_still_travelling_chain_warns_at_the_end_of_warmup(travelling_run):
    mcmc, health = travelling_run
    x = np.asarray(mcmc.get_samples()["x"])
    assert x.mean() > 3.0  # the failure is real: the draws are far off
    assert len(health) == 1, health
    assert "the chains had not converged when warmup ended" in health[0]
    assert "x (flat index 0)" in health[0] and "single chain" in health[0]
    assert "num_warmup" in health[0]


@pytest.mark.integration
def test_the_travelling_case_in_float64_warns_too():
    out = run_python(
        """
import jax
jax.config.update("jax_enable_x64", True)
import warnings
from numpyro.infer import MCMC
from numpyro_dilation import SamplerHealthWarning
from tests.test_convergence import slow_kernel

mcmc = MCMC(slow_kernel(), num_warmup=200, num_samples=200, progress_bar=False)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", SamplerHealthWarning)
    mcmc.run(jax.random.PRNGKey(0))
assert mcmc.get_samples()["x"].dtype == "float64"
print([str(w.message) for w in caught if w.category is SamplerHealthWarning])
"""
    )
    assert "the chains had not converged when warmup ended" in out and "for x (flat index 0)" in out


def test_converting_the_unconverged_run_warns_naming_the_parameter(travelling_run):
    mcmc, _ = travelling_run
    with pytest.warns(
        SamplerHealthWarning, match=r"have not converged \(1 chain of 200 draws\).*for x \("
    ):
        to_inference_data(mcmc)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerHealthWarning)
        to_inference_data(mcmc, check_convergence=False)


def normal():
    numpyro.sample("x", dist.Normal(0.0, 1.0))


@pytest.mark.integration
def test_well_mixed_normal_run_is_silent():
    mcmc = MCMC(
        DilationLangevin(normal),
        num_warmup=1000,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcmc.run(jax.random.PRNGKey(0))
        result = check_convergence(mcmc)
    assert [w for w in caught if issubclass(w.category, SamplerHealthWarning)] == []
    assert (
        result.converged and float(result.rhat["x"]) < 1.01 and float(result.ess_bulk["x"]) > 1000
    )


def correlated(x):
    # correlation 0.999 and no mass-matrix adaptation: MALA crawls along the long axis
    return 0.5 * (x[0] ** 2 - 1.998 * x[0] * x[1] + x[1] ** 2) / (1 - 0.999**2)


def run_two_chains(kernel, chain_method, **run_kwargs):
    """200 + 1000 iterations of 2 chains from the origin; the run and its health warnings."""
    mcmc = MCMC(
        kernel,
        num_warmup=200,
        num_samples=1000,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerHealthWarning)
        mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((2, 2)), **run_kwargs)
    return mcmc, [str(w.message) for w in caught if issubclass(w.category, SamplerHealthWarning)]


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
@pytest.mark.integration
def test_slow_mixing_is_reported_at_the_sampling_checkpoint(chain_method):
    kernel = DilationLangevin(potential_fn=correlated, adapt_mass_matrix=False, stationary="mala")
    _, health = run_two_chains(kernel, chain_method)
    sampling = [m for m in health if "over sampling iterations 200-1199" in m]
    assert sampling, health
    assert "effective sample size (batch means) below 100" in sampling[0]
    assert "z[" in sampling[0] and "flat index" in sampling[0]


# ------------------------------------------------------------------ check_convergence


def test_check_convergence_passes_iid_draws_silently():
    draws = {
        "a": np.random.default_rng(2).normal(size=(4, 500)),
        "b": np.random.default_rng(3).normal(size=(4, 500, 3)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplerHealthWarning)
        result = check_convergence(draws)
    assert result.converged and result.failures == [] and result.message is None
    assert result.rhat["b"].shape == (3,) and np.all(result.ess_bulk["b"] > 1000)


def test_check_convergence_names_the_parameter_whose_chains_disagree():
    rng = np.random.default_rng(4)
    b = rng.normal(size=(4, 500, 3))
    b[..., 1] += 0.5 * np.arange(4)[:, None]  # chain means 0, 0.5, 1, 1.5
    draws = {"a": rng.normal(size=(4, 500)), "b": b}
    with pytest.warns(SamplerHealthWarning, match=r"R-hat above 1.01 for b\[1\] \(") as record:
        result = check_convergence(draws)
    assert len(record) == 1 and "for a " not in str(record[0].message)
    assert not result.converged and [f[0] for f in result.failures] == ["b[1]"]


def test_check_convergence_single_chain_splits_it_and_flags_a_trend():
    x = np.random.default_rng(5).normal(size=(1, 400)) + np.linspace(0.0, 3.0, 400)
    result = check_convergence({"x": x}, warn=False)
    assert result.num_chains == 1 and float(result.rhat["x"]) > 1.1


def test_check_convergence_flags_low_ess_and_non_finite_draws():
    rng = np.random.default_rng(6)
    slow = ar1(rng, (4, 500, 1), 0.98)[..., 0]
    bad = rng.normal(size=(4, 500))
    bad[0, 3] = np.nan
    result = check_convergence({"slow": slow, "bad": bad, "fixed": np.ones((4, 500))}, warn=False)
    names = [f[0] for f in result.failures]
    assert "slow" in names and "bad" in names and "fixed" not in names
    assert "non-finite draws of bad;" in result.message
    assert "R-hat above 1.01 for slow (" in result.message
    assert "bulk ESS below 100 for slow (" in result.message


def test_check_convergence_input_errors():
    with pytest.raises(ValueError, match=r"grouped by chain"):
        check_convergence({"x": np.zeros(100)})
    with pytest.raises(TypeError, match="MCMC"):
        check_convergence([1, 2, 3])
    with pytest.warns(SamplerHealthWarning, match="cannot be checked from 3 draws"):
        assert not check_convergence({"x": np.zeros((2, 3))}).converged


def walled(x):
    # a standard normal cut off at 1.5: every trajectory that crosses the wall
    # meets an infinite potential, a divergent transition
    return jnp.where(x[0] > 1.5, jnp.inf, 0.5 * jnp.sum(x**2))


@pytest.mark.parametrize("chain_method", ["sequential", "vectorized"])
@pytest.mark.integration
def test_divergent_transitions_while_sampling_are_reported(chain_method):
    mcmc, health = run_two_chains(
        DilationLangevin(potential_fn=walled), chain_method, extra_fields=("diverging",)
    )
    num_divergent = int(np.sum(mcmc.get_extra_fields()["diverging"]))
    assert num_divergent > 0
    divergent = [m for m in health if "were divergent" in m]
    assert divergent, health
    # one warning per chain when sequential, one for the batch when vectorised
    assert sum(divergence_counts(divergent)) == num_divergent
    assert "sampling iterations 200-1199" in divergent[0]
