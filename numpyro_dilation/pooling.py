"""Pooled adaptation of vectorised chains, mode by mode (pure functions on arrays).

Vectorised chains adapt together: chains that sit in the same mode of the
posterior share one step size (dual averaging on the geometric mean of their
acceptance, :func:`~numpyro_dilation.adaptation.pooled_acceptance`), one metric
(the mean of their within-chain covariances) and one trajectory length (their
mean ChEES gradient).  Chains in different modes do not pool: a narrow mode's
chains would otherwise run with a step sized for a wide one, and a metric
averaged over modes of different widths suits none of them.

The modes are those of a :class:`~numpyro_dilation.modes.ModeMap`, refitted at
the end of every mass-matrix window after the annealing.  Until the first such
window ends every chain is in mode 0, so a unimodal posterior (whose map finds
one mode) adapts exactly as if all chains pooled.  Each mode's shared values
live in a slot of :class:`ModeState`; every chain's own
:class:`~numpyro_dilation.adaptation.AdaptState` holds a copy of its mode's,
refreshed by :func:`gather`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc_util import dual_averaging

from numpyro_dilation import modes as mode_lib
from numpyro_dilation.adaptation import POOLED_ACCEPT_FLOOR, AdaptState, WindowAdapter
from numpyro_dilation.metric import Metric, chains_scale
from numpyro_dilation.trajectory import TrajectoryState, update_trajectory, update_uturns


class ModeState(NamedTuple):
    """The modes of vectorised chains and each mode's shared adaptation.

    Attributes
    ----------
    map : numpyro_dilation.modes.ModeMap
        Clusters of the chains' positions and the mode of each.
    label : array of int, shape (n,)
        Each chain's mode label: whose settings its moves use (a mode's slot is
        the index of its smallest cluster).
    step_size : array, shape (C,)
        Step size of each mode slot.
    ss_state : tuple
        Dual-averaging state of each slot (leading axis: slots).
    trajectory : numpyro_dilation.trajectory.TrajectoryState
        ChEES trajectory-length state of each slot (no ``center``: that is each
        chain's own).
    metric : numpyro_dilation.metric.Metric
        Metric of each slot.
    mean : array, shape (C, d)
        Centre of each cluster's Gaussian: the bottom of its basin.
    log_weight : array, shape (C,)
        Log fraction of the chains in each cluster at the last refit (``-inf``
        for an empty one).
    occupancy : array of int, shape (n, 2, C)
        Sampling only: per chain, iterations its position spent in each mode
        in the first and second half of the current health-check block
        (:func:`numpyro_dilation.health.warn_if_modes_not_equilibrated`).
    """

    map: mode_lib.ModeMap
    label: jax.Array
    step_size: jax.Array
    ss_state: Any
    trajectory: TrajectoryState
    metric: Metric
    mean: jax.Array
    log_weight: jax.Array
    occupancy: jax.Array

    @property
    def mode(self) -> jax.Array:
        """Each chain's mode label, shape (n,)."""
        return self.label

    @property
    def num_modes(self) -> jax.Array:
        """Modes holding chains at the last refit, once per chain, shape (n,)."""
        return jnp.broadcast_to(count_modes(self), self.label.shape)


def count_modes(modes: ModeState) -> jax.Array:
    """Modes holding chains at the last refit."""
    num_slots = modes.step_size.shape[0]
    held = jnp.zeros(num_slots, bool).at[modes.map.mode_of].max(jnp.isfinite(modes.log_weight))
    return jnp.sum(held)


def num_slots_for(num_chains: int) -> int:
    """Mode slots of ``num_chains`` vectorised chains: at most one per two chains."""
    return max(1, min(mode_lib.MAX_CLUSTERS, num_chains // 2))


def _slot_trajectory(trajectory: TrajectoryState) -> TrajectoryState:
    return trajectory._replace(center=None)


def init(adapt: AdaptState, y: jax.Array, num_slots: int) -> ModeState:
    """Every chain in mode 0, whose slot starts from chain 0's adaptation state."""
    n, d = y.shape
    dtype = y.dtype

    def slots(x):
        return jnp.broadcast_to(x[0], (num_slots,) + jnp.shape(x)[1:])

    int_dtype = jnp.result_type(int)
    return ModeState(
        map=mode_lib.single_mode_map(num_slots, d, dtype),
        label=jnp.zeros(n, int_dtype),
        step_size=slots(adapt.step_size),
        ss_state=jax.tree.map(slots, adapt.ss_state),
        trajectory=jax.tree.map(slots, _slot_trajectory(adapt.trajectory)),
        metric=jax.tree.map(slots, adapt.metric),
        mean=jnp.zeros((num_slots, d), dtype),
        log_weight=jnp.full(num_slots, -jnp.inf, dtype).at[0].set(0.0),
        occupancy=jnp.zeros((n, 2, num_slots), int_dtype),
    )


def count_occupancy(modes: ModeState, y: jax.Array, position: jax.Array, block: int) -> ModeState:
    """Add each chain's mode (of its position ``y``) to the occupancy of the current block.

    ``position`` is the iteration's place in a block of ``block`` sampling
    iterations: the counts restart at 0 and go to the second half from ``block // 2``.
    """
    num_slots = modes.step_size.shape[0]
    dtype = modes.occupancy.dtype
    occupancy = jnp.where(position == 0, 0, modes.occupancy)
    mode = jax.nn.one_hot(mode_lib.assign(modes.map, y), num_slots, dtype=dtype)
    half = jax.nn.one_hot((position >= block // 2).astype(jnp.int32), 2, dtype=dtype)
    return modes._replace(occupancy=occupancy + mode[:, None, :] * half[None, :, None])


def gather(modes: ModeState, adapt: AdaptState, with_metric: bool = False) -> AdaptState:
    """Give every chain its mode's step size, dual averaging, trajectory length (and metric)."""

    mode = modes.mode

    def chains(x):
        return x[mode]

    own = adapt.trajectory
    shared = jax.tree.map(chains, modes.trajectory)
    adapt = adapt._replace(
        step_size=chains(modes.step_size),
        ss_state=jax.tree.map(chains, modes.ss_state),
        trajectory=shared._replace(center=own.center),
    )
    if with_metric:
        adapt = adapt._replace(metric=jax.tree.map(chains, modes.metric))
    return adapt


def group_mean(values: jax.Array, labels: jax.Array, num_slots: int) -> jax.Array:
    """Mean of ``values`` (shape ``(n,)``) over the chains of each slot (0 where empty).

    A masked sum per slot, so that chains all in one slot give exactly the
    plain mean.
    """
    member = labels[None, :] == jnp.arange(num_slots)[:, None]
    count = jnp.sum(member, axis=1)
    return jnp.sum(jnp.where(member, values[None, :], 0.0), axis=1) / jnp.maximum(count, 1)


def start(
    modes: ModeState,
    adapt: AdaptState,
    step_size: jax.Array,
    trajectory_length: jax.Array | None,
    adapt_step_size: bool,
) -> tuple[ModeState, AdaptState]:
    """At the end of the annealing, one starting step (and trajectory length) for every slot."""
    num_slots = modes.step_size.shape[0]
    if adapt_step_size:
        ss_init, _ = dual_averaging()
        step = jnp.broadcast_to(step_size, (num_slots,)).astype(modes.step_size.dtype)
        ss_state = jax.vmap(lambda h: ss_init(jnp.log(10.0) + jnp.log(h)))(step)
        modes = modes._replace(step_size=step, ss_state=ss_state)
    if trajectory_length is not None:
        length = jnp.broadcast_to(trajectory_length, (num_slots,)).astype(modes.step_size.dtype)
        modes = modes._replace(
            trajectory=modes.trajectory._replace(length=length, log_length_avg=jnp.log(length))
        )
    return modes, gather(modes, adapt)


def update(
    modes: ModeState,
    adapt: AdaptState,
    i: jax.Array,
    accept_prob: jax.Array,
    adapter: WindowAdapter,
    chees: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> tuple[ModeState, AdaptState]:
    """One pooled warmup step at ``t = 1``: each slot's dual averaging (and ChEES update).

    Parameters
    ----------
    modes, adapt
        The slots and the chains' adaptation states.
    i : int
        Iteration.
    accept_prob : array, shape (n,)
        This iteration's acceptance probability of each chain.
    adapter : WindowAdapter
        Supplies the dual-averaging step (``step_size_update``) and whether it runs.
    chees : (gradients, weights, jitter, exposure, events), optional
        Each chain's ChEES gradient and weight (its acceptance, 0 when
        divergent), the iteration's jitter, and each chain's U-turn observation
        (:func:`numpyro_dilation.trajectory.uturn_observation`); ``None`` when
        the trajectory length is not adapted.
    """
    num_slots = modes.step_size.shape[0]
    labels = modes.mode
    occupied = jnp.any(labels[None, :] == jnp.arange(num_slots)[:, None], axis=1)

    def keep_empty(new, old):
        mask = jnp.reshape(occupied, occupied.shape + (1,) * (jnp.ndim(new) - 1))
        return jnp.where(mask, new, old)

    old_step = modes.step_size
    if adapter.adapt_step_size:
        # the geometric mean of each slot's acceptance (pooled_acceptance, by slot)
        log_accept = jnp.log(jnp.maximum(accept_prob, POOLED_ACCEPT_FLOOR))
        accept = jnp.exp(group_mean(log_accept, labels, num_slots))
        ss_state, step = jax.vmap(adapter.step_size_update, in_axes=(None, 0, 0))(
            i, accept, modes.ss_state
        )
        modes = modes._replace(
            step_size=keep_empty(step, modes.step_size),
            ss_state=jax.tree.map(keep_empty, ss_state, modes.ss_state),
        )
    if chees is not None:
        gradients, weights, jitter, exposure, events = chees
        total = group_mean(weights * gradients, labels, num_slots)
        weight = group_mean(weights, labels, num_slots)
        gradient = total / (weight + 1e-12)
        trajectory = jax.vmap(update_trajectory, in_axes=(0, 0, None, 0))(
            modes.trajectory, gradient, jitter, old_step
        )
        trajectory = jax.vmap(update_uturns)(
            trajectory,
            group_mean(exposure, labels, num_slots),
            group_mean(events, labels, num_slots),
        )
        modes = modes._replace(trajectory=jax.tree.map(keep_empty, trajectory, modes.trajectory))
    return modes, gather(modes, adapt)


def end_window(
    modes: ModeState,
    adapt: AdaptState,
    adapter: WindowAdapter,
    *,
    refit: bool,
    rng_key: jax.Array | None = None,
    y: jax.Array | None = None,
    potential_and_grad=None,
) -> tuple[ModeState, AdaptState]:
    """Close a mass-matrix window: refit the mode map (``refit``), then each mode's metric.

    Without ``refit`` (the windows of the annealing) the labels stay as they are
    (every chain in mode 0).  With it the map is fitted to the chains'
    positions ``y`` (see :func:`numpyro_dilation.modes.fit_map`), every chain
    is labelled with its position's mode, and each new mode takes its step
    size and trajectory length from the mode of its first chain before the
    refit, and its metric from its chains' window.  A cluster's Gaussian is
    centred at the bottom of its basin, weighted by its share of the chains.
    """
    num_slots = modes.step_size.shape[0]
    if not refit:
        adapt, metrics, _ = adapter.end_window_pooled(
            adapt, modes.mode, modes.metric, modes.step_size
        )
        return modes._replace(metric=metrics), adapt
    scale = chains_scale(adapt.metric.inverse_mass_matrix)
    mode_map, clusters = mode_lib.fit_map(rng_key, y, scale, potential_and_grad, num_slots)
    labels = mode_map.mode_of[clusters]
    # a new mode carries on from the old mode of its first chain
    previous = modes.label[mode_lib.representatives(labels, num_slots)]

    def carried(x):
        return x[previous]

    modes = modes._replace(
        map=mode_map,
        label=labels,
        step_size=carried(modes.step_size),
        trajectory=jax.tree.map(carried, modes.trajectory),
        metric=jax.tree.map(carried, modes.metric),
    )
    adapt, metrics, _ = adapter.end_window_pooled(adapt, labels, modes.metric, modes.step_size)
    # each cluster's share of the chains (by the basins they descended into); its
    # Gaussian is centred at the bottom of its basin
    count = jnp.sum(clusters[None, :] == jnp.arange(num_slots)[:, None], axis=1)
    ss_init, _ = dual_averaging()
    ss_state = jax.vmap(lambda h: ss_init(jnp.log(10.0) + jnp.log(h)))(modes.step_size)
    log_weight = jnp.where(count > 0, jnp.log(count / y.shape[0]), -jnp.inf)
    modes = modes._replace(
        metric=metrics,
        ss_state=ss_state,
        mean=mode_map.bottom,
        log_weight=log_weight.astype(modes.log_weight.dtype),
    )
    return modes, gather(modes, adapt)


def cluster_gaussians(modes: ModeState) -> mode_lib.ClusterGaussians:
    """The Gaussian of each cluster that mode moves propose from: the cluster's mean, its
    mode's metric and its share of the chains."""
    return mode_lib.cluster_gaussians(modes.mean, modes.metric, modes.log_weight, modes.map.mode_of)


__all__ = [
    "ModeState",
    "cluster_gaussians",
    "count_modes",
    "count_occupancy",
    "end_window",
    "gather",
    "group_mean",
    "init",
    "num_slots_for",
    "start",
    "update",
]
