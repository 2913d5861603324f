"""One iteration of a lone chain or of vectorised chains: the move and the warmup work around it.

A lone chain (:func:`lone_step`) runs its own :func:`~numpyro_dilation.moves.transition`,
searches for a basin of more mass when it reaches ``t = 1`` (:func:`search_from`)
and closes its own mass-matrix windows.  Vectorised chains (:func:`pooled_step`)
move together and adapt mode by mode (:mod:`.pooling`): after the moves one
step size and trajectory length per mode (:func:`pooled_update`), one start for
all at the end of the annealing (:func:`pooled_start`) and, at a window's end,
the mode map's refit and each mode's metric (:func:`pooled_window_end`).

The iteration counter is shared by vectorised chains, so that costly warmup
work sits behind a real branch decided once for all of them (a per-chain branch
under ``vmap`` would become a select that computes it every iteration).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import random, vmap
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from numpyro_dilation import pooling, trajectory
from numpyro_dilation.adaptation import WindowAdapter
from numpyro_dilation.metric import variances
from numpyro_dilation.modes import ClusterGaussians, chain_search, mode_log_prob
from numpyro_dilation.modes import fit_cost as modes_fit_cost
from numpyro_dilation.moves import (
    chees_gradient_of,
    flat_potential_and_grad,
    initial_step_size,
    steps_of,
    trajectory_jitter,
    transition,
    transition_with_move,
)
from numpyro_dilation.state import DilationSettings, DilationState, phases
from numpyro_dilation.trajectory import TrajectoryMove


def search_from(
    settings: DilationSettings, state: DilationState, i: ArrayLike, potential_fn: Callable
) -> DilationState:
    """The end of a lone chain's annealing: move to a basin of more mass, if one is near.

    A chain adapting alone has no others to tell it of a better basin.
    """
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
    traj = state.adapt_state.trajectory
    return state._replace(
        y=y,
        z=unravel(y),
        potential_energy=potential,
        y_grad=grad,
        num_grad_evals=state.num_grad_evals + cost,
        adapt_state=state.adapt_state._replace(
            trajectory=traj._replace(center=jnp.where(moved, y, traj.center))
        ),
    )


def lone_step(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    potential_fn: Callable,
) -> DilationState:
    """One iteration of a chain adapting alone, its basin search and window ends included."""
    i, num_anneal, num_warmup = phases(state, False)
    state = transition(settings, adapter, state, i, num_anneal, num_warmup, potential_fn)
    if state.y.size > 0:
        # a chain adapting alone looks for a basin of more mass when it reaches t = 1
        state = jax.lax.cond(
            i == num_anneal - 1,
            lambda s: search_from(settings, s, i, potential_fn),
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


def pooled_update(
    settings: DilationSettings,
    adapter: WindowAdapter,
    previous: DilationState,
    state: DilationState,
    move: TrajectoryMove,
    i: ArrayLike,
) -> DilationState:
    """Step size, and trajectory length, adapted once per mode for vectorised chains.

    ``previous`` holds the chains before their ``move``, which the ChEES gradient
    compares with the end of the trajectory.
    """
    chees = None
    if settings.stationary == "hmc" and settings.adapt_trajectory_length:
        gradients = jax.vmap(chees_gradient_of)(previous, move, state.adapt_state.trajectory.center)
        weights = jnp.where(move.diverging, 0.0, move.accept_prob)
        exposure, events = jax.vmap(trajectory.uturn_observation)(
            move, previous.adapt_state.step_size
        )
        chees = (gradients, weights, trajectory_jitter(i), exposure, events)
    modes, adapt = pooling.update(
        state.modes, state.adapt_state, i, move.accept_prob, adapter, chees
    )
    return state._replace(modes=modes, adapt_state=adapt)


def pooled_start(settings: DilationSettings, state: DilationState) -> DilationState:
    """At the end of the annealing, one starting step (and length) for all chains.

    From the median curvature, so that one chain's outlying estimate does not size all.
    """
    curvature = jnp.median(state.adapt_state.curvature)
    modes, adapt = pooling.start(
        state.modes,
        state.adapt_state,
        initial_step_size(curvature, settings.stationary),
        jax.lax.rsqrt(curvature) if settings.stationary == "hmc" else None,
        settings.step_from_curvature,
    )
    return state._replace(modes=modes, adapt_state=adapt)


def pooled_window_end_keep_modes(adapter: WindowAdapter, state: DilationState) -> DilationState:
    """Close a mass-matrix window with the chains' mode labels as they are (while annealing)."""
    modes, adapt = pooling.end_window(state.modes, state.adapt_state, adapter, refit=False)
    return state._replace(modes=modes, adapt_state=adapt)


def pooled_window_end_refit(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    i: ArrayLike,
    potential_fn: Callable,
) -> DilationState:
    """Close a mass-matrix window at ``t = 1``: refit the mode map, then each mode's metric.

    The map's gradients are shared out over the chains' ``num_grad_evals``.
    """
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
    pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)
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


def pooled_window_end(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    i: ArrayLike,
    num_anneal: ArrayLike,
    potential_fn: Callable,
) -> DilationState:
    """Close a mass-matrix window; after the annealing, refit the modes first."""
    annealing = partial(pooled_window_end_keep_modes, adapter)
    if state.modes.step_size.shape[0] == 1:
        # one slot: a single mode, nothing to refit
        return annealing(state)
    stationary = partial(pooled_window_end_refit, settings, adapter, i=i, potential_fn=potential_fn)
    return jax.lax.cond(i >= num_anneal, stationary, annealing, state)


def label_log_weight(
    gaussians: ClusterGaussians, on: ArrayLike, label: ArrayLike, y: jax.Array
) -> jax.Array:
    """Log probability of mode ``label`` at ``y`` where ``on`` (else 0), for a chain's local move.

    A move that carries it leaves the posterior times the label's probability invariant.
    """
    return jnp.where(on, mode_log_prob(gaussians, y, label), 0.0)


def pooled_chain_transition(
    settings: DilationSettings,
    adapter: WindowAdapter,
    i: ArrayLike,
    num_anneal: ArrayLike,
    num_warmup: ArrayLike,
    max_steps: ArrayLike | None,
    potential_fn: Callable,
    label_weights: tuple[ClusterGaussians, ArrayLike] | None,
    chain: DilationState,
    num_steps: ArrayLike,
    label: ArrayLike,
) -> tuple[DilationState, TrajectoryMove]:
    """One vectorised chain's transition (mapped over the chains by :func:`pooled_step`)."""
    log_weight = None
    if label_weights is not None:
        gaussians, on = label_weights
        log_weight = partial(label_log_weight, gaussians, on, label)
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


def pooled_step(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    potential_fn: Callable,
    label_weights: tuple[ClusterGaussians, ArrayLike] | None = None,
) -> DilationState:
    """One iteration of vectorised chains, their pooled adaptation and window ends included.

    ``label_weights``, ``(gaussians, on)``, makes each chain's local move leave the
    posterior times the probability of its mode label invariant where ``on``
    (ensemble mode, :func:`label_log_weight`).
    """
    i, num_anneal, num_warmup = phases(state, True)
    # The phase counters and the loop bound of the leapfrog steps go in unbatched,
    # so that the warmup-only work stays behind a real branch and the leapfrog
    # loop is one loop for all chains (each stops at its own mode's length).
    modes = state.modes
    previous = state._replace(modes=None)
    if settings.stationary == "hmc":
        num_steps = jax.vmap(partial(steps_of, settings), in_axes=(0, None, None))(
            previous.adapt_state, i, num_warmup
        )
        max_steps, steps_axis = jnp.max(num_steps), 0
    else:
        num_steps, max_steps, steps_axis = 1, None, None
    one_chain = partial(
        pooled_chain_transition,
        settings,
        adapter,
        i,
        num_anneal,
        num_warmup,
        max_steps,
        potential_fn,
        label_weights,
    )
    chains, move = vmap(one_chain, in_axes=(0, steps_axis, 0))(previous, num_steps, modes.label)
    state = chains._replace(modes=modes)
    state = jax.lax.cond(
        (i >= num_anneal) & (i < num_warmup),
        lambda s: pooled_update(settings, adapter, previous, s, move, i),
        lambda s: s,
        state,
    )
    state = jax.lax.cond(i == num_anneal - 1, partial(pooled_start, settings), lambda s: s, state)
    return jax.lax.cond(
        adapter.is_window_end(i) & (i < num_warmup),
        lambda s: pooled_window_end(settings, adapter, s, i, num_anneal, potential_fn),
        lambda s: s,
        state,
    )


def step(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    potential_fn: Callable,
    batched: bool,
    label_weights: tuple[ClusterGaussians, ArrayLike] | None = None,
) -> DilationState:
    """One iteration of one chain (:func:`lone_step`) or of vectorised chains (:func:`pooled_step`).

    ``label_weights`` only applies to vectorised chains (ensemble mode).
    """
    if not batched:
        return lone_step(settings, adapter, state, potential_fn)
    return pooled_step(settings, adapter, state, potential_fn, label_weights)


__all__ = [
    "label_log_weight",
    "lone_step",
    "pooled_chain_transition",
    "pooled_start",
    "pooled_step",
    "pooled_update",
    "pooled_window_end",
    "pooled_window_end_keep_modes",
    "pooled_window_end_refit",
    "search_from",
    "step",
]
