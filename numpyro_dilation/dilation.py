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

from numpyro_dilation import path, pooling, trajectory
from numpyro_dilation.adaptation import (
    AdaptState,
    WindowAdapter,
    initial_curvature,
    restart_dual_averaging,
    running_mean,
    update_curvature,
)
from numpyro_dilation.langevin import MAX_DELTA_ENERGY, langevin_move
from numpyro_dilation.locate import locate
from numpyro_dilation.metric import variances
from numpyro_dilation.modes import chain_search, mode_log_probs
from numpyro_dilation.modes import fit_cost as modes_fit_cost
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
    modes : numpyro_dilation.pooling.ModeState or None
        Vectorised chains only: the posterior's modes as the chains found them,
        each chain's mode label and each mode's shared adaptation
        (:mod:`numpyro_dilation.pooling`).
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
    modes: Any = None


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
        i < num_warmup,
        trajectory.warmup_length(adapt.trajectory),
        trajectory.final_length(adapt.trajectory),
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

    def move_of(
        state, i, num_anneal, num_warmup, potential_fn, num_steps, max_steps=None, log_weight=None
    ):
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
                log_weight=log_weight,
            )
            return TrajectoryMove(
                *move,
                proposal_velocity=jnp.zeros_like(state.y),
                num_steps=jnp.ones((), jnp.result_type(int)),
                uturn_steps=jnp.zeros((), jnp.result_type(int)),
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
                max_steps=max_steps,
                log_weight=log_weight,
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
        state: DilationState,
        i,
        num_anneal,
        num_warmup,
        num_steps,
        max_steps,
        potential_fn,
        pooled,
        log_weight=None,
    ):
        _, unravel = ravel_pytree(state.z)
        d = state.y.size
        annealing = i < num_anneal
        move, step_size, t_next, rng_key = move_of(
            state, i, num_anneal, num_warmup, potential_fn, num_steps, max_steps, log_weight
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
            modes=state.modes,
        )
        return new_state, move

    def transition(state, i, num_anneal, num_warmup, potential_fn, num_steps=None):
        if num_steps is None:
            num_steps = steps_of(state.adapt_state, i, num_warmup)
        new_state, _ = transition_with_move(
            state, i, num_anneal, num_warmup, num_steps, None, potential_fn, False
        )
        return new_state

    def steps_of(adapt, i, num_warmup):
        if not hmc:
            return 1
        return trajectory.num_leapfrog_steps(
            i, trajectory_length(adapt, i, num_warmup), adapt.step_size
        )

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
            exposure, events = jax.vmap(trajectory.uturn_observation)(
                move, previous.adapt_state.step_size
            )
            chees = (gradients, weights, trajectory_jitter(i), exposure, events)
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
            num_steps = jax.vmap(steps_of, in_axes=(0, None, None))(
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
