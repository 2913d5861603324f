"""Ensemble mode: mode moves between the modes that vectorised chains found.

The statistical tests use targets whose answer is exact (mixture weights,
Gaussian moments) and tolerances from the effective sample size of the
quantity checked, so that an invariance bug in any move shows as a bias.
The pure functions behind the moves are tested in ``test_modes.py``.
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
from tests.conftest import ess

ENSEMBLE_FIELDS = (
    "num_grad_evals",
    "num_steps",
    "ensemble.num_mode_jumps",
    "ensemble.move_probs",
    "ensemble.mode_move_prob",
    "ensemble.num_proposals",
    "ensemble.num_accepted",
    "modes.num_modes",
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


@pytest.mark.integration
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


# the default run checks unequal weights on the two-shape mixture and the moved copy below
@pytest.mark.integration
def test_two_dimensional_unequal_mixture_weights_are_exact():
    mcmc = run_ensemble(potential_fn=mixture_2d_potential, num_chains=64)
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((64, 2)), extra_fields=ENSEMBLE_FIELDS)
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    labels = np.argmin(((x[..., None, :] - MEANS2) ** 2).sum(-1), axis=-1)
    check_weights(labels, W2)


# ------------------------------------------------------------------ exact moments (invariance)


COV_A = np.array([[1.0, 0.8], [0.8, 1.0]])
COV_B = np.array([[0.09, -0.05], [-0.05, 0.25]])
MEAN_A, MEAN_B = np.array([-6.0, 2.0]), np.array([5.0, -1.0])
W_AB = np.array([0.35, 0.65])


def two_shapes_potential(x):
    def log_normal(mean, cov):
        diff = x - mean
        return -0.5 * diff @ np.linalg.inv(cov) @ diff - 0.5 * np.log(np.linalg.det(cov))

    return -logsumexp(
        jnp.stack(
            [
                jnp.log(W_AB[0]) + log_normal(MEAN_A, COV_A),
                jnp.log(W_AB[1]) + log_normal(MEAN_B, COV_B),
            ]
        )
    )


def test_mode_weights_and_moments_are_exact_for_modes_of_different_shapes():
    """Two modes, correlated one way and the other and of different widths: the
    affine hops (with their Jacobian) and the independence draws must keep both
    the weights and each mode's moments exact."""
    mcmc = run_ensemble(potential_fn=two_shapes_potential, num_chains=64, num_samples=1500)
    mcmc.run(jax.random.PRNGKey(2), init_params=jnp.zeros((64, 2)), extra_fields=ENSEMBLE_FIELDS)
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    in_b = (x[..., 0] > 0).astype(int)
    check_weights(in_b, W_AB)
    fields = mcmc.get_extra_fields(group_by_chain=True)
    accepted = np.asarray(
        fields["ensemble.num_accepted"][:, -1] - fields["ensemble.num_accepted"][:, 0]
    )
    assert np.all(accepted.sum(0) > 200)  # both moves were accepted many times
    for mode, mean, cov in ((0, MEAN_A, COV_A), (1, MEAN_B, COV_B)):
        inside = x[in_b == mode]
        # within-mode moments, with a tolerance from the mode's indicator ESS
        n_eff = ess((in_b == mode).astype(float)) * W_AB[mode]
        sd = np.sqrt(np.diag(cov))
        assert np.all(np.abs(inside.mean(0) - mean) < 4.5 * sd / np.sqrt(n_eff))
        assert np.all(np.abs(inside.std(0) / sd - 1) < 4.5 * np.sqrt(0.5 / n_eff) + 0.02)


# ------------------------------------------------------------------ the interface


@pytest.mark.integration
def test_tuning_is_frozen_after_warmup_and_diagnostics_are_recorded():
    mcmc = run_ensemble(mixture_1d, num_chains=16, num_warmup=200, num_samples=100)
    mcmc.run(jax.random.PRNGKey(3), extra_fields=ENSEMBLE_FIELDS + ("ensemble.mean_accept_prob",))
    fields = mcmc.get_extra_fields(group_by_chain=True)
    for name in ("ensemble.move_probs", "ensemble.mode_move_prob", "modes.num_modes"):
        values = np.asarray(fields[name])
        assert np.all(values == values[:1, :1]), name  # one setting shared by all chains, constant
    assert int(fields["modes.num_modes"][0, 0]) == 2
    probs = np.asarray(fields["ensemble.move_probs"][0, 0])
    assert probs.shape == (len(population.MOVES),) and np.isclose(probs.sum(), 1.0)
    assert np.all(probs >= population.MIN_MOVE_PROB - 1e-6)
    acc = np.asarray(fields["ensemble.mean_accept_prob"][:, -1])
    assert acc.shape == (16, 2) and np.all((acc >= 0) & (acc <= 1) | np.isnan(acc))
    # while sampling: one gradient per leapfrog step, plus one for a mode move
    grads = np.asarray(fields["num_grad_evals"])
    steps = np.asarray(fields["num_steps"])[:, 1:]
    assert np.all(np.diff(grads, axis=1) >= steps) and np.all(np.diff(grads, axis=1) <= steps + 1)


@pytest.mark.integration
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


# ------------------------------------------------------------------ equivariance


@pytest.mark.parametrize(
    "copy",
    # the scaled copy runs with the integration tier: one copy keeps the default run short
    ["widths2d_3@shift100", pytest.param("widths2d_3@scale0.01", marks=pytest.mark.integration)],
)
def test_mode_weights_do_not_depend_on_where_the_posterior_sits(copy):
    """Three modes of sds 0.1, 0.32 and 1 (the heaviest the narrowest), moved far from the origin.

    The multimodal suite's ``widths2d_3`` translated by 100 of its largest mode
    sds, or shrunk 100-fold about the origin: the chains still start at the
    origin, and the weights must come out exact on both copies.
    """
    from benchmarks.mixtures import all_targets

    target = all_targets()[copy]
    # the true masses of the modes' regions (the component of highest density)
    masses = (
        np.bincount(
            target.assign(target.exact_draws(np.random.default_rng(0), 200_000)), minlength=3
        )
        / 200_000
    )
    # 128 chains: with 64 the narrow mode is missed, at the origin as well (docs/ensemble.md)
    mcmc = run_ensemble(
        potential_fn=target.potential, num_chains=128, num_warmup=500, num_samples=500
    )
    mcmc.run(jax.random.PRNGKey(2), init_params=jnp.zeros((128, target.dim)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    labels = target.assign(x.reshape(-1, target.dim)).reshape(x.shape[:2])
    check_weights(labels, masses, min_ess=200)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["widths2d_3", "gauss2d_4", "gmm40_2d"])
def test_headline_mixtures_at_the_suite_size(name):
    """The multimodal suite's headline targets at its size (256 chains, 1000 + 1000).

    Mode-weight TV at most 0.05 (the issue's bound) on the target, and on its
    translated and rescaled copies within 0.02 of the original.
    """
    from benchmarks.mixture_samplers import run_dilation
    from benchmarks.mixtures import all_targets, copies
    from benchmarks.mode_metrics import mode_fractions, reference

    def tv(target):
        draws = run_dilation(
            target,
            jax.random.PRNGKey(0),
            ensemble=True,
            num_chains=256,
            num_warmup=1000,
            num_samples=1000,
        )["draws"]
        fractions = mode_fractions(target, draws.reshape(-1, target.dim))
        return 0.5 * float(np.abs(fractions - reference(target, 1000).region_mass).sum())

    base = all_targets()[name]
    tv_base = tv(base)
    assert tv_base <= 0.05
    for copy in copies(base):
        tv_copy = tv(copy)
        assert abs(tv_copy - tv_base) <= 0.02, (copy.name, tv_copy, tv_base)
