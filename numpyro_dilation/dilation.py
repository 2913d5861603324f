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

from numpyro_dilation import path, trajectory
from numpyro_dilation.adaptation import (
    AdaptState,
    WindowAdapter,
    initial_curvature,
    pooled_acceptance,
    restart_dual_averaging,
    running_mean,
    update_curvature,
)
from numpyro_dilation.langevin import MAX_DELTA_ENERGY, langevin_move
from numpyro_dilation.trajectory import TrajectoryMove

#: Stationary kernels after the annealing.
STATIONARY_KERNELS = ("hmc", "mala")
#: Weight floor of the running mean of a chain's position that ChEES centres on
#: (a memory of about 50 iterations).
CENTER_WEIGHT = 0.02

#: Weight of the newest acceptance in ``recent_accept_prob`` (a ~100-iteration memory).
RECENT_WEIGHT = 0.01


class DilationState(NamedTuple):
    """State of one :class:`~numpyro_dilation.DilationLangevin` chain.

    Attributes
    ----------
    i : int
        Iteration (counts warmup and sampling iterations alike).
    z : pytree
        Current particle on the dilation path, in unconstrained space.  During
        the annealing it is a draw from (approximately) the level-``t``
        distribution; from ``t = 1`` on it is a draw from the posterior.
    potential_energy : float
        ``-log p_t(z)`` up to the model's normalising constant (the model's
        potential energy once ``t = 1``).
    y : array
        Flat rescaled coordinates ``c + (z - c) / sqrt(t)`` (equal to the
        flattened ``z`` at ``t = 1``); the sampler computes in these.
    y_grad : array
        Gradient of the model's potential energy at ``y``.
    center : array
        Flat centre ``c`` of the dilation.
    t : float
        Current level of the dilation path, in ``(0, 1]``.
    step_size : float
        Langevin step ``h`` of the transition that produced this state, in the
        coordinates of ``z`` (``t`` times the rescaled-coordinate step while
        annealing).
    accept_prob : float
        Acceptance probability of that transition (1 for an unadjusted step, 0
        for a divergent one).
    mean_accept_prob : float
        Mean of ``accept_prob`` since the start of the current phase (annealing,
        adaptation, sampling).
    recent_accept_prob : float
        Exponential moving average of ``accept_prob`` over about the last 100
        iterations (the health checks use it to spot a chain that stops moving).
    diverging : bool
        Whether that transition's proposal was rejected as divergent (non-finite
        potential or gradient, or an energy error above 1000).
    num_grad_evals : int
        Cumulative number of potential-and-gradient evaluations of this chain.
    num_steps : int
        Leapfrog steps of the transition that produced this state (1 for a
        Langevin step).
    adapt_state : numpyro_dilation.adaptation.AdaptState
        Step size, metric and curvature adaptation state.
    rng_key : jax.Array
        Random key for the next transition.
    num_anneal_steps, num_warmup : int
        Phase boundaries of the run that made this state, so that a state
        carried over with ``mcmc.post_warmup_state`` keeps its own schedule.
    ensemble : numpyro_dilation.ensemble.EnsembleState or None
        Population-move settings and statistics (``ensemble=True`` only).  In
        ensemble mode ``rng_key`` is one key for the whole ensemble.
    nuts : numpyro.infer.hmc.HMCState or None
        NumPyro's NUTS state (``stationary="nuts"`` only), which takes over at
        ``t = 1`` (:mod:`numpyro_dilation.nuts`).
    convergence : numpyro_dilation.convergence.ConvergenceState or None
        Running sums for the online convergence checks, kept up to date by the
        kernel (:mod:`numpyro_dilation.convergence`); ``None`` turns them off.
    """

    i: jax.Array
    z: Any
    potential_energy: jax.Array
    y: jax.Array
    y_grad: jax.Array
    center: jax.Array
    t: jax.Array
    step_size: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    recent_accept_prob: jax.Array
    diverging: jax.Array
    num_grad_evals: jax.Array
    num_steps: jax.Array
    adapt_state: AdaptState
    rng_key: jax.Array
    num_anneal_steps: jax.Array
    num_warmup: jax.Array
    ensemble: Any = None
    nuts: Any = None
    convergence: Any = None


class DilationSettings(NamedTuple):
    """Fixed settings of the transition (Python values, closed over when tracing).

    Attributes
    ----------
    eps, alpha : float
        The annealing step ``eps * t**(alpha - 1)`` in units of the inverse curvature.
    levels : callable
        The schedule ``u -> t`` (:func:`numpyro_dilation.path.make_schedule`).
    adjust : bool
        Metropolis-adjust the sampling phase (the warmup at ``t = 1`` always is).
    adapt_step_size : bool
        Restart dual averaging from the curvature's step while annealing.
    forward_mode_differentiation : bool
        Differentiate the potential in forward mode.
    stationary : {"hmc", "mala"}
        Kernel at ``t = 1``: HMC with a ChEES-tuned jittered trajectory length
        (:mod:`.trajectory`) or single-step MALA (:mod:`.langevin`).
    adapt_trajectory_length : bool
        Tune the HMC trajectory length by ChEES during the warmup at ``t = 1``.
    """

    eps: float
    alpha: float
    levels: Callable
    adjust: bool = True
    adapt_step_size: bool = True
    forward_mode_differentiation: bool = False
    stationary: str = "mala"
    adapt_trajectory_length: bool = True


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


def phases(state: DilationState, batched: bool):
    """``(i, num_anneal_steps, num_warmup)``, unbatched (vectorised chains share them)."""
    if batched:
        return state.i[0], state.num_anneal_steps[0], state.num_warmup[0]
    return state.i, state.num_anneal_steps, state.num_warmup


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


def initial_step_size(curvature, stationary: str):
    """The stationary kernel's first step, from the curvature ``L`` the annealing measured.

    A Langevin step ``h = 1 / L``; a leapfrog step ``1 / sqrt(L)`` (stable below
    ``2 / sqrt(L)``).
    """
    return 1.0 / curvature if stationary == "mala" else jax.lax.rsqrt(curvature)


def trajectory_length(adapt: AdaptState, i, num_warmup):
    """The warmup iterate of the trajectory length, or its average once warmup is over."""
    return jnp.where(
        i < num_warmup, adapt.trajectory.length, trajectory.final_length(adapt.trajectory)
    )


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

    def warmup_update(annealing, i, num_anneal, state, move, pooled, adapt: AdaptState):
        # curvature while annealing, dual averaging after, Welford sums throughout
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
        adapt = adapter.update(
            i, move.accept_prob, move.y, move.grad, adapt, ~annealing & (not pooled)
        )
        if hmc:
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
            # while annealing, the length waits at one posterior scale (1 / sqrt(L))
            restarted = trajectory.init_trajectory(
                move.y.size, move.y.dtype, jax.lax.rsqrt(adapt.curvature)
            )._replace(center=move.y)
            adapt = adapt._replace(
                trajectory=jax.tree.map(
                    lambda new, old: jnp.where(annealing, new, old), restarted, traj
                )
            )
        if settings.adapt_step_size:
            # At t = 1 the step starts from the one the curvature suggests.
            restarted = restart_dual_averaging(
                adapt, initial_step_size(adapt.curvature, settings.stationary)
            )
            adapt = jax.tree.map(lambda new, old: jnp.where(annealing, new, old), restarted, adapt)
        return adapt

    def chees_gradient_of(state, move, center):
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

    def trajectory_jitter(i):
        return 1.0 - trajectory.halton(i)

    def move_of(state, i, num_anneal, num_warmup, potential_fn, num_steps):
        """The Langevin move while annealing (and with MALA), HMC at t = 1."""
        _, unravel = ravel_pytree(state.z)
        dtype = state.y.dtype
        d = state.y.size
        adapt = state.adapt_state
        annealing = i < num_anneal
        t_next = path.level_after(i, num_anneal, settings.levels, dtype)
        pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)

        def langevin(key):
            step_y = jnp.where(
                annealing,
                path.rescaled_step_size(settings.eps, settings.alpha, state.t, adapt.curvature),
                adapt.step_size,
            )
            adjusted = ~annealing & (settings.adjust | (i < num_warmup))
            move = langevin_move(
                key,
                state.y,
                state.potential_energy - path.log_normalizer(d, state.t),
                state.y_grad,
                pag,
                step_y,
                adapt.metric,
                adjusted=adjusted,
                center=state.center,
                contraction=path.contraction(state.t, t_next),
                max_delta_energy=MAX_DELTA_ENERGY,
            )
            return TrajectoryMove(
                *move,
                proposal_velocity=jnp.zeros_like(state.y),
                num_steps=jnp.ones((), jnp.result_type(int)),
            ), step_y * state.t

        def hamiltonian(key):
            move = trajectory.hmc_move(
                key,
                state.y,
                state.potential_energy,
                state.y_grad,
                lambda y: potential_fn(unravel(y)),
                adapt.step_size,
                num_steps,
                adapt.metric,
                max_delta_energy=MAX_DELTA_ENERGY,
                forward_mode_differentiation=settings.forward_mode_differentiation,
            )
            return move, adapt.step_size

        rng_key, key_move = random.split(state.rng_key)
        if hmc:
            # `annealing` is unbatched (vectorised chains share the counter): a real branch
            move, step_size = jax.lax.cond(annealing, langevin, hamiltonian, key_move)
        else:
            move, step_size = langevin(key_move)
        return move, step_size, t_next, rng_key

    def transition_with_move(
        state: DilationState, i, num_anneal, num_warmup, num_steps, potential_fn, pooled
    ):
        _, unravel = ravel_pytree(state.z)
        d = state.y.size
        annealing = i < num_anneal
        move, step_size, t_next, rng_key = move_of(
            state, i, num_anneal, num_warmup, potential_fn, num_steps
        )
        # A rejected annealing step keeps the rescaled position y: in the original
        # coordinates the particle is dilated from level t to t_next, which maps a
        # draw of p_t to a draw of p_t_next exactly.  So the level always advances.
        t_new = t_next
        adapt = jax.lax.cond(
            i < num_warmup,
            partial(warmup_update, annealing, i, num_anneal, state, move, pooled),
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
        )
        return new_state, move

    def transition(state, i, num_anneal, num_warmup, potential_fn, num_steps=None):
        if num_steps is None:
            num_steps = steps_of(state.adapt_state, i, num_warmup)
        new_state, _ = transition_with_move(
            state, i, num_anneal, num_warmup, num_steps, potential_fn, False
        )
        return new_state

    def steps_of(adapt, i, num_warmup):
        if not hmc:
            return 1
        return trajectory.num_leapfrog_steps(
            i, trajectory_length(adapt, i, num_warmup), adapt.step_size
        )

    def pooled_update(previous, state, move, i):
        """Step size, and trajectory length, adapted once for all vectorised chains."""
        adapt = state.adapt_state
        chain0 = jax.tree.map(lambda x: x[0], adapt)
        shared = adapter.update_step_size(i, pooled_acceptance(move.accept_prob), chain0)
        if hmc and settings.adapt_trajectory_length:
            gradients = jax.vmap(chees_gradient_of)(previous, move, adapt.trajectory.center)
            weights = jnp.where(move.diverging, 0.0, move.accept_prob)
            gradient = jnp.sum(weights * gradients) / (jnp.sum(weights) + 1e-12)
            traj = trajectory.update_trajectory(
                chain0.trajectory, gradient, trajectory_jitter(i), chain0.step_size
            )
            lengths = jax.tree.map(
                lambda x: jnp.broadcast_to(x, adapt.trajectory.length.shape + jnp.shape(x)),
                traj._replace(center=None),
            )
            adapt = adapt._replace(trajectory=lengths._replace(center=adapt.trajectory.center))

        def broadcast(x):
            return jnp.broadcast_to(x, adapt.step_size.shape + jnp.shape(x))

        adapt = adapt._replace(
            step_size=broadcast(shared.step_size), ss_state=jax.tree.map(broadcast, shared.ss_state)
        )
        return state._replace(adapt_state=adapt)

    def pooled_start(state):
        """At the end of the annealing, one starting step (and length) for all chains."""
        adapt = state.adapt_state
        curvature = jnp.median(adapt.curvature)
        restarted = jax.vmap(restart_dual_averaging, in_axes=(0, None))(
            adapt, initial_step_size(curvature, settings.stationary)
        )
        if settings.adapt_step_size:
            adapt = restarted
        if hmc:
            length = jnp.broadcast_to(jax.lax.rsqrt(curvature), adapt.trajectory.length.shape)
            adapt = adapt._replace(
                trajectory=adapt.trajectory._replace(length=length, log_length_avg=jnp.log(length))
            )
        return state._replace(adapt_state=adapt)

    def step(state: DilationState, potential_fn, batched: bool) -> DilationState:
        i, num_anneal, num_warmup = phases(state, batched)
        if not batched:
            state = transition(state, i, num_anneal, num_warmup, potential_fn)
            end_window = adapter.end_window
        else:
            # The phase counters and the number of leapfrog steps go in unbatched, so
            # that the warmup-only work stays behind a real branch and the leapfrog loop
            # is one loop for all chains (the adaptation is shared, so is the length).
            chain0 = jax.tree.map(lambda x: x[0], state.adapt_state)
            num_steps = steps_of(chain0, i, num_warmup)
            previous = state
            state, move = vmap(
                partial(transition_with_move, potential_fn=potential_fn, pooled=True),
                in_axes=(0, None, None, None, None),
            )(state, i, num_anneal, num_warmup, num_steps)
            state = jax.lax.cond(
                (i >= num_anneal) & (i < num_warmup),
                lambda s: pooled_update(previous, s, move, i),
                lambda s: s,
                state,
            )
            state = jax.lax.cond(i == num_anneal - 1, pooled_start, lambda s: s, state)
            end_window = adapter.end_window_pooled
        adapt_state = jax.lax.cond(
            adapter.is_window_end(i) & (i < num_warmup),
            end_window,
            lambda a: a,
            state.adapt_state,
        )
        return state._replace(adapt_state=adapt_state)

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
