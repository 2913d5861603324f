"""Modes of a posterior as vectorised chains see them (pure functions on arrays).

A *mode map* clusters the chains' positions by k-means and joins clusters into
one mode when the chains show that they are one: a chain moved from one to the
other during the last adaptation window, or no barrier of the potential
separates the bottoms of their basins.  Clusters that stay apart on both counts
are separate modes.  The map assigns any position to a mode (the mode of its
nearest cluster centre).

Every chain carries a mode *label*, the mode whose settings its local moves
use: pooled adaptation (:mod:`numpyro_dilation.pooling`) groups the chains by
label, so that every mode adapts its own step size, metric and trajectory
length.  During warmup the labels follow the map; after it the map and every
mode's settings are frozen, a chain's local moves keep its label, and mode
moves (``ensemble=True``) change position and label together: each mode is
summarised by a Gaussian (its chains' mean and its adapted metric), and a chain
is carried from one mode to another by the affine map between their Gaussians
(:func:`hop_proposal`) or drawn from their mixture
(:func:`independence_proposal`), with its exact Metropolis-Hastings ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from numpyro_dilation.metric import Metric
from numpyro_dilation.metric import variances as _variances

#: Cluster slots of a mode map (at most half the number of chains are used).
MAX_CLUSTERS = 64
#: Each cluster's barriers are measured to this many nearest clusters.
NEIGHBOURS = 6
#: Basin bottoms closer than this (in units of the within-mode scale) are one.
SAME_BOTTOM = 0.5
#: Two clusters are one mode when the segment between their lowest points crosses
#: no barrier of this many nats (:func:`barriers`).
#: Local moves cross such a barrier often; between two Gaussian modes 8 standard
#: deviations apart it is about 7 nats, 4 apart about 1.3.
MIN_BARRIER = 3.0
#: Interior points of each segment at which the barrier is looked for.
BARRIER_POINTS = 9
#: Lloyd iterations of the k-means fit.
KMEANS_ITERS = 10


class ModeMap(NamedTuple):
    """Clusters of the chains' positions and the mode each belongs to.

    Attributes
    ----------
    centers : array, shape (C, d)
        Cluster centres: of the bottoms of the chains' basins (only the first
        ``num_clusters`` are used).
    mode_of : array of int, shape (C,)
        Mode of each cluster: the smallest index of the clusters it is joined with.
    scale : array, shape (d,)
        Per-coordinate yardstick of the distances (the within-mode scale).
    num_clusters : int
        Clusters in use; 0 for a map that puts every position in mode 0.
    bottom : array, shape (C, d)
        The bottom of each cluster's basin (:func:`descend` from its lowest chain).
    bottom_potential : array, shape (C,)
        The potential there (``inf`` for an unused slot).
    """

    centers: jax.Array
    mode_of: jax.Array
    scale: jax.Array
    num_clusters: jax.Array
    bottom: jax.Array
    bottom_potential: jax.Array


def single_mode_map(num_slots: int, dim: int, dtype) -> ModeMap:
    """The map that puts every position in mode 0 (before any fit)."""
    int_dtype = jnp.result_type(int)
    return ModeMap(
        centers=jnp.zeros((num_slots, dim), dtype),
        mode_of=jnp.zeros(num_slots, int_dtype),
        scale=jnp.ones(dim, dtype),
        num_clusters=jnp.zeros((), int_dtype),
        bottom=jnp.zeros((num_slots, dim), dtype),
        bottom_potential=jnp.full(num_slots, jnp.inf, dtype),
    )


def nearest_center(points: jax.Array, centers: jax.Array, active: jax.Array) -> jax.Array:
    """Index of the centre nearest to each point (``(..., d) -> (...)``) among the ``active``
    ones (a boolean mask over the centres); 0 when none is."""
    # |c|^2 - 2 p.c orders the centres as |p - c|^2 does: one matrix product per batch
    score = jnp.sum(centers**2, axis=-1) - 2.0 * points @ centers.T
    return jnp.argmin(jnp.where(active, score, jnp.inf), axis=-1)


def assign(mode_map: ModeMap, y: jax.Array) -> jax.Array:
    """Mode of each position ``y`` (shape ``(..., d)``): the mode of its nearest cluster.

    The clusters' centres are basin bottoms, so this is the mode whose bottom
    is nearest (in the map's scale): a proxy for the basin a position is in
    (the chains the map was fitted to are labelled by their own basins).
    """
    return mode_map.mode_of[nearest_cluster(mode_map, y)]


def kmeans(
    rng_key: jax.Array, points: jax.Array, max_clusters: int, num_active, num_iters: int = 10
) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means with k-means++ seeding: ``(centres, labels)`` of ``points``.

    ``num_active <= max_clusters`` clusters are used (the other slots are
    masked), so that the count can change without changing shapes.
    Deterministic given the key and the points.
    """
    n = points.shape[0]
    active = jnp.arange(max_clusters) < num_active
    # all the seeding's randomness in one draw: the first centre, then one uniform
    # per centre for inverse-CDF sampling from the D^2 weights
    u = random.uniform(rng_key, (max_clusters,), points.dtype)
    first = jnp.minimum(jnp.floor(u[0] * n).astype(jnp.int32), n - 1)
    centers = jnp.zeros((max_clusters, points.shape[1]), points.dtype)
    centers = centers.at[0].set(points[first])
    # each point's squared distance to its nearest centre so far, updated with the
    # newest centre only
    nearest_d2 = jnp.sum((points - points[first]) ** 2, axis=-1)

    def seed_one(carry, c_u):
        centers, nearest_d2 = carry
        c, u_c = c_u
        total = jnp.sum(nearest_d2)
        # D^2 sampling, or a uniform pick when every point sits on a centre
        weights = jnp.where(total > 0, nearest_d2, 1.0)
        cdf = jnp.cumsum(weights)
        pick = jnp.minimum(jnp.sum(cdf <= u_c * cdf[-1]), n - 1)
        used = c < num_active
        new_d2 = jnp.minimum(nearest_d2, jnp.sum((points - points[pick]) ** 2, axis=-1))
        return (
            jnp.where(used, centers.at[c].set(points[pick]), centers),
            jnp.where(used, new_d2, nearest_d2),
        ), None

    (centers, _), _ = jax.lax.scan(
        seed_one,
        (centers, nearest_d2),
        (jnp.arange(1, max_clusters), u[1:]),
        unroll=max_clusters <= 16,
    )

    def lloyd(centers, _):
        labels = nearest_center(points, centers, active)
        onehot = jax.nn.one_hot(labels, max_clusters, dtype=points.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ points) / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, means, centers), None

    centers, _ = jax.lax.scan(lloyd, centers, None, length=num_iters, unroll=True)
    return centers, nearest_center(points, centers, active)


def barriers(
    start: jax.Array,
    start_potential: jax.Array,
    end: jax.Array,
    end_potential: jax.Array,
    potential_fn: Callable,
    num_points: int,
) -> jax.Array:
    """Depth of the potential's barrier on each segment from ``start[k]`` to ``end[k]``.

    Along a segment (``num_points`` evenly spaced interior points), a barrier
    is a point whose potential stands above the lowest potential on *both*
    sides of it; its depth is by how much (the lower of the two rises).  A
    profile that only falls or only rises (one end out in a tail, the other in
    the bulk of the same mode) has none, nor has any segment of a convex
    potential (a log-concave posterior); between two Gaussian modes 8
    standard deviations apart the depth is about 7 nats.  ``inf`` where the
    potential is not finite.  Shapes: ``(..., d)`` points, ``(...)`` potentials
    and depths.
    """
    d = start.shape[-1]
    shape = jnp.broadcast_shapes(start.shape, end.shape)
    start, end = jnp.broadcast_to(start, shape), jnp.broadcast_to(end, shape)
    start_potential = jnp.broadcast_to(start_potential, shape[:-1])
    end_potential = jnp.broadcast_to(end_potential, shape[:-1])
    s = jnp.linspace(0.0, 1.0, num_points + 2)[1:-1].astype(start.dtype)
    points = start[..., None, :] + s[:, None] * (end - start)[..., None, :]
    values = jax.vmap(potential_fn)(points.reshape(-1, d)).reshape(points.shape[:-1])
    values = jnp.where(jnp.isfinite(values), values, jnp.inf)
    profile = jnp.concatenate([start_potential[..., None], values, end_potential[..., None]], -1)
    lowest_before = jax.lax.cummin(profile, axis=profile.ndim - 1)
    lowest_after = jax.lax.cummin(profile, axis=profile.ndim - 1, reverse=True)
    depth = profile - jnp.maximum(lowest_before, lowest_after)
    return jnp.max(depth[..., 1:-1], axis=-1)


def components(linked: jax.Array) -> jax.Array:
    """Connected components of a symmetric boolean adjacency ``(C, C)``: each node's
    smallest connected index."""
    num = linked.shape[0]
    linked = linked | jnp.eye(num, dtype=bool)

    def spread(label, _):
        return jnp.min(jnp.where(linked, label[None, :], num), axis=1), None

    label, _ = jax.lax.scan(spread, jnp.arange(num), None, length=num)
    return label


#: A cluster whose bottom stands more than this many nats above its lowest linked
#: neighbour's is on that neighbour's slope (or out in a tail), not at a mode of its own.
BRIDGE_RISE = 1.0


def join_modes(linked: jax.Array, bottom_potential: jax.Array, active: jax.Array) -> jax.Array:
    """Each cluster's mode (its smallest index), from the links between clusters.

    Clusters linked by no barrier are one mode, transitively, except that a
    cluster whose bottom stands more than :data:`BRIDGE_RISE` nats above its lowest
    linked neighbour's does not carry the link onwards: it joins that neighbour's
    mode and joins nothing else.  Chains left out in a heavy tail end their descent
    on slopes that no barrier separates from either of two modes; if they bridged,
    the two modes would be one and no mode move would run between them.

    Parameters
    ----------
    linked : array, shape (C, C)
        Symmetric: no barrier separates the two clusters (or their bottoms coincide).
    bottom_potential : array, shape (C,)
        The potential at each cluster's bottom.
    active : array, shape (C,)
        Clusters in use; the others are their own (empty) modes.
    """
    num = linked.shape[0]
    index = jnp.arange(num)
    level = jnp.where(active, bottom_potential, jnp.inf)
    neighbour_level = jnp.where(linked & ~jnp.eye(num, dtype=bool), level[None, :], jnp.inf)
    lowest = jnp.argmin(neighbour_level, axis=1)
    high = active & (level > jnp.min(neighbour_level, axis=1) + BRIDGE_RISE)
    core = components(linked & ~high[:, None] & ~high[None, :])
    # a high cluster follows its lowest neighbour downhill (each step more than
    # BRIDGE_RISE lower, so there are no cycles) to one that is not high
    down = jnp.where(high, lowest, index)
    for _ in range(max(num, 1).bit_length()):
        down = down[down]
    return core[down]


#: Gradient steps that take each cluster's anchor down to the bottom of its basin.
DESCENT_STEPS = 30
#: A descent has settled at a basin's bottom when its last :data:`SETTLE_STEPS`
#: steps lowered the potential by less than :data:`SETTLE_TOLERANCE` nats.
SETTLE_STEPS = 5
SETTLE_TOLERANCE = 0.5
#: A basin whose bottom stands more than :func:`negligible_height` above the most
#: crowded known basin's bottom would hold less than ``exp(-NEGLIGIBLE_NATS)`` of
#: the mass even if it were :data:`WIDEST_RATIO` times wider than that mode in
#: every coordinate.
WIDEST_RATIO = 100.0
NEGLIGIBLE_NATS = 20.0


def negligible_height(dim: int) -> float:
    """Nats above the most crowded basin's bottom beyond which a basin's mass is negligible."""
    return dim * math.log(WIDEST_RATIO) + NEGLIGIBLE_NATS


def worth_a_basin(
    bottom_potential: jax.Array, settled: jax.Array, reference_potential: jax.Array, dim: int
) -> jax.Array:
    """Whether scouts' descents ended where a new basin could be: settled (not still
    falling down a slope) and at most :func:`negligible_height` above
    ``reference_potential`` (the most crowded known basin's bottom).

    A far, nearly flat slope, as a regression's potential has at a large scale
    parameter, fails one or the other; the straight segment from there to the mode
    can cross a ridge of the non-convex potential that the barrier test would take
    for a basin's wall.
    """
    return settled & (bottom_potential <= reference_potential + negligible_height(dim))


def descend(potential_and_grad: Callable, x: jax.Array, scale: jax.Array, num_steps: int):
    """Preconditioned gradient descent of each row of ``x`` towards its basin's minimum.

    Steps ``h scale**2 * grad`` with a step ``h`` per point that grows by 1.5
    after a step that lowered the potential and shrinks by 4 (the step undone)
    after one that did not.  Returns the points, their potentials and gradients,
    and whether each descent settled (:data:`SETTLE_STEPS`,
    :data:`SETTLE_TOLERANCE`): a point still falling is on a slope, not at a
    bottom (a chain left far out in a tail, where a straight segment to the mode
    can cross a ridge of a non-convex potential and look like a barrier).
    """
    settle_from = max(num_steps - SETTLE_STEPS, 0)

    def one(x0):
        u0, g0 = potential_and_grad(x0)

        def body(i, carry):
            x, u, g, h, u_mark = carry
            x_new = x - h * scale**2 * g
            u_new, g_new = potential_and_grad(x_new)
            better = jnp.isfinite(u_new) & (u_new < u) & jnp.all(jnp.isfinite(g_new))
            return (
                jnp.where(better, x_new, x),
                jnp.where(better, u_new, u),
                jnp.where(better, g_new, g),
                jnp.where(better, 1.5 * h, 0.25 * h),
                jnp.where(i == settle_from, u, u_mark),
            )

        h0 = jnp.ones((), x0.dtype)
        x, u, g, _, u_mark = jax.lax.fori_loop(0, num_steps, body, (x0, u0, g0, h0, u0))
        settled = jnp.isfinite(u) & (u_mark - u < SETTLE_TOLERANCE)
        return x, u, g, settled

    return jax.vmap(one)(x)


def fit_map(
    rng_key: jax.Array,
    y: jax.Array,
    scale: jax.Array,
    potential_and_grad: Callable,
    num_slots: int,
    *,
    min_barrier: float = MIN_BARRIER,
) -> tuple[ModeMap, jax.Array]:
    """Fit a mode map to the chains' positions ``y`` (shape ``(n, d)``); and each chain's cluster.

    Every chain is taken down to the bottom of its basin (:func:`descend`),
    and the bottoms are clustered by k-means, so that a cluster never straddles
    two basins however close they are.  Clusters are joined into one mode when
    their bottoms coincide (within :data:`SAME_BOTTOM`) or when no barrier of
    ``min_barrier`` nats (:func:`barriers`) separates the lowest bottoms of two
    neighbouring clusters (each is tested against its :data:`NEIGHBOURS`
    nearest); a cluster on a slope joins only its lowest linked neighbour
    (:func:`join_modes`).

    Parameters
    ----------
    rng_key : jax.Array
        Key of the k-means seeding.
    y : array, shape (n, d)
        The chains' positions.
    scale : array, shape (d,)
        Per-coordinate within-mode scale (distances are in its units).
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` on one flat position.
    num_slots : int
        Cluster slots (static); ``min(num_slots, n // 2)`` clusters are fitted.
    min_barrier : float
        Barrier depth (nats) that keeps two clusters apart.
    """
    n = y.shape[0]
    scale = jnp.where(scale > 0, scale, 1.0)
    num_clusters = max(1, min(num_slots, n // 2))
    floor, floor_potential, _, _ = descend(potential_and_grad, y, scale, DESCENT_STEPS)
    floor_potential = jnp.where(jnp.isfinite(floor_potential), floor_potential, jnp.inf)
    centers, labels = kmeans(rng_key, floor / scale, num_slots, num_clusters, KMEANS_ITERS)
    counts = jax.nn.one_hot(labels, num_slots, dtype=y.dtype).sum(0)
    active = (jnp.arange(num_slots) < num_clusters) & (counts > 0)
    # each cluster's anchor: the lowest bottom its chains reached
    member = labels[None, :] == jnp.arange(num_slots)[:, None]
    best = jnp.argmin(jnp.where(member, floor_potential[None, :], jnp.inf), axis=1)
    bottom, bottom_potential = floor[best], floor_potential[best]
    scaled = bottom / scale
    distance = jnp.sum((scaled[:, None, :] - scaled[None, :, :]) ** 2, axis=-1)
    # bottoms that coincide are one basin's; barriers are looked for between the
    # nearest distinct ones (joining is transitive)
    same = distance < SAME_BOTTOM**2
    # clusters whose bottoms coincide are one: the smallest index keeps their chains
    keeper = jnp.argmax(same & active[None, :], axis=1)
    keeper = keeper[keeper]
    labels = keeper[labels]
    active = active & (keeper == jnp.arange(num_slots))
    linked = same
    num_neighbours = min(NEIGHBOURS, num_slots - 1)
    if num_neighbours > 0:
        usable = active[:, None] & active[None, :] & ~same
        _, neighbours = jax.lax.top_k(-jnp.where(usable, distance, jnp.inf), num_neighbours)

        def potential_fn(x):
            return potential_and_grad(x)[0]

        depth = barriers(
            bottom[:, None, :],
            bottom_potential[:, None],
            bottom[neighbours],
            bottom_potential[neighbours],
            potential_fn,
            BARRIER_POINTS,
        )
        rows = jnp.broadcast_to(jnp.arange(num_slots)[:, None], neighbours.shape)
        no_barrier = jnp.zeros((num_slots, num_slots), bool)
        no_barrier = no_barrier.at[rows, neighbours].set(depth < min_barrier)
        linked = linked | no_barrier | no_barrier.T
    linked = linked & active[:, None] & active[None, :]
    mode_of = join_modes(linked, bottom_potential, active).astype(jnp.result_type(int))
    mode_map = ModeMap(
        centers=centers * scale,
        mode_of=mode_of,
        scale=scale,
        num_clusters=jnp.asarray(num_clusters, mode_of.dtype),
        bottom=bottom,
        bottom_potential=jnp.where(active, bottom_potential, jnp.inf),
    )
    return mode_map, labels


def fit_cost(num_chains: int, num_slots: int) -> int:
    """Potential evaluations of one :func:`fit_map` on ``num_chains`` chains: each chain's
    descent and the barriers between neighbouring clusters (a gradient evaluation each,
    as counted)."""
    neighbours = min(NEIGHBOURS, max(1, min(num_slots, num_chains // 2)) - 1, num_slots - 1)
    return num_chains * (DESCENT_STEPS + 1) + num_slots * max(neighbours, 0) * BARRIER_POINTS


#: Scouts drawn around the chains' spread are this much wider than it ...
CLOUD_SPREAD = 2.0
#: ... and scouts drawn around single chains this many within-mode scales wide
#: (about the reach of parallel tempering's hottest replicas).
LOCAL_SPREAD = 10.0


def draw_scouts(rng_key: jax.Array, y: jax.Array, scale: jax.Array, num_scouts: int) -> jax.Array:
    """Starting points of a search for basins no chain is in, shape ``(num_scouts, d)``.

    Half are drawn from a Gaussian :data:`CLOUD_SPREAD` times as wide as the
    chains' spread (each coordinate's mean and standard deviation over the
    chains), half around chains picked at random, :data:`LOCAL_SPREAD`
    within-mode scales wide.  Both are defined by the chains alone, so the
    search moves with the posterior when it is translated or rescaled.
    """
    n, d = y.shape
    key_cloud, key_pick, key_local = random.split(rng_key, 3)
    half = num_scouts // 2
    spread = jnp.std(y, axis=0)
    cloud = jnp.mean(y, axis=0) + CLOUD_SPREAD * (spread + scale) * random.normal(
        key_cloud, (half, d), y.dtype
    )
    picked = y[random.randint(key_pick, (num_scouts - half,), 0, n)]
    local = picked + LOCAL_SPREAD * scale * random.normal(
        key_local, (num_scouts - half, d), y.dtype
    )
    return jnp.concatenate([cloud, local])


def new_basins(
    bottom: jax.Array,
    bottom_potential: jax.Array,
    mode_map: ModeMap,
    potential_fn: Callable,
    max_basins: int,
    *,
    min_barrier: float = MIN_BARRIER,
) -> tuple[jax.Array, jax.Array]:
    """Which of the scouts' basin bottoms are basins the map does not know.

    A bottom is new when it is not within :data:`SAME_BOTTOM` of a known
    cluster's bottom and a barrier of ``min_barrier`` nats separates it from
    the nearest one; new bottoms that coincide are one basin, the lowest kept.
    Returns, for the (at most ``max_basins``) lowest new basins, their indices
    into ``bottom`` and whether each entry is used (sorted lowest first).
    """
    scale = mode_map.scale
    known = jnp.isfinite(mode_map.bottom_potential)
    distance = jnp.sum(((bottom[:, None, :] - mode_map.bottom[None, :, :]) / scale) ** 2, axis=-1)
    distance = jnp.where(known[None, :], distance, jnp.inf)
    nearest = jnp.argmin(distance, axis=1)
    depth = barriers(
        bottom,
        bottom_potential,
        mode_map.bottom[nearest],
        mode_map.bottom_potential[nearest],
        potential_fn,
        BARRIER_POINTS,
    )
    new = (
        jnp.isfinite(bottom_potential)
        & (jnp.min(distance, axis=1) >= SAME_BOTTOM**2)
        & (depth >= min_barrier)
    )
    # keep the lowest of each group of coinciding new bottoms, lowest first
    order = jnp.argsort(jnp.where(new, bottom_potential, jnp.inf))
    ranked = bottom[order] / scale
    first = new[order] & ~coincides_with_earlier(ranked, new[order])
    chosen = jnp.argsort(~first, stable=True)[:max_basins]
    return order[chosen], first[chosen]


#: Above this many points, :func:`coincides_with_earlier` compares them a block of
#: rows at a time, so that its memory grows as points x block, not points squared.
PAIRWISE_BLOCK = 1024


def coincides_with_earlier(points: jax.Array, candidate: jax.Array) -> jax.Array:
    """Whether each of ``points`` (shape ``(m, d)``, scaled) lies within
    :data:`SAME_BOTTOM` of an earlier point that is a ``candidate``."""
    m = points.shape[0]

    def rows(start, block):
        i = start + jnp.arange(block)
        close = jnp.sum((points[i][:, None, :] - points[None, :, :]) ** 2, axis=-1) < SAME_BOTTOM**2
        earlier = (jnp.arange(m)[None, :] < i[:, None]) & candidate[None, :]
        return jnp.any(close & earlier, axis=1)

    if m <= PAIRWISE_BLOCK:
        return rows(0, m)
    num_blocks = -(-m // PAIRWISE_BLOCK)
    padded = num_blocks * PAIRWISE_BLOCK
    # the last block reads past the end: clamp its rows and drop them afterwards
    starts = jnp.minimum(jnp.arange(num_blocks) * PAIRWISE_BLOCK, m - PAIRWISE_BLOCK)
    blocks = jax.lax.map(lambda start: rows(start, PAIRWISE_BLOCK), starts)
    index = (starts[:, None] + jnp.arange(PAIRWISE_BLOCK)[None, :]).reshape(padded)
    return jnp.zeros(m, bool).at[index].set(blocks.reshape(padded))


#: A chain adapting alone searches with this many scouts ...
CHAIN_SCOUTS = 64
#: ... drawn this many of its metric's scales around it ...
CHAIN_SPREAD = 3.0
#: ... quenched by this many descent steps each, after which the deepest
#: :data:`CHAIN_FINALISTS` are taken to the bottom of their basins.
QUENCH_STEPS = 10
CHAIN_FINALISTS = 8


def laplace_log_mass(
    potential_and_grad: Callable, bottom: jax.Array, potential: jax.Array, grad, scale: jax.Array
) -> jax.Array:
    """``-U(b) - 1/2 sum_j log(max(H_jj s_j^2, 1))``: a basin's log mass, from its bottom ``b``.

    The diagonal of the Hessian ``H`` comes from forward differences of the
    gradient (one evaluation per coordinate), in units of the scale ``s``;
    curvatures flatter than the scale itself (a direction the potential does
    not see, such as a change point between two observations) count as the
    scale, so that the volume is never taken as infinite.  Shapes: ``(m, d)``
    bottoms, ``(m,)`` potentials and result.
    """
    d = bottom.shape[-1]
    step = 1e-2 * scale
    eye = jnp.eye(d, dtype=bottom.dtype)

    def curvature(b, g):
        def along(j):
            _, g_j = potential_and_grad(b + step[j] * eye[j])
            return (g_j[j] - g[j]) / step[j]

        return jax.lax.map(along, jnp.arange(d))

    h = jax.vmap(curvature)(bottom, grad)
    log_volume = -0.5 * jnp.sum(jnp.log(jnp.maximum(h * scale**2, 1.0)), axis=-1)
    return jnp.where(jnp.isfinite(log_volume), -potential + log_volume, -jnp.inf)


def chain_search_cost(dim: int) -> int:
    """Gradient evaluations of one :func:`chain_search` in ``dim`` dimensions: the scouts'
    quench, the finalists' descents and their Hessian diagonals."""
    return CHAIN_SCOUTS * (QUENCH_STEPS + 1) + (CHAIN_FINALISTS + 1) * (DESCENT_STEPS + 1 + dim)


def chain_search(
    rng_key: jax.Array,
    y: jax.Array,
    potential: jax.Array,
    grad: jax.Array,
    scale: jax.Array,
    potential_and_grad: Callable,
):
    """Look around a chain adapting alone for basins, and move it to one drawn by their mass.

    :data:`CHAIN_SCOUTS` scouts are drawn :data:`CHAIN_SPREAD` scales around the
    chain and quenched by :data:`QUENCH_STEPS` descent steps; the deepest
    :data:`CHAIN_FINALISTS` and the chain itself are taken to the bottom of
    their basins and weighed by :func:`laplace_log_mass`.  Finalists whose
    bottoms coincide count once.  The chain then continues in a basin drawn
    with probability proportional to those masses (its own, where it is at
    the bottom of the heaviest by far), so that chains run one by one spread
    over comparable basins as they would have, and R-hat still sees them, while
    a chain in a basin of negligible mass leaves it.  Returns the position,
    potential and gradient to continue from (the chain's own if it stays),
    whether it moved, and the potential evaluations spent.
    """
    d = y.shape[-1]
    key_scouts, key_pick = random.split(rng_key)
    scouts = y + CHAIN_SPREAD * scale * random.normal(key_scouts, (CHAIN_SCOUTS, d), y.dtype)
    quenched, quenched_potential, _, _ = descend(potential_and_grad, scouts, scale, QUENCH_STEPS)
    quenched_potential = jnp.where(jnp.isfinite(quenched_potential), quenched_potential, jnp.inf)
    _, best = jax.lax.top_k(-quenched_potential, CHAIN_FINALISTS)
    start = jnp.concatenate([y[None], quenched[best]])
    bottom, bottom_potential, bottom_grad, _ = descend(
        potential_and_grad, start, scale, DESCENT_STEPS
    )
    log_mass = laplace_log_mass(potential_and_grad, bottom, bottom_potential, bottom_grad, scale)
    # one vote per distinct basin: a bottom that coincides with an earlier one is dropped
    scaled = bottom / scale
    close = jnp.sum((scaled[:, None] - scaled[None]) ** 2, axis=-1) < SAME_BOTTOM**2
    repeat = jnp.any(jnp.tril(close, k=-1), axis=1)
    log_mass = jnp.where(repeat, -jnp.inf, log_mass)
    pick = random.categorical(key_pick, jnp.where(jnp.isfinite(log_mass), log_mass, -jnp.inf))
    move = pick != 0
    cost = chain_search_cost(d)
    return (
        jnp.where(move, bottom[pick], y),
        jnp.where(move, bottom_potential[pick], potential),
        jnp.where(move, bottom_grad[pick], grad),
        move,
        cost,
    )


def group_counts(labels: jax.Array, num_slots: int, dtype) -> jax.Array:
    """Chains in each mode slot."""
    return jax.nn.one_hot(labels, num_slots, dtype=dtype).sum(0)


def group_mean(values: jax.Array, labels: jax.Array, num_slots: int) -> jax.Array:
    """Mean of ``values`` (leading axis: chains) over the chains of each slot; 0 where empty."""
    onehot = jax.nn.one_hot(labels, num_slots, dtype=values.dtype)
    counts = onehot.sum(0)
    flat = values.reshape(values.shape[0], -1)
    means = (onehot.T @ flat) / jnp.maximum(counts, 1.0)[:, None]
    return means.reshape((num_slots,) + values.shape[1:])


def representatives(labels: jax.Array, num_slots: int) -> jax.Array:
    """For each slot, the first chain in it (0 for an empty slot)."""
    hits = labels[None, :] == jnp.arange(num_slots)[:, None]
    return jnp.argmax(hits, axis=1)


# ----------------------------------------------------------------------------- mode moves


class ClusterGaussians(NamedTuple):
    """One Gaussian per cluster of a mode map: what mode moves propose from.

    Attributes
    ----------
    mean : array, shape (C, d)
        Cluster means.
    sqrt : array, shape (C, d) or (C, d, d)
        ``A`` with ``A A^T`` the covariance (the adapted metric of the cluster's mode).
    whitening : array
        ``A^{-1}``, same shape.
    log_det : array, shape (C,)
        ``log |det A|``.
    log_weight : array, shape (C,)
        Log weight of each cluster in the independence proposal (``-inf``: no such cluster).
    mode_of : array of int, shape (C,)
        Mode of each cluster.
    variance : array, shape (C, d)
        The diagonal of each covariance (:func:`mode_log_probs` uses it alone).
    """

    mean: jax.Array
    sqrt: jax.Array
    whitening: jax.Array
    log_det: jax.Array
    log_weight: jax.Array
    mode_of: jax.Array
    variance: jax.Array


def cluster_gaussians(
    mean: jax.Array, metric: Metric, log_weight: jax.Array, mode_of: jax.Array
) -> ClusterGaussians:
    """The Gaussians of a map's clusters: their means, the metrics of their modes (``metric``
    has a leading axis of mode slots) and their weights."""
    metric = jax.tree.map(lambda x: x[mode_of], metric)
    sqrt = metric.inverse_mass_matrix_sqrt
    diag = sqrt if sqrt.ndim == 2 else jnp.diagonal(sqrt, axis1=-2, axis2=-1)
    return ClusterGaussians(
        mean=mean,
        sqrt=sqrt,
        whitening=metric.whitening,
        log_det=jnp.sum(jnp.log(jnp.abs(diag)), axis=-1),
        log_weight=log_weight,
        mode_of=mode_of,
        variance=variances_of(metric.inverse_mass_matrix),
    )


def variances_of(inverse_mass_matrix: jax.Array) -> jax.Array:
    """The diagonals of a stack of metrics (leading axis: clusters)."""
    return jax.vmap(_variances)(inverse_mass_matrix)


def _apply(matrix: jax.Array, v: jax.Array) -> jax.Array:
    # per-chain matrices, (m, d) elementwise or (m, d, d) dense, times vectors (m, d)
    return matrix * v if matrix.ndim == 2 else jnp.einsum("mij,mj->mi", matrix, v)


def other_cluster(u: jax.Array, cluster: jax.Array, active: jax.Array) -> jax.Array:
    """A cluster drawn uniformly among the active ones other than ``cluster``, from uniforms ``u``.

    With ``k`` active clusters each other one has probability ``1 / (k - 1)``:
    the reverse move picks ``cluster`` back with the same probability.
    """
    num_active = jnp.sum(active)
    rank = jnp.cumsum(active) - 1  # rank of each active cluster among the active ones
    r = jnp.clip(jnp.floor(u * (num_active - 1)), 0, num_active - 2).astype(rank.dtype)
    own = rank[cluster]
    target = jnp.where(r < own, r, r + 1)
    return jnp.argmax(active & (rank == target[..., None]), axis=-1)


def hop_proposal(u: jax.Array, y: jax.Array, gaussians: ClusterGaussians, mode_map: ModeMap):
    """Carry each chain from its cluster ``a`` to another cluster ``b`` by the affine map
    between the two clusters' Gaussians.

    ``a`` is the cluster nearest to ``y``, ``b`` is drawn uniformly among the
    other clusters (from the uniforms ``u``), and ``y' = m_b + A_b A_a^{-1} (y - m_a)``
    keeps the chain's whitened offset.  The move from ``y'`` is its exact
    reverse, chosen with the same probability, when ``y'`` is nearest to
    ``b``; otherwise the move is invalid (rejected).  Returns the proposals,
    ``log |det A_b| - log |det A_a|`` (the map's log Jacobian) and validity.
    """
    active = jnp.isfinite(gaussians.log_weight)
    source = nearest_cluster(mode_map, y)
    target = other_cluster(u, source, active)
    offset = _apply(gaussians.whitening[source], y - gaussians.mean[source])
    proposal = gaussians.mean[target] + _apply(gaussians.sqrt[target], offset)
    valid = (
        (jnp.sum(active) >= 2) & active[source] & (nearest_cluster(mode_map, proposal) == target)
    )
    return proposal, gaussians.log_det[target] - gaussians.log_det[source], valid


def nearest_cluster(mode_map: ModeMap, y: jax.Array) -> jax.Array:
    """Each position's nearest cluster centre (in the map's scale), among the clusters that
    held chains when the map was fitted; 0 for a map with none."""
    return nearest_center(
        y / mode_map.scale,
        mode_map.centers / mode_map.scale,
        jnp.isfinite(mode_map.bottom_potential),
    )


def component_log_density(gaussians: ClusterGaussians, y: jax.Array) -> jax.Array:
    """``log w_c + log N(y; m_c, A_c A_c^T)`` of every cluster ``c``, shape ``(m, d) -> (m, C)``."""
    d = y.shape[-1]
    diff = y[:, None, :] - gaussians.mean[None]  # (m, C, d)
    w = gaussians.whitening
    z = w[None] * diff if w.ndim == 2 else jnp.einsum("kij,mkj->mki", w, diff)
    log_component = (
        gaussians.log_weight
        - 0.5 * jnp.sum(z**2, axis=-1)
        - gaussians.log_det
        - 0.5 * d * jnp.log(2 * jnp.pi)
    )
    return jnp.where(jnp.isfinite(log_component), log_component, -jnp.inf)


def mode_log_probs(gaussians: ClusterGaussians, y: jax.Array) -> jax.Array:
    """``log r(k | y)``: each mode's share of a mixture of the clusters at ``y``,
    shape ``(m, d) -> (m, C)`` (``-inf`` for slots that are no mode).

    The mixture's components are the clusters' Gaussians with their
    covariances' diagonals only: any fixed soft assignment of positions to
    modes serves the labels of ensemble mode, and this one costs ``O(C d)``
    per chain where the full covariances would cost ``O(C d^2)``.
    """
    num_slots = gaussians.mode_of.shape[0]
    log_component = cluster_log_probs(gaussians, y)
    in_mode = gaussians.mode_of[None, :] == jnp.arange(num_slots)[:, None]  # (mode, cluster)
    per_mode = logsumexp(jnp.where(in_mode[None], log_component[:, None, :], -jnp.inf), axis=-1)
    total = logsumexp(log_component, axis=-1, keepdims=True)
    return jnp.where(jnp.isfinite(per_mode), per_mode - total, -jnp.inf)


def cluster_log_probs(gaussians: ClusterGaussians, y: jax.Array) -> jax.Array:
    """Unnormalised log probability of each cluster of :func:`mode_log_probs`'s mixture
    at ``y``, shape ``(m, d) -> (m, C)`` (``-inf`` for slots that are no cluster).

    A mode's probability is the normalised sum over its clusters, so a cluster
    drawn from these and mapped to its mode is a draw of the mode label.
    """
    diff = y[:, None, :] - gaussians.mean[None]  # (m, C, d)
    log_component = gaussians.log_weight - 0.5 * jnp.sum(
        diff**2 / gaussians.variance + jnp.log(gaussians.variance), axis=-1
    )
    return jnp.where(jnp.isfinite(log_component), log_component, -jnp.inf)


def mode_log_prob(gaussians: ClusterGaussians, y: jax.Array, label: ArrayLike) -> jax.Array:
    """``log r(label | y)`` of :func:`mode_log_probs` for one position ``y`` (shape ``(d,)``)
    and one mode: ``O(C d)``, where all modes at once cost ``O(C^2)`` more."""
    # one pass of exponentials for the mode's sum and the total
    share = _shares(cluster_log_probs(gaussians, y[None])[0])
    in_mode = jnp.sum(jnp.where(gaussians.mode_of == label, share, 0.0))
    return jnp.where(in_mode > 0, jnp.log(in_mode) - jnp.log(jnp.sum(share)), -jnp.inf)


def draw_mode_labels(rng_key: jax.Array, gaussians: ClusterGaussians, y: jax.Array) -> jax.Array:
    """A mode label for each position ``y`` (shape ``(m, d)``), drawn from :func:`mode_log_probs`.

    A cluster is drawn from the mixture at ``y`` by inverting its distribution
    function with one uniform per chain (``O(C d)`` per chain; the modes'
    probabilities themselves cost ``O(C^2)`` more), and its mode is the label.
    """
    cdf = jnp.cumsum(_shares(cluster_log_probs(gaussians, y)), axis=-1)
    u = random.uniform(rng_key, (y.shape[0], 1), y.dtype) * cdf[:, -1:]
    # the first cluster whose cumulative mass exceeds u: never one of zero mass
    cluster = jnp.minimum(jnp.sum(cdf <= u, axis=-1), cdf.shape[-1] - 1)
    return gaussians.mode_of[cluster]


def _shares(log_component: jax.Array) -> jax.Array:
    # exp(log p) relative to the largest along the last axis (all zero where none is finite)
    top = jnp.max(log_component, axis=-1, keepdims=True)
    return jnp.exp(log_component - jnp.where(jnp.isfinite(top), top, 0.0))


def independence_proposal(rng_key: jax.Array, y: jax.Array, gaussians: ClusterGaussians):
    """Draw each chain's proposal from the clusters' Gaussian mixture ``g``.

    Returns the proposals and the independence sampler's correction
    ``log g(y) - log g(y')``.
    """
    m, d = y.shape
    key_c, key_z = random.split(rng_key)
    cluster = random.categorical(key_c, gaussians.log_weight, shape=(m,))
    noise = random.normal(key_z, (m, d), y.dtype)
    proposal = gaussians.mean[cluster] + _apply(gaussians.sqrt[cluster], noise)
    log_g = logsumexp(component_log_density(gaussians, jnp.concatenate([y, proposal])), axis=-1)
    return proposal, log_g[:m] - log_g[m:]


#: Mode moves, by index.
MOVES = ("hop", "independence")


class ModeMove(NamedTuple):
    """Outcome of the mode moves of a batch of chains.

    Attributes
    ----------
    y, potential_energy, grad : array
        New positions (the proposals where accepted), their potentials and gradients.
    move : array of int
        Move proposed to each chain (an index into :data:`MOVES`).
    accept_prob : array
        Metropolis-Hastings acceptance probability of each proposal.
    accepted : array of bool
        Whether each chain's proposal was accepted.
    """

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    move: jax.Array
    accept_prob: jax.Array
    accepted: jax.Array


def mode_moves(
    rng_key: jax.Array,
    y: jax.Array,
    potential_energy: jax.Array,
    grad: jax.Array,
    gaussians: ClusterGaussians,
    mode_map: ModeMap,
    move_probs: jax.Array,
    potential_and_grad: Callable,
) -> ModeMove:
    """One mode move per chain (a hop or an independence draw), accepted with its exact MH ratio.

    Each proposal depends on the chain's own position, on the map and the
    clusters' Gaussians (fixed during sampling) and on fresh randomness only,
    so each chain's move leaves the posterior invariant on its own.  A
    proposal with a non-finite potential or gradient is rejected.
    """
    m = y.shape[0]
    key_u, key_ind = random.split(rng_key)
    # one uniform chooses the move, one the hop's target, one accepts
    u = random.uniform(key_u, (m, 3), y.dtype)
    hop = u[:, 0] < move_probs[0]
    y_hop, log_jacobian, valid_hop = hop_proposal(u[:, 1], y, gaussians, mode_map)
    y_ind, correction = independence_proposal(key_ind, y, gaussians)
    proposal = jnp.where(hop[:, None], y_hop, y_ind)
    log_correction = jnp.where(hop, log_jacobian, correction)
    valid = jnp.where(hop, valid_hop, True)
    pe_new, grad_new = jax.vmap(potential_and_grad)(proposal)
    log_ratio = potential_energy - pe_new + log_correction
    ok = (
        valid
        & jnp.isfinite(pe_new)
        & jnp.all(jnp.isfinite(grad_new), axis=-1)
        & jnp.all(jnp.isfinite(proposal), axis=-1)
        & ~jnp.isnan(log_ratio)
    )
    accept_prob = jnp.where(ok, jnp.exp(jnp.minimum(jnp.where(ok, log_ratio, 0.0), 0.0)), 0.0)
    accepted = u[:, 2] < accept_prob
    return ModeMove(
        y=jnp.where(accepted[:, None], proposal, y),
        potential_energy=jnp.where(accepted, pe_new, potential_energy),
        grad=jnp.where(accepted[:, None], grad_new, grad),
        move=jnp.where(hop, 0, 1).astype(jnp.result_type(int)),
        accept_prob=accept_prob.astype(y.dtype),
        accepted=accepted,
    )


__all__ = [
    "BARRIER_POINTS",
    "CHAIN_FINALISTS",
    "CHAIN_SCOUTS",
    "CHAIN_SPREAD",
    "CLOUD_SPREAD",
    "DESCENT_STEPS",
    "KMEANS_ITERS",
    "LOCAL_SPREAD",
    "MAX_CLUSTERS",
    "MIN_BARRIER",
    "MOVES",
    "NEGLIGIBLE_NATS",
    "NEIGHBOURS",
    "PAIRWISE_BLOCK",
    "QUENCH_STEPS",
    "SAME_BOTTOM",
    "SETTLE_STEPS",
    "SETTLE_TOLERANCE",
    "WIDEST_RATIO",
    "ClusterGaussians",
    "ModeMap",
    "ModeMove",
    "assign",
    "barriers",
    "chain_search",
    "chain_search_cost",
    "cluster_gaussians",
    "cluster_log_probs",
    "coincides_with_earlier",
    "component_log_density",
    "components",
    "descend",
    "draw_mode_labels",
    "draw_scouts",
    "fit_cost",
    "fit_map",
    "group_counts",
    "group_mean",
    "hop_proposal",
    "independence_proposal",
    "kmeans",
    "laplace_log_mass",
    "mode_log_prob",
    "mode_log_probs",
    "mode_moves",
    "nearest_center",
    "nearest_cluster",
    "negligible_height",
    "new_basins",
    "other_cluster",
    "representatives",
    "single_mode_map",
    "variances_of",
    "worth_a_basin",
]
