"""Ensemble mode: population moves between the two halves of vectorised chains.

The statistical tests use targets whose answer is exact (mixture weights,
Gaussian moments) and tolerances from the effective sample size of the
quantity checked, so that an invariance bug in any move shows as a bias.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.special import logsumexp
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin
from numpyro_dilation import ensemble as population
from tests.conftest import assert_mean_close, assert_sd_close, ess

ENSEMBLE_FIELDS = (
    "num_grad_evals",
    "num_steps",
    "ensemble.num_mode_jumps",
    "ensemble.move_probs",
    "ensemble.population_prob",
    "ensemble.num_clusters",
    "ensemble.num_proposals",
    "ensemble.num_accepted",
)


def run_ensemble(
    model=None, potential_fn=None, *, num_chains=32, num_warmup=400, num_samples=600, seed=0, **kw
):
    kernel = DilationLangevin(model, potential_fn=potential_fn, ensemble=True, **kw)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    return mcmc


def check_weights(labels, weights, min_ess=400):
    """Fraction of draws in each mode within 4.5 Monte Carlo errors of the exact weight.

    ``labels`` has shape (chains, draws).  The error of a fraction is
    sqrt(w (1 - w) / ESS) with the ESS of the indicator of that mode; chains that
    never leave their mode make that ESS small, so it is also required to be
    large: otherwise the tolerance itself would hide a sampler that does not mix.
    """
    for k, w in enumerate(weights):
        indicator = (labels == k).astype(float)
        n_eff = ess(indicator)
        assert n_eff > min_ess, (
            f"mode {k}: indicator ESS {n_eff:.0f}: chains do not move between modes"
        )
        frac = indicator.mean()
        tol = 4.5 * np.sqrt(w * (1 - w) / n_eff)
        assert abs(frac - w) <= tol, (
            f"mode {k}: fraction {frac:.4f}, exact {w}, tolerance {tol:.4f}"
        )


# ------------------------------------------------------------------ exact mixture weights


W1 = np.array([0.3, 0.7])


def mixture_1d():
    numpyro.sample(
        "x",
        dist.MixtureSameFamily(
            dist.Categorical(jnp.array(W1)),
            dist.Normal(jnp.array([-4.0, 5.0]), jnp.array([1.0, 1.5])),
        ),
    )


def test_one_dimensional_mixture_weights_are_exact():
    mcmc = run_ensemble(mixture_1d)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=ENSEMBLE_FIELDS)
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    assert np.all(np.isfinite(x))
    check_weights((x > 0.5).astype(int), W1)
    jumps = mcmc.get_extra_fields(group_by_chain=True)["ensemble.num_mode_jumps"]
    assert np.all(jumps[:, -1] > jumps[:, 0])  # every chain changed modes during sampling


W2 = np.array([0.1, 0.2, 0.3, 0.4])
MEANS2 = np.array([[9.0, 0.0], [1.0, 8.0], [-7.0, 0.0], [1.0, -8.0]])


def mixture_2d_potential(x):
    return -logsumexp(jnp.log(W2) - 0.5 * jnp.sum((x - MEANS2) ** 2, -1))


def test_two_dimensional_unequal_mixture_weights_are_exact():
    mcmc = run_ensemble(potential_fn=mixture_2d_potential, num_chains=64)
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((64, 2)), extra_fields=ENSEMBLE_FIELDS)
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    labels = np.argmin(((x[..., None, :] - MEANS2) ** 2).sum(-1), axis=-1)
    check_weights(labels, W2)


# ------------------------------------------------------------------ exact moments (invariance)


def test_gaussian_moments_are_exact_with_population_moves_forced():
    """Every move type runs on every iteration after annealing, so a wrong MH ratio shows."""
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    mean = np.array([1.0, -2.0, 0.5])
    prec = np.linalg.inv(cov)

    def potential(x):
        return 0.5 * (x - mean) @ prec @ (x - mean)

    mcmc = run_ensemble(potential_fn=potential, num_chains=32, num_warmup=200, num_samples=1000)
    # freeze the tuning at "all moves, every iteration" so every MH ratio is exercised
    kernel = mcmc.sampler
    mcmc.warmup(jax.random.PRNGKey(2), init_params=jnp.zeros((32, 3)))
    state = mcmc.post_warmup_state
    settings = state.ensemble.settings._replace(
        move_probs=jnp.full(3, 1.0 / 3, state.y.dtype),
        population_prob=jnp.ones((), state.y.dtype),
    )
    ens = state.ensemble._replace(settings=settings)
    mcmc.post_warmup_state = state._replace(ensemble=ens)
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=ENSEMBLE_FIELDS)
    assert kernel.is_ensemble_kernel
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    assert_mean_close(x, mean, np.sqrt(np.diag(cov)))
    assert_sd_close(x, np.sqrt(np.diag(cov)))
    # the correlation, through the variance of a sum and of a difference
    for v in (np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 1.0])):
        proj = x @ v
        assert_sd_close(proj, np.sqrt(v @ cov @ v))
    fields = mcmc.get_extra_fields(group_by_chain=True)
    proposals = np.asarray(
        fields["ensemble.num_proposals"][:, -1] - fields["ensemble.num_proposals"][:, 0]
    )
    accepted = np.asarray(
        fields["ensemble.num_accepted"][:, -1] - fields["ensemble.num_accepted"][:, 0]
    )
    assert np.all(proposals.sum(0) > 1000)  # every move type was tried many times ...
    assert np.all(accepted.sum(0) > 100)  # ... and accepted: each MH ratio was exercised


# ------------------------------------------------------------------ the interface


def test_tuning_is_frozen_after_warmup_and_diagnostics_are_recorded():
    mcmc = run_ensemble(mixture_1d, num_chains=16, num_warmup=100, num_samples=100)
    mcmc.run(jax.random.PRNGKey(3), extra_fields=ENSEMBLE_FIELDS + ("ensemble.mean_accept_prob",))
    fields = mcmc.get_extra_fields(group_by_chain=True)
    for name in ("ensemble.move_probs", "ensemble.population_prob", "ensemble.num_clusters"):
        values = np.asarray(fields[name])
        assert np.all(values == values[:1, :1]), name  # one setting shared by all chains, constant
    probs = np.asarray(fields["ensemble.move_probs"][0, 0])
    assert probs.shape == (len(population.MOVES),) and np.isclose(probs.sum(), 1.0)
    assert np.all(probs >= population.MIN_MOVE_PROB - 1e-6)
    assert int(fields["ensemble.num_clusters"][0, 0]) in population.CLUSTER_CANDIDATES
    acc = np.asarray(fields["ensemble.mean_accept_prob"][:, -1])
    assert acc.shape == (16, 3) and np.all((acc >= 0) & (acc <= 1) | np.isnan(acc))
    # one gradient per leapfrog step, plus at most one for a population move
    grads = np.asarray(fields["num_grad_evals"])
    steps = np.asarray(fields["num_steps"])[:, 1:]
    assert np.all(np.diff(grads, axis=1) >= steps) and np.all(np.diff(grads, axis=1) <= steps + 1)


def test_same_seed_same_draws():
    def draws():
        mcmc = run_ensemble(mixture_1d, num_chains=8, num_warmup=60, num_samples=50)
        mcmc.run(jax.random.PRNGKey(4), extra_fields=("ensemble.num_mode_jumps",))
        return mcmc.get_samples()["x"], mcmc.get_extra_fields()["ensemble.num_mode_jumps"]

    (a, ja), (b, jb) = draws(), draws()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ja, jb)


@pytest.mark.parametrize(
    "num_chains, chain_method",
    [(8, "sequential"), (2, "vectorized"), (3, "vectorized"), (1, "vectorized")],
)
def test_ensemble_needs_vectorized_chains_and_at_least_four(num_chains, chain_method):
    mcmc = MCMC(
        DilationLangevin(mixture_1d, ensemble=True),
        num_warmup=40,
        num_samples=10,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    with pytest.raises(
        ValueError, match=r"ensemble=True.*chain_method='vectorized'.*num_chains >= 4"
    ):
        mcmc.run(jax.random.PRNGKey(0))


def test_ensemble_argument_must_be_boolean():
    with pytest.raises(TypeError, match="ensemble"):
        DilationLangevin(mixture_1d, ensemble="yes")


# ------------------------------------------------------------------ the block schedule


@pytest.mark.parametrize("n", [4, 7, 32])
def test_block_halves_partition_the_chains_and_alternate(n):
    seen_active = set()
    for block in range(-3, 5):
        active, other = (np.asarray(x) for x in population.block_halves(n, jnp.asarray(block)))
        assert len(active) == n // 2 and len(other) == n - n // 2
        assert sorted(np.concatenate([active, other]).tolist()) == list(range(n))
        nxt, _ = population.block_halves(n, jnp.asarray(block + 1))
        assert not set(active.tolist()) & set(np.asarray(nxt).tolist())  # the halves alternate
        seen_active |= set(active.tolist())
    assert seen_active == set(range(n))  # with an odd n every chain gets moved in some block


def test_clusters_are_fitted_once_per_block_from_the_other_half():
    """Within a block the cached clusters are reused; a new block refits on its other half."""

    def potential(x):
        return mixture_2d_potential(x)

    n = 32
    kernel = DilationLangevin(potential_fn=potential, ensemble=True)
    y0 = jnp.asarray(MEANS2[np.arange(n) % 4] + np.random.default_rng(0).normal(size=(n, 2)))
    state = kernel.init(jax.random.split(jax.random.PRNGKey(5), n), 40, y0, (), {})
    # structural test: put the chains at spread-out positions in the kernel's coordinates
    state = state._replace(y=y0.astype(state.y.dtype))
    ens = state.ensemble
    settings = ens.settings
    grad = jax.value_and_grad(potential)

    def moves(key, state, cache, block):
        return population.population_moves(key, state, settings, cache, block, grad)

    block = jnp.asarray(0, ens.cache.block.dtype)
    s1, stats1, cache1, refit1 = moves(jax.random.PRNGKey(0), state, ens.cache, block)
    s2, _, cache2, refit2 = moves(jax.random.PRNGKey(1), s1, cache1, block)
    assert bool(refit1) and not bool(refit2)
    jax.tree.map(np.testing.assert_array_equal, cache1.clusters, cache2.clusters)
    active, other = population.block_halves(n, block)
    proposed = np.asarray(stats1[0])
    assert proposed[np.asarray(active)].all() and not proposed[np.asarray(other)].any()
    # the other half did not move, so its positions (and the clusters) are untouched
    other = np.asarray(other)
    np.testing.assert_array_equal(np.asarray(s2.y)[other], np.asarray(state.y)[other])
    # the fitted centres are the other half's mode groups (in the kernel's coordinates)
    y_other, label = np.asarray(state.y)[other], (np.arange(n) % 4)[other]
    groups = np.stack([y_other[label == k].mean(0) for k in range(4)])
    centers = np.asarray(cache1.clusters.centers)[: int(cache1.clusters.num_active)]
    spread = np.abs(y_other - groups[label]).max()
    assert np.min(np.linalg.norm(centers[:, None] - groups, axis=-1), axis=1).max() < spread
    _, _, cache3, refit3 = moves(jax.random.PRNGKey(2), s2, cache2, block + 1)
    assert bool(refit3) and int(cache3.block) == 1


# ------------------------------------------------------------------ the proposals' random draws


def test_uniform_ints_are_uniform_on_each_span():
    """One word per integer, reduced modulo the span: every value in range, frequencies uniform."""
    spans = jnp.asarray([7, 6, 1], jnp.uint32)
    n = 70_000
    ints = np.asarray(population.uniform_ints(jax.random.PRNGKey(0), (n, 3), spans))
    assert ints.dtype == np.int32
    assert (ints[:, 2] == 0).all()
    for col, span in ((0, 7), (1, 6)):
        counts = np.bincount(ints[:, col], minlength=span)
        assert len(counts) == span  # nothing outside [0, span)
        # each count is Binomial(n, 1/span): within 4.5 of its standard deviations
        sd = np.sqrt(n * (1 / span) * (1 - 1 / span))
        assert np.all(np.abs(counts - n / span) < 4.5 * sd), counts


def test_categorical_inverse_cdf_matches_the_weights_and_skips_empty_slots():
    weights = np.array([0.1, 0.0, 0.6, 0.3, 0.0])
    log_w = jnp.log(jnp.asarray(weights, jnp.float32))  # -inf for the empty slots
    n = 60_000
    draws = np.asarray(population.categorical_inverse_cdf(jax.random.PRNGKey(1), log_w, n))
    counts = np.bincount(draws, minlength=len(weights))
    assert counts[1] == 0 and counts[4] == 0
    sd = np.sqrt(n * weights * (1 - weights))
    assert np.all(np.abs(counts - n * weights) <= 4.5 * sd + 1e-9), counts
    # unnormalised log weights give the same categories
    shifted = population.categorical_inverse_cdf(jax.random.PRNGKey(1), log_w + 3.0, n)
    np.testing.assert_array_equal(np.asarray(shifted), draws)
