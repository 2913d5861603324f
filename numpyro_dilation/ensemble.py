"""Population moves across vectorised chains (pure functions on arrays).

The chains are split in two halves; iterations are grouped in blocks of
:data:`REFIT_INTERVAL`, and in each block one half (the *active* half, the two
alternating from block to block) is updated by Metropolis-Hastings moves whose
proposals are built from the *other* half only, which takes local steps only
during the block.  The other half is clustered once per block and the clusters
serve every population iteration of the block.  Conditionally on the other
half's trajectory over the block, every active chain follows MH kernels that
leave its own target invariant, so the product of the chains' targets is
invariant (the argument of ter Braak 2006 and of NumPyro's ``EnsembleSampler``,
extended to a block in ``docs/ensemble.md``).  Three moves, each accepted with
its exact MH ratio:

- ``de``: differential evolution with coefficient 1, ``y + (y_j - y_k)`` with
  ``j != k`` drawn from the other half.  The proposal is symmetric.  It hops
  between modes of similar shape, but carries the within-mode noise of two
  chains, so its acceptance falls with dimension.
- ``translate``: cluster the other half (k-means); move ``y`` from its nearest
  centre ``mu_a`` to another centre ``mu_b``: ``y + mu_b - mu_a`` (the centres
  averaged over the other half's positions in the block so far).  The move is
  its own inverse when ``y'`` is nearest to ``mu_b`` (otherwise it is rejected),
  its Jacobian is 1, so the MH ratio is ``p(y') / p(y)``.  It keeps the
  within-mode offset, so it works in any dimension for modes of similar shape.
- ``independence``: draw from a Gaussian mixture fitted to the other half's
  clusters (weights, means, shrunk covariances) and accept with
  ``p(y') q(y) / (p(y) q(y'))``.  It reaches modes of different shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random, vmap
from jax.flatten_util import ravel_pytree
from jax.scipy.special import logsumexp

from numpyro_dilation import path
from numpyro_dilation.dilation import DilationState, phases
from numpyro_dilation.metric import lower_triangular_inverse, metric_norm_sq, variances

MOVES = ("de", "translate", "independence")
#: The moves built on the clusters of the other half (their jumps score the cluster count).
CLUSTER_MOVES = ("translate", "independence")

#: Cluster counts tried during warmup (those above a quarter of the half are skipped).
CLUSTER_CANDIDATES = (2, 4, 8, 16)
#: Floor on each move's probability, so that no move is ever switched off for good.
MIN_MOVE_PROB = 0.05
#: Floor on the probability that an iteration runs population moves.
MIN_POPULATION_PROB = 0.05
#: Weight of the newest value in the warmup's running averages.
EMA_WEIGHT = 0.05
#: Population moves run on at least this fraction of iterations once warmup has
#: seen them carry chains between modes (see :func:`tune_ensemble`).  One half
#: moves per population iteration, so every chain gets a population move on half
#: of the iterations, as when both halves moved on half of them.
MULTIMODAL_POPULATION_PROB = 1.0
#: Warmup rate of accepted mode jumps (per chain and population iteration) above
#: which the posterior counts as multimodal.
MULTIMODAL_MIN_JUMP_RATE = 0.002
#: Fraction of the warmup at t = 1 during which population moves run on every
#: iteration, whatever their score, so that the tuning judges them on enough
#: proposals (see :func:`tune_ensemble`).
EXPLORE_FRACTION = 0.25
#: Fraction of the annealing after which population moves start.
POPULATION_START = 1.0
#: Iterations per block: one half moves during a block, using clusters of the
#: other half fitted once in the block (at its first population iteration).
#: Fitting the clusters (k-means++ and Lloyd iterations, a Cholesky factor and its
#: inverse per cluster) was the largest cost of an ensemble iteration; refitting
#: once per block spreads it over the block.
REFIT_INTERVAL = 8


class Clusters(NamedTuple):
    """k-means clusters of the inactive half, with one Gaussian fitted to each.

    Shapes are static (``K_max`` clusters); only the first ``num_active`` are used.

    Attributes
    ----------
    centers : array, shape (K_max, d)
        Cluster means.
    log_weights : array, shape (K_max,)
        Log fraction of points in each cluster (floored away from zero; -inf
        for unused clusters).
    chol : array, shape (K_max, d, d)
        Cholesky factors of the clusters' shrunk covariances.
    chol_inv : array, shape (K_max, d, d)
        Their inverses (computed once per fit, so that evaluating the mixture
        density needs no triangular solve).
    whitened_centers : array, shape (K_max, d)
        ``chol_inv[k] @ centers[k]`` (once per fit: the density at a batch of
        points is then one matrix product).
    log_det : array, shape (K_max,)
        Log determinant of each ``chol``.
    scale : array, shape (d,)
        Per-coordinate scale of the distances (the inactive half's spread).
    within_scale : array, shape (d,)
        Per-coordinate standard deviation within the clusters (the square root
        of the pooled within-cluster covariance's diagonal): the yardstick of
        :func:`is_mode_jump`, free of the distances between modes.
    num_active : int
        Number of clusters in use.
    """

    centers: jax.Array
    log_weights: jax.Array
    chol: jax.Array
    chol_inv: jax.Array
    whitened_centers: jax.Array
    log_det: jax.Array
    scale: jax.Array
    within_scale: jax.Array
    num_active: jax.Array


class ClusterCache(NamedTuple):
    """Clusters fitted in the current block, kept until the block ends.

    Attributes
    ----------
    clusters : Clusters
        The other half's clusters, fitted at the block's first population iteration.
    block : int
        The block in which they were fitted (a sentinel before the first fit).
    center_sums, center_counts : array, shapes (K_max, d) and (K_max,)
        Sums and counts of the other half's positions, each assigned to its
        nearest fitted centre, over the block's population iterations so far:
        their ratio is the centres that ``translate`` uses (see
        :func:`population_moves`).
    """

    clusters: Clusters
    block: jax.Array
    center_sums: jax.Array
    center_counts: jax.Array


def _nearest_centre(points: jax.Array, centers: jax.Array, num_active) -> jax.Array:
    # |c|^2 - 2 p.c orders the centres as |p - c|^2 does (|p|^2 is common to all of
    # them), so a batch of points costs one matrix product; slots from num_active on
    # are never chosen
    score = jnp.sum(centers**2, axis=-1) - 2.0 * points @ centers.T
    active = jnp.arange(centers.shape[0]) < num_active
    return jnp.argmin(jnp.where(active, score, jnp.inf), axis=-1)


def nearest(clusters: Clusters, y: jax.Array) -> jax.Array:
    """Index of the cluster centre nearest to ``y`` (shape ``(..., d)``) in the scaled metric.

    Any deterministic rule serves ``translate``, which checks the reverse move
    with the same function.
    """
    return _nearest_centre(
        y / clusters.scale, clusters.centers / clusters.scale, clusters.num_active
    )


def kmeans(
    rng_key: jax.Array, points: jax.Array, max_clusters: int, num_active, num_iters: int = 10
):
    """Lloyd's k-means with k-means++ seeding on ``points`` (already scaled).

    ``num_active <= max_clusters`` clusters are used (the others are masked), so
    the cluster count can change between iterations without changing shapes.
    Deterministic given the key and the points: it depends on the inactive half only.
    """
    n = points.shape[0]
    # all the seeding's randomness in one draw (a random op costs more than the
    # arithmetic of a step here): the first centre, then one uniform per centre
    # for inverse-CDF sampling from the D^2 weights
    u = random.uniform(rng_key, (max_clusters,), points.dtype)
    first = jnp.minimum(jnp.floor(u[0] * n).astype(jnp.int32), n - 1)
    centers = jnp.zeros((max_clusters, points.shape[1]), points.dtype)
    centers = centers.at[0].set(points[first])
    # each point's squared distance to its nearest centre so far, updated with the
    # newest centre only (not recomputed against all of them at every step)
    nearest_d2 = jnp.sum((points - points[first]) ** 2, axis=-1)

    def seed_one(carry, c_u):
        centers, nearest_d2 = carry
        c, u_c = c_u
        total = jnp.sum(nearest_d2)
        # D^2 sampling, or a uniform pick when every point sits on a centre
        weights = jnp.where(total > 0, nearest_d2, 1.0)
        cdf = jnp.cumsum(weights)
        # the number of CDF entries at or below the target (a search without a loop)
        pick = jnp.minimum(jnp.sum(cdf <= u_c * cdf[-1]), n - 1)
        used = c < num_active
        new_d2 = jnp.minimum(nearest_d2, jnp.sum((points - points[pick]) ** 2, axis=-1))
        return (
            jnp.where(used, centers.at[c].set(points[pick]), centers),
            jnp.where(used, new_d2, nearest_d2),
        ), None

    # unrolled: a few dozen small steps, where a loop's per-step cost dominated
    (centers, _), _ = jax.lax.scan(
        seed_one, (centers, nearest_d2), (jnp.arange(1, max_clusters), u[1:]), unroll=True
    )

    def lloyd(centers, _):
        labels = _nearest_centre(points, centers, num_active)
        onehot = jax.nn.one_hot(labels, max_clusters, dtype=points.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ points) / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, means, centers), None

    centers, _ = jax.lax.scan(lloyd, centers, None, length=num_iters, unroll=True)
    return centers, _nearest_centre(points, centers, num_active)


def fit_clusters(
    rng_key: jax.Array, points: jax.Array, max_clusters: int, num_active, scale=None
) -> Clusters:
    """Cluster the inactive half and fit one Gaussian per cluster.

    k-means runs on coordinates divided by ``scale``: the within-mode scale (the
    kernel passes the square root of the inactive half's mean adapted inverse
    mass-matrix diagonal).  The spread of the points themselves is a poor scale
    on a multimodal target: it is dominated by the distances between modes, and
    dividing by it shrank the separation of 4 modes in d = 32 below the
    within-mode noise of the 30 other coordinates, so k-means split modes
    instead of finding them.  Each cluster's covariance is its sample covariance
    shrunk towards the pooled within-cluster covariance (weight
    ``d / (n_k + d)``), so that a cluster with fewer points than dimensions
    still has a full-rank proposal.
    """
    n, d = points.shape
    # never more clusters than slots (a small ensemble has fewer slots than the
    # first warmup count)
    num_active = jnp.minimum(num_active, max_clusters)
    if scale is None:
        scale = jnp.std(points, axis=0)
    scale = jnp.where(scale > 0, scale, 1.0)
    scaled_centers, labels = kmeans(rng_key, points / scale, max_clusters, num_active)
    centers = scaled_centers * scale
    onehot = jax.nn.one_hot(labels, max_clusters, dtype=points.dtype)
    counts = onehot.sum(0)
    resid = points - centers[labels]
    pooled = (resid.T @ resid) / jnp.maximum(n - num_active, 1.0)
    per = jnp.einsum("nk,ni,nj->kij", onehot, resid, resid)
    per = per / jnp.maximum(counts - 1.0, 1.0)[:, None, None]
    shrink = (d / (counts + d))[:, None, None]
    cov = (1.0 - shrink) * per + shrink * pooled
    jitter = 1e-6 * jnp.mean(jnp.diagonal(pooled)) + jnp.finfo(points.dtype).tiny
    chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(d, dtype=points.dtype))
    active = jnp.arange(max_clusters) < num_active
    log_weights = jnp.where(active, jnp.log(counts + 0.5) - jnp.log(n + 0.5 * num_active), -jnp.inf)
    chol_inv = jax.vmap(lower_triangular_inverse)(chol)
    whitened_centers = jnp.einsum("kij,kj->ki", chol_inv, centers)
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    within_scale = jnp.sqrt(jnp.diagonal(pooled) + jitter)
    return Clusters(
        centers,
        log_weights,
        chol,
        chol_inv,
        whitened_centers,
        log_det,
        scale,
        within_scale,
        num_active,
    )


def mixture_log_density(clusters: Clusters, y: jax.Array) -> jax.Array:
    """Log density of the clusters' Gaussian mixture at ``y``, shape ``(..., d) -> (...)``.

    The whitened offsets of every point from every centre come from one matrix
    product with the stacked inverse factors (a batched per-point product was
    the slowest part of a population move).
    """
    num_slots, d = clusters.centers.shape
    flat = y.reshape(-1, d)
    z = (flat @ clusters.chol_inv.reshape(num_slots * d, d).T).reshape(-1, num_slots, d)
    z = z - clusters.whitened_centers
    comp = -0.5 * jnp.sum(z**2, -1) - clusters.log_det - 0.5 * d * jnp.log(2 * jnp.pi)
    log_w = clusters.log_weights
    out = logsumexp(jnp.where(jnp.isfinite(log_w), log_w + comp, -jnp.inf), axis=-1)
    return out.reshape(y.shape[:-1])


class Proposal(NamedTuple):
    """A population proposal for one chain.

    Attributes
    ----------
    y : array
        Proposed position.
    log_correction : float
        ``log q(y | y') - log q(y' | y)`` (0 for symmetric moves).
    valid : bool
        False when the move has no reverse (its MH ratio is then zero).
    """

    y: jax.Array
    log_correction: jax.Array
    valid: jax.Array


def uniform_ints(rng_key: jax.Array, shape: tuple[int, ...], spans: jax.Array) -> jax.Array:
    """Integers uniform on ``[0, spans)`` (broadcast against ``shape``), one random word each.

    Random bits are most of the cost of a population move on a CPU (threefry
    computes every word), and ``random.randint`` spends two words per integer.
    Taking one word modulo the span leaves each value's probability within a
    relative ``span / 2**32`` of uniform, below float32's own rounding.
    """
    bits = random.bits(rng_key, shape, jnp.uint32)
    return (bits % jnp.maximum(spans, 1).astype(jnp.uint32)).astype(jnp.int32)


def categorical_inverse_cdf(rng_key: jax.Array, log_weights: jax.Array, num: int) -> jax.Array:
    """``num`` draws of a category with probabilities ``exp(log_weights)`` (normalised here).

    One uniform per draw through the inverse CDF, where ``random.categorical``
    spends one Gumbel word per category and draw.  Categories of weight zero
    (``-inf``) are never drawn.
    """
    w = jnp.exp(log_weights - jnp.max(log_weights))
    cdf = jnp.cumsum(w) / jnp.sum(w)
    u = random.uniform(rng_key, (num,), cdf.dtype)
    # the count of CDF values at or below u; the last positive-weight category absorbs rounding
    last = jnp.max(jnp.where(w > 0, jnp.arange(w.shape[0]), 0))
    return jnp.minimum(jnp.sum(cdf[None, :] <= u[:, None], axis=-1), last)


def propose_batch(
    rng_key: jax.Array,
    moves: jax.Array,
    y: jax.Array,
    others: jax.Array,
    clusters: Clusters,
    translate_centers: jax.Array | None = None,
) -> Proposal:
    """Proposals of a batch of chains, move ``moves[i]`` (an index into :data:`MOVES`) for ``y[i]``.

    Every move is computed for every chain as whole-batch array operations and
    the chain's own is selected (a ``vmap`` of a per-chain ``switch`` ran the
    independence move's per-chain products about ten times slower).

    Parameters
    ----------
    rng_key : jax.Array
        One key for the batch.
    moves : array of int, shape (m,)
        Move of each chain.
    y : array, shape (m, d)
        Positions of the chains.
    others : array, shape (n, d)
        Positions of the other half.
    clusters : Clusters
        Clusters of the other half.
    translate_centers : array, shape (K_max, d), optional
        Centres for ``translate`` (a function of the other half only; the
        fitted ``clusters.centers`` by default).
    """
    m, d = y.shape
    n_other = others.shape[0]
    key_int, key_c, key_z = random.split(rng_key, 3)
    num = clusters.num_active
    spans = jnp.stack([n_other, n_other - 1, jnp.maximum(num - 1, 1)]).astype(jnp.uint32)
    ints = uniform_ints(key_int, (m, 3), spans)
    # de: an ordered pair j != k, uniform (two draws, not a permutation per chain)
    j = ints[:, 0]
    k = (j + 1 + ints[:, 1]) % n_other
    y_de = y + others[j] - others[k]
    # translate: from the nearest centre a to another centre b, valid if y' is nearest to b
    tr = clusters if translate_centers is None else clusters._replace(centers=translate_centers)
    a = nearest(tr, y)
    b = (a + 1 + ints[:, 2]) % jnp.maximum(num, 1)
    y_tr = y + tr.centers[b] - tr.centers[a]
    valid_tr = (nearest(tr, y_tr) == b) & (num > 1)
    # independence: a draw from the mixture, with the independence sampler's correction
    c = categorical_inverse_cdf(key_c, clusters.log_weights, m)
    noise = random.normal(key_z, (m, d), y.dtype)
    y_ind = clusters.centers[c] + jnp.einsum("mij,mj->mi", clusters.chol[c], noise)
    log_q = mixture_log_density(clusters, jnp.concatenate([y, y_ind]))
    correction = log_q[:m] - log_q[m:]
    is_de, is_tr = moves == 0, moves == 1
    proposed = jnp.where(is_de[:, None], y_de, jnp.where(is_tr[:, None], y_tr, y_ind))
    return Proposal(
        proposed,
        jnp.where(moves == 2, correction, 0.0).astype(y.dtype),
        jnp.where(is_tr, valid_tr, True),
    )


def propose(
    rng_key: jax.Array, move: jax.Array, y: jax.Array, others: jax.Array, clusters: Clusters
) -> Proposal:
    """Draw the proposal of move ``move`` (an index into :data:`MOVES`) for one chain."""
    batch = propose_batch(rng_key, jnp.reshape(move, (1,)), y[None], others, clusters)
    return jax.tree.map(lambda x: x[0], batch)


class Chains(NamedTuple):
    """Positions of some chains with their target potentials and gradients.

    Attributes
    ----------
    y : array, shape (m, d)
        Positions (rescaled coordinates).
    potential_energy : array, shape (m,)
        The target's potential at ``y`` (not the level's).
    grad : array, shape (m, d)
        Its gradient.
    """

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array


class PopulationUpdate(NamedTuple):
    """Outcome of the population moves of one half of the chains.

    Attributes
    ----------
    chains : Chains
        New positions, potentials and gradients of the half.
    move : array of int
        Move proposed to each chain (an index into :data:`MOVES`).
    accept_prob : array
        MH acceptance probability of each chain's proposal.
    accepted : array of bool
        Whether each chain's proposal was accepted.
    jump : array
        Squared distance moved (0 if rejected), in each chain's metric.
    """

    chains: Chains
    move: jax.Array
    accept_prob: jax.Array
    accepted: jax.Array
    jump: jax.Array


class EnsembleSettings(NamedTuple):
    """Tuned population-move settings, one value for the whole ensemble.

    Attributes
    ----------
    move_probs : array, shape (3,)
        Probability of each move of :data:`MOVES` when an iteration runs population moves.
    population_prob : float
        Probability that an iteration runs population moves (after the local step).
    num_clusters : int
        Clusters fitted to the other half for ``translate`` and ``independence``.
    jump_local, jump_moves, jump_clusters : array
        Warmup running averages of the squared jump distance (in the sampler's
        metric) of the local step, of each move, and of the cluster moves for
        each candidate cluster count; they drive the tuning and are frozen with it.
    mode_jump_rate : float
        Warmup running average of the fraction of chains whose population move
        was an accepted mode jump (on iterations that ran population moves).
    """

    move_probs: jax.Array
    population_prob: jax.Array
    num_clusters: jax.Array
    jump_local: jax.Array
    jump_moves: jax.Array
    jump_clusters: jax.Array
    mode_jump_rate: jax.Array


class EnsembleStats(NamedTuple):
    """Per-chain population-move statistics (leading axis: chains).

    Attributes
    ----------
    accept_prob : array, shape (n, 3)
        Acceptance probability of each move type this iteration (0 if not proposed).
    num_proposals, num_accepted : array, shape (n, 3)
        Cumulative proposals and acceptances of each move type.
    num_mode_jumps : array, shape (n,)
        Cumulative accepted population moves that took the chain farther than
        two draws of one mode would be apart (a jump between modes; see
        :func:`is_mode_jump`).
    """

    accept_prob: jax.Array
    num_proposals: jax.Array
    num_accepted: jax.Array
    num_mode_jumps: jax.Array


class EnsembleState(NamedTuple):
    """Ensemble-mode part of the sampler's state: shared settings, per-chain statistics
    and the current block's clusters.

    The attributes below the three fields read per chain, so that NumPyro's
    ``extra_fields`` (``"ensemble.move_probs"``, ``"ensemble.num_mode_jumps"``,
    ...) collect one row per chain like every other field.
    """

    settings: EnsembleSettings
    stats: EnsembleStats
    cache: ClusterCache

    def _per_chain(self, value):
        n = self.stats.num_mode_jumps.shape[0]
        return jnp.broadcast_to(value, (n,) + jnp.shape(value))

    @property
    def move_probs(self) -> jax.Array:
        """Tuned move probabilities, shape (n, 3)."""
        return self._per_chain(self.settings.move_probs)

    @property
    def population_prob(self) -> jax.Array:
        """Tuned probability of population moves per iteration, shape (n,)."""
        return self._per_chain(self.settings.population_prob)

    @property
    def num_clusters(self) -> jax.Array:
        """Tuned cluster count, shape (n,)."""
        return self._per_chain(self.settings.num_clusters)

    @property
    def accept_prob(self) -> jax.Array:
        """Acceptance probability of each move type this iteration, shape (n, 3)."""
        return self.stats.accept_prob

    @property
    def num_proposals(self) -> jax.Array:
        """Cumulative proposals of each move type, shape (n, 3)."""
        return self.stats.num_proposals

    @property
    def num_accepted(self) -> jax.Array:
        """Cumulative acceptances of each move type, shape (n, 3)."""
        return self.stats.num_accepted

    @property
    def num_mode_jumps(self) -> jax.Array:
        """Cumulative accepted jumps between modes, shape (n,)."""
        return self.stats.num_mode_jumps

    @property
    def mean_accept_prob(self) -> jax.Array:
        """Fraction of accepted proposals of each move type so far (NaN if none)."""
        proposals = self.stats.num_proposals
        return self.stats.num_accepted / jnp.where(proposals > 0, proposals, jnp.nan)


def max_clusters_for(num_chains: int) -> int:
    """Static number of cluster slots: the largest count usable with ``num_chains``."""
    return CLUSTER_CANDIDATES[max_cluster_candidate(num_chains)]


def empty_cache(max_clusters: int, dim: int, dtype) -> ClusterCache:
    """A cache holding no clusters (every block's first population iteration refits)."""
    int_dtype = jnp.result_type(int)
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=dtype), (max_clusters, dim, dim))
    clusters = Clusters(
        centers=jnp.zeros((max_clusters, dim), dtype),
        log_weights=jnp.full(max_clusters, -jnp.inf, dtype),
        chol=eye,
        chol_inv=eye,
        whitened_centers=jnp.zeros((max_clusters, dim), dtype),
        log_det=jnp.zeros(max_clusters, dtype),
        scale=jnp.ones(dim, dtype),
        within_scale=jnp.ones(dim, dtype),
        num_active=jnp.zeros((), int_dtype),
    )
    return ClusterCache(
        clusters,
        jnp.array(jnp.iinfo(int_dtype).min, int_dtype),
        jnp.zeros((max_clusters, dim), dtype),
        jnp.zeros(max_clusters, dtype),
    )


def init_ensemble_state(num_chains: int, dtype, dim: int) -> EnsembleState:
    """Untuned ensemble state: every move equally likely, population moves every iteration.

    ``dim`` is the number of (flat) coordinates, which sizes the cluster cache.
    """
    int_dtype = jnp.result_type(int)
    settings = EnsembleSettings(
        move_probs=jnp.full(len(MOVES), 1.0 / len(MOVES), dtype),
        population_prob=jnp.ones((), dtype),
        num_clusters=jnp.array(CLUSTER_CANDIDATES[1], int_dtype),
        jump_local=jnp.zeros((), dtype),
        jump_moves=jnp.zeros(len(MOVES), dtype),
        jump_clusters=jnp.zeros(len(CLUSTER_CANDIDATES), dtype),
        mode_jump_rate=jnp.zeros((), dtype),
    )
    stats = EnsembleStats(
        accept_prob=jnp.zeros((num_chains, len(MOVES)), dtype),
        num_proposals=jnp.zeros((num_chains, len(MOVES)), int_dtype),
        num_accepted=jnp.zeros((num_chains, len(MOVES)), int_dtype),
        num_mode_jumps=jnp.zeros(num_chains, int_dtype),
    )
    return EnsembleState(settings, stats, empty_cache(max_clusters_for(num_chains), dim, dtype))


def init(state: DilationState) -> DilationState:
    """Ensemble-mode state from a batch of chain states: one key, untuned settings."""
    n, d = state.y.shape
    return state._replace(
        rng_key=random.fold_in(state.rng_key[0], n),
        ensemble=init_ensemble_state(n, state.y.dtype, d),
    )


def population_update(
    rng_key: jax.Array,
    active: Chains,
    others: jax.Array,
    settings: EnsembleSettings,
    potential_and_grad: Callable,
    chain_norm_sq: Callable,
    *,
    scale: jax.Array | None = None,
    max_clusters: int = max(CLUSTER_CANDIDATES),
    clusters: Clusters | None = None,
    translate_centers: jax.Array | None = None,
) -> PopulationUpdate:
    """Update one half of the chains with proposals built from the other half.

    Parameters
    ----------
    rng_key : jax.Array
        Random key.
    active : Chains
        The active half, shapes (m, d), (m,), (m, d).
    others : array, shape (n, d)
        Positions of the inactive half (held fixed).
    settings : EnsembleSettings
        Move probabilities and cluster count.
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` for one chain.
    chain_norm_sq : callable
        ``(chain, delta) -> squared length of delta`` in that chain's metric.
    scale : array, shape (d,), optional
        Within-mode scale of each coordinate for the clustering (a function of
        the inactive half only); the inactive half's spread by default.
    max_clusters : int
        Static upper bound on ``settings.num_clusters``.
    clusters : Clusters, optional
        Clusters of the inactive half, already fitted (they must not depend on
        the active half: see ``docs/ensemble.md``); fitted here from ``others``
        (with ``scale`` and ``max_clusters``) when not given.
    translate_centers : array, optional
        Centres for ``translate`` (see :func:`propose_batch`).
    """
    key_fit, key_u, key_prop = random.split(rng_key, 3)
    y, potential_energy, grad = active
    m = y.shape[0]
    if clusters is None:
        clusters = fit_clusters(key_fit, others, max_clusters, settings.num_clusters, scale)
    # one uniform draw serves the acceptance test and, through the Gumbel-max
    # trick, the choice of move
    u = random.uniform(key_u, (m, 1 + len(MOVES)), y.dtype, minval=jnp.finfo(y.dtype).tiny)
    moves = jnp.argmax(jnp.log(settings.move_probs) - jnp.log(-jnp.log(u[:, 1:])), axis=-1)
    proposals = propose_batch(key_prop, moves, y, others, clusters, translate_centers)
    pe_new, grad_new = vmap(potential_and_grad)(proposals.y)
    log_ratio = potential_energy - pe_new + proposals.log_correction
    ok = (
        proposals.valid
        & jnp.isfinite(pe_new)
        & jnp.all(jnp.isfinite(grad_new), axis=-1)
        & jnp.all(jnp.isfinite(proposals.y), axis=-1)
        & ~jnp.isnan(log_ratio)
    )
    accept_prob = jnp.where(ok, jnp.exp(jnp.minimum(jnp.where(ok, log_ratio, 0.0), 0.0)), 0.0)
    accepted = u[:, 0] < accept_prob
    new_y = jnp.where(accepted[:, None], proposals.y, y)
    jump = jnp.where(accepted, vmap(chain_norm_sq)(jnp.arange(m), new_y - y), 0.0)
    return PopulationUpdate(
        chains=Chains(
            y=new_y,
            potential_energy=jnp.where(accepted, pe_new, potential_energy),
            grad=jnp.where(accepted[:, None], grad_new, grad),
        ),
        move=moves,
        accept_prob=accept_prob.astype(y.dtype),
        accepted=accepted,
        jump=jump,
    )


class IterationSummary(NamedTuple):
    """What one ensemble iteration tells the tuning (see :func:`tune_ensemble`).

    Attributes
    ----------
    local_jump : float
        Mean squared jump of this iteration's local steps.
    ran_population : bool
        Whether population moves ran this iteration.
    move_jump, move_count : array, shape (3,)
        Sum of squared jumps and number of proposals of each move.
    cluster_jump : float
        Mean squared jump of this iteration's cluster moves (:data:`CLUSTER_MOVES`).
    mode_jump_fraction : float
        Fraction of the moved chains whose population move was an accepted mode jump.
    clusters_used : int
        Cluster count of the clusters the moves used (fitted in this block).
    refit : bool
        Whether the clusters were fitted this iteration.
    """

    local_jump: jax.Array
    ran_population: jax.Array
    move_jump: jax.Array
    move_count: jax.Array
    cluster_jump: jax.Array
    mode_jump_fraction: jax.Array
    clusters_used: jax.Array
    refit: jax.Array


def tune_ensemble(
    settings: EnsembleSettings,
    summary: IterationSummary,
    *,
    final: jax.Array,
    max_candidate: int,
    exploring: jax.Array = False,
) -> EnsembleSettings:
    """One warmup tuning step of the ensemble settings (pure).

    Each move is scored by its squared jump distance per gradient evaluation (a
    running average over chains and iterations), which is large for moves that
    carry chains between modes and for good global proposals, and small for
    moves that are mostly rejected.  Move probabilities follow the scores (with
    a floor); population moves run on a fraction of iterations that grows with
    their score relative to the local step (so that a unimodal posterior pays
    little for them), but on at least :data:`MULTIMODAL_POPULATION_PROB` of them
    once warmup has seen mode jumps (a local step's squared jump can exceed that
    of rare mode jumps, yet only the jumps re-weigh the modes, as in 32
    dimensions where the ratio alone fell to the floor and left 0.2 jumps per
    chain); the cluster count moves on through :data:`CLUSTER_CANDIDATES` at
    every refit (once per block) and, at the end of warmup, settles on the one
    whose cluster moves jumped farthest.

    Parameters
    ----------
    settings : EnsembleSettings
        Current settings.
    summary : IterationSummary
        This iteration's jumps and acceptances.
    final : bool
        Last warmup iteration: fix the cluster count.
    max_candidate : int
        Index of the largest usable entry of :data:`CLUSTER_CANDIDATES`.
    exploring : bool
        Within the first :data:`EXPLORE_FRACTION` of the warmup at ``t = 1``:
        population moves run on every iteration.  The running averages start
        at zero, so without it the first population iteration alone set the
        probability: right after the annealing, when the chains have not yet
        settled, its proposals can all be rejected (a Student-t mixture in
        d = 24: 16 proposals, none accepted), the probability fell to its floor
        at once, and the rest of the warmup ran population moves on a few
        iterations only, too few to see a mode jump.
    """
    w = EMA_WEIGHT
    candidates = jnp.asarray(CLUSTER_CANDIDATES)
    ran = summary.ran_population
    jump_local = settings.jump_local + w * (summary.local_jump - settings.jump_local)
    seen = ran & (summary.move_count > 0)
    mean_move = summary.move_jump / jnp.maximum(summary.move_count, 1)
    jump_moves = jnp.where(
        seen, settings.jump_moves + w * (mean_move - settings.jump_moves), settings.jump_moves
    )
    # the jumps score the count the clusters were fitted with (earlier in the block)
    used_idx = jnp.argmax(candidates == summary.clusters_used)
    old = settings.jump_clusters[used_idx]
    known = ran & jnp.any(candidates == summary.clusters_used)
    jump_clusters = settings.jump_clusters.at[used_idx].set(
        jnp.where(known, old + w * (summary.cluster_jump - old), old)
    )
    total = jnp.sum(jump_moves)
    floor = MIN_MOVE_PROB
    share = jnp.where(total > 0, jump_moves / jnp.where(total > 0, total, 1.0), 1.0 / len(MOVES))
    move_probs = floor + (1.0 - len(MOVES) * floor) * share
    score = jnp.dot(move_probs, jump_moves)
    population_prob = jnp.clip(
        jnp.where(jump_local > 0, score / jnp.where(jump_local > 0, jump_local, 1.0), 1.0),
        MIN_POPULATION_PROB,
        1.0,
    )
    mode_jump_rate = jnp.where(
        ran,
        settings.mode_jump_rate + w * (summary.mode_jump_fraction - settings.mode_jump_rate),
        settings.mode_jump_rate,
    )
    population_prob = jnp.where(
        mode_jump_rate > MULTIMODAL_MIN_JUMP_RATE,
        jnp.maximum(population_prob, MULTIMODAL_POPULATION_PROB),
        population_prob,
    )
    population_prob = jnp.where(exploring, 1.0, population_prob)
    usable = jnp.arange(len(CLUSTER_CANDIDATES)) <= max_candidate
    best = jnp.argmax(jnp.where(usable, jump_clusters, -jnp.inf))
    k_idx = jnp.argmax(candidates == settings.num_clusters)
    next_idx = jnp.where(summary.refit, (k_idx + 1) % (max_candidate + 1), k_idx)
    num_clusters = jnp.where(final, candidates[best], candidates[next_idx])
    return EnsembleSettings(
        move_probs=move_probs.astype(settings.move_probs.dtype),
        population_prob=population_prob.astype(settings.population_prob.dtype),
        num_clusters=num_clusters.astype(settings.num_clusters.dtype),
        jump_local=jump_local,
        jump_moves=jump_moves,
        jump_clusters=jump_clusters,
        mode_jump_rate=mode_jump_rate.astype(settings.mode_jump_rate.dtype),
    )


def max_cluster_candidate(num_chains: int) -> int:
    """Index of the largest cluster count usable with ``num_chains`` (a quarter of a half)."""
    half = num_chains // 2
    usable = [k for k, c in enumerate(CLUSTER_CANDIDATES) if c <= max(half // 4, 2)]
    return max(usable)


def mode_jump_threshold(d: int):
    """Squared whitened distance beyond which a move left its mode.

    Two draws of one mode are about ``2 d`` apart in the metric (a chi-square
    with ``2 d`` degrees of freedom, sd ``sqrt(2 * 2 d)``); six sds more is a jump.
    """
    return 2 * d + 6 * jnp.sqrt(2.0 * d)


def is_mode_jump(clusters: Clusters, delta: jax.Array) -> jax.Array:
    """Whether moves ``delta`` (shape ``(..., d)``) went farther than two draws of one mode.

    Lengths are measured with the clusters' within-cluster scale, not with the
    sampler's adapted metric: the latter is estimated from within-chain
    covariances, which include the chains' own jumps between modes (and, early
    in the warmup, the annealing's transport), so it stretches along the axes
    that separate the modes and hides the jumps.  In a Student-t mixture in
    d = 24 (modes 24 apart, unit scale) it put a jump between the modes at 75
    against a threshold of 90, and warmup never saw the posterior as multimodal.
    """
    d = delta.shape[-1]
    return jnp.sum((delta / clusters.within_scale) ** 2, axis=-1) > mode_jump_threshold(d)


def block_halves(n: int, block: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Indices of the active half and of the other half of ``n`` chains in ``block``.

    The active half is the ``n // 2`` chains starting at ``block * (n // 2)``
    (cyclically), the other half the rest: even and odd blocks alternate the
    two halves, and with an odd ``n`` the odd chain out changes from block to
    block.  Static sizes, so one traced program serves every block.
    """
    half = n // 2
    offset = (block * half) % n
    active = (offset + jnp.arange(half)) % n
    other = (offset + half + jnp.arange(n - half)) % n
    return active, other


def population_moves(
    rng_key: jax.Array,
    state: DilationState,
    settings: EnsembleSettings,
    cache: ClusterCache,
    block: jax.Array,
    potential_and_grad: Callable,
) -> tuple[DilationState, tuple, ClusterCache, jax.Array]:
    """Update this block's active half with proposals built from the other half (exact MH).

    The other half's clusters are fitted at the block's first population
    iteration and reused by the block's later ones: during a block the other
    half takes local steps only, so neither its positions nor its clusters
    depend on the active half (see ``docs/ensemble.md``).  ``translate`` uses
    the means of the other half's positions nearest to each fitted centre,
    pooled over the block's population iterations so far.

    Returns the new state; per chain, whether it was proposed a population move,
    the move, its acceptance probability, whether it was accepted, the squared
    jump (in the adapted metric) and whether it was a mode jump
    (:func:`is_mode_jump`); the cache; and whether the clusters were fitted now.
    """
    n, d = state.y.shape
    _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
    log_t = path.log_normalizer(d, state.t)
    key_fit, key_update = random.split(rng_key)
    idx, other_idx = block_halves(n, block)
    chains = Chains(state.y, state.potential_energy - log_t, state.y_grad)
    others = chains.y[other_idx]

    def fit(_):
        # the other half's adapted metric: the scale within a mode
        scales = vmap(variances)(state.adapt_state.inverse_mass_matrix[other_idx])
        scale = jnp.sqrt(jnp.mean(scales, axis=0))
        num_slots = cache.clusters.centers.shape[0]
        return fit_clusters(key_fit, others, num_slots, settings.num_clusters, scale)

    refit = cache.block != block
    clusters = jax.lax.cond(refit, fit, lambda _: cache.clusters, None)
    # translate's centres: the mean of the other half's positions nearest to each
    # fitted centre, over every population iteration of the block so far (a
    # function of the other half's trajectory in the block only).  The other
    # half's local steps make its later positions fresh draws, so the centres
    # grow more accurate through the block: with 16 chains in the other half of
    # a heavy-tailed mixture in d = 24, one position per chain left the centre
    # difference with a squared error near 20, and most translate moves between
    # the modes were rejected.
    onehot = jax.nn.one_hot(
        nearest(clusters, others), cache.center_counts.shape[0], dtype=others.dtype
    )
    keep = jnp.where(refit, 0.0, 1.0).astype(others.dtype)
    center_sums = keep * cache.center_sums + onehot.T @ others
    center_counts = keep * cache.center_counts + onehot.sum(0)
    translate_centers = jnp.where(
        center_counts[:, None] > 0,
        center_sums / jnp.maximum(center_counts, 1.0)[:, None],
        clusters.centers,
    )
    whitening = state.adapt_state.whitening[idx]

    def chain_norm_sq(k, delta):
        return metric_norm_sq(whitening[k], delta)

    active = jax.tree.map(lambda x: x[idx], chains)
    up = population_update(
        key_update,
        active,
        others,
        settings,
        potential_and_grad,
        chain_norm_sq,
        clusters=clusters,
        translate_centers=translate_centers,
    )
    mode_jump = up.accepted & is_mode_jump(clusters, up.chains.y - active.y)
    chains = jax.tree.map(lambda x, v: x.at[idx].set(v), chains, up.chains)
    # only the moved chains' constrained values change
    z_new = vmap(lambda yy, t, c: unravel(path.from_rescaled(yy, t, c)))(
        up.chains.y, state.t[idx], state.center[idx]
    )
    z = jax.tree.map(lambda x, v: x.at[idx].set(v), state.z, z_new)
    state = state._replace(
        y=chains.y, y_grad=chains.grad, potential_energy=chains.potential_energy + log_t, z=z
    )

    def spread(values, fill):
        return jnp.full((n,) + values.shape[1:], fill, values.dtype).at[idx].set(values)

    proposed = jnp.zeros(n, bool).at[idx].set(True)
    stats = (
        proposed,
        spread(up.move, 0),
        spread(up.accept_prob, 0),
        spread(up.accepted, False),
        spread(up.jump, 0),
        spread(mode_jump, False),
    )
    return state, stats, ClusterCache(clusters, block, center_sums, center_counts), refit


def _no_population_moves(state: DilationState) -> tuple:
    n = state.y.shape[0]
    zeros = jnp.zeros(n, state.y.dtype)
    no = jnp.zeros(n, bool)
    return no, jnp.zeros(n, jnp.result_type(int)), zeros, no, zeros, no


def ensemble_step(
    state: DilationState, local_step: Callable, potential_and_grad: Callable
) -> DilationState:
    """One ensemble iteration: every chain's local step, then population moves.

    Parameters
    ----------
    state : DilationState
        Batched chain states with an :class:`EnsembleState` and one random key.
    local_step : callable
        ``state -> state``: the local step of every chain (batched, with a key
        per chain).
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` of the target on one chain's flat coordinates.
    """
    n = state.y.shape[0]
    i, num_anneal, num_warmup = phases(state, batched=True)
    key, key_chains, key_population, key_gate = random.split(state.rng_key, 4)

    before = state
    # the local step maps over chains: the shared ensemble settings stay out of it
    state = local_step(state._replace(rng_key=random.split(key_chains, n), ensemble=None))._replace(
        ensemble=before.ensemble
    )

    after_local = state
    settings = state.ensemble.settings
    cache = state.ensemble.cache
    # blocks are counted from the end of warmup, so that sampling starts a block
    # (and refits) with the final settings
    block = jnp.floor_divide(i - num_warmup, REFIT_INTERVAL).astype(cache.block.dtype)
    start = jnp.floor(POPULATION_START * num_anneal).astype(i.dtype)
    run = (i >= start) & (random.uniform(key_gate) < settings.population_prob)
    state, (proposed, move, accept_prob, accepted, jump, mode_jump), cache, refit = jax.lax.cond(
        run,
        lambda s: population_moves(key_population, s, settings, cache, block, potential_and_grad),
        lambda s: (s, _no_population_moves(s), cache, jnp.zeros((), bool)),
        state,
    )
    dtype = state.y.dtype
    onehot = jax.nn.one_hot(move, len(MOVES), dtype=dtype) * proposed[:, None]
    stats = state.ensemble.stats
    count_dtype = stats.num_proposals.dtype
    stats = EnsembleStats(
        accept_prob=onehot * accept_prob[:, None],
        num_proposals=stats.num_proposals + onehot.astype(count_dtype),
        num_accepted=stats.num_accepted + (onehot * accepted[:, None]).astype(count_dtype),
        num_mode_jumps=stats.num_mode_jumps + mode_jump.astype(stats.num_mode_jumps.dtype),
    )
    cluster_mask = jnp.asarray([move_name in CLUSTER_MOVES for move_name in MOVES], dtype)
    cluster_moves = onehot @ cluster_mask
    num_moved = jnp.maximum(jnp.sum(proposed.astype(dtype)), 1.0)

    def tune(settings):
        local_jump = vmap(metric_norm_sq)(
            after_local.adapt_state.whitening, after_local.y - before.y
        )
        summary = IterationSummary(
            local_jump=jnp.mean(local_jump),
            ran_population=run,
            move_jump=jnp.sum(onehot * jump[:, None], axis=0),
            move_count=jnp.sum(onehot, axis=0),
            cluster_jump=jnp.sum(cluster_moves * jump) / jnp.maximum(jnp.sum(cluster_moves), 1.0),
            mode_jump_fraction=jnp.sum(mode_jump.astype(dtype)) / num_moved,
            clusters_used=cache.clusters.num_active,
            refit=refit,
        )
        return tune_ensemble(
            settings,
            summary,
            final=i == num_warmup - 1,
            max_candidate=max_cluster_candidate(n),
            exploring=i < num_anneal + EXPLORE_FRACTION * (num_warmup - num_anneal),
        )

    # Tune during the warmup at t = 1 only; the settings are frozen afterwards
    # (and the sampling phase skips the tuning's arithmetic).
    tuning = (i >= num_anneal) & (i < num_warmup)
    settings = jax.lax.cond(tuning, tune, lambda settings: settings, settings)
    grads = state.num_grad_evals + proposed.astype(state.num_grad_evals.dtype)
    return state._replace(
        rng_key=key, ensemble=EnsembleState(settings, stats, cache), num_grad_evals=grads
    )


__all__ = [
    "CLUSTER_CANDIDATES",
    "CLUSTER_MOVES",
    "EMA_WEIGHT",
    "EXPLORE_FRACTION",
    "MIN_MOVE_PROB",
    "MIN_POPULATION_PROB",
    "MOVES",
    "MULTIMODAL_MIN_JUMP_RATE",
    "MULTIMODAL_POPULATION_PROB",
    "POPULATION_START",
    "REFIT_INTERVAL",
    "Chains",
    "ClusterCache",
    "Clusters",
    "EnsembleSettings",
    "EnsembleState",
    "EnsembleStats",
    "IterationSummary",
    "PopulationUpdate",
    "Proposal",
    "block_halves",
    "categorical_inverse_cdf",
    "empty_cache",
    "ensemble_step",
    "fit_clusters",
    "init",
    "init_ensemble_state",
    "is_mode_jump",
    "kmeans",
    "max_cluster_candidate",
    "max_clusters_for",
    "mixture_log_density",
    "mode_jump_threshold",
    "nearest",
    "population_moves",
    "population_update",
    "propose",
    "propose_batch",
    "tune_ensemble",
    "uniform_ints",
]
