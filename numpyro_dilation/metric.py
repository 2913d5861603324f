"""The sampler's metric: preconditioning, whitening, metric norms and covariance estimators.

A metric is the inverse mass matrix ``P`` (diagonal, stored 1-D, or dense, 2-D)
together with ``A`` (``A A^T = P``: the elementwise square root, or the lower
Cholesky factor) and ``A^{-1}`` (the whitening map).  :class:`Metric` keeps the
three side by side so that a move costs matrix-vector products only: no
factorisation and no triangular solve on the per-iteration path.  Everything
here is a pure function on arrays and imports nothing from the package.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


class Metric(NamedTuple):
    """Inverse mass matrix and its factors.

    Attributes
    ----------
    inverse_mass_matrix : array
        ``P``, shape ``(d,)`` (diagonal) or ``(d, d)`` (dense).
    inverse_mass_matrix_sqrt : array
        ``A`` with ``A A^T = P``.
    whitening : array
        ``A^{-1}`` (elementwise, or the inverse lower factor), kept beside ``A``
        so that lengths in the metric cost a matrix-vector product on the hot
        path instead of a triangular solve every iteration.
    """

    inverse_mass_matrix: jax.Array
    inverse_mass_matrix_sqrt: jax.Array
    whitening: jax.Array

    @property
    def dense(self) -> bool:
        """Whether the metric is dense (full-rank) rather than diagonal."""
        return jnp.ndim(self.inverse_mass_matrix) == 2


def precondition(matrix: ArrayLike, v: ArrayLike):
    """``M v`` for a diagonal (stored 1-D) or dense (2-D) matrix ``M``."""
    if jnp.ndim(matrix) == 2:
        return matrix @ v
    return matrix * v


def mass_matrix_sqrt(inverse_mass_matrix: ArrayLike):
    """``A`` with ``A A^T = P``: elementwise sqrt (diagonal) or lower Cholesky factor (dense)."""
    if jnp.ndim(inverse_mass_matrix) == 2:
        return jnp.linalg.cholesky(inverse_mass_matrix)
    return jnp.sqrt(inverse_mass_matrix)


def lower_triangular_inverse(lower: ArrayLike) -> jax.Array:
    """Inverse of a lower-triangular matrix by forward substitution, in plain XLA ops.

    Used instead of ``solve_triangular``: on CPU that calls LAPACK's ``trsm``
    through a thread pool, and two such calls that XLA ran concurrently in a
    256-chain ensemble step deadlocked (every thread idle).
    """
    lower = jnp.asarray(lower)
    d = lower.shape[-1]
    eye = jnp.eye(d, dtype=lower.dtype)

    def row(inv, i):
        # rows >= i of `inv` are still zero, so only the solved rows contribute
        new = (eye[i] - lower[i] @ inv) / lower[i, i]
        return inv.at[i].set(new), None

    inv, _ = jax.lax.scan(row, jnp.zeros_like(lower), jnp.arange(d))
    return inv


def whitening_of(inverse_mass_matrix_sqrt: ArrayLike) -> jax.Array:
    """``A^{-1}`` for :attr:`Metric.whitening`: elementwise, or the inverse lower factor."""
    if jnp.ndim(inverse_mass_matrix_sqrt) == 2:
        return lower_triangular_inverse(inverse_mass_matrix_sqrt)
    return 1.0 / inverse_mass_matrix_sqrt


def make_metric(inverse_mass_matrix: ArrayLike) -> Metric:
    """The :class:`Metric` of an inverse mass matrix (one factorisation, one inversion)."""
    inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
    sqrt = mass_matrix_sqrt(inverse_mass_matrix)
    return Metric(inverse_mass_matrix, sqrt, whitening_of(sqrt))


def metric_norm_sq(whitening: ArrayLike, v: ArrayLike):
    """``v^T P^{-1} v``: squared length of ``v`` in the metric the sampler moves in.

    ``whitening`` is ``A^{-1}`` with ``A A^T = P`` (see :func:`whitening_of`).
    """
    w = whitening @ v if jnp.ndim(whitening) == 2 else whitening * v
    return jnp.dot(w, w)


def variances(inverse_mass_matrix: ArrayLike) -> jax.Array:
    """The diagonal of ``P`` (the metric's scale of each coordinate, squared)."""
    if jnp.ndim(inverse_mass_matrix) == 2:
        return jnp.diagonal(inverse_mass_matrix)
    return jnp.asarray(inverse_mass_matrix)


def chains_scale(inverse_mass_matrices: ArrayLike) -> jax.Array:
    """Each coordinate's scale over vectorised chains' metrics: sqrt of their mean variance."""
    return jnp.sqrt(jnp.mean(jax.vmap(variances)(inverse_mass_matrices), axis=0))


def gradient_informed_covariance(position_cov: ArrayLike, gradient_cov: ArrayLike):
    """Covariance estimate ``S`` solving ``S Cov(g) S = Cov(y)``.

    For a Gaussian posterior ``N(m, S)`` the gradient is ``S^{-1} (y - m)``, so
    ``Cov(g) = S^{-1} Cov(y) S^{-1}`` for *any* set of positions: the estimate is
    exact however little the chain has moved.  ``S`` is the matrix geometric mean
    of ``Cov(y)`` and ``Cov(g)^{-1}``; diagonally it is ``sqrt(var(y) / var(g))``.
    """
    if jnp.ndim(position_cov) == 1:
        return jnp.sqrt(position_cov / gradient_cov)
    # Work in coordinates scaled by the diagonal estimate (the equation is
    # equivariant under diagonal scaling): a posterior whose scales span 1e-2 to
    # 1e2 has covariances with condition number 1e8, beyond what float32 eigh
    # resolves, and its dense estimate came out 30 times too narrow in the widest
    # coordinate (ESS 12 of 4000); scaled, only the correlations are left.
    scale = jnp.sqrt(jnp.sqrt(jnp.diagonal(position_cov) / jnp.diagonal(gradient_cov)))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    outer = scale[:, None] * scale[None, :]
    position_cov = position_cov / outer
    gradient_cov = gradient_cov * outer
    # Relative jitter keeps both factors positive definite without touching the
    # scale of any coordinate (an absolute one would swamp tiny posterior scales).
    jitter = 10 * jnp.finfo(position_cov.dtype).eps
    position_cov = position_cov + jitter * jnp.diag(jnp.diagonal(position_cov))
    gradient_cov = gradient_cov + jitter * jnp.diag(jnp.diagonal(gradient_cov))
    # S = G^{-1/2} (G^{1/2} C G^{1/2})^{1/2} G^{-1/2}, with G = Cov(g), C = Cov(y).
    w, v = jnp.linalg.eigh(gradient_cov)
    w = jnp.clip(w, jnp.max(w) * jitter)
    g_half = (v * jnp.sqrt(w)) @ v.T
    g_inv_half = (v / jnp.sqrt(w)) @ v.T
    w2, v2 = jnp.linalg.eigh(g_half @ position_cov @ g_half)
    middle = (v2 * jnp.sqrt(jnp.clip(w2, jnp.max(w2) * jitter))) @ v2.T
    s = g_inv_half @ middle @ g_inv_half
    return 0.5 * (s + s.T) * outer


def regularize_covariance(cov: ArrayLike, n: ArrayLike):
    """Shrink a covariance towards a multiple of the identity in log space.

    The weight ``5 / (n + 5)`` is Stan's; shrinking in log space (rather than
    adding a multiple of the identity, as Stan does) leaves a posterior whose
    scales span many orders of magnitude well conditioned after preconditioning.
    A diagonal covariance has its log variances shrunk towards their mean, a
    dense one its log eigenvalues.  When a dense covariance's variances span
    more than float32's ``eigh`` can resolve (about 1e5 apart in float32),
    the log eigenvalues of its correlation matrix are shrunk instead (the
    variances are kept: shrinking them separately tilts the narrow direction of
    a strongly correlated posterior, and cost ESS 1632 instead of 25678 on the
    posteriordb ``earnings`` regression).
    """
    weight = 5.0 / (n + 5.0)
    if jnp.ndim(cov) == 1:
        log_var = jnp.log(cov)
        return jnp.exp((1.0 - weight) * log_var + weight * jnp.mean(log_var))
    eps = jnp.finfo(cov.dtype).eps
    sd = jnp.sqrt(jnp.diagonal(cov))
    # Variances spanning beyond eigh's resolution: shrink the correlation matrix.
    # (The choice is read off the diagonal so that one eigh call serves either
    # case: two independent LAPACK calls in one XLA program may run concurrently,
    # and two concurrent calls were seen to deadlock jaxlib's CPU thread pool.)
    use_corr = jnp.min(sd) ** 2 < 100 * eps * jnp.max(sd) ** 2
    unit = jnp.where(use_corr, sd, jnp.ones_like(sd))
    matrix = cov / (unit[:, None] * unit[None, :])
    w, v = jnp.linalg.eigh(matrix)
    # eigh cannot resolve eigenvalues below eps * max(w): keep them at that floor.
    log_w = jnp.log(jnp.clip(w, jnp.max(w) * eps))
    log_w = (1.0 - weight) * log_w + weight * jnp.mean(log_w)
    out = ((v * jnp.exp(log_w)) @ v.T) * (unit[:, None] * unit[None, :])
    return 0.5 * (out + out.T)


__all__ = [
    "Metric",
    "chains_scale",
    "gradient_informed_covariance",
    "lower_triangular_inverse",
    "make_metric",
    "mass_matrix_sqrt",
    "metric_norm_sq",
    "precondition",
    "regularize_covariance",
    "variances",
    "whitening_of",
]
