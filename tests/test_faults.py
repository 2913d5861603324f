"""Fault injection: hostile potentials, extreme conditioning and dimension.

For every fault the kernel must not crash, must not emit a non-finite draw,
must flag the divergent proposals it rejects, and must warn
(``SamplerHealthWarning``) when acceptance collapses or chains stop moving,
and must stay silent when they do not.  Where the faulty posterior is still
a proper distribution, its moments are checked against the exact values with
ESS-based tolerances.  An improper posterior has no right draws: there the
kernel must say that it is improper.

The table on the reliability page (docs/reliability.md) lists each fault, what
the kernel did, and the test below that checks it.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints
from scipy import integrate, stats

from numpyro_dilation import DilationLangevin, SamplerHealthWarning

from .conftest import assert_mean_close, assert_sd_close, divergence_counts, run_mcmc


def run(
    kernel,
    init=None,
    num_warmup=500,
    num_samples=2000,
    num_chains=4,
    seed=0,
    extra=(),
    divergence_reports=False,
):
    """Run vectorised chains, recording the SamplerHealthWarnings about acceptance and step size.

    With ``divergence_reports``, the reports of divergent transitions are kept too.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplerHealthWarning)
        mcmc = run_mcmc(
            kernel,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized",
            seed=seed,
            init_params=init,
            extra_fields=("diverging", "accept_prob", *extra),
        )
    # The convergence checks (R-hat, ESS, and the report of divergent transitions,
    # which every rejected proposal into a non-finite region adds to) are tested in
    # test_convergence.py; these faults are about acceptance and step size, so
    # their messages are left out.
    health = [
        str(w.message)
        for w in caught
        if issubclass(w.category, SamplerHealthWarning)
        and "converged" not in str(w.message)
        and (divergence_reports or "were divergent" not in str(w.message))
    ]
    return mcmc, health


def draws_of(mcmc):
    return np.asarray(mcmc.get_samples(group_by_chain=True))


def kurtosis(frozen):
    return 3.0 + float(frozen.stats(moments="k"))


def assert_matches(x, frozen):
    """Mean and sd of (chains, draws) draws against a scipy distribution."""
    assert_mean_close(x, frozen.mean(), frozen.std())
    assert_sd_close(x, frozen.std(), kurtosis=kurtosis(frozen))


# ------------------------------------------------------------------ non-finite regions


def test_nan_inf_and_minus_inf_regions_are_never_entered():
    """NaN for x0 > 0.5, +inf for x1 < -0.3, -inf (infinite density) for x2 < -2.

    Each proposal into a region is divergent and rejected, so the chain samples
    the standard normal truncated to the rest (a rejected region is never
    proposed from, so the kernel stays reversible there): exact truncated-normal
    moments per coordinate.
    """

    def potential(x):
        u = 0.5 * jnp.sum(x**2) + 0.0 * jnp.log(0.5 - x[0])  # NaN for x0 > 0.5
        u = jnp.where(x[1] < -0.3, jnp.inf, u)
        return jnp.where(x[2] < -2.0, -jnp.inf, u)

    mcmc, health = run(DilationLangevin(potential_fn=potential), jnp.zeros((4, 3)))
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    assert x[..., 0].max() <= 0.5 and x[..., 1].min() >= -0.3 and x[..., 2].min() >= -2.0
    assert np.all(np.isfinite(mcmc.get_extra_fields()["accept_prob"]))
    assert mcmc.get_extra_fields()["diverging"].sum() > 0
    assert health == []
    truth = [
        stats.truncnorm(-np.inf, 0.5),
        stats.truncnorm(-0.3, np.inf),
        stats.truncnorm(-2.0, np.inf),
    ]
    for j, frozen in enumerate(truth):
        assert_matches(x[..., j], frozen)


@jax.custom_jvp
def _flat_with_bad_gradient(x):
    return 0.0 * x[0]


@_flat_with_bad_gradient.defjvp
def _flat_with_bad_gradient_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    # The value stays finite; the gradient is +inf for x0 > 0.8 and NaN for x1 > 0.8.
    grad = jnp.stack([jnp.where(x[0] > 0.8, jnp.inf, 0.0), jnp.where(x[1] > 0.8, jnp.nan, 0.0)])
    return _flat_with_bad_gradient(x), jnp.dot(grad, dx[:2])


def test_overflowing_gradients_with_finite_potential_are_rejected():
    def potential(x):
        return 0.5 * jnp.sum(x**2) + _flat_with_bad_gradient(x)

    mcmc, health = run(DilationLangevin(potential_fn=potential), jnp.zeros((4, 2)))
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x)) and x.max() <= 0.8
    assert mcmc.get_extra_fields()["diverging"].sum() > 0
    assert health == []
    for j in range(2):
        assert_matches(x[..., j], stats.truncnorm(-np.inf, 0.8))


@pytest.mark.integration
def test_exponential_wall_whose_value_and_gradient_overflow():
    """U = x^2/2 + exp(50 (x0 - 1)): gradient 1e21 at x0 = 2, inf (float32) beyond 2.77."""

    def potential(x):
        return 0.5 * jnp.sum(x**2) + jnp.exp(50.0 * (x[0] - 1.0))

    mcmc, health = run(DilationLangevin(potential_fn=potential), jnp.zeros((4, 2)))
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    assert mcmc.get_extra_fields()["diverging"].sum() > 0
    assert health == []

    def density(t):
        return np.exp(-0.5 * t * t - np.exp(50.0 * (t - 1.0)))

    moments = [
        integrate.quad(lambda t, k=k: t**k * density(t), -12.0, 3.0, points=[1.0])[0]
        for k in range(5)
    ]
    mean = moments[1] / moments[0]
    var = moments[2] / moments[0] - mean**2
    central4 = (
        moments[4] - 4 * mean * moments[3] + 6 * mean**2 * moments[2] - 3 * mean**4 * moments[0]
    ) / moments[0]
    assert_mean_close(x[..., 0], mean, np.sqrt(var))
    assert_sd_close(x[..., 0], np.sqrt(var), kurtosis=central4 / var**2)
    assert_matches(x[..., 1], stats.norm())


# ------------------------------------------------------------------ steep quartic

QUARTIC_SCALE = 0.05  # U = sum((x / 0.05)^4): curvature 1.9e6 at x = 1


def quartic(x):
    return jnp.sum((x / QUARTIC_SCALE) ** 4)


@pytest.mark.integration
def test_steep_quartic_started_sixty_scales_away():
    """The chains start at x = 3 (U = 5e7, gradient 7e7) and still find the exact law."""
    kernel = DilationLangevin(potential_fn=quartic, center=jnp.full(4, 3.0))
    mcmc, health = run(kernel, jnp.zeros((4, 4)), num_warmup=2000)
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    assert health == []
    frozen = stats.gennorm(4, scale=QUARTIC_SCALE)
    for j in range(4):
        assert_matches(x[..., j], frozen)


def run_stuck_far_out(num_samples):
    """Chains 0 and 2 at x = 3 on the quartic, 1 and 3 at the mode; fixed MALA step 1e-3, no warmup."""
    kernel = DilationLangevin(
        potential_fn=quartic,
        center="init",
        stationary="mala",
        step_size=1e-3,
        adapt_step_size=False,
        adapt_mass_matrix=False,
    )
    start = jnp.array([[3.0] * 4, [0.0] * 4, [3.0] * 4, [0.0] * 4])
    return run(kernel, start, num_warmup=0, num_samples=num_samples)


def test_chains_stuck_far_out_are_named():
    """Two of four chains start sixty scales out on the quartic with no warmup.

    With a Langevin step suited to the bulk (1e-3), every proposal made there
    (U = 5e7, gradient 7e7) is divergent, so they never move, while the two
    started at the mode mix; the first sampling check at which their running
    acceptance (a ~100-iteration memory, starting at 1) is below 0.05, after
    300 iterations, names exactly the stuck two, once.
    (With any warmup the kernel first takes far chains towards the posterior:
    :mod:`numpyro_dilation.locate`.)
    """
    mcmc, health = run_stuck_far_out(num_samples=1000)
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    accept = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["accept_prob"])
    stuck = np.flatnonzero(accept[:, -100:].mean(1) < 0.05).tolist()
    assert stuck == [0, 2]
    assert len(health) == 1, health
    assert "before iteration 300 is below 0.05" in health[0]
    assert f"for chain(s) {stuck}" in health[0]


@pytest.mark.integration
def test_stuck_chains_are_reported_in_a_run_shorter_than_1000_draws():
    """The stuck chains of the test above, in a 400-draw run: named, once, before it ends."""
    mcmc, health = run_stuck_far_out(num_samples=400)
    accept = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["accept_prob"])
    stuck = np.flatnonzero(accept.mean(1) < 0.05).tolist()
    assert stuck == [0, 2]
    assert len(health) == 1, health
    assert f"below 0.05 for chain(s) {stuck}" in health[0]


# ------------------------------------------------------------------ improper posteriors


def flat_model():
    numpyro.sample("x", dist.ImproperUniform(constraints.real, (), event_shape=(2,)))


def heavy_tail_potential(x):
    return jnp.sum(jnp.log1p(jnp.abs(x)))  # density 1/(1+|x|): not integrable


@pytest.mark.integration
def test_improper_posteriors_run_to_the_end_with_finite_draws():
    flat, _ = run(DilationLangevin(flat_model), num_chains=2)
    heavy, _ = run(
        DilationLangevin(potential_fn=heavy_tail_potential), jnp.zeros((2, 2)), num_chains=2
    )
    for mcmc in (flat, heavy):
        x = np.asarray(jax.tree.leaves(mcmc.get_samples())[0])
        assert np.all(np.isfinite(x))
        assert np.all(np.isfinite(mcmc.get_extra_fields()["accept_prob"]))


@pytest.mark.integration
def test_improper_flat_posterior_warns():
    """Dual averaging drives the step to ~1e38 on a flat potential: the warning says improper."""
    _, health = run(DilationLangevin(flat_model), num_chains=2)
    assert any("above 1000" in h and "improper" in h for h in health), health


def improper_positive_model():
    numpyro.sample("s", dist.ImproperUniform(constraints.positive, (), ()))


@pytest.mark.integration
def test_improper_positive_parameter_is_reported_as_improper():
    """The chain drifts to z ~ 4e15 with a finite potential and no divergence, so every
    constrained draw exp(z) is inf: the run must say that the posterior is improper."""
    _, health = run(DilationLangevin(improper_positive_model), num_chains=2)
    assert any("above 1000" in h and "improper" in h for h in health), health


# ------------------------------------------------------------------ stopped chains


@pytest.mark.integration
def test_chains_confined_to_a_thin_slab_are_reported():
    """Finite only within 1e-3 of a curve: the adapted step falls below 1e-4 and it is said."""

    def potential(x):
        inside = jnp.abs(x[0] - jnp.sin(x[1])) < 1e-3
        return jnp.where(inside, 0.5 * jnp.sum(x**2), jnp.nan)

    mcmc, health = run(DilationLangevin(potential_fn=potential), jnp.zeros((4, 2)))
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    assert np.all(np.abs(x[..., 0] - np.sin(x[..., 1])) < 1e-3)
    assert mcmc.get_extra_fields()["diverging"].sum() > 0
    assert any("adapted step size after warmup is below 0.0001" in m for m in health), health


@pytest.mark.integration
def test_neal_funnel_flags_divergences():
    """Neal's funnel (d = 10, centred): no crash, finite draws, divergences flagged."""

    def potential(x):
        v, z = x[0], x[1:]
        return v**2 / 18 + 0.5 * jnp.sum(z**2) * jnp.exp(-v) + 0.5 * (x.size - 1) * v

    mcmc, health = run(
        DilationLangevin(potential_fn=potential), jnp.zeros((4, 10)), divergence_reports=True
    )
    assert np.all(np.isfinite(draws_of(mcmc)))
    num_divergent = int(mcmc.get_extra_fields()["diverging"].sum())
    assert num_divergent > 0
    # the chains miss the neck while mixing well elsewhere: the divergences are the
    # sign, and both sampling blocks report theirs
    reports = divergence_counts(health)
    assert len(reports) == 2, health
    assert sum(reports) == num_divergent


# ------------------------------------------------------------------ conditioning and dimension

ILL_SCALES = 10.0 ** np.linspace(-1.5, 1.5, 10)  # covariance condition number 1e6


@pytest.mark.integration
def test_ill_conditioned_diagonal_gaussian_with_diagonal_metric():
    def potential(x):
        return 0.5 * jnp.sum((x / ILL_SCALES) ** 2)

    mcmc, health = run(
        DilationLangevin(potential_fn=potential, dense_mass=False), jnp.zeros((4, 10))
    )
    x = draws_of(mcmc)
    assert health == [] and mcmc.get_extra_fields()["diverging"].sum() == 0
    assert_mean_close(x, np.zeros(10), ILL_SCALES)
    assert_sd_close(x, ILL_SCALES)


@pytest.mark.integration
def test_ill_conditioned_correlated_gaussian_with_dense_metric():
    """A rotated Gaussian with covariance eigenvalues 1e-3 ... 1e3, float32."""
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 10)))
    eigenvalues = 10.0 ** np.linspace(-3, 3, 10)
    precision = jnp.asarray((rotation / eigenvalues) @ rotation.T, jnp.float32)

    mcmc, health = run(
        DilationLangevin(potential_fn=lambda x: 0.5 * x @ precision @ x), jnp.zeros((4, 10))
    )
    x = draws_of(mcmc)
    assert health == [] and mcmc.get_extra_fields()["diverging"].sum() == 0
    along = x @ rotation  # coordinates along the eigenvectors, independent N(0, eigenvalue)
    assert_mean_close(along, np.zeros(10), np.sqrt(eigenvalues))
    assert_sd_close(along, np.sqrt(eigenvalues))


@pytest.mark.parametrize("d", [10_000])
@pytest.mark.integration
def test_ten_thousand_dimensions(d):
    """N(mu, diag(sd^2)) with sd from 0.1 to 10 and mu up to 3 sd from the centre.

    Each coordinate has an ESS of only ~30-80 per 4000 draws (MALA's d^(1/3)
    scaling), so the check is on whitened statistics with exact laws: the
    squared norm (chi-square, d degrees of freedom) and the normalised sum (N(0, 1)).
    """
    sd = 10.0 ** np.linspace(-1, 1, d)
    mu = np.linspace(-3, 3, d) * sd

    def potential(x):
        return 0.5 * jnp.sum(((x - mu) / sd) ** 2)

    mcmc, health = run(
        DilationLangevin(potential_fn=potential),
        jnp.zeros((4, d)),
        num_samples=1000,
        extra=("potential_energy",),
    )
    x = draws_of(mcmc)
    assert np.all(np.isfinite(x))
    assert health == [] and mcmc.get_extra_fields()["diverging"].sum() == 0
    squared_norm = 2.0 * np.asarray(mcmc.get_extra_fields(group_by_chain=True)["potential_energy"])
    assert_mean_close(squared_norm, d, np.sqrt(2 * d))
    normalised_sum = (x @ (1.0 / sd).astype(np.float32) - np.sum(mu / sd)) / np.sqrt(d)
    assert_mean_close(normalised_sum, 0.0, 1.0)
    assert_sd_close(normalised_sum, 1.0)
