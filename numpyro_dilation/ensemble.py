"""Population moves across vectorised chains (pure functions on arrays).

The chains are split in two halves; each half is updated by Metropolis-Hastings
moves whose proposals are built from the *other* half only, which is held fixed
during that update.  Conditionally on the other half, every chain then follows
an MH kernel that leaves its own target invariant, so the product of the chains'
targets is invariant (the argument of ter Braak 2006 and of NumPyro's
``EnsembleSampler``).  Three moves, each accepted with its exact MH ratio:

- ``de``: differential evolution with coefficient 1, ``y + (y_j - y_k)`` with
  ``j != k`` drawn from the other half.  The proposal is symmetric.  It hops
  between modes of similar shape, but carries the within-mode noise of two
  chains, so its acceptance falls with dimension.
- ``translate``: cluster the other half (k-means); move ``y`` from its nearest
  centre ``mu_a`` to another centre ``mu_b``: ``y + mu_b - mu_a``.  The move is
  its own inverse when ``y'`` is nearest to ``mu_b`` (otherwise it is rejected),
  its Jacobian is 1, so the MH ratio is ``p(y') / p(y)``.  It keeps the
  within-mode offset, so it works in any dimension for modes of similar shape.
- ``independence``: draw from a Gaussian mixture fitted to the other half's
  clusters (weights, means, shrunk covariances) and accept with
  ``p(y') q(y) / (p(y) q(y'))``.  It reaches modes of different shapes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import random
from jax.scipy.special import logsumexp

from numpyro_dilation.adaptation import lower_triangular_inverse

MOVES = ("de", "translate", "independence")

#: Cluster counts tried during warmup (those above a quarter of the half are skipped).
CLUSTER_CANDIDATES = (2, 4, 8, 16)
#: Floor on each move's probability, so that no move is ever switched off for good.
MIN_MOVE_PROB = 0.05
#: Floor on the probability that an iteration runs population moves.
MIN_POPULATION_PROB = 0.05
#: Weight of the newest value in the warmup's running averages.
EMA_WEIGHT = 0.05
#: Population moves run on at least this fraction of iterations once warmup has
#: seen them carry chains between modes (see :func:`tune_ensemble`).
MULTIMODAL_POPULATION_PROB = 0.5
#: Warmup rate of accepted mode jumps (per chain and population iteration) above
#: which the posterior counts as multimodal.
MULTIMODAL_MIN_JUMP_RATE = 0.002
#: Fraction of the annealing after which population moves start.
POPULATION_START = 1.0


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
    scale : array, shape (d,)
        Per-coordinate scale of the distances (the inactive half's spread).
    num_active : int
        Number of clusters in use.
    """

    centers: jax.Array
    log_weights: jax.Array
    chol: jax.Array
    chol_inv: jax.Array
    scale: jax.Array
    num_active: jax.Array


def _sq_distances(points, centers, num_active):
    d2 = jnp.sum((points[..., None, :] - centers) ** 2, axis=-1)
    return jnp.where(jnp.arange(centers.shape[0]) < num_active, d2, jnp.inf)


def nearest(clusters: Clusters, y: jax.Array) -> jax.Array:
    """Index of the cluster centre nearest to ``y`` in the scaled Euclidean metric."""
    return jnp.argmin(
        _sq_distances(y / clusters.scale, clusters.centers / clusters.scale, clusters.num_active)
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
    centers = jnp.zeros((max_clusters, points.shape[1]), points.dtype)
    centers = centers.at[0].set(points[random.randint(rng_key, (), 0, n)])

    def seed_one(centers, c_key):
        c, key = c_key
        d2 = jnp.min(_sq_distances(points, centers, c), axis=-1)
        total = jnp.sum(d2)
        probs = jnp.where(total > 0, d2 / jnp.where(total > 0, total, 1.0), 1.0 / n)
        new = points[random.choice(key, n, p=probs)]
        return jnp.where(c < num_active, centers.at[c].set(new), centers), None

    keys = random.split(random.fold_in(rng_key, 1), max_clusters - 1)
    centers, _ = jax.lax.scan(seed_one, centers, (jnp.arange(1, max_clusters), keys))

    def lloyd(centers, _):
        labels = jnp.argmin(_sq_distances(points, centers, num_active), axis=-1)
        onehot = jax.nn.one_hot(labels, max_clusters, dtype=points.dtype)
        counts = onehot.sum(0)
        means = (onehot.T @ points) / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, means, centers), None

    centers, _ = jax.lax.scan(lloyd, centers, None, length=num_iters)
    labels = jnp.argmin(_sq_distances(points, centers, num_active), axis=-1)
    return centers, labels


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
    return Clusters(centers, log_weights, chol, chol_inv, scale, num_active)


def mixture_log_density(clusters: Clusters, y: jax.Array) -> jax.Array:
    """Log density of the clusters' Gaussian mixture at ``y``."""
    z = jnp.einsum("kij,kj->ki", clusters.chol_inv, y - clusters.centers)
    log_det = jnp.sum(jnp.log(jnp.diagonal(clusters.chol, axis1=-2, axis2=-1)), axis=-1)
    comp = -0.5 * jnp.sum(z**2, -1) - log_det - 0.5 * y.shape[-1] * jnp.log(2 * jnp.pi)
    return logsumexp(
        jnp.where(jnp.isfinite(clusters.log_weights), clusters.log_weights + comp, -jnp.inf)
    )


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


def propose(
    rng_key: jax.Array, move: jax.Array, y: jax.Array, others: jax.Array, clusters: Clusters
) -> Proposal:
    """Draw the proposal of move ``move`` (an index into :data:`MOVES`) for one chain."""
    key_de, key_translate, key_comp, key_noise = random.split(rng_key, 4)
    zero = jnp.zeros((), y.dtype)

    def de(_):
        j, k = random.choice(key_de, others.shape[0], (2,), replace=False)
        return Proposal(y + (others[j] - others[k]), zero, jnp.array(True))

    def translate(_):
        a = nearest(clusters, y)
        k = clusters.num_active
        b = (a + random.randint(key_translate, (), 1, jnp.maximum(k, 2))) % jnp.maximum(k, 1)
        moved = y + clusters.centers[b] - clusters.centers[a]
        return Proposal(moved, zero, (nearest(clusters, moved) == b) & (k > 1))

    def independence(_):
        c = random.categorical(key_comp, clusters.log_weights)
        drawn = clusters.centers[c] + clusters.chol[c] @ random.normal(key_noise, y.shape, y.dtype)
        correction = mixture_log_density(clusters, y) - mixture_log_density(clusters, drawn)
        return Proposal(drawn, correction, jnp.array(True))

    return jax.lax.switch(move, (de, translate, independence), None)


class PopulationUpdate(NamedTuple):
    """Outcome of the population moves of one half of the chains.

    Attributes
    ----------
    y, potential_energy, grad : array
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

    y: jax.Array
    potential_energy: jax.Array
    grad: jax.Array
    move: jax.Array
    accept_prob: jax.Array
    accepted: jax.Array
    jump: jax.Array


def population_update(
    rng_key: jax.Array,
    y: jax.Array,
    potential_energy: jax.Array,
    grad: jax.Array,
    others: jax.Array,
    move_probs: jax.Array,
    num_clusters,
    potential_and_grad,
    metric_norm_sq,
    max_clusters: int = max(CLUSTER_CANDIDATES),
    scale=None,
) -> PopulationUpdate:
    """Update one half of the chains with proposals built from the other half.

    Parameters
    ----------
    rng_key : jax.Array
        Random key.
    y, potential_energy, grad : array, shapes (m, d), (m,), (m, d)
        The active half: positions, potentials and gradients.
    others : array, shape (n, d)
        Positions of the inactive half (held fixed).
    move_probs : array, shape (3,)
        Probability of each move of :data:`MOVES`.
    num_clusters : int
        Clusters to fit to ``others``.
    potential_and_grad : callable
        ``y -> (U(y), grad U(y))`` for one chain.
    metric_norm_sq : callable
        ``(chain, delta) -> squared length of delta`` in that chain's metric.
    max_clusters : int
        Static upper bound on ``num_clusters``.
    scale : array, shape (d,), optional
        Within-mode scale of each coordinate for the clustering (a function of
        the inactive half only); the inactive half's spread by default.
    """
    key_fit, key_move, key_prop, key_accept = random.split(rng_key, 4)
    m = y.shape[0]
    clusters = fit_clusters(key_fit, others, max_clusters, num_clusters, scale)
    moves = random.categorical(key_move, jnp.log(move_probs), shape=(m,))
    proposals = jax.vmap(propose, in_axes=(0, 0, 0, None, None))(
        random.split(key_prop, m), moves, y, others, clusters
    )
    pe_new, grad_new = jax.vmap(potential_and_grad)(proposals.y)
    log_ratio = potential_energy - pe_new + proposals.log_correction
    ok = (
        proposals.valid
        & jnp.isfinite(pe_new)
        & jnp.all(jnp.isfinite(grad_new), axis=-1)
        & jnp.all(jnp.isfinite(proposals.y), axis=-1)
        & ~jnp.isnan(log_ratio)
    )
    accept_prob = jnp.where(ok, jnp.exp(jnp.minimum(jnp.where(ok, log_ratio, 0.0), 0.0)), 0.0)
    accepted = random.uniform(key_accept, (m,), y.dtype) < accept_prob
    new_y = jnp.where(accepted[:, None], proposals.y, y)
    jump = jnp.where(accepted, jax.vmap(metric_norm_sq)(jnp.arange(m), new_y - y), 0.0)
    return PopulationUpdate(
        y=new_y,
        potential_energy=jnp.where(accepted, pe_new, potential_energy),
        grad=jnp.where(accepted[:, None], grad_new, grad),
        move=moves,
        accept_prob=accept_prob.astype(y.dtype),
        accepted=accepted,
        jump=jump,
    )


class EnsembleState(NamedTuple):
    """Ensemble-mode part of a chain's state (the same tuning values in every chain).

    Attributes
    ----------
    move_probs : array, shape (3,)
        Probability of each move of :data:`MOVES` when an iteration runs population moves.
    population_prob : float
        Probability that an iteration runs population moves (after the local MALA step).
    num_clusters : int
        Clusters fitted to the other half for ``translate`` and ``independence``.
    jump_local, jump_moves, jump_clusters : array
        Warmup running averages of the squared jump distance (in the sampler's
        metric) of the local step, of each move, and of the cluster moves for
        each candidate cluster count; they drive the tuning and are frozen with it.
    mode_jump_rate : float
        Warmup running average of the fraction of chains whose population move
        was an accepted mode jump (on iterations that ran population moves).
    accept_prob : array, shape (3,)
        Acceptance probability of each move type this iteration (0 if not proposed).
    num_proposals, num_accepted : array, shape (3,)
        Cumulative proposals and acceptances of each move type for this chain.
    num_mode_jumps : int
        Cumulative accepted population moves that took this chain farther than
        two draws of one mode would be apart (a jump between modes).
    """

    move_probs: jax.Array
    population_prob: jax.Array
    num_clusters: jax.Array
    jump_local: jax.Array
    jump_moves: jax.Array
    jump_clusters: jax.Array
    mode_jump_rate: jax.Array
    accept_prob: jax.Array
    num_proposals: jax.Array
    num_accepted: jax.Array
    num_mode_jumps: jax.Array

    @property
    def mean_accept_prob(self) -> jax.Array:
        """Fraction of accepted proposals of each move type so far (NaN if none)."""
        return self.num_accepted / jnp.where(self.num_proposals > 0, self.num_proposals, jnp.nan)


def init_ensemble_state(num_chains: int, dtype) -> EnsembleState:
    """Untuned ensemble state: every move equally likely, population moves every iteration."""
    int_dtype = jnp.result_type(int)
    shared = EnsembleState(
        move_probs=jnp.full(len(MOVES), 1.0 / len(MOVES), dtype),
        population_prob=jnp.ones((), dtype),
        num_clusters=jnp.array(CLUSTER_CANDIDATES[1], int_dtype),
        jump_local=jnp.zeros((), dtype),
        jump_moves=jnp.zeros(len(MOVES), dtype),
        jump_clusters=jnp.zeros(len(CLUSTER_CANDIDATES), dtype),
        mode_jump_rate=jnp.zeros((), dtype),
        accept_prob=jnp.zeros(len(MOVES), dtype),
        num_proposals=jnp.zeros(len(MOVES), int_dtype),
        num_accepted=jnp.zeros(len(MOVES), int_dtype),
        num_mode_jumps=jnp.zeros((), int_dtype),
    )
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), shared)


def tune_ensemble(
    shared: EnsembleState,
    local_jump: jax.Array,
    ran_population: jax.Array,
    move_jump: jax.Array,
    move_count: jax.Array,
    cluster_jump: jax.Array,
    final: jax.Array,
    max_candidate: int,
    mode_jump_fraction: jax.Array = 0.0,
) -> EnsembleState:
    """One warmup tuning step of the shared ensemble settings (pure).

    Each move is scored by its squared jump distance per gradient evaluation (a
    running average over chains and iterations), which is large for moves that
    carry chains between modes and for good global proposals, and small for
    moves that are mostly rejected.  Move probabilities follow the scores (with
    a floor); population moves run on a fraction of iterations that grows with
    their score relative to the local MALA step (so that a unimodal posterior
    pays little for them), but on at least :data:`MULTIMODAL_POPULATION_PROB` of
    them once warmup has seen mode jumps (a local step's squared jump can
    exceed that of rare mode jumps, yet only the jumps re-weigh the modes, as
    in 32 dimensions where the ratio alone fell to the floor and left 0.2 jumps
    per chain); the cluster count cycles through
    :data:`CLUSTER_CANDIDATES` and, at the end of warmup, settles on the one
    whose cluster moves jumped farthest.

    Parameters
    ----------
    shared : EnsembleState
        Current settings (one chain's copy).
    local_jump : float
        Mean squared jump of this iteration's local steps.
    ran_population : bool
        Whether population moves ran this iteration.
    move_jump, move_count : array, shape (3,)
        Sum of squared jumps and number of proposals of each move this iteration.
    cluster_jump : float
        Mean squared jump of this iteration's cluster moves (translate, independence).
    final : bool
        Last warmup iteration: fix the cluster count.
    max_candidate : int
        Index of the largest usable entry of :data:`CLUSTER_CANDIDATES`.
    mode_jump_fraction : float
        Fraction of chains whose population move this iteration was an accepted
        mode jump.
    """
    w = EMA_WEIGHT
    candidates = jnp.asarray(CLUSTER_CANDIDATES)
    jump_local = shared.jump_local + w * (local_jump - shared.jump_local)
    seen = ran_population & (move_count > 0)
    mean_move = move_jump / jnp.maximum(move_count, 1)
    jump_moves = jnp.where(
        seen, shared.jump_moves + w * (mean_move - shared.jump_moves), shared.jump_moves
    )
    k_idx = jnp.argmax(candidates == shared.num_clusters)
    jump_clusters = shared.jump_clusters.at[k_idx].set(
        jnp.where(
            ran_population,
            shared.jump_clusters[k_idx] + w * (cluster_jump - shared.jump_clusters[k_idx]),
            shared.jump_clusters[k_idx],
        )
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
        ran_population,
        shared.mode_jump_rate + w * (mode_jump_fraction - shared.mode_jump_rate),
        shared.mode_jump_rate,
    )
    population_prob = jnp.where(
        mode_jump_rate > MULTIMODAL_MIN_JUMP_RATE,
        jnp.maximum(population_prob, MULTIMODAL_POPULATION_PROB),
        population_prob,
    )
    usable = jnp.arange(len(CLUSTER_CANDIDATES)) <= max_candidate
    best = jnp.argmax(jnp.where(usable, jump_clusters, -jnp.inf))
    next_idx = (k_idx + 1) % (max_candidate + 1)
    num_clusters = jnp.where(final, candidates[best], candidates[next_idx])
    return shared._replace(
        move_probs=move_probs.astype(shared.move_probs.dtype),
        population_prob=population_prob.astype(shared.population_prob.dtype),
        num_clusters=num_clusters.astype(shared.num_clusters.dtype),
        jump_local=jump_local,
        jump_moves=jump_moves,
        jump_clusters=jump_clusters,
        mode_jump_rate=mode_jump_rate.astype(shared.mode_jump_rate.dtype),
    )
