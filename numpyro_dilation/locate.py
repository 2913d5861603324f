"""Finding the posterior from a start far outside it (pure functions on arrays).

The annealing starts every chain at the dilation centre and moves it with
Langevin steps sized by the curvature where it stands.  A centre far outside
the posterior in a badly scaled direction defeats that: a mixture of velocities
in km/s started at means of 0 and standard deviations of 1 has a potential of
1e10 there, a curvature of 1e10 along the log standard deviations and of 1e2
along the means, and steps small enough for the first never move the second.

Before the annealing, each chain therefore checks how far from the bulk of the
posterior it stands: half the squared gradient over the curvature along it,
the energy a Newton step would shed, is about ``d / 2`` inside the bulk.
Above :data:`FAR_NATS` nats per dimension the chain is first taken towards the
posterior by Newton steps on the diagonal of the Hessian (one forward-mode
derivative of the gradient per coordinate; a trust region's steps down the
gradient where that curvature is not positive), until it is no longer far; the
annealing then starts there.  A chain that starts inside or
near the posterior, the usual case, only pays for the check (one gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

#: A chain stands far from the posterior when a Newton step would shed more than
#: this many nats per dimension (about 14 standard deviations of a Gaussian in
#: every direction at once).
FAR_NATS = 100.0
#: Newton iterations at most.
MAX_ITERATIONS = 100
#: Relative length of the probe along the gradient that measures the curvature there.
PROBE = 1e-3
#: Gradient evaluations charged for a forward-mode derivative of the gradient.
JVP_COST = 2


class Located(NamedTuple):
    """Where a chain starts its annealing.

    Attributes
    ----------
    y, potential_energy, grad : array
        The position, its potential and gradient.
    num_grad_evals : int
        Gradient evaluations spent (the check and any Newton iterations).
    num_iterations : int
        Newton iterations taken (0 for a chain that was not far).
    """

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    num_grad_evals: jax.Array
    num_iterations: jax.Array


def excess_along_gradient(potential_and_grad: Callable, y, grad) -> jax.Array:
    """``|g|^2 / (2 k)`` with ``k`` the curvature along the gradient ``g`` (one gradient).

    The energy a Newton step along the gradient would shed; ``inf`` where the
    curvature there is not positive is reported as 0 (such a chain is left to
    the annealing).
    """
    norm = jnp.sqrt(jnp.sum(grad**2))
    scale = PROBE * jnp.maximum(1.0, jnp.sqrt(jnp.mean(y**2)))
    direction = grad / jnp.where(norm > 0, norm, 1.0)
    _, grad_probe = potential_and_grad(y - scale * direction)
    curvature = -jnp.dot(grad_probe - grad, direction) / scale
    excess = 0.5 * norm**2 / curvature
    return jnp.where(jnp.isfinite(excess) & (curvature > 0), excess, 0.0)


def hessian_diagonal(potential_and_grad: Callable, y) -> jax.Array:
    """The diagonal of the potential's Hessian at ``y``, one forward-mode derivative per coordinate."""

    def grad_fn(x):
        return potential_and_grad(x)[1]

    def column(e):
        return jax.jvp(grad_fn, (y,), (e,))[1]

    eye = jnp.eye(y.shape[-1], dtype=y.dtype)
    return jax.lax.map(lambda j: column(eye[j])[j], jnp.arange(y.shape[-1]))


def locate(potential_and_grad: Callable, y, potential_energy, grad) -> Located:
    """Take a chain that stands far from the posterior towards it (see the module docstring).

    Parameters
    ----------
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` on flat arrays.
    y, potential_energy, grad
        The start, its potential and gradient.
    """
    d = y.shape[-1]
    int_dtype = jnp.result_type(int)
    threshold = FAR_NATS * max(d, 1)
    far = excess_along_gradient(potential_and_grad, y, grad) > threshold

    def cond(carry):
        _, _, _, _, iteration, far = carry
        return far & (iteration < MAX_ITERATIONS)

    def body(carry):
        y, potential, grad, radius, iteration, _ = carry
        h = hessian_diagonal(potential_and_grad, y)
        # Newton per coordinate; where the curvature is not positive, a gradient step
        # as long as the trust region
        newton = -grad / jnp.where(h > 0, h, 1.0)
        step = jnp.where(h > 0, newton, -jnp.sign(grad) * radius)
        step = jnp.clip(step, -radius, radius)
        step = jnp.where(jnp.isfinite(step), step, 0.0)
        potential_new, grad_new = potential_and_grad(y + step)
        better = (
            jnp.isfinite(potential_new)
            & jnp.all(jnp.isfinite(grad_new))
            & (potential_new < potential)
        )
        y = jnp.where(better, y + step, y)
        potential = jnp.where(better, potential_new, potential)
        grad = jnp.where(better, grad_new, grad)
        radius = jnp.where(better, 4.0 * radius, 0.25 * radius)
        # the curvature along the gradient says whether the chain is still far (the
        # diagonal's can be negative: a mixture's means, far from their data)
        still_far = excess_along_gradient(potential_and_grad, y, grad) > threshold
        return y, potential, grad, radius, iteration + 1, still_far

    radius = jnp.maximum(jnp.abs(y), 1.0)
    carry = (y, potential_energy, grad, radius, jnp.zeros((), int_dtype), far)
    y, potential_energy, grad, _, iterations, _ = jax.lax.while_loop(cond, body, carry)
    evals = 1 + iterations * (JVP_COST * d + 2)
    return Located(y, potential_energy, grad, evals.astype(int_dtype), iterations)


__all__ = [
    "FAR_NATS",
    "JVP_COST",
    "MAX_ITERATIONS",
    "PROBE",
    "Located",
    "excess_along_gradient",
    "hessian_diagonal",
    "locate",
]
