"""Exact answers: conjugate posteriors and a real posterior from posteriordb.

Tolerances are Monte Carlo errors from the effective sample size (4.5 standard
errors, so a correct sampler fails about once in 10^5 checks), never fixed
numbers picked to pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC
from scipy import stats

from benchmarks.posteriors import POSTERIORS, accuracy
from numpyro_dilation import DilationLangevin

from .conftest import assert_mean_close, assert_sd_close


def sample(model, *args, num_chains=4, num_warmup=500, num_samples=2000, seed=0, **kwargs):
    mcmc = MCMC(
        DilationLangevin(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), *args, **kwargs)
    return {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}


def test_normal_normal_conjugate():
    y = np.random.default_rng(1).normal(2.0, 3.0, size=15)

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(-1.0, 4.0))
        numpyro.sample("y", dist.Normal(mu, 3.0), obs=y)

    precision = 1 / 16 + len(y) / 9
    mean = (-1.0 / 16 + y.sum() / 9) / precision
    draws = sample(model, jnp.asarray(y))["mu"]
    assert_mean_close(draws, mean, precision**-0.5)
    assert_sd_close(draws, precision**-0.5)


def test_gamma_poisson_constrained():
    y = np.array([3, 7, 4, 6, 2, 5, 9, 4])

    def model(y):
        rate = numpyro.sample("rate", dist.Gamma(2.0, 0.5))
        numpyro.sample("y", dist.Poisson(rate), obs=y)

    post = stats.gamma(2.0 + y.sum(), scale=1 / (0.5 + len(y)))
    draws = sample(model, jnp.asarray(y))["rate"]
    assert draws.min() > 0
    assert_mean_close(draws, post.mean(), post.std())
    assert_sd_close(draws, post.std(), kurtosis=3 + post.stats(moments="k"))


def test_beta_binomial_interval():
    def model(k):
        p = numpyro.sample("p", dist.Beta(2.0, 3.0))
        numpyro.sample("k", dist.Binomial(40, p), obs=k)

    post = stats.beta(2 + 29, 3 + 11)
    draws = sample(model, 29)["p"]
    assert draws.min() > 0 and draws.max() < 1
    assert_mean_close(draws, post.mean(), post.std())
    assert_sd_close(draws, post.std(), kurtosis=3 + post.stats(moments="k"))


@pytest.mark.integration
def test_dirichlet_multinomial_simplex():
    alpha = np.array([1.0, 2.0, 0.5, 3.0])
    counts = np.array([12, 30, 3, 25])

    total = int(counts.sum())

    def model(counts):
        w = numpyro.sample("w", dist.Dirichlet(jnp.asarray(alpha)))
        numpyro.sample("counts", dist.Multinomial(total, w), obs=counts)

    post = alpha + counts
    mean = post / post.sum()
    sd = np.sqrt(mean * (1 - mean) / (post.sum() + 1))
    draws = sample(model, jnp.asarray(counts))["w"]
    np.testing.assert_allclose(draws.sum(-1), 1.0, rtol=1e-5)
    assert_mean_close(draws, mean, sd)
    assert_sd_close(draws, sd, kurtosis=4.0)


@pytest.mark.integration
def test_eight_schools_matches_posteriordb_reference():
    """Every parameter within standardised mean error 0.1 and sd ratio [0.9, 1.1].

    tau has kurtosis ~9, so its sd needs many effective draws (8 x 10000 draws give
    ESS ~6000: a Monte Carlo error of ~0.025 on the sd ratio, reference included).
    """
    posterior = POSTERIORS["eight_schools-eight_schools_noncentered"]
    args, kwargs = posterior.args()
    draws = sample(posterior.model, *args, num_chains=8, num_warmup=1000, num_samples=10000, **kwargs)
    for name, err in accuracy(draws, posterior).items():
        assert err["z_mean"] <= 0.1, (name, err)
        assert 0.9 <= err["sd_ratio"] <= 1.1, (name, err)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_every_posteriordb_posterior(name):
    posterior = POSTERIORS[name]
    args, kwargs = posterior.args()
    draws = sample(posterior.model, *args, num_chains=8, num_warmup=1000, num_samples=5000, **kwargs)
    for param, err in accuracy(draws, posterior).items():
        assert err["z_mean"] <= 0.1, (param, err)
        assert 0.9 <= err["sd_ratio"] <= 1.1, (param, err)
