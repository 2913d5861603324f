"""The sampler as pure functions: state, ``init`` and ``build_kernel``.

One iteration of one chain (:func:`build_kernel`'s ``transition``):

1. the chain sits at rescaled coordinates ``y = c + (z - c) / sqrt(t)``, where
   the model's own potential and gradient apply unchanged (:mod:`.path`);
2. a Langevin move in the adapted metric (:mod:`.langevin`, :mod:`.metric`):
   unadjusted while annealing, with the step ``eps * t**(alpha - 1) / L`` and a
   contraction to the next level; Metropolis-adjusted (MALA) at ``t = 1``;
3. the warmup adaptation learns from the move (:mod:`.adaptation`): the
   curvature ``L`` while annealing, dual averaging of the step size afterwards,
   Welford sums for the mass matrix throughout;
4. the new state maps ``y`` back to the level's point ``z``.

:func:`build_kernel`'s ``step`` runs that transition for one chain or for a
batch of vectorised chains, and closes a mass-matrix window where one ends:
the iteration counter is shared by vectorised chains, so that costly
window-end work is decided once for all of them (a per-chain branch under
``vmap`` would become a select that computes it every iteration).

Nothing here knows about NumPyro's ``MCMCKernel``: the kernel class
(:mod:`.kernel`) builds the potential, the centre and the settings, then calls
these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import random, vmap
from jax.flatten_util import ravel_pytree

from numpyro_dilation import moves, path, pooling
from numpyro_dilation.adaptation import WindowAdapter, initial_curvature
from numpyro_dilation.locate import locate
from numpyro_dilation.metric import variances
from numpyro_dilation.modes import chain_search, mode_log_probs
from numpyro_dilation.modes import fit_cost as modes_fit_cost
from numpyro_dilation.moves import (
    RECENT_WEIGHT,
    chees_gradient_of,
    flat_potential_and_grad,
    initial_step_size,
    steps_of,
    trajectory_jitter,
    trajectory_length,
    transition_with_move,
)
from numpyro_dilation.state import DilationSettings, DilationState, phases

#: Stationary kernels after the annealing.
STATIONARY_KERNELS = ("hmc", "mala")


def init(
    rng_key: jax.Array,
    params: Any,
    potential_fn: Callable,
    adapter: WindowAdapter,
    settings: DilationSettings,
    *,
    center: jax.Array | None,
    step_size: float,
    inverse_mass_matrix: Any,
    num_anneal_steps: int,
    num_warmup: int,
) -> DilationState:
    """State of one chain at the dilation centre, at the first level of the path.

    Parameters
    ----------
    rng_key : jax.Array
        The chain's random key.
    params : pytree
        Unconstrained parameters fixing the structure (and, for
        ``center=None``, the centre).
    potential_fn : callable
        Potential energy of a pytree like ``params``.
    adapter : WindowAdapter
        The warmup adaptation (:func:`numpyro_dilation.adaptation.window_adapter`).
    settings : DilationSettings
        Transition settings.
    center : array or None
        Flat centre of the dilation; ``None`` for the chain's own ``params``.
    step_size, inverse_mass_matrix
        Initial step size and inverse mass matrix (``None`` for the identity).
    num_anneal_steps, num_warmup : int
        Phase boundaries, kept in the state.
    """
    flat, unravel = ravel_pytree(params)
    size = flat.size
    c = flat if center is None else center.astype(flat.dtype)
    # Without annealing the chains start on the target itself.
    t0 = (
        path.initial_level(settings.levels, flat.dtype)
        if num_anneal_steps > 0
        else jnp.ones((), flat.dtype)
    )
    pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)
    pe, grad = pag(c)
    int_zero = jnp.array(0, dtype=jnp.result_type(int))
    adapt_state = adapter.init(size, step_size, inverse_mass_matrix, flat.dtype)
    grads = 1
    if num_anneal_steps > 0 and size > 0:
        # a centre far outside the posterior is first moved towards it (the annealing
        # could not leave it): the dilation then centres there
        located = locate(pag, c, pe, grad)
        c, pe, grad = located.y, located.potential_energy, located.grad
        grads += located.num_grad_evals
        # the annealing's first step must not be sized for a curvature of 1
        curvature = initial_curvature(pag, c, grad, adapt_state.metric, adapt_state.curvature)
        adapt_state = adapt_state._replace(curvature=curvature)
        grads += 1
    return DilationState(
        i=int_zero,
        z=unravel(c),
        potential_energy=pe + path.log_normalizer(size, t0),
        y=c,
        y_grad=grad,
        center=c,
        t=t0,
        step_size=jnp.zeros((), flat.dtype),
        accept_prob=jnp.zeros((), flat.dtype),
        mean_accept_prob=jnp.zeros((), flat.dtype),
        recent_accept_prob=jnp.ones((), flat.dtype),
        diverging=jnp.array(False),
        num_grad_evals=int_zero + grads,
        num_steps=int_zero,
        adapt_state=adapt_state,
        rng_key=rng_key,
        num_anneal_steps=int_zero + num_anneal_steps,
        num_warmup=int_zero + num_warmup,
    )


class DilationKernel(NamedTuple):
    """What :func:`build_kernel` returns.

    Attributes
    ----------
    transition : callable
        ``(state, i, num_anneal_steps, num_warmup, potential_fn, num_steps) -> state``:
        one iteration of one chain adapting alone, without the window-end work.
    step : callable
        ``(state, potential_fn, batched) -> state``: one iteration of one chain
        or of a batch of vectorised chains, window ends included.  Vectorised
        chains adapt together: one step size from the geometric mean of their
        acceptance (:func:`~numpyro_dilation.adaptation.pooled_acceptance`), one
        mass matrix from their mean within-chain covariance, one trajectory
        length from their mean ChEES gradient.
    """

    transition: Callable
    step: Callable


def build_kernel(settings: DilationSettings, adapter: WindowAdapter) -> DilationKernel:
    """Build the transition of the dilation sampler (see the module docstring).

    Parameters
    ----------
    settings : DilationSettings
        Transition settings.
    adapter : WindowAdapter
        The warmup adaptation built for this run's phase boundaries.

    Returns
    -------
    DilationKernel
    """
    hmc = settings.stationary == "hmc"
    if settings.stationary not in STATIONARY_KERNELS:
        raise ValueError(f"stationary must be one of {STATIONARY_KERNELS}")
    transition = partial(moves.transition, settings, adapter)

    def search_from(state, i, potential_fn):
        """The end of a lone chain's annealing: move to a basin of more mass, if one is near."""
        _, unravel = ravel_pytree(state.z)
        pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)
        scale = jnp.sqrt(variances(state.adapt_state.inverse_mass_matrix))
        y, potential, grad, moved, cost = chain_search(
            random.fold_in(state.rng_key, i),
            state.y,
            state.potential_energy,
            state.y_grad,
            scale,
            pag,
        )
        trajectory = state.adapt_state.trajectory
        return state._replace(
            y=y,
            z=unravel(y),
            potential_energy=potential,
            y_grad=grad,
            num_grad_evals=state.num_grad_evals + cost,
            adapt_state=state.adapt_state._replace(
                trajectory=trajectory._replace(center=jnp.where(moved, y, trajectory.center))
            ),
        )

    def pooled_update(previous, state, move, i):
        """Step size, and trajectory length, adapted once per mode for vectorised chains."""
        chees = None
        if hmc and settings.adapt_trajectory_length:
            gradients = jax.vmap(chees_gradient_of)(
                previous, move, state.adapt_state.trajectory.center
            )
            weights = jnp.where(move.diverging, 0.0, move.accept_prob)
            chees = (gradients, weights, trajectory_jitter(i))
        modes, adapt = pooling.update(
            state.modes, state.adapt_state, i, move.accept_prob, adapter, chees
        )
        return state._replace(modes=modes, adapt_state=adapt)

    def pooled_start(state):
        """At the end of the annealing, one starting step (and length) for all chains."""
        curvature = jnp.median(state.adapt_state.curvature)
        modes, adapt = pooling.start(
            state.modes,
            state.adapt_state,
            initial_step_size(curvature, settings.stationary),
            jax.lax.rsqrt(curvature) if hmc else None,
            settings.adapt_step_size,
        )
        return state._replace(modes=modes, adapt_state=adapt)

    def pooled_window_end(state, i, num_anneal, potential_fn):
        """Close a mass-matrix window; after the annealing, refit the modes first."""

        def annealing(state):
            modes, adapt = pooling.end_window(state.modes, state.adapt_state, adapter, refit=False)
            return state._replace(modes=modes, adapt_state=adapt)

        def stationary(state):
            _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
            pag = flat_potential_and_grad(
                potential_fn, unravel, settings.forward_mode_differentiation
            )
            modes, adapt = pooling.end_window(
                state.modes,
                state.adapt_state,
                adapter,
                refit=True,
                rng_key=random.fold_in(state.rng_key[0], i),
                y=state.y,
                potential_and_grad=pag,
            )
            # the map's descents and barriers, shared out over the chains
            n = state.y.shape[0]
            cost = -(-modes_fit_cost(n, modes.step_size.shape[0]) // n)
            return state._replace(
                modes=modes, adapt_state=adapt, num_grad_evals=state.num_grad_evals + cost
            )

        if state.modes.step_size.shape[0] == 1:
            # one slot: a single mode, nothing to refit
            return annealing(state)
        return jax.lax.cond(i >= num_anneal, stationary, annealing, state)

    def step(
        state: DilationState, potential_fn, batched: bool, label_weights=None
    ) -> DilationState:
        """One iteration; ``label_weights``, ``(gaussians, on)``, makes each vectorised chain's
        local move leave the posterior times the probability of its mode label invariant
        (ensemble mode, see :func:`numpyro_dilation.modes.mode_log_probs`) where ``on``."""
        i, num_anneal, num_warmup = phases(state, batched)
        if not batched:
            state = transition(state, i, num_anneal, num_warmup, potential_fn)
            if state.y.size > 0:
                # a chain adapting alone looks for a basin of more mass when it reaches t = 1
                state = jax.lax.cond(
                    i == num_anneal - 1,
                    lambda s: search_from(s, i, potential_fn),
                    lambda s: s,
                    state,
                )
            adapt_state = jax.lax.cond(
                adapter.is_window_end(i) & (i < num_warmup),
                adapter.end_window,
                lambda a: a,
                state.adapt_state,
            )
            return state._replace(adapt_state=adapt_state)
        # The phase counters and the loop bound of the leapfrog steps go in unbatched,
        # so that the warmup-only work stays behind a real branch and the leapfrog
        # loop is one loop for all chains (each stops at its own mode's length).
        modes = state.modes
        previous = state._replace(modes=None)
        if hmc:
            num_steps = jax.vmap(partial(steps_of, settings), in_axes=(0, None, None))(
                previous.adapt_state, i, num_warmup
            )
            max_steps, steps_axis = jnp.max(num_steps), 0
        else:
            num_steps, max_steps, steps_axis = 1, None, None

        def one_chain(chain, num_steps, label):
            log_weight = None
            if label_weights is not None:
                gaussians, on = label_weights

                def log_weight(y):
                    return jnp.where(on, mode_log_probs(gaussians, y[None])[0, label], 0.0)

            return transition_with_move(
                settings,
                adapter,
                chain,
                i,
                num_anneal,
                num_warmup,
                num_steps,
                max_steps,
                potential_fn,
                True,
                log_weight,
            )

        chains, move = vmap(one_chain, in_axes=(0, steps_axis, 0))(previous, num_steps, modes.label)
        state = chains._replace(modes=modes)
        state = jax.lax.cond(
            (i >= num_anneal) & (i < num_warmup),
            lambda s: pooled_update(previous, s, move, i),
            lambda s: s,
            state,
        )
        state = jax.lax.cond(i == num_anneal - 1, pooled_start, lambda s: s, state)
        return jax.lax.cond(
            adapter.is_window_end(i) & (i < num_warmup),
            lambda s: pooled_window_end(s, i, num_anneal, potential_fn),
            lambda s: s,
            state,
        )

    return DilationKernel(transition, step)


__all__ = [
    "RECENT_WEIGHT",
    "STATIONARY_KERNELS",
    "DilationKernel",
    "DilationSettings",
    "DilationState",
    "build_kernel",
    "flat_potential_and_grad",
    "init",
    "initial_step_size",
    "phases",
    "trajectory_length",
]
