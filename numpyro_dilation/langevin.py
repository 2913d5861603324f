"""Preconditioned Langevin moves on flat arrays: MALA and unadjusted Langevin.

Conventions (those of the dilation-path paper and of BlackJAX's MALA): the
potential is ``U = -log p``, the step size ``h`` is the Langevin time step, and
the proposal from ``y`` is

.. math:: y^* = y - h P \\nabla U(y) + \\sqrt{2h}\\, A \\xi, \\qquad \\xi \\sim N(0, I),

with ``P`` the inverse mass matrix and ``A A^T = P`` (its elementwise square
root when diagonal, its lower Cholesky factor when dense).  One leapfrog step of HMC with step ``e``
is the same move with ``h = e**2 / 2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.typing import ArrayLike

from numpyro_dilation.metric import Metric, precondition

#: A proposal whose energy error exceeds this is a divergence (NumPyro's HMC value).
MAX_DELTA_ENERGY = 1000.0


class LangevinMove(NamedTuple):
    """Outcome of one Langevin move.

    Attributes
    ----------
    y : array
        The new position (the proposal if accepted, else the old position).
    potential_energy : float
        Potential at ``y``.
    grad : array
        Gradient of the potential at ``y``.
    accept_prob : float
        Probability with which the proposal was accepted: the Metropolis-Hastings
        probability for adjusted moves, 1 for unadjusted ones; 0 when divergent.
    diverging : bool
        The proposal had a non-finite potential or gradient, or an energy error
        above ``max_delta_energy``; it was rejected.
    proposal, proposal_grad : array
        The proposal and the potential's gradient there, whether accepted or not
        (adaptation learns from rejected proposals too).
    proposal_potential : float
        The potential at the proposal.
    """

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    proposal: jax.Array
    proposal_grad: jax.Array
    proposal_potential: jax.Array


#: Machine epsilons of the potentials that an energy error may be off by rounding.
ENERGY_ROUNDING = 64


def energy_rounding(potential_energy: ArrayLike, potential_energy_new: ArrayLike) -> jax.Array:
    """The rounding error of an energy difference between two potentials (in their dtype)."""
    eps = jnp.finfo(jnp.result_type(potential_energy)).eps
    size = jnp.abs(potential_energy) + jnp.abs(potential_energy_new)
    return ENERGY_ROUNDING * eps * jnp.where(jnp.isfinite(size), size, 0.0)


def langevin_proposal(
    rng_key: jax.Array,
    y: ArrayLike,
    grad: ArrayLike,
    step_size: ArrayLike,
    metric: Metric,
):
    """Draw ``y - h P grad + sqrt(2h) A xi`` (see the module docstring)."""
    noise = random.normal(rng_key, jnp.shape(y), dtype=jnp.result_type(y))
    noise = precondition(metric.inverse_mass_matrix_sqrt, noise)
    drift = precondition(metric.inverse_mass_matrix, grad)
    return y - step_size * drift + jnp.sqrt(2.0 * step_size) * noise


def mala_log_accept_ratio(
    y: ArrayLike,
    potential_energy: ArrayLike,
    grad: ArrayLike,
    y_new: ArrayLike,
    potential_energy_new: ArrayLike,
    grad_new: ArrayLike,
    step_size: ArrayLike,
    inverse_mass_matrix: ArrayLike,
):
    """Log Metropolis-Hastings ratio of a preconditioned Langevin proposal.

    ``log [p(y') q(y | y')] - log [p(y) q(y' | y)]``, written so that only the
    inverse mass matrix ``P`` is needed (the quadratic terms in ``M = P^{-1}``
    cancel):

    .. math::
        U(y) - U(y') + \\tfrac12 (y' - y)^T (g + g')
        - \\tfrac{h}{4} \\bigl(g'^T P g' - g^T P g\\bigr).
    """
    delta = y_new - y
    kinetic_old = jnp.dot(grad, precondition(inverse_mass_matrix, grad))
    kinetic_new = jnp.dot(grad_new, precondition(inverse_mass_matrix, grad_new))
    return (
        potential_energy
        - potential_energy_new
        + 0.5 * jnp.dot(delta, grad + grad_new)
        - 0.25 * step_size * (kinetic_new - kinetic_old)
    )


def langevin_move(
    rng_key: jax.Array,
    y: ArrayLike,
    potential_energy: ArrayLike,
    grad: ArrayLike,
    potential_and_grad: Callable,
    step_size: ArrayLike,
    metric: Metric,
    *,
    adjusted: ArrayLike = True,
    center: ArrayLike = 0.0,
    contraction: ArrayLike = 1.0,
    max_delta_energy: float = MAX_DELTA_ENERGY,
    log_weight: Callable | None = None,
) -> LangevinMove:
    """One Langevin move, with one evaluation of the potential and its gradient.

    The proposal ``y*`` (see the module docstring) is mapped to
    ``y' = center + contraction * (y* - center)`` before it is evaluated; the
    annealing uses this to move to the next level of the dilation path, and the
    stationary phase leaves ``contraction = 1``.

    Parameters
    ----------
    rng_key : jax.Array
        Random key.
    y, potential_energy, grad
        Current position, its potential and the potential's gradient.
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` on flat arrays.
    step_size : float
        Langevin time step ``h`` in the coordinates of ``y``.
    metric : Metric
        Preconditioner ``P`` with its factors (see :mod:`numpyro_dilation.metric`).
    adjusted : bool
        Metropolis-adjust the move (MALA; exact only with ``contraction = 1``)
        or accept every non-divergent proposal (unadjusted Langevin).
    center, contraction
        Contraction applied to the proposal (annealing).
    max_delta_energy : float
        Energy error (minus the log Metropolis-Hastings ratio of the move, computed
        for unadjusted moves too) beyond which a proposal is a divergence and is
        rejected; an overflowing ratio (+-inf, NaN) is one as well.
    log_weight : callable, optional
        ``y -> log w(y)``: an adjusted move then leaves ``p(y) w(y)`` invariant
        (the acceptance gains the factor ``w(y') / w(y)``, which the returned
        ``accept_prob`` leaves out).

    Returns
    -------
    LangevinMove
    """
    key_proposal, key_accept = random.split(rng_key)
    proposal = langevin_proposal(key_proposal, y, grad, step_size, metric)
    proposal = center + contraction * (proposal - center)
    pe_new, grad_new = potential_and_grad(proposal)

    log_ratio = mala_log_accept_ratio(
        y, potential_energy, grad, proposal, pe_new, grad_new, step_size, metric.inverse_mass_matrix
    )
    # The energy error -log_ratio measures how badly the step resolves the potential,
    # adjusted or not: an unadjusted step that overshoots far into a low-potential
    # region (easy from a poor start) has a huge error although the potential fell.
    energy_error = -log_ratio
    # A proposal far out in the tails can overflow the ratio's quadratic terms even
    # when its potential is finite (+-inf or NaN): it is a divergence, never a move.
    finite = (
        jnp.isfinite(pe_new) & jnp.all(jnp.isfinite(grad_new)) & jnp.all(jnp.isfinite(proposal))
    )
    # NaN compares False: test the negation so that a NaN energy error diverges too.
    # The bound counts from the rounding error of the potentials: at a potential of
    # 1e10 (a start far from the posterior) float32 resolves nothing below 1e3, and
    # every move would be a divergence.
    bound = max_delta_energy + energy_rounding(potential_energy, pe_new)
    diverging = ~finite | ~(jnp.abs(energy_error) <= bound)
    mh_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accept_prob = jnp.where(diverging, 0.0, jnp.where(adjusted, mh_prob, 1.0))
    accept_prob = accept_prob.astype(jnp.result_type(y))
    u = random.uniform(key_accept, dtype=jnp.result_type(y))
    accepted = u < accept_prob
    if log_weight is not None:
        # the weight's factor rejects moves too (a weight of zero at the proposal always,
        # and that is not a divergence); accept_prob stays the move's own
        gain = log_weight(jnp.where(finite, proposal, y)) - log_weight(y)
        factor = jnp.exp(jnp.minimum(jnp.where(jnp.isnan(gain), -jnp.inf, gain), 0.0))
        accepted = u < accept_prob * factor

    return LangevinMove(
        y=jnp.where(accepted, proposal, y),
        potential_energy=jnp.where(accepted, pe_new, potential_energy),
        grad=jnp.where(accepted, grad_new, grad),
        accept_prob=accept_prob,
        diverging=diverging,
        proposal=proposal,
        proposal_grad=grad_new,
        proposal_potential=pe_new,
    )


__all__ = [
    "ENERGY_ROUNDING",
    "MAX_DELTA_ENERGY",
    "LangevinMove",
    "energy_rounding",
    "langevin_move",
    "langevin_proposal",
    "mala_log_accept_ratio",
]
