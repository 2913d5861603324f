"""The stationary kernel: HMC with a jittered trajectory length tuned by ChEES.

After the annealing the chains sit on the posterior and only need an exact
kernel that mixes well.  Single-step MALA needs ``O(d^(1/3))`` steps per
independent draw and its cost grows with the condition number ``kappa``; HMC
needs ``O(d^(1/4))`` and ``sqrt(kappa)``.  So the default stationary kernel is
HMC (Hoffman, Radul & Sountsov, 2021, "An adaptive MCMC scheme for setting
trajectory lengths in Hamiltonian Monte Carlo"):

- each iteration integrates ``ceil(u * T / eps)`` leapfrog steps, with ``u`` a
  quasi-random jitter in (0, 1] from the Halton sequence at the iteration
  number (shared by vectorised chains, so that they all run the same number of
  steps and no chain waits in a per-chain ``while`` loop), then a Metropolis
  correction of the energy error;
- the trajectory length ``T`` climbs the ChEES criterion (the change in the
  estimator of the expected square, ``E[(|q' - m|^2 - |q - m|^2)^2]``) by
  Adam steps on ``log T``, in the whitened coordinates of the adapted metric,
  and is capped at three times the mean time to a trajectory's first U-turn measured
  over warmup (eHMC, Wu, Stoehr & Robert 2018): on heavy tails the ChEES
  criterion has no finite optimum and its estimate is carried by the chains
  farthest out;
  the step ``eps`` follows dual averaging towards ``target_accept_prob``.

The integrator and the kinetic energy are NumPyro's
(:func:`numpyro.infer.hmc_util.velocity_verlet`,
:func:`numpyro.infer.hmc_util.euclidean_kinetic_energy`).  This module is pure
functions on flat arrays; where the statistics come from (one chain, or the
mean over vectorised chains) is :mod:`numpyro_dilation.dilation`'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.typing import ArrayLike
from numpyro.infer.hmc_util import IntegratorState, euclidean_kinetic_energy, velocity_verlet

from numpyro_dilation.langevin import energy_rounding
from numpyro_dilation.metric import Metric, precondition

#: Most leapfrog steps in one iteration (NumPyro's NUTS stops at 1023).
MAX_NUM_STEPS = 1000
#: Trajectory length at the start of the adaptation, in the whitened scale of the
#: metric (where a well-adapted posterior has unit scale).
INITIAL_TRAJECTORY_LENGTH = 1.0
#: Adam's learning rate on ``log T``, its second-moment decay, and the largest
#: change of ``log T`` in one iteration.
LEARNING_RATE = 0.05
SECOND_MOMENT_DECAY = 0.95
MAX_LOG_UPDATE = 0.35
#: The trajectory length is kept above the step size divided by this.
MIN_LENGTH_IN_STEPS = 10.0
#: Weight ``k**-DECAY`` of the k-th iterate in the running average of ``log T``
#: that the sampling phase uses (the averaging of dual averaging's ``x_bar``).
AVERAGING_DECAY = 0.5
#: The trajectory length is at most this many times the mean time to the first
#: U-turn measured over warmup (``None``: no cap).  The Halton jitter makes the
#: mean trajectory half the length, so a factor 2 would make the mean trajectory
#: the mean U-turn time (Wu, Stoehr & Robert 2018, eHMC); 3 leaves room for
#: hierarchical posteriors whose slow directions turn later than the rest
#: (the measurements behind the factor are in docs/how-it-works.md).
UTURN_CAP = 3.0
#: Per-iteration decay of the U-turn statistics (memory of about 50 iterations,
#: so that they describe the last metric of the warmup).
UTURN_DECAY = 0.98


class TrajectoryMove(NamedTuple):
    """Outcome of one HMC iteration (the fields of a Langevin move, and more).

    Attributes
    ----------
    y, potential_energy, grad
        The new position (the proposal if accepted), its potential and gradient.
    accept_prob : float
        Metropolis probability of the proposal (0 when divergent).
    diverging : bool
        Non-finite energy, or an energy error above the bound.
    proposal, proposal_grad : array
        End of the trajectory and the gradient there, accepted or not.
    proposal_potential : float
        The potential at the end of the trajectory.
    proposal_velocity : array
        ``P r`` at the end of the trajectory (what ChEES differentiates along).
    num_steps : int
        Leapfrog steps taken.
    uturn_steps : int
        The first leapfrog step at which the trajectory turned back on itself,
        ``(q_k - q_0) . r_k < 0`` with ``r_k`` the momentum (NUTS's criterion, the
        whitened distance from the start decreasing); 0 if it did not within
        ``num_steps``.
    """

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    proposal: jax.Array
    proposal_grad: jax.Array
    proposal_potential: jax.Array
    proposal_velocity: jax.Array
    num_steps: jax.Array
    uturn_steps: jax.Array


class TrajectoryState(NamedTuple):
    """ChEES adaptation of the trajectory length.

    Attributes
    ----------
    length : float
        Current trajectory length ``T`` (warmup iterate).
    log_length_avg : float
        Running weighted average of ``log T`` (used once warmup ends).
    grad_sq : float
        Adam's second moment of the ChEES gradient.
    count : int
        Updates so far (weights the average and Adam's bias correction).
    center : array
        Running mean of the position, the ``m`` of ChEES for a chain adapting
        alone (vectorised chains use the mean over chains instead).
    uturn_exposure, uturn_events : float
        Decayed sums, over warmup iterations, of the time each trajectory ran
        before its first U-turn (or in all, if it did not turn) and of the
        number of trajectories that turned: their ratio is the censored
        estimate of the mean U-turn time that caps the sampling length
        (:func:`final_length`).
    """

    length: jax.Array
    log_length_avg: jax.Array
    grad_sq: jax.Array
    count: jax.Array
    center: jax.Array
    uturn_exposure: jax.Array
    uturn_events: jax.Array


def init_trajectory(size: int, dtype, length: float = INITIAL_TRAJECTORY_LENGTH) -> TrajectoryState:
    """Trajectory-length adaptation at its start."""
    length = jnp.asarray(length, dtype)
    return TrajectoryState(
        length=length,
        log_length_avg=jnp.log(length),
        grad_sq=jnp.zeros((), dtype),
        count=jnp.zeros((), jnp.result_type(int)),
        center=jnp.zeros(size, dtype),
        uturn_exposure=jnp.zeros((), dtype),
        uturn_events=jnp.zeros((), dtype),
    )


def halton(i: ArrayLike, base: int = 2) -> jax.Array:
    """The ``i``-th element (``i >= 0``) of the van der Corput sequence in ``base``, in [0, 1)."""
    i = jnp.asarray(i, jnp.result_type(int)) + 1

    def body(_, carry):
        i, f, r = carry
        f = f / base
        return i // base, f, r + f * (i % base)

    # 32 digits cover every int32 iteration number
    _, _, r = jax.lax.fori_loop(0, 32, body, (i, jnp.ones(()), jnp.zeros(())))
    return r


def num_leapfrog_steps(i: ArrayLike, length: ArrayLike, step_size: ArrayLike) -> jax.Array:
    """``ceil(u T / eps)`` with the Halton jitter ``u`` of iteration ``i``, in [1, MAX_NUM_STEPS]."""
    jitter = 1.0 - halton(i)  # in (0, 1]
    steps = jnp.ceil(jitter * length / step_size)
    steps = jnp.where(jnp.isfinite(steps), steps, MAX_NUM_STEPS)
    return jnp.clip(steps, 1, MAX_NUM_STEPS).astype(jnp.result_type(int))


def hmc_move(
    rng_key: jax.Array,
    y: ArrayLike,
    potential_energy: ArrayLike,
    grad: ArrayLike,
    potential_fn: Callable,
    step_size: ArrayLike,
    num_steps: ArrayLike,
    metric: Metric,
    *,
    max_delta_energy: float,
    forward_mode_differentiation: bool = False,
    max_steps: ArrayLike | None = None,
    log_weight: Callable | None = None,
) -> TrajectoryMove:
    """One Metropolis-adjusted HMC iteration of ``num_steps`` leapfrog steps.

    Parameters
    ----------
    rng_key : jax.Array
        Random key (momentum and acceptance).
    y, potential_energy, grad
        Current flat position, its potential and gradient.
    potential_fn : callable
        ``y -> U(y)`` on flat arrays.
    step_size : float
        Leapfrog step ``eps``.
    num_steps : int
        Leapfrog steps.
    max_steps : int, optional
        An unbatched bound on ``num_steps`` when chains are vectorised and
        ``num_steps`` is per chain: the loop runs ``max_steps`` steps for all
        of them and each chain keeps the state of its own last step.
    log_weight : callable, optional
        ``y -> log w(y)``: the move then leaves ``p(y) w(y)`` invariant instead
        of ``p(y)`` (the trajectory is the same; the acceptance gains the factor
        ``w(y') / w(y)``, which the returned ``accept_prob`` leaves out).
        Ensemble mode uses it for the probability of the chain's mode label
        given its position.
    metric : Metric
        Inverse mass matrix ``P`` with its factors; momenta are ``N(0, P^{-1})``.
    max_delta_energy : float
        Energy error beyond which the trajectory is a divergence.
    forward_mode_differentiation : bool
        Differentiate the potential in forward mode.
    """
    key_momentum, key_accept = random.split(rng_key)
    dtype = jnp.result_type(y)
    # r ~ N(0, M) with M = P^{-1} = W^T W, W the whitening map: r = W^T xi
    xi = random.normal(key_momentum, jnp.shape(y), dtype)
    whitening = metric.whitening
    r = whitening * xi if whitening.ndim == 1 else whitening.T @ xi
    inverse_mass_matrix = metric.inverse_mass_matrix

    _, update = velocity_verlet(
        potential_fn, euclidean_kinetic_energy, forward_mode_differentiation
    )
    start = IntegratorState(y, r, potential_energy, grad)
    no_turn = jnp.zeros((), jnp.result_type(int))

    def leapfrog(k, carry):
        s, turn = carry
        new = update(step_size, inverse_mass_matrix, s)
        # the first U-turn (NUTS's criterion): the momentum points back towards the start
        turned = jnp.dot(new.z - y, new.r) < 0
        turn = jnp.where((turn == 0) & turned, k + 1, turn)
        return new, turn

    if max_steps is None:
        end, uturn = jax.lax.fori_loop(0, num_steps, leapfrog, (start, no_turn))
    else:

        def masked(k, carry):
            new = leapfrog(k, carry)
            return jax.tree.map(lambda a, b: jnp.where(k < num_steps, a, b), new, carry)

        end, uturn = jax.lax.fori_loop(0, max_steps, masked, (start, no_turn))

    energy = potential_energy + euclidean_kinetic_energy(inverse_mass_matrix, r)
    energy_new = end.potential_energy + euclidean_kinetic_energy(inverse_mass_matrix, end.r)
    delta = energy_new - energy
    finite = (
        jnp.isfinite(energy_new) & jnp.all(jnp.isfinite(end.z_grad)) & jnp.all(jnp.isfinite(end.z))
    )
    # NaN compares False: test the negation so that a NaN energy error diverges too
    diverging = ~finite | ~(delta <= max_delta_energy + energy_rounding(energy, energy_new))
    accept_prob = jnp.where(diverging, 0.0, jnp.exp(jnp.minimum(-delta, 0.0))).astype(dtype)
    u = random.uniform(key_accept, dtype=dtype)
    accepted = u < accept_prob
    if log_weight is not None:
        # the weight's factor rejects moves too (a weight of zero at the end always, and
        # that is not a divergence); accept_prob stays the trajectory's own, which the
        # step size adapts to
        gain = log_weight(jnp.where(finite, end.z, y)) - log_weight(y)
        factor = jnp.exp(jnp.minimum(jnp.where(jnp.isnan(gain), -jnp.inf, gain), 0.0))
        accepted = u < accept_prob * factor
    proposal = jnp.where(finite, end.z, y)
    return TrajectoryMove(
        y=jnp.where(accepted, end.z, y),
        potential_energy=jnp.where(accepted, end.potential_energy, potential_energy),
        grad=jnp.where(accepted, end.z_grad, grad),
        accept_prob=accept_prob,
        diverging=diverging,
        proposal=proposal,
        proposal_grad=jnp.where(finite, end.z_grad, grad),
        proposal_potential=jnp.where(finite, end.potential_energy, potential_energy),
        proposal_velocity=jnp.where(finite, precondition(inverse_mass_matrix, end.r), 0.0),
        num_steps=jnp.asarray(num_steps, jnp.result_type(int)),
        uturn_steps=uturn,
    )


def chees_gradient(
    y: ArrayLike,
    proposal: ArrayLike,
    velocity: ArrayLike,
    center: ArrayLike,
    proposal_center: ArrayLike,
    whitening: ArrayLike,
) -> jax.Array:
    """One chain's ChEES gradient with respect to the trajectory length (up to ``u``).

    ``(|q' - m'|^2 - |q - m|^2) (q' - m') . v'`` in whitened coordinates, with
    ``q`` the start, ``q'`` the end of the trajectory, ``v'`` the velocity there,
    ``m`` and ``m'`` the means of starts and ends.
    """

    def whiten(x):
        return whitening * x if whitening.ndim == 1 else whitening @ x

    start = whiten(y - center)
    end = whiten(proposal - proposal_center)
    return (jnp.dot(end, end) - jnp.dot(start, start)) * jnp.dot(end, whiten(velocity))


def update_trajectory(
    state: TrajectoryState, gradient: ArrayLike, jitter: ArrayLike, step_size: ArrayLike
) -> TrajectoryState:
    """An Adam step (no first moment) up the ChEES criterion in ``log T``.

    ``gradient`` is the acceptance-weighted ChEES gradient (one chain's, or the
    mean over vectorised chains); times ``u T`` it is the gradient in ``log T``.
    """
    g = jitter * state.length * gradient
    g = jnp.where(jnp.isfinite(g), g, 0.0)
    count = state.count + 1
    grad_sq = SECOND_MOMENT_DECAY * state.grad_sq + (1 - SECOND_MOMENT_DECAY) * g**2
    corrected = grad_sq / (1 - SECOND_MOMENT_DECAY**count)
    step = LEARNING_RATE * g / (jnp.sqrt(corrected) + 1e-12)
    step = jnp.clip(step, -MAX_LOG_UPDATE, MAX_LOG_UPDATE)
    log_length = jnp.log(state.length) + step
    # never longer than the most steps.  The floor is a tenth of a step, not a step:
    # dual averaging's first iterate after every restart is ten times the step it
    # restarts from, and a floor of one step lifted the length to it at once (to
    # ten times the ChEES optimum of a Gaussian, where Adam then left it)
    log_length = jnp.clip(
        log_length,
        jnp.log(step_size / MIN_LENGTH_IN_STEPS),
        jnp.log(MAX_NUM_STEPS * step_size),
    )
    weight = count.astype(log_length.dtype) ** -AVERAGING_DECAY
    return state._replace(
        length=jnp.exp(log_length),
        log_length_avg=(1 - weight) * state.log_length_avg + weight * log_length,
        grad_sq=grad_sq,
        count=count,
    )


def uturn_observation(move: TrajectoryMove, step_size: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """``(exposure, event)`` of one trajectory for the U-turn statistics.

    The exposure is the time (leapfrog steps times ``step_size``) to the first
    U-turn, or the whole trajectory's if it did not turn (censored); the event
    is 1 if it turned.  A divergent trajectory counts for neither.
    """
    turned = move.uturn_steps > 0
    steps = jnp.where(turned, move.uturn_steps, move.num_steps)
    dtype = jnp.result_type(step_size)
    keep = ~move.diverging
    exposure = jnp.where(keep, steps * step_size, 0.0).astype(dtype)
    event = jnp.where(keep & turned, 1.0, 0.0).astype(dtype)
    return exposure, event


def update_uturns(state: TrajectoryState, exposure: ArrayLike, event: ArrayLike) -> TrajectoryState:
    """Add one iteration's U-turn observation (one chain's, or the mean over a mode's chains)."""
    return state._replace(
        uturn_exposure=UTURN_DECAY * state.uturn_exposure + exposure,
        uturn_events=UTURN_DECAY * state.uturn_events + event,
    )


def mean_uturn_time(state: TrajectoryState) -> jax.Array:
    """Censored estimate of the mean time to the first U-turn: exposure over events.

    Infinite when no trajectory turned (every one was shorter than its U-turn).
    This is the maximum-likelihood mean of an exponential time under right
    censoring; with few events it errs long, so the cap it sets errs loose.
    """
    events = state.uturn_events
    return jnp.where(events > 0, state.uturn_exposure / jnp.where(events > 0, events, 1.0), jnp.inf)


def warmup_length(state: TrajectoryState) -> jax.Array:
    """The trajectory length of a warmup iteration: ChEES's iterate, capped as in
    :func:`final_length` by the U-turn time measured so far."""
    if UTURN_CAP is None:
        return state.length
    return jnp.minimum(state.length, UTURN_CAP * mean_uturn_time(state))


def final_length(state: TrajectoryState) -> jax.Array:
    """The trajectory length the sampling phase uses.

    The averaged ChEES iterate, at most :data:`UTURN_CAP` times the mean U-turn
    time measured over warmup.  On heavy tails (Student-t with 4 or fewer
    degrees of freedom: no fourth moment) the ChEES criterion has no finite
    optimum and its estimate is carried by the chains farthest out, so the
    averaged iterate comes out several times longer than the trajectories turn.
    """
    length = jnp.exp(state.log_length_avg)
    if UTURN_CAP is None:
        return length
    return jnp.minimum(length, UTURN_CAP * mean_uturn_time(state))


__all__ = [
    "MAX_NUM_STEPS",
    "MIN_LENGTH_IN_STEPS",
    "UTURN_CAP",
    "TrajectoryMove",
    "TrajectoryState",
    "chees_gradient",
    "final_length",
    "halton",
    "hmc_move",
    "init_trajectory",
    "mean_uturn_time",
    "num_leapfrog_steps",
    "update_trajectory",
    "update_uturns",
    "uturn_observation",
]
