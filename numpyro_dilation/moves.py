"""One chain's move and transition: the Langevin or HMC move, and what the warmup learns from it.

:func:`transition` is one iteration of one chain:

1. the chain sits at rescaled coordinates ``y = c + (z - c) / sqrt(t)``, where
   the model's own potential and gradient apply unchanged (:mod:`.path`);
2. :func:`move_of` moves it in the adapted metric (:mod:`.langevin`,
   :mod:`.metric`): an unadjusted Langevin step ``eps * t**(alpha - 1) / L``
   with a contraction to the next level while annealing; at ``t = 1`` a
   Metropolis-adjusted Langevin step (MALA) or an HMC trajectory
   (:mod:`.trajectory`);
3. :func:`warmup_update` adapts from the move (:mod:`.adaptation`): the
   curvature ``L`` while annealing, dual averaging of the step size and the
   ChEES trajectory length afterwards, Welford sums for the mass matrix
   throughout;
4. the new state maps ``y`` back to the level's point ``z``.

Every function takes the run's :class:`~numpyro_dilation.state.DilationSettings`
(and, where it adapts, the :class:`~numpyro_dilation.adaptation.WindowAdapter`)
and the phase counters as arguments: nothing is closed over.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import random
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from numpyro_dilation import path, trajectory
from numpyro_dilation.adaptation import (
    AdaptState,
    WindowAdapter,
    restart_dual_averaging,
    running_mean,
    update_curvature,
)
from numpyro_dilation.langevin import MAX_DELTA_ENERGY, langevin_move
from numpyro_dilation.state import DilationSettings, DilationState
from numpyro_dilation.trajectory import TrajectoryMove

#: Weight floor of the running mean of a chain's position that ChEES centres on
#: (a memory of about 50 iterations).
CENTER_WEIGHT = 0.02

#: Weight of the newest acceptance in ``recent_accept_prob`` (a ~100-iteration memory).
RECENT_WEIGHT = 0.01


def flat_potential_and_grad(
    potential_fn: Callable, unravel: Callable, forward_mode_differentiation: bool = False
) -> Callable:
    """``y -> (U(y), grad U(y))`` on flat arrays, for a potential of a pytree."""

    def flat_potential(y):
        return potential_fn(unravel(y))

    if not forward_mode_differentiation:
        return jax.value_and_grad(flat_potential)

    def forward(y):
        # one forward pass gives the value as the auxiliary output of jacfwd
        grad, value = jax.jacfwd(lambda x: (flat_potential(x),) * 2, has_aux=True)(y)
        return value, grad

    return forward


def initial_step_size(curvature: ArrayLike, stationary: str) -> jax.Array:
    """The stationary kernel's first step, from the curvature ``L`` the annealing measured.

    A Langevin step ``h = 1 / L``; a leapfrog step ``1 / sqrt(L)`` (stable below
    ``2 / sqrt(L)``).
    """
    return 1.0 / curvature if stationary == "mala" else jax.lax.rsqrt(curvature)


def trajectory_length(adapt: AdaptState, i: ArrayLike, num_warmup: ArrayLike) -> jax.Array:
    """The warmup iterate of the trajectory length, or its average once warmup is over."""
    return jnp.where(
        i < num_warmup,
        trajectory.warmup_length(adapt.trajectory),
        trajectory.final_length(adapt.trajectory),
    )


def chees_gradient_of(state: DilationState, move: TrajectoryMove, center: jax.Array) -> jax.Array:
    """The move's ChEES gradient about ``center``; 0 for a divergent move, which says nothing."""
    return jnp.where(
        move.diverging,
        0.0,
        trajectory.chees_gradient(
            state.y,
            move.proposal,
            move.proposal_velocity,
            center,
            center,
            state.adapt_state.whitening,
        ),
    )


def trajectory_jitter(i: ArrayLike) -> jax.Array:
    """Iteration ``i``'s fraction of the trajectory length, in (0, 1]: quasi-random, not periodic."""
    return 1.0 - trajectory.halton(i)


def steps_of(
    settings: DilationSettings, adapt: AdaptState, i: ArrayLike, num_warmup: ArrayLike
) -> int | jax.Array:
    """Leapfrog steps of iteration ``i`` (1 for MALA, whose move is a single step)."""
    if settings.stationary != "hmc":
        return 1
    return trajectory.num_leapfrog_steps(
        i, trajectory_length(adapt, i, num_warmup), adapt.step_size
    )


def langevin_move_of(
    settings: DilationSettings,
    state: DilationState,
    i: ArrayLike,
    num_anneal: ArrayLike,
    num_warmup: ArrayLike,
    t_next: jax.Array,
    potential_and_grad: Callable,
    log_weight: Callable | None,
    key: jax.Array,
) -> tuple[TrajectoryMove, jax.Array]:
    """The Langevin move: unadjusted towards level ``t_next`` while annealing, MALA at ``t = 1``.

    Returns the move (as a one-step :class:`~numpyro_dilation.trajectory.TrajectoryMove`)
    and its step in the coordinates of ``z``.
    """
    adapt = state.adapt_state
    annealing = i < num_anneal
    step_y = jnp.where(
        annealing,
        path.rescaled_step_size(settings.eps, settings.alpha, state.t, adapt.curvature),
        adapt.step_size,
    )
    adjusted = ~annealing & (settings.adjust | (i < num_warmup))
    move = langevin_move(
        key,
        state.y,
        state.potential_energy - path.log_normalizer(state.y.size, state.t),
        state.y_grad,
        potential_and_grad,
        step_y,
        adapt.metric,
        adjusted=adjusted,
        center=state.center,
        contraction=path.contraction(state.t, t_next),
        max_delta_energy=MAX_DELTA_ENERGY,
        log_weight=log_weight,
    )
    return TrajectoryMove(
        *move,
        proposal_velocity=jnp.zeros_like(state.y),
        num_steps=jnp.ones((), jnp.result_type(int)),
        uturn_steps=jnp.zeros((), jnp.result_type(int)),
    ), step_y * state.t


def hamiltonian_move_of(
    settings: DilationSettings,
    state: DilationState,
    flat_potential: Callable,
    num_steps: ArrayLike,
    max_steps: ArrayLike | None,
    log_weight: Callable | None,
    key: jax.Array,
) -> tuple[TrajectoryMove, jax.Array]:
    """The HMC move at ``t = 1``: ``num_steps`` leapfrog steps; returns the move and its step.

    ``flat_potential`` is the model's potential of the flat coordinates ``y``.
    """
    adapt = state.adapt_state
    move = trajectory.hmc_move(
        key,
        state.y,
        state.potential_energy,
        state.y_grad,
        flat_potential,
        adapt.step_size,
        num_steps,
        adapt.metric,
        max_delta_energy=MAX_DELTA_ENERGY,
        forward_mode_differentiation=settings.forward_mode_differentiation,
        max_steps=max_steps,
        log_weight=log_weight,
    )
    return move, adapt.step_size


def move_of(
    settings: DilationSettings,
    state: DilationState,
    i: ArrayLike,
    num_anneal: ArrayLike,
    num_warmup: ArrayLike,
    potential_fn: Callable,
    num_steps: ArrayLike,
    max_steps: ArrayLike | None = None,
    log_weight: Callable | None = None,
) -> tuple[TrajectoryMove, jax.Array, jax.Array, jax.Array]:
    """The Langevin move while annealing (and with MALA), HMC at ``t = 1``.

    Returns
    -------
    move : TrajectoryMove
    step_size : array
        The move's step in the coordinates of ``z``.
    t_next : array
        The level the move goes to.
    rng_key : jax.Array
        The chain's key for the next iteration.
    """
    _, unravel = ravel_pytree(state.z)
    dtype = state.y.dtype
    annealing = i < num_anneal
    t_next = path.level_after(i, num_anneal, settings.levels, dtype)
    pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)
    langevin = partial(
        langevin_move_of, settings, state, i, num_anneal, num_warmup, t_next, pag, log_weight
    )
    rng_key, key_move = random.split(state.rng_key)
    if settings.stationary == "hmc":
        hamiltonian = partial(
            hamiltonian_move_of,
            settings,
            state,
            lambda y: potential_fn(unravel(y)),
            num_steps,
            max_steps,
            log_weight,
        )
        # `annealing` is unbatched (vectorised chains share the counter): a real branch
        move, step_size = jax.lax.cond(annealing, langevin, hamiltonian, key_move)
    else:
        move, step_size = langevin(key_move)
    return move, step_size, t_next, rng_key


def warmup_update(
    settings: DilationSettings,
    adapter: WindowAdapter,
    annealing: ArrayLike,
    i: ArrayLike,
    num_anneal: ArrayLike,
    state: DilationState,
    move: TrajectoryMove,
    pooled: bool,
    adapt: AdaptState,
) -> AdaptState:
    """What the warmup learns from one move (``pooled`` chains adapt the step size together).

    The curvature while annealing, dual averaging after, Welford sums
    throughout; with HMC the ChEES centre and (unless ``pooled``) the
    trajectory length.  At the end of the annealing the step size and the
    trajectory length restart from the curvature's.
    """
    curvature = update_curvature(
        adapt.curvature,
        state.y,
        state.y_grad,
        move.proposal,
        move.proposal_grad,
        adapt.whitening,
        move.diverging,
        state.potential_energy - path.log_normalizer(state.y.size, state.t),
        move.proposal_potential,
    )
    adapt = adapt._replace(curvature=jnp.where(annealing, curvature, adapt.curvature))
    adapt = adapter.update(i, move.accept_prob, move.y, move.grad, adapt, ~annealing & (not pooled))
    if settings.stationary == "hmc":
        # ChEES centres on a running mean of the chain's own position, so that
        # chains sitting in different modes each measure their own spread.
        k = (i - num_anneal).astype(move.y.dtype)
        weight = jnp.maximum(1.0 / (k + 1.0), CENTER_WEIGHT)
        traj = adapt.trajectory
        traj = traj._replace(center=traj.center + weight * (move.y - traj.center))
        if settings.adapt_trajectory_length and not pooled:
            gradient = move.accept_prob * chees_gradient_of(state, move, traj.center)
            traj = trajectory.update_trajectory(
                traj, gradient, trajectory_jitter(i), adapt.step_size
            )
            traj = trajectory.update_uturns(
                traj, *trajectory.uturn_observation(move, adapt.step_size)
            )
        # while annealing, the length waits at one posterior scale (1 / sqrt(L))
        restarted = trajectory.init_trajectory(
            move.y.size, move.y.dtype, jax.lax.rsqrt(adapt.curvature)
        )._replace(center=move.y)
        adapt = adapt._replace(
            trajectory=jax.tree.map(
                lambda new, old: jnp.where(annealing, new, old), restarted, traj
            )
        )
    if settings.step_from_curvature:
        # At t = 1 the step starts from the one the curvature suggests.
        restarted = restart_dual_averaging(
            adapt, initial_step_size(adapt.curvature, settings.stationary)
        )
        adapt = jax.tree.map(lambda new, old: jnp.where(annealing, new, old), restarted, adapt)
    return adapt


def transition_with_move(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    i: ArrayLike,
    num_anneal: ArrayLike,
    num_warmup: ArrayLike,
    num_steps: ArrayLike,
    max_steps: ArrayLike | None,
    potential_fn: Callable,
    pooled: bool,
    log_weight: Callable | None = None,
) -> tuple[DilationState, TrajectoryMove]:
    """One iteration of one chain, without the window-end work; also returns the move.

    ``pooled`` chains leave the step size and trajectory length to
    :func:`numpyro_dilation.iteration.pooled_update`, which needs the moves.
    """
    _, unravel = ravel_pytree(state.z)
    d = state.y.size
    annealing = i < num_anneal
    move, step_size, t_next, rng_key = move_of(
        settings, state, i, num_anneal, num_warmup, potential_fn, num_steps, max_steps, log_weight
    )
    # A rejected annealing step keeps the rescaled position y: in the original
    # coordinates the particle is dilated from level t to t_next, which maps a
    # draw of p_t to a draw of p_t_next exactly.  So the level always advances.
    t_new = t_next
    adapt = jax.lax.cond(
        i < num_warmup,
        partial(warmup_update, settings, adapter, annealing, i, num_anneal, state, move, pooled),
        lambda a: a,
        state.adapt_state,
    )
    phase_start = jnp.where(annealing, 0, jnp.where(i < num_warmup, num_anneal, num_warmup))
    new_state = DilationState(
        i=state.i + 1,
        z=unravel(path.from_rescaled(move.y, t_new, state.center)),
        potential_energy=move.potential_energy + path.log_normalizer(d, t_new),
        y=move.y,
        y_grad=move.grad,
        center=state.center,
        t=t_new,
        step_size=step_size,
        accept_prob=move.accept_prob,
        mean_accept_prob=running_mean(state.mean_accept_prob, move.accept_prob, i, phase_start),
        recent_accept_prob=state.recent_accept_prob
        + RECENT_WEIGHT * (move.accept_prob - state.recent_accept_prob),
        diverging=move.diverging,
        num_grad_evals=state.num_grad_evals + move.num_steps,
        num_steps=move.num_steps,
        adapt_state=adapt,
        rng_key=rng_key,
        num_anneal_steps=state.num_anneal_steps,
        num_warmup=state.num_warmup,
        ensemble=state.ensemble,
        nuts=state.nuts,
        convergence=state.convergence,
        modes=state.modes,
    )
    return new_state, move


def transition(
    settings: DilationSettings,
    adapter: WindowAdapter,
    state: DilationState,
    i: ArrayLike,
    num_anneal: ArrayLike,
    num_warmup: ArrayLike,
    potential_fn: Callable,
    num_steps: ArrayLike | None = None,
) -> DilationState:
    """One iteration of one chain adapting alone, without the window-end work.

    ``num_steps`` defaults to the chain's own trajectory (:func:`steps_of`).
    """
    if num_steps is None:
        num_steps = steps_of(settings, state.adapt_state, i, num_warmup)
    new_state, _ = transition_with_move(
        settings, adapter, state, i, num_anneal, num_warmup, num_steps, None, potential_fn, False
    )
    return new_state


__all__ = [
    "CENTER_WEIGHT",
    "RECENT_WEIGHT",
    "chees_gradient_of",
    "flat_potential_and_grad",
    "hamiltonian_move_of",
    "initial_step_size",
    "langevin_move_of",
    "move_of",
    "steps_of",
    "trajectory_jitter",
    "trajectory_length",
    "transition",
    "transition_with_move",
    "warmup_update",
]
