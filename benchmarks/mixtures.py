"""Mixture targets of the multimodal suite, with their exact draws and mode assignment.

Every target is a mixture of isotropic Gaussian or Student-t components with
known weights (:class:`Mixture`); components may have different scales.  The
base targets (:func:`targets`):

- four unequal modes (weights 0.1-0.4) in d = 2, 8, 16, 32 and 64, at
  ``o + 8 u_k`` with ``o = e_0`` and ``u = +e_0, +e_1, -e_0, -e_1``;
- a 3 x 3 grid in 2-D (spacing 7, weights proportional to 1..9);
- four Student-t modes (df = 5) in d = 8, laid out as the four Gaussian modes;
- three heavy-tailed Student-t modes (df = 3 and 5, spacing 12, weights 0.2,
  0.3, 0.5) in d = 10 and 32, at ``o + 12 u_k`` with ``u = +e_0, +e_1, -e_0``;
- the 40-mode 2-D Gaussian mixture of the diffusion-sampler literature (unit
  variances, equal weights, means uniform in [-40, 40]^2 from a fixed seed;
  Midgley et al. 2023);
- three Gaussian modes whose widths differ tenfold, the heaviest the narrowest
  (scales 0.1, 0.316, 1, weights 0.5, 0.3, 0.2) in d = 2, 8 and 20, laid out as
  the other three-mode targets with spacing 8 (the narrowest at ``+e_0``).

:func:`copies` gives the transformed copies of a base target used to check
that the sampler's results do not depend on where the target sits or on its
units: translated by 10, 30 and 100 times its largest mode standard deviation
along one fixed random unit direction (:func:`shift_direction`, seed
:data:`SHIFT_SEED`), and scaled by 1e-2 and 1e2 about the origin.  Their names
are the base name plus ``@shift10``, ``@shift30``, ``@shift100``,
``@scale0.01`` and ``@scale100``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, logsumexp

__all__ = [
    "SCALE_FACTORS",
    "SHIFT_MULTIPLES",
    "SHIFT_SEED",
    "Mixture",
    "all_targets",
    "copies",
    "gmm40_means",
    "shift_direction",
    "targets",
]


@dataclass(frozen=True)
class Mixture:
    """A mixture of isotropic Gaussian or Student-t components with known weights.

    Attributes
    ----------
    name : str
        Key used in the JSON results.
    label : str
        Human-readable description for the report.
    means : numpy.ndarray, shape (K, d)
        Component locations.
    weights : numpy.ndarray, shape (K,)
        Mixture weights (sum to 1).
    df : float or None
        Degrees of freedom of multivariate Student-t components; ``None`` for
        Gaussians.
    scales : numpy.ndarray, shape (K,), optional
        Isotropic scale of each component (the standard deviation of a
        Gaussian component, the scale of a Student-t one); 1 by default.
    base : str or None
        For a transformed copy (:meth:`translated`, :meth:`scaled`): the name
        of the target it was made from.
    transform : dict or None
        For a transformed copy: ``{"kind": "shift", "multiple": m, "shift": [...]}``
        or ``{"kind": "scale", "factor": f}``.
    """

    name: str
    label: str
    means: np.ndarray
    weights: np.ndarray
    df: float | None = None
    scales: np.ndarray | None = None
    base: str | None = None
    transform: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        means = np.asarray(self.means, dtype=float)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "weights", np.asarray(self.weights, dtype=float))
        scales = np.ones(len(means)) if self.scales is None else np.asarray(self.scales, float)
        if scales.shape != (len(means),) or np.any(scales <= 0):
            raise ValueError(f"scales must be {len(means)} positive numbers, got {scales}")
        object.__setattr__(self, "scales", scales)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_modes(self) -> int:
        return len(self.weights)

    def mode_sd(self) -> np.ndarray:
        """Per-coordinate standard deviation of each component.

        ``scale * sqrt(df / (df - 2))`` for Student-t components with df > 2,
        the scale otherwise (Gaussians, and t components without a variance).
        """
        if self.df is not None and self.df > 2:
            return self.scales * math.sqrt(self.df / (self.df - 2.0))
        return self.scales.copy()

    def component_log_density(self, x: jax.Array) -> jax.Array:
        """Normalised log density of each component at ``x`` (shape ``(..., d)`` -> ``(..., K)``)."""
        scales = jnp.asarray(self.scales)
        diff = x[..., None, :] - jnp.asarray(self.means)
        sq = jnp.sum(diff**2, axis=-1) / scales**2
        d = self.dim
        log_norm = d * jnp.log(scales)
        if self.df is None:
            return -0.5 * sq - 0.5 * d * math.log(2 * math.pi) - log_norm
        nu = self.df
        const = gammaln((nu + d) / 2) - gammaln(nu / 2) - 0.5 * d * math.log(nu * math.pi)
        return const - log_norm - 0.5 * (nu + d) * jnp.log1p(sq / nu)

    def potential(self, x: jax.Array) -> jax.Array:
        """Negative log density of the mixture at one point ``x`` of shape ``(d,)``."""
        return -logsumexp(jnp.log(jnp.asarray(self.weights)) + self.component_log_density(x))

    def exact_draws(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent draws from the mixture.

        The random numbers consumed do not depend on the means or scales, so a
        translated or scaled copy's draws (same ``rng`` state) are exactly the
        transformed draws of the original.
        """
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.normal(size=(n, self.dim))
        if self.df is not None:
            # multivariate t: Gaussian divided by sqrt(chi2_df / df), shared across coordinates
            noise /= np.sqrt(rng.chisquare(self.df, size=(n, 1)) / self.df)
        return self.means[k] + self.scales[k, None] * noise

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Mode of each draw: the component of highest normalised log density, weights left out.

        With different scales this is not the nearest mean: a wide component
        claims the points far from every mean.
        """
        x = np.asarray(x)
        out = []
        for chunk in np.array_split(x, max(1, len(x) // 200_000)):
            out.append(np.asarray(jnp.argmax(self.component_log_density(jnp.asarray(chunk)), -1)))
        return np.concatenate(out) if out else np.zeros(0, dtype=int)

    def nearest_distance(self, x: np.ndarray) -> np.ndarray:
        """Distance from each draw (shape ``(n, d)``) to the nearest location, in component scales.

        ``min_k |x - m_k| / s_k``: the Euclidean distance for unit scales, and
        unchanged by :meth:`translated` and :meth:`scaled`.
        """
        x = np.asarray(x, dtype=float)
        chunk = max(1, 20_000_000 // (len(self.weights) * self.dim))
        out = [(np.sqrt(((x[i:i + chunk, None, :] - self.means) ** 2).sum(-1)) / self.scales).min(-1)
               for i in range(0, len(x), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate bounds covering every mode with a margin of 3 of its scales."""
        margin = 3.0 * self.scales[:, None]
        return (self.means - margin).min(0), (self.means + margin).max(0)

    def translated(self, shift: np.ndarray, name: str | None = None, label: str | None = None,
                   multiple: float | None = None) -> Mixture:
        """A copy moved by ``shift`` (shape ``(d,)``): means shifted, scales and weights unchanged."""
        shift = np.broadcast_to(np.asarray(shift, dtype=float), (self.dim,))
        info = {"kind": "shift", "shift": shift.tolist()}
        if multiple is not None:
            info["multiple"] = multiple
        return replace(self, name=name or f"{self.name}@shift", label=label or self.label,
                       means=self.means + shift, base=self.base or self.name, transform=info)

    def scaled(self, factor: float, name: str | None = None, label: str | None = None) -> Mixture:
        """A copy scaled by ``factor`` about the origin: means and scales times ``factor``."""
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        return replace(self, name=name or f"{self.name}@scale{factor:g}", label=label or self.label,
                       means=self.means * factor, scales=self.scales * factor,
                       base=self.base or self.name, transform={"kind": "scale", "factor": factor})


# ----------------------------------------------------------------------------- layouts

WEIGHTS_4 = np.array([0.1, 0.2, 0.3, 0.4])


def _four_modes(d: int) -> np.ndarray:
    # o + 8 u_k with o = e_0 and u_k = +e_0, +e_1, -e_0, -e_1: the origin (the
    # dilation centre) is 7 from the 0.3 mode and 9 from the 0.1 mode, not symmetric.
    o = np.zeros(d)
    o[0] = 1.0
    units = np.zeros((4, d))
    units[0, 0], units[1, 1], units[2, 0], units[3, 1] = 1.0, 1.0, -1.0, -1.0
    return o + 8.0 * units


def _grid() -> np.ndarray:
    # 3 x 3 grid, spacing 7, shifted by (1, 0.5) so the origin is not its centre
    g = np.array([-7.0, 0.0, 7.0])
    return np.array([(a, b) for a in g for b in g]) + np.array([1.0, 0.5])


STUDENT_DF = 5.0
STUDENT_DIM = 8

#: Heavy-tailed three-mode targets (issue 13): weights, mode spacing, dims, dfs.
WEIGHTS_3 = np.array([0.2, 0.3, 0.5])
HEAVY_SPACING = 12.0
HEAVY_DIMS = (10, 32)
HEAVY_DFS = (3.0, 5.0)
#: The 40-mode 2-D Gaussian mixture of the diffusion-sampler literature (FAB,
#: Midgley et al. 2023): means uniform in [-40, 40]^2 drawn with this seed.
GMM40_SEED = 0
GMM40_BOUND = 40.0
GMM40_MODES = 40
#: Widths differing tenfold, the heaviest mode the narrowest.
WIDTHS_SCALES = np.array([0.1, 0.316, 1.0])
WIDTHS_WEIGHTS = np.array([0.5, 0.3, 0.2])
WIDTHS_SPACING = 8.0
WIDTHS_DIMS = (2, 8, 20)

#: Transformed copies: shifts in multiples of the target's largest mode sd, scale factors.
SHIFT_MULTIPLES = (10, 30, 100)
SCALE_FACTORS = (1e-2, 1e2)
#: Seed of the random unit direction of the shifts (one direction per dimension).
SHIFT_SEED = 20240611


def _three_modes(d: int, spacing: float) -> np.ndarray:
    # o + s u_k with o = e_0 and u_k = +e_0, +e_1, -e_0: the origin (the dilation
    # centre) is nearer the first mode (s - 1) than the third (s + 1).
    o = np.zeros(d)
    o[0] = 1.0
    units = np.zeros((3, d))
    units[0, 0], units[1, 1], units[2, 0] = 1.0, 1.0, -1.0
    return o + spacing * units


def gmm40_means() -> np.ndarray:
    """Means of the 40-mode target: uniform in ``[-40, 40]^2`` (fixed seed)."""
    rng = np.random.default_rng(GMM40_SEED)
    return rng.uniform(-GMM40_BOUND, GMM40_BOUND, size=(GMM40_MODES, 2))


def targets() -> dict[str, Mixture]:
    """Every base target of the suite, by name."""
    grid_w = np.arange(1, 10, dtype=float)
    out = [
        Mixture("gauss2d_4", "2-D, 4 Gaussian modes, weights 0.1-0.4", _four_modes(2), WEIGHTS_4),
        Mixture("grid2d_9", "2-D, 3x3 grid (spacing 7), weights ∝ 1..9", _grid(), grid_w / grid_w.sum()),
    ]
    for d in (8, 16, 32):
        out.append(Mixture(f"gauss{d}d_4", f"d = {d}, 4 Gaussian modes, weights 0.1-0.4",
                           _four_modes(d), WEIGHTS_4))
    out.append(Mixture(f"student{STUDENT_DIM}d_4",
                       f"d = {STUDENT_DIM}, 4 Student-t modes (df = {STUDENT_DF:g}), weights 0.1-0.4",
                       _four_modes(STUDENT_DIM), WEIGHTS_4, df=STUDENT_DF))
    for d in HEAVY_DIMS:
        for df in HEAVY_DFS:
            out.append(Mixture(f"student{d}d_3_df{df:g}",
                               f"d = {d}, 3 Student-t modes (df = {df:g}, spacing"
                               f" {HEAVY_SPACING:g}), weights 0.2, 0.3, 0.5",
                               _three_modes(d, HEAVY_SPACING), WEIGHTS_3, df=df))
    out.append(Mixture("gmm40_2d", "2-D, 40 unit Gaussian modes, means uniform in [-40, 40]^2,"
                       " equal weights (FAB)", gmm40_means(),
                       np.full(GMM40_MODES, 1.0 / GMM40_MODES)))
    out.append(Mixture("gauss64d_4", "d = 64, 4 Gaussian modes, weights 0.1-0.4",
                       _four_modes(64), WEIGHTS_4))
    for d in WIDTHS_DIMS:
        out.append(Mixture(f"widths{d}d_3",
                           f"d = {d}, 3 Gaussian modes of sd 0.1, 0.316, 1 (weights 0.5, 0.3, 0.2:"
                           " the heaviest the narrowest)", _three_modes(d, WIDTHS_SPACING),
                           WIDTHS_WEIGHTS, scales=WIDTHS_SCALES))
    return {m.name: m for m in out}


def shift_direction(dim: int) -> np.ndarray:
    """The fixed random unit direction of the translated copies in dimension ``dim``."""
    v = np.random.default_rng([SHIFT_SEED, dim]).normal(size=dim)
    return v / np.linalg.norm(v)


def copies(target: Mixture) -> list[Mixture]:
    """Translated and scaled copies of ``target`` (see the module docstring), in a fixed order.

    The shifts are ``m * max(mode sd) * shift_direction(d)`` for ``m`` in
    :data:`SHIFT_MULTIPLES`; the scalings multiply means and scales by each of
    :data:`SCALE_FACTORS`.  The weights, and so the mode masses, are unchanged.
    """
    sd = float(target.mode_sd().max())
    u = shift_direction(target.dim)
    out = [target.translated(m * sd * u, name=f"{target.name}@shift{m:g}", multiple=float(m),
                             label=f"{target.label}; moved by {m:g} mode sd")
           for m in SHIFT_MULTIPLES]
    out += [target.scaled(f, name=f"{target.name}@scale{f:g}",
                          label=f"{target.label}; scaled by {f:g}")
            for f in SCALE_FACTORS]
    return out


def all_targets() -> dict[str, Mixture]:
    """The base targets and every copy, by name."""
    out = {}
    for t in targets().values():
        out[t.name] = t
        out.update({c.name: c for c in copies(t)})
    return out
