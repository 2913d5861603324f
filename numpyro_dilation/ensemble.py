"""Ensemble mode: mode moves that carry vectorised chains between the modes they found.

After the annealing, the chains' positions show the posterior's modes; the mode
map of :mod:`numpyro_dilation.modes` names them, and every mode adapts its own
settings (:mod:`numpyro_dilation.pooling`).  What the annealing does not do is
put the right fraction of chains in each mode.  With ``ensemble=True`` each
chain also makes *mode moves*: it is carried to another mode by the affine map
between the two modes' Gaussians (``hop``), or drawn afresh from their mixture
(``independence``), and the move is accepted with its exact Metropolis-Hastings
ratio, so that the chains settle in the modes with the posterior's weights.

The moves start in the last part of the warmup, once the last mass-matrix window
has fixed the modes and their metrics, and are tuned there: the probability of
each move follows its acceptance, and the probability that a sampling iteration
runs mode moves is set so that a chain makes about :data:`TARGET_JUMP_RATE`
accepted moves per iteration.  Everything is frozen at the end of warmup; from
then on a chain's mode moves depend on its own state and on frozen settings only,
so every chain is a Markov chain of its own that leaves the posterior invariant
(the argument is in ``docs/ensemble.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import random, vmap
from jax.flatten_util import ravel_pytree

from numpyro_dilation import modes as mode_lib
from numpyro_dilation import pooling
from numpyro_dilation.dilation import DilationState, phases
from numpyro_dilation.metric import chains_scale

# the ensemble's part of the state is defined beside the state (kept here by name)
from numpyro_dilation.state import EnsembleSettings, EnsembleState, EnsembleStats

MOVES = mode_lib.MOVES
#: Floor on each move's probability, so that no move is ever switched off for good.
MIN_MOVE_PROB = 0.05
#: Accepted mode moves per chain and sampling iteration that the tuning aims for:
#: about 300 in a run of 1000 draws, enough for the fraction of draws in each
#: mode to settle, at a gradient evaluation per chain and moving iteration.
TARGET_JUMP_RATE = 0.3
#: Least probability that a sampling iteration runs mode moves (when there are modes).
MIN_MODE_MOVE_PROB = 0.05
#: Weight of the newest value in the tuning's running averages.
EMA_WEIGHT = 0.1


def init_ensemble_state(num_chains: int, dtype) -> EnsembleState:
    """Untuned settings: both moves equally likely; no statistics yet."""
    int_dtype = jnp.result_type(int)
    num_moves = len(MOVES)
    settings = EnsembleSettings(
        move_probs=jnp.full(num_moves, 1.0 / num_moves, dtype),
        mode_move_prob=jnp.ones((), dtype),
        accept=jnp.zeros(num_moves, dtype),
    )
    stats = EnsembleStats(
        accept_prob=jnp.zeros((num_chains, num_moves), dtype),
        num_proposals=jnp.zeros((num_chains, num_moves), int_dtype),
        num_accepted=jnp.zeros((num_chains, num_moves), int_dtype),
        num_mode_jumps=jnp.zeros(num_chains, int_dtype),
    )
    return EnsembleState(settings, stats)


def init(state: DilationState) -> DilationState:
    """Ensemble-mode state from a batch of chain states: one key, untuned settings."""
    n = state.y.shape[0]
    return state._replace(
        rng_key=random.fold_in(state.rng_key[0], n),
        ensemble=init_ensemble_state(n, state.y.dtype),
    )


def tune(settings: EnsembleSettings, move: jax.Array, accept_prob: jax.Array) -> EnsembleSettings:
    """One tuning step from an iteration's mode moves (pure).

    Each move's probability follows its running mean acceptance (floored at
    :data:`MIN_MOVE_PROB`), and the probability that a sampling iteration runs
    mode moves is what makes the expected accepted moves per chain and
    iteration :data:`TARGET_JUMP_RATE`.
    """
    dtype = settings.accept.dtype
    onehot = jax.nn.one_hot(move, len(MOVES), dtype=dtype)
    count = onehot.sum(0)
    mean = (onehot.T @ accept_prob) / jnp.maximum(count, 1.0)
    accept = jnp.where(
        count > 0, settings.accept + EMA_WEIGHT * (mean - settings.accept), settings.accept
    )
    share = jnp.maximum(accept, 0.0)
    total = jnp.sum(share)
    share = jnp.where(total > 0, share / jnp.where(total > 0, total, 1.0), 1.0 / len(MOVES))
    move_probs = MIN_MOVE_PROB + (1.0 - len(MOVES) * MIN_MOVE_PROB) * share
    rate = jnp.dot(move_probs, accept)
    mode_move_prob = jnp.clip(TARGET_JUMP_RATE / jnp.maximum(rate, 1e-6), MIN_MODE_MOVE_PROB, 1.0)
    return EnsembleSettings(
        move_probs=move_probs.astype(dtype),
        mode_move_prob=mode_move_prob.astype(dtype),
        accept=accept,
    )


def run_mode_moves(
    rng_key: jax.Array,
    state: DilationState,
    move_probs: jax.Array,
    potential_and_grad: Callable,
):
    """Every chain's mode move at ``t = 1`` (:func:`numpyro_dilation.modes.mode_moves`).

    Returns the new state, the moves' outcome and whether each accepted move
    took its chain into another mode (by the map's assignment).
    """
    modes = state.modes
    move = mode_lib.mode_moves(
        rng_key,
        state.y,
        state.potential_energy,
        state.y_grad,
        pooling.cluster_gaussians(modes),
        modes.map,
        move_probs,
        potential_and_grad,
    )
    jumped = move.accepted & (
        mode_lib.assign(modes.map, move.y) != mode_lib.assign(modes.map, state.y)
    )
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
    state = state._replace(
        y=move.y,
        z=vmap(unravel)(move.y),
        potential_energy=move.potential_energy,
        y_grad=move.grad,
    )
    return state, move, jumped


def relabel(rng_key: jax.Array, state: DilationState) -> DilationState:
    """Draw every chain's mode label from its probability given the position (a Gibbs step).

    The labels' conditional is :func:`numpyro_dilation.modes.mode_log_probs`
    (fixed during sampling); chains whose label changed take their new mode's
    settings.
    """
    modes = state.modes
    gaussians = pooling.cluster_gaussians(modes)
    label = mode_lib.draw_mode_labels(rng_key, gaussians, state.y).astype(modes.label.dtype)
    modes = modes._replace(label=label)
    adapt = jax.lax.cond(
        jnp.any(label != state.modes.label),
        lambda a: pooling.gather(modes, a, with_metric=True),
        lambda a: a,
        state.adapt_state,
    )
    return state._replace(modes=modes, adapt_state=adapt)


#: Scouts per chain in each search for basins no chain found (:func:`discover`).
SCOUTS_PER_CHAIN = 4
#: Chains moved into each basin the search finds.
CHAINS_PER_BASIN = 2


def discover(
    rng_key: jax.Array, state: DilationState, potential_and_grad: Callable
) -> tuple[DilationState, jax.Array]:
    """Search for basins no chain found, and move a few chains into each.

    Scouts are drawn around the chains (:func:`numpyro_dilation.modes.draw_scouts`)
    and taken down to the bottom of their basins; a basin the chains' own map
    does not know (:func:`numpyro_dilation.modes.new_basins`) receives
    :data:`CHAINS_PER_BASIN` chains from the most crowded modes, at most a
    quarter of the chains in all.  This is warmup: the mode moves that follow
    weigh the modes, whatever the number of chains put in each here.

    Returns the state and the gradient evaluations the search cost, per chain.
    """
    n = state.y.shape[0]
    num_slots = state.modes.step_size.shape[0]
    key_map, key_scouts = random.split(rng_key)
    scale = chains_scale(state.adapt_state.metric.inverse_mass_matrix)
    known, cluster = mode_lib.fit_map(key_map, state.y, scale, potential_and_grad, num_slots)
    mode = known.mode_of[cluster]
    num_scouts = SCOUTS_PER_CHAIN * n
    scouts = mode_lib.draw_scouts(key_scouts, state.y, scale, num_scouts)
    bottom, bottom_potential, bottom_grad, settled = mode_lib.descend(
        potential_and_grad, scouts, known.scale, mode_lib.DESCENT_STEPS
    )
    max_basins = max(1, n // (4 * CHAINS_PER_BASIN))

    def potential_fn(x):
        return potential_and_grad(x)[0]

    # scouts still falling down a slope, or far above the most crowded basin, found
    # no basin worth chains
    crowded = jnp.argmax(jnp.bincount(cluster, length=num_slots))
    worth = mode_lib.worth_a_basin(
        bottom_potential, settled, known.bottom_potential[crowded], state.y.shape[-1]
    )
    candidate_potential = jnp.where(worth, bottom_potential, jnp.inf)
    basin, used = mode_lib.new_basins(bottom, candidate_potential, known, potential_fn, max_basins)
    # donors: chains of the most crowded modes first
    crowd = jnp.bincount(mode, length=n)[mode]  # chains in each chain's mode
    donors = jnp.argsort(-crowd, stable=True)[: max_basins * CHAINS_PER_BASIN]
    target = jnp.repeat(jnp.arange(max_basins), CHAINS_PER_BASIN)[: donors.shape[0]]
    move = jnp.zeros(n, bool).at[donors].set(used[target])
    destination = jnp.zeros(n, jnp.result_type(int)).at[donors].set(basin[target])
    y = jnp.where(move[:, None], bottom[destination], state.y)
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
    trajectory = state.adapt_state.trajectory
    state = state._replace(
        y=y,
        z=vmap(unravel)(y),
        potential_energy=jnp.where(move, bottom_potential[destination], state.potential_energy),
        y_grad=jnp.where(move[:, None], bottom_grad[destination], state.y_grad),
        adapt_state=state.adapt_state._replace(
            trajectory=trajectory._replace(center=jnp.where(move[:, None], y, trajectory.center))
        ),
    )
    # every gradient: the chains' and the scouts' descents, and the barriers
    cost = (
        mode_lib.fit_cost(n, num_slots)
        + num_scouts * (mode_lib.DESCENT_STEPS + 1 + mode_lib.BARRIER_POINTS)
    ) / n
    return state, jnp.asarray(math.ceil(cost), state.num_grad_evals.dtype)


def ensemble_step(
    state: DilationState,
    local_step: Callable,
    potential_and_grad: Callable,
    last_window_end: int,
    search_at: Callable,
) -> DilationState:
    """One ensemble iteration: every chain's local step, then (sometimes) mode moves.

    Parameters
    ----------
    state : DilationState
        Batched chain states with an :class:`EnsembleState` and one random key.
    local_step : callable
        ``state -> state``: the local step of every chain (batched, with a key
        per chain).
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` of the target on one chain's flat coordinates.
    last_window_end : int
        Last iteration of the last mass-matrix window: mode moves start (and
        are tuned) after it.
    search_at : callable
        ``i -> bool``: whether iteration ``i`` searches for basins the chains
        missed (:func:`discover`): the annealing's last iteration and the ends
        of the mass-matrix windows before the last one.
    """
    n = state.y.shape[0]
    i, num_anneal, num_warmup = phases(state, batched=True)
    keys = random.split(state.rng_key, 6)
    key, key_chains, key_moves, key_gate, key_discover, key_labels = keys
    ensemble = state.ensemble
    settings = ensemble.settings
    tuning = (i >= num_anneal) & (i > last_window_end) & (i < num_warmup)
    sampling = i >= num_warmup
    # mode moves and mode labels drawn from the position: once the modes are final
    on = (tuning | sampling) & (pooling.count_modes(state.modes) >= 2)
    state = local_step(
        state._replace(rng_key=random.split(key_chains, n), ensemble=None),
        label_weights=(pooling.cluster_gaussians(state.modes), on),
    )
    state, search_cost = jax.lax.cond(
        search_at(i),
        lambda s: discover(key_discover, s, potential_and_grad),
        lambda s: (s, jnp.zeros((), s.num_grad_evals.dtype)),
        state,
    )
    gate = random.uniform(key_gate) < settings.mode_move_prob
    run = on & (tuning | gate)
    int_dtype = jnp.result_type(int)

    def moves(state):
        state, move, jumped = run_mode_moves(
            key_moves, state, settings.move_probs, potential_and_grad
        )
        return state, (move.move, move.accept_prob, move.accepted, jumped)

    def no_moves(state):
        no = jnp.zeros(n, bool)
        return state, (jnp.zeros(n, int_dtype), jnp.zeros(n, state.y.dtype), no, no)

    state, (move, accept_prob, accepted, jumped) = jax.lax.cond(run, moves, no_moves, state)
    state = jax.lax.cond(on, lambda s: relabel(key_labels, s), lambda s: s, state)
    dtype = state.y.dtype
    onehot = jax.nn.one_hot(move, len(MOVES), dtype=dtype) * run
    stats = ensemble.stats
    count_dtype = stats.num_proposals.dtype
    stats = EnsembleStats(
        accept_prob=onehot * accept_prob[:, None],
        num_proposals=stats.num_proposals + onehot.astype(count_dtype),
        num_accepted=stats.num_accepted + (onehot * accepted[:, None]).astype(count_dtype),
        num_mode_jumps=stats.num_mode_jumps + jumped.astype(stats.num_mode_jumps.dtype),
    )
    # the settings are frozen after warmup (the sampling phase skips the tuning)
    settings = jax.lax.cond(
        tuning & run, lambda s: tune(s, move, accept_prob), lambda s: s, settings
    )
    grads = state.num_grad_evals + jnp.asarray(run, state.num_grad_evals.dtype) + search_cost
    return state._replace(
        rng_key=key, ensemble=EnsembleState(settings, stats), num_grad_evals=grads
    )


__all__ = [
    "CHAINS_PER_BASIN",
    "EMA_WEIGHT",
    "MIN_MODE_MOVE_PROB",
    "MIN_MOVE_PROB",
    "MOVES",
    "SCOUTS_PER_CHAIN",
    "TARGET_JUMP_RATE",
    "discover",
    "ensemble_step",
    "init",
    "init_ensemble_state",
    "relabel",
    "run_mode_moves",
    "tune",
]
