"""Heavy tails: the annealing must not follow a Student-t tail out to infinity.

Locally a Student-t tail at radius ``r`` looks like a Gaussian of scale
``r / sqrt(nu + d)``: a curvature estimate taken from secants falls as
``1 / r^2`` and the Langevin step that it sets grows as ``r^2``, moving the
chain farther out at every step.  The fix keeps the step from growing along
moves on which the potential is not quadratic (:func:`cubic_error`), and keeps
a mass-matrix window spent in a tail from resetting it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import gammaln, logsumexp
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin
from numpyro_dilation.adaptation import cubic_error, update_curvature
from tests.test_ensemble import check_weights

D = 24
DF = 3.0
WEIGHTS = np.array([0.3, 0.7])
MEANS = np.zeros((2, D))
MEANS[0, 0], MEANS[1, 0] = -11.0, 13.0  # the centre (origin) is in both tails


def student_log_density(x):
    """Log density of each unit-scale multivariate Student-t component at ``x``."""
    sq = jnp.sum((x[..., None, :] - MEANS) ** 2, -1)
    const = gammaln((DF + D) / 2) - gammaln(DF / 2) - 0.5 * D * math.log(DF * math.pi)
    return const - 0.5 * (DF + D) * jnp.log1p(sq / DF)


def potential(x):
    return -logsumexp(jnp.log(WEIGHTS) + student_log_density(x))


def test_cubic_error_vanishes_on_quadratics_and_not_on_a_tail():
    y, y_new = jnp.array([10.0, 0.0]), jnp.array([25.0, 10.0])
    quad = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x**2) / 7.0)
    # the potential of a Student-t (nu = 3, d = 30) along two of its coordinates
    tail = jax.value_and_grad(lambda x: 0.5 * (3.0 + 30) * jnp.log1p(jnp.sum(x**2) / 3.0))
    for fn, zero in ((quad, True), (tail, False)):
        (u, g), (u_new, g_new) = fn(y), fn(y_new)
        err = float(cubic_error(u, g, u_new, g_new, y_new - y))
        assert (abs(err) < 1e-4) == zero, err


def test_curvature_is_not_lowered_along_a_move_out_in_a_tail():
    # the same secant, far below the estimate: a Gaussian's lowers L, a tail's does not
    y, y_new = jnp.array([10.0, 0.0]), jnp.array([25.0, 10.0])
    quad = jax.value_and_grad(lambda x: 0.5 * jnp.sum(x**2) * 1e-3)
    # the potential of a Student-t (nu = 3, d = 30) along two of its coordinates
    tail = jax.value_and_grad(lambda x: 0.5 * (3.0 + 30) * jnp.log1p(jnp.sum(x**2) / 3.0))
    out = []
    for fn in (quad, tail):
        (u, g), (u_new, g_new) = fn(y), fn(y_new)
        out.append(
            float(
                update_curvature(jnp.array(1.0), y, g, y_new, g_new, jnp.ones(2), False, u, u_new)
            )
        )
    assert out[0] < 0.9
    assert out[1] == 1.0


@pytest.mark.integration
def test_student_t_mixture_chains_stay_in_the_modes_and_weigh_them():
    num_chains, num_warmup, num_samples = 32, 300, 250
    kernel = DilationLangevin(potential_fn=potential, ensemble=True)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((num_chains, D)))
    x = np.asarray(mcmc.get_samples(group_by_chain=True))
    step = np.asarray(mcmc.last_state.adapt_state.step_size)
    assert np.all(np.isfinite(x))
    # exact radii about the nearest mode: sqrt(d F(d, nu)) with F ~ F-distribution
    rng = np.random.default_rng(0)
    exact = np.sqrt(D * rng.f(D, DF, size=200_000))

    def radius(z):
        return np.sqrt(((z[..., None, :] - MEANS) ** 2).sum(-1)).min(-1)

    # Before the fix every chain ended the annealing far out in the tails; a perfect
    # sampler has 1 draw in 1000 beyond the 0.999 quantile.
    far = np.quantile(exact, 0.999)
    assert np.mean(radius(x) > far) < 0.01
    assert step.min() >= 1e-3 * np.median(step)
    labels = np.argmin(((x[..., None, :] - MEANS) ** 2).sum(-1), axis=-1)
    check_weights(labels, WEIGHTS, min_ess=100)
