"""Metrics of the multimodal suite: mode weights, coverage, energy distance, ESS, labellings.

- **TV**: total-variation distance between the fraction of draws assigned to
  each mode (:meth:`~benchmarks.mixtures.Mixture.assign`: the component of
  highest normalised log density, weights left out) and the true mass of that
  mode's region (the same assignment applied to 10^6 exact draws);
- **modes found**: the fraction of modes holding at least :data:`FOUND_FRACTION`
  of the draws;
- **coverage**: entropic mode coverage, the entropy of the mode fractions over
  ``log K``;
- **energy distance** between :data:`ENERGY_DRAWS` draws taken at random over
  chains and iterations and as many exact draws (its floor, two exact samples,
  is reported alongside);
- **far draws**: draws farther from every mode (in that mode's scales) than all
  but a fraction ``1 - FAR_QUANTILE`` of the exact draws;
- **ESS**: ArviZ's rank-normalised bulk ESS of each coordinate of the
  ``(chains, draws, d)`` array, minimum over coordinates;
- **labelling fractions** of a mixture posterior with exchangeable components:
  the fraction of draws in each ordering of the component means (exactly
  ``1/K!`` each).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.mixtures import Mixture

__all__ = [
    "ENERGY_DRAWS",
    "FAR_QUANTILE",
    "FOUND_FRACTION",
    "Reference",
    "energy_distance",
    "entropic_coverage",
    "labelling_fractions",
    "min_bulk_ess",
    "mode_fractions",
    "reference",
    "score",
]

#: Draws compared by the energy distance (pairwise distances cost O(n^2)).
ENERGY_DRAWS = 2000
#: Quantile of the exact draws' distance to the nearest mode beyond which a draw
#: counts as "far" (a perfect sampler has a fraction 1 - FAR_QUANTILE of them).
FAR_QUANTILE = 0.999
#: A mode is "found" when it holds at least this fraction of the draws.
FOUND_FRACTION = 0.01
#: Exact draws behind the true region masses.
MASS_DRAWS = 1_000_000


def mode_fractions(target: Mixture, draws: np.ndarray) -> np.ndarray:
    """Fraction of the draws (any leading shape, last axis ``d``) assigned to each mode."""
    labels = target.assign(np.asarray(draws).reshape(-1, target.dim))
    return np.bincount(labels, minlength=len(target.weights)) / max(labels.size, 1)


def entropic_coverage(fractions: np.ndarray) -> float:
    """Entropy of the mode fractions over ``log K`` (1: every mode equally visited).

    The entropic mode coverage of the diffusion-sampler literature; it equals
    the true masses' normalised entropy for a perfect sampler (1 for equal weights).
    """
    f = np.asarray(fractions, dtype=float)
    if len(f) < 2 or f.sum() <= 0:
        return float("nan")
    f = f / f.sum()
    nz = f[f > 0]
    return float(-(nz * np.log(nz)).sum() / math.log(len(f)))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (V-statistic) between two samples."""

    def mean_dist(a, b):
        sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
        return float(np.sqrt(np.maximum(sq, 0.0)).mean())

    return 2.0 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)


def _subsample(draws: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    flat = np.asarray(draws).reshape(-1, draws.shape[-1])
    return flat[rng.choice(len(flat), size=min(n, len(flat)), replace=False)]


@dataclass
class Reference:
    """Exact-draw quantities of one target, shared by every sampler's metrics."""

    region_mass: np.ndarray
    draws: np.ndarray
    energy_floor: float
    tv_floor: float
    far_radius: float


def reference(target: Mixture, num_draws: int, seed: int = 0,
              mass_draws: int = MASS_DRAWS) -> Reference:
    """True region masses, the energy-distance reference sample and the floors.

    ``tv_floor`` is the TV of ``num_draws`` independent exact draws: the Monte
    Carlo error a perfect sampler of that many (independent) draws would show.
    ``far_radius`` is the :data:`FAR_QUANTILE` quantile of those draws' distance
    to the nearest component location (in component scales).  The random
    numbers do not depend on the target's location or scale, so a translated
    or scaled copy gets the same masses and floors (the energy distance
    scales with the target).
    """
    rng = np.random.default_rng(seed)
    mass = mode_fractions(target, target.exact_draws(rng, mass_draws))
    ref = target.exact_draws(rng, ENERGY_DRAWS)
    floor = energy_distance(target.exact_draws(rng, ENERGY_DRAWS), ref)
    sample = target.exact_draws(rng, num_draws)
    tv_floor = 0.5 * float(np.abs(mode_fractions(target, sample) - mass).sum())
    far = float(np.quantile(target.nearest_distance(sample), FAR_QUANTILE))
    return Reference(mass, ref, floor, tv_floor, far)


def min_bulk_ess(draws: np.ndarray) -> float:
    """ArviZ bulk ESS of each coordinate of ``draws`` ``(chains, draws, d)``, minimum over coordinates.

    ``nan`` for fewer than 4 draws per chain or a single chain; a coordinate
    whose ESS is not finite (a chain that never moved) counts as 0.
    """
    import arviz as az

    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 3 or draws.shape[0] < 2 or draws.shape[1] < 4:
        return float("nan")
    ess = np.asarray(az.ess(az.convert_to_dataset(draws), method="bulk")["x"].values, float)
    return float(np.nan_to_num(ess, nan=0.0).min())


def score(target: Mixture, ref: Reference, draws: np.ndarray, seed: int = 1) -> dict[str, Any]:
    """TV, coverage, modes found, per-mode fractions, energy distance and far draws of ``draws``.

    ``draws`` has shape ``(chains, draws, d)`` (SMC's particles: ``(1, n, d)``).
    """
    draws = np.asarray(draws, dtype=float)
    finite = np.isfinite(draws).all(-1)
    frac = mode_fractions(target, draws[finite]) if finite.any() else np.zeros_like(ref.region_mass)
    rng = np.random.default_rng(seed)
    switching = None
    if draws.shape[0] > 1:  # chains (not SMC's particle cloud): how many ever change mode
        labels = target.assign(np.nan_to_num(draws).reshape(-1, target.dim)).reshape(draws.shape[:2])
        switching = float(np.mean((labels != labels[:, :1]).any(1)))
    return {
        "tv": 0.5 * float(np.abs(frac - ref.region_mass).sum()),
        "coverage": entropic_coverage(frac),
        "chains_switching": switching,
        "modes_found": float(np.mean(frac >= FOUND_FRACTION)),
        "mode_fractions": frac.round(5).tolist(),
        "energy_distance": energy_distance(_subsample(draws[finite], ENERGY_DRAWS, rng), ref.draws)
        if finite.any() else float("nan"),
        # draws farther from every mode than all but 0.1% of exact draws: chains lost in the tails
        "far_fraction": float(np.mean(target.nearest_distance(draws[finite]) > ref.far_radius))
        if finite.any() else float("nan"),
        "num_nonfinite": int((~finite).sum()),
    }


def labelling_fractions(mu: np.ndarray, name: str = "mu") -> dict[str, float]:
    """Fraction of draws in each ordering of the component means.

    ``mu`` has shape ``(..., K)``; the labelling of a draw is the order of its
    means, written e.g. ``"mu1<mu0<mu2"``.  With exchangeable priors every one
    of the ``K!`` labellings holds exactly ``1/K!`` of the posterior.
    """
    mu = np.asarray(mu, dtype=float)
    k = mu.shape[-1]
    order = np.argsort(mu.reshape(-1, k), axis=-1)
    codes = order @ (k ** np.arange(k - 1, -1, -1))
    n = max(len(codes), 1)
    return {"<".join(f"{name}{j}" for j in p): float(np.sum(codes == np.dot(p, k ** np.arange(k - 1, -1, -1))) / n)
            for p in itertools.permutations(range(k))}
