"""Multimodal suite: mode-weight recovery on mixtures with known weights.

Targets are Gaussian and Student-t mixtures whose mode weights are known: four
unequal modes in d = 2, 8, 16, 32 and 64, a 3 x 3 grid, four Student-t modes
(df = 5) in d = 8, three well-separated heavy-tailed Student-t modes (df = 3
and 5, weights 0.2/0.3/0.5) in d = 10 and 32, and the 40-mode 2-D Gaussian
mixture of the diffusion-sampler literature (unit variances, equal weights,
means uniform in [-40, 40]^2 from a fixed seed; Midgley et al. 2023).  Each
sampler's draws are judged by

- **TV**: total-variation distance between the fraction of draws assigned to
  each mode (the component with the highest log density at the draw, weights
  left out: the nearest mean, as all components of a target share one scale)
  and the true mass of that mode's region (the same assignment applied to 10^6
  exact draws; it equals the mixture weight up to the overlap of the
  components, below 0.001 for the Gaussian targets);
- **modes found**: the fraction of modes holding at least 1% of the draws (every
  mode of every target holds at least 2% of the mass);
- **coverage**: entropic mode coverage, the entropy of the mode fractions over
  ``log K`` (the truth's is reported in the ``exact`` row; 1 for equal weights);
- **energy distance** between 2000 draws taken at random over chains and
  iterations and 2000 exact draws (its floor, two exact samples of 2000, is
  reported alongside);
- cost: gradient evaluations per chain and in total (density evaluations for
  AIES, which uses no gradients), sampling wall time and compile time apart.

Samplers (256 chains each, vectorised): DilationLangevin with its defaults and
with ``ensemble=True`` (1000 warmup + 1000 draws, every chain started at the
origin, the dilation centre); NUTS, AIES, BlackJAX adaptive tempered SMC and
parallel tempering (:func:`run_pt`) capped at the same budget of :data:`BUDGET`
evaluations per chain, and parallel tempering again at the ensemble's own
gradients per chain on each target (``pt_matched``: the comparison at equal
cost, since the HMC default spends more than :data:`BUDGET`); DilationLangevin
without the path (one annealing step from ``t_min = 0.99``); and an ablation over the path's ``alpha`` and annealing
length on two targets.  A Bayesian Gaussian mixture with label switching closes
the suite.

Parallel tempering is written here from NumPyro's functional HMC kernel
(:func:`numpyro.infer.hmc.hmc`) plus replica swaps: TensorFlow Probability's
``ReplicaExchangeMC`` (through ``numpyro.contrib.tfp.mcmc``) does not import
with jax 0.10 (tensorflow-probability 0.25.0, the latest release, uses
``jax.interpreters.xla.pytype_aval_mappings``, which jax removed), and BlackJAX
1.7 has no replica-exchange sampler.  It needs nothing beyond NumPyro.

Run with ``python -m benchmarks.run multimodal`` (or ``python -m
benchmarks.multimodal [--quick] [--targets ...] [--samplers ...]`` for a
standalone run, or a subset of targets and samplers: see :func:`main`).

JSON layout of :func:`run`: ``settings`` holds the sizes (``num_chains``,
``num_warmup``, ``num_samples``, ``budget``, ``nuts_warmup``, ``smc_particles``,
``pt_leapfrog``, ``pt_beta_min``, ``pt_min_replicas``, ...) and ``targets``
(label, dim, weights, first two coordinates of the means, ``df``).  Each entry
of ``runs`` has ``target``, ``sampler``, ``group`` (``main``, ``ablation`` or
``label_switching``) and, except for label switching, ``tv``, ``coverage``,
``modes_found``, ``mode_fractions``, ``energy_distance``, ``far_fraction`` (draws
farther from every mode than the exact draws' 0.999 quantile), ``chains_switching``,
``num_nonfinite``, ``grads_per_chain``, ``grads_total``, ``wall_s``,
``compile_s``, ``sample_s``; sampler-specific extras are ``step_size``
(DilationLangevin: min, median, max of the chains' adapted step sizes,
``min_over_median``, ``frac_below_1e-3_median``, ``frac_below_1e-4``),
``ensemble`` (mode jumps, acceptance and probability of each move, clusters),
``num_samples``/``steps_per_iteration`` (NUTS), ``density_evals_*`` (AIES),
``num_tempering_steps``/``mala_steps_per_tempering_step``/``num_particles``
(SMC), ``pt`` (replicas, leapfrog steps, iterations, inverse temperatures, swap
acceptance by neighbouring pair, median step size by replica, HMC acceptance),
``alpha``/``num_anneal_steps`` (ablation).  The ``exact`` rows hold the
floors.  Label-switching runs hold ``fractions`` (per labelling),
``max_abs_error`` and the cost fields.  A subset run is marked ``"subset": true``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import random
from jax.scipy.special import gammaln, logsumexp

__all__ = [
    "SAMPLER_LABELS",
    "Mixture",
    "Reference",
    "energy_distance",
    "entropic_coverage",
    "mode_fractions",
    "reference",
    "report",
    "run",
    "run_aies",
    "run_dilation",
    "run_nuts",
    "run_pt",
    "run_smc",
    "score",
    "step_size_spread",
    "targets",
]

# ----------------------------------------------------------------------------- settings

NUM_CHAINS = 256
NUM_WARMUP = 1000
NUM_SAMPLES = 1000
#: Evaluations per chain allowed to NUTS, AIES and SMC (gradients for NUTS and
#: SMC, densities for AIES); DilationLangevin runs its defaults and spends what
#: it spends (about 2000, or 2000-4000 with the ensemble moves).
BUDGET = 4000
#: NUTS warmup iterations; its sampling iterations fill the rest of the budget.
NUTS_WARMUP = 250
#: SMC particles: 16 per chain of the other samplers, so that the budget per
#: particle leaves room for about 25 tempering steps of 10 MALA steps.
SMC_PARTICLES = 4096
SMC_MCMC_STEPS = 10
#: Parallel tempering: leapfrog steps per HMC transition, smallest non-zero
#: inverse temperature, fewest replicas (see :func:`run_pt`).
PT_LEAPFROG = 2
PT_BETA_MIN = 1e-2
PT_MIN_REPLICAS = 8
#: Draws compared by the energy distance (pairwise distances cost O(n^2)).
ENERGY_DRAWS = 2000
#: Quantile of the exact draws' distance to the nearest mode beyond which a draw
#: counts as "far" (a perfect sampler has a fraction 1 - FAR_QUANTILE of them).
FAR_QUANTILE = 0.999
#: A mode is "found" when it holds at least this fraction of the draws.
FOUND_FRACTION = 0.01
#: Issue 5 targets (reported, not asserted).
TV_TARGET_LOW_DIM = 0.05
TV_TARGET_HARD = 0.10
LABEL_TARGET_TOL = 0.03

#: Where an unfinished full run keeps its results so far (not committed).
PARTIAL = Path(__file__).resolve().parent / "results" / "multimodal.partial.json"

QUICK = {"num_chains": 16, "num_warmup": 40, "num_samples": 40, "budget": 160,
         "nuts_warmup": 30, "smc_particles": 128}
#: Samplers of the quick run (compilation dominates it: 5-25 s per sampler on a
#: busy 2-core machine); the ensemble run exercises the non-ensemble code too.
QUICK_SAMPLERS = ("dilation_ensemble", "aies", "smc", "pt", "pt_matched")


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Mixture:
    """A mixture of unit-scale Gaussian or Student-t components with known weights.

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
        Degrees of freedom of multivariate Student-t components with identity
        scale; ``None`` for unit-covariance Gaussians.
    """

    name: str
    label: str
    means: np.ndarray
    weights: np.ndarray
    df: float | None = None

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def component_log_density(self, x: jax.Array) -> jax.Array:
        """Normalised log density of each component at ``x`` (shape ``(..., d)`` -> ``(..., K)``)."""
        diff = x[..., None, :] - jnp.asarray(self.means)
        sq = jnp.sum(diff**2, axis=-1)
        d = self.dim
        if self.df is None:
            return -0.5 * sq - 0.5 * d * math.log(2 * math.pi)
        nu = self.df
        const = gammaln((nu + d) / 2) - gammaln(nu / 2) - 0.5 * d * math.log(nu * math.pi)
        return const - 0.5 * (nu + d) * jnp.log1p(sq / nu)

    def potential(self, x: jax.Array) -> jax.Array:
        """Negative log density of the mixture at one point ``x`` of shape ``(d,)``."""
        return -logsumexp(jnp.log(jnp.asarray(self.weights)) + self.component_log_density(x))

    def exact_draws(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` independent draws from the mixture."""
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.normal(size=(n, self.dim))
        if self.df is not None:
            # multivariate t: Gaussian divided by sqrt(chi2_df / df), shared across coordinates
            noise /= np.sqrt(rng.chisquare(self.df, size=(n, 1)) / self.df)
        return self.means[k] + noise

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Mode of each draw: the component with the highest log density (weights left out)."""
        out = []
        for chunk in np.array_split(np.asarray(x), max(1, len(x) // 200_000)):
            out.append(np.asarray(jnp.argmax(self.component_log_density(jnp.asarray(chunk)), -1)))
        return np.concatenate(out)

    def nearest_distance(self, x: np.ndarray) -> np.ndarray:
        """Euclidean distance from each draw (shape ``(n, d)``) to the nearest component location."""
        x = np.asarray(x, dtype=float)
        chunk = max(1, 20_000_000 // (len(self.weights) * self.dim))
        out = [np.sqrt(((x[i:i + chunk, None, :] - self.means) ** 2).sum(-1)).min(-1)
               for i in range(0, len(x), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate bounds covering every mode with a margin of 3 scales."""
        return self.means.min(0) - 3.0, self.means.max(0) + 3.0


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


def _three_modes(d: int, spacing: float) -> np.ndarray:
    # o + s u_k with o = e_0 and u_k = +e_0, +e_1, -e_0: the origin (the dilation
    # centre) is nearer the 0.5 mode (s - 1) than the 0.2 mode (s + 1).
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
    """Every target of the suite, by name."""
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
    # issue 13: heavy tails, the 40-mode literature benchmark, mode weights in d = 64
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
    return {m.name: m for m in out}


# ----------------------------------------------------------------------------- metrics


def mode_fractions(target: Mixture, draws: np.ndarray) -> np.ndarray:
    """Fraction of the draws (any leading shape, last axis ``d``) assigned to each mode."""
    labels = target.assign(np.asarray(draws).reshape(-1, target.dim))
    return np.bincount(labels, minlength=len(target.weights)) / labels.size


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


def reference(target: Mixture, num_draws: int, seed: int = 0) -> Reference:
    """True region masses, the energy-distance reference sample and the floors.

    ``tv_floor`` is the TV of ``num_draws`` independent exact draws: the Monte
    Carlo error a perfect sampler of that many (independent) draws would show.
    ``far_radius`` is the :data:`FAR_QUANTILE` quantile of those draws' distance
    to the nearest component location.
    """
    rng = np.random.default_rng(seed)
    mass = mode_fractions(target, target.exact_draws(rng, 1_000_000))
    ref = target.exact_draws(rng, ENERGY_DRAWS)
    floor = energy_distance(target.exact_draws(rng, ENERGY_DRAWS), ref)
    sample = target.exact_draws(rng, num_draws)
    tv_floor = 0.5 * float(np.abs(mode_fractions(target, sample) - mass).sum())
    far = float(np.quantile(target.nearest_distance(sample), FAR_QUANTILE))
    return Reference(mass, ref, floor, tv_floor, far)


def score(target: Mixture, ref: Reference, draws: np.ndarray, seed: int = 1) -> dict[str, Any]:
    """TV, modes found, per-mode fractions and energy distance of ``draws``."""
    draws = np.asarray(draws, dtype=float)
    finite = np.isfinite(draws).all(-1)
    frac = mode_fractions(target, draws[finite]) if finite.any() else np.zeros_like(ref.region_mass)
    rng = np.random.default_rng(seed)
    switching = None
    if draws.shape[0] > 1:  # chains (not SMC's particle cloud): how many ever change mode
        labels = target.assign(draws.reshape(-1, target.dim)).reshape(draws.shape[:2])
        switching = float(np.mean((labels != labels[:, :1]).any(1)))
    return {
        "tv": 0.5 * float(np.abs(frac - ref.region_mass).sum()),
        "coverage": entropic_coverage(frac),
        "chains_switching": switching,
        "modes_found": float(np.mean(frac >= FOUND_FRACTION)),
        "mode_fractions": frac.round(5).tolist(),
        "energy_distance": energy_distance(_subsample(draws[finite], ENERGY_DRAWS, rng), ref.draws),
        # draws farther from every mode than all but 0.1% of exact draws: chains lost in the tails
        "far_fraction": float(np.mean(target.nearest_distance(draws[finite]) > ref.far_radius))
        if finite.any() else float("nan"),
        "num_nonfinite": int((~finite).sum()),
    }


# ----------------------------------------------------------------------------- timing


def timed(fn: Callable[[], dict]) -> dict:
    """Run ``fn`` and add ``wall_s``, ``compile_s`` and ``sample_s`` to its result.

    ``compile_s`` sums JAX's compile-time events (trace, lowering, backend
    compile) during the call, as the package's ``measure_compile`` reports them:
    compilation is separated from sampling without a second, warm run.
    """
    from numpyro_dilation.workflow.results import measure_compile

    with measure_compile() as timing:
        out = fn()
    out.update(wall_s=timing.wall_s, compile_s=timing.compile_s, sample_s=timing.run_s)
    return out


# ----------------------------------------------------------------------------- samplers


def _mcmc(kernel, num_warmup, num_samples, num_chains, thinning=1):
    from numpyro.infer import MCMC

    return MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False, thinning=thinning)


def run_dilation(target: Mixture, key: jax.Array, *, num_chains: int, num_warmup: int,
                 num_samples: int, **kwargs: Any) -> dict:
    """DilationLangevin from the origin (every chain at the dilation centre)."""
    from numpyro_dilation import DilationLangevin

    ensemble = kwargs.get("ensemble", False)
    fields = ["num_grad_evals"]
    if ensemble:
        fields += ["ensemble.num_mode_jumps", "ensemble.num_accepted", "ensemble.num_proposals",
                   "ensemble.move_probs", "ensemble.population_prob", "ensemble.num_clusters"]
    mcmc = _mcmc(DilationLangevin(potential_fn=target.potential, **kwargs), num_warmup,
                 num_samples, num_chains)
    mcmc.run(key, init_params=jnp.zeros((num_chains, target.dim)), extra_fields=tuple(fields))
    # Wait with the GIL released: np.asarray blocks holding it, and the kernel's health
    # check (a jax.debug.callback) then deadlocks (seen twice on gauss32d_4, ensemble).
    jax.block_until_ready((mcmc.get_samples(), mcmc.get_extra_fields()))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    grads = np.asarray(extra["num_grad_evals"])[:, -1]
    out = {"draws": draws, "grads_per_chain": float(grads.mean()),
           "grads_total": float(grads.sum()),
           "step_size": step_size_spread(np.asarray(mcmc.last_state.adapt_state.step_size))}
    if ensemble:
        last = {k: np.asarray(v)[:, -1] for k, v in extra.items()}
        proposals = last["ensemble.num_proposals"].sum(0)
        out["ensemble"] = {
            # counts are cumulative over warmup and sampling
            "mode_jumps_total": int(last["ensemble.num_mode_jumps"].sum()),
            "mode_jumps_per_chain": float(last["ensemble.num_mode_jumps"].mean()),
            "accept_rate_by_move": (last["ensemble.num_accepted"].sum(0)
                                    / np.maximum(proposals, 1)).round(4).tolist(),
            "proposals_by_move": proposals.astype(int).tolist(),
            "move_probs": last["ensemble.move_probs"][0].round(4).tolist(),
            "population_prob": float(last["ensemble.population_prob"][0]),
            "num_clusters": int(last["ensemble.num_clusters"][0]),
        }
    return out


def step_size_spread(step_size: np.ndarray) -> dict[str, float]:
    """Spread of the adapted step sizes across chains.

    ``frac_below_1e-3_median`` is the fraction of chains whose step size is
    below 1e-3 of the median chain's (issue 13's collapse criterion).
    """
    h = np.asarray(step_size, dtype=float).reshape(-1)
    med = float(np.median(h))
    return {"min": float(h.min()), "median": med, "max": float(h.max()),
            "min_over_median": float(h.min() / med) if med > 0 else float("nan"),
            "frac_below_1e-3_median": float(np.mean(h < 1e-3 * med)),
            "frac_below_1e-4": float(np.mean(h < 1e-4))}


def _uniform_init(target: Mixture, key: jax.Array, n: int) -> jax.Array:
    lo, hi = target.box()
    return random.uniform(key, (n, target.dim), minval=lo, maxval=hi)


def run_nuts(target: Mixture, key: jax.Array, *, num_chains: int, num_warmup: int,
             budget: int) -> dict:
    """NUTS from uniform draws in the box around the modes, sampling until the budget is spent.

    The sampling length is set from the mean tree size of the last 50 warmup
    iterations, so that warmup plus sampling gradients come to about ``budget``
    per chain (at least 100 draws).
    """
    from numpyro.infer import NUTS

    key_init, key_run = random.split(key)
    init = _uniform_init(target, key_init, num_chains)
    mcmc = _mcmc(NUTS(potential_fn=target.potential), num_warmup, 1, num_chains)
    mcmc.warmup(key_run, init_params=init, extra_fields=("num_steps",), collect_warmup=True)
    warm_steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    per_iter = float(warm_steps[:, -50:].mean())
    num_samples = int(max(100, (budget - warm_steps.sum(1).mean()) / per_iter))
    mcmc.num_samples = num_samples
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps",))
    # + 1: the initial gradient, as benchmarks.common counts it
    steps = 1 + warm_steps.sum(1) + np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum(1)
    return {"draws": np.asarray(mcmc.get_samples(group_by_chain=True)),
            "grads_per_chain": float(steps.mean()), "grads_total": float(steps.sum()),
            "num_samples": num_samples, "steps_per_iteration": per_iter}


def run_aies(target: Mixture, key: jax.Array, *, num_chains: int, budget: int) -> dict:
    """AIES (DE + stretch moves) from the box: ``budget`` density evaluations per walker.

    Half of them are warmup; the sampling half is thinned by 2.
    """
    from numpyro.infer import AIES

    key_init, key_run = random.split(key)
    kernel = AIES(potential_fn=target.potential,
                  moves={AIES.DEMove(): 0.5, AIES.StretchMove(): 0.5})
    mcmc = _mcmc(kernel, budget // 2, budget // 2, num_chains, thinning=2)
    mcmc.run(key_run, init_params=_uniform_init(target, key_init, num_chains))
    return {"draws": np.asarray(mcmc.get_samples(group_by_chain=True)),
            "grads_per_chain": 0.0, "grads_total": 0.0,
            "density_evals_per_chain": float(budget), "density_evals_total": float(budget * num_chains)}


def run_smc(target: Mixture, key: jax.Array, *, num_particles: int, num_chains: int,
            budget: int, max_steps: int = 100) -> dict:
    """BlackJAX adaptive tempered SMC with a MALA inner kernel, filling ``budget``.

    Prior: independent Gaussians with scale ``max_k |m_kj| + 3`` per coordinate
    (covering every mode); likelihood = target / prior; target ESS 0.5.  The
    MALA step size starts at ``0.5 d^{-1/3}`` and is rescaled after every
    tempering step towards an acceptance of 0.574.  A pilot run (10 MALA steps
    per tempering step, not counted) gives the number of tempering steps; the
    counted run then takes as many MALA steps per tempering step as fill
    ``budget * num_chains`` gradients over ``num_particles`` particles.
    """
    import blackjax
    from blackjax.smc import extend_params, resampling
    from blackjax.smc.adaptive_tempered import build_kernel

    scale = jnp.asarray(np.abs(target.means).max(0) + 3.0)
    mala = blackjax.mala.build_kernel()

    def logprior(x):
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, 0.0, scale))

    def loglik(x):
        return -target.potential(x) - logprior(x)

    def mala_steps(rng_key, state, logdensity_fn, step_size, num_steps):
        # several MALA steps in one blackjax "step", so their number can be traced
        # (blackjax's own num_mcmc_steps is static and would recompile)
        def body(i, carry):
            st, acc = carry
            st, info = mala(random.fold_in(rng_key, i), st, logdensity_fn, step_size)
            return st, acc + info.acceptance_rate

        state, acc = jax.lax.fori_loop(0, num_steps, body, (state, 0.0))
        return state, acc / num_steps

    kernel = build_kernel(logprior, loglik, mala_steps, blackjax.mala.init,
                          resampling.systematic, target_ess=0.5)

    @jax.jit
    def smc(key, num_steps):
        key_init, key_loop = random.split(key)
        x0 = scale * random.normal(key_init, (num_particles, target.dim))
        state = blackjax.adaptive_tempered_smc.init(x0)
        h0 = 0.5 * target.dim ** (-1.0 / 3.0)

        def cond(carry):
            state, _, n, _ = carry
            return (state.tempering_param < 1.0) & (n < max_steps)

        def body(carry):
            state, h, n, k = carry
            k, sub = random.split(k)
            params = extend_params({"step_size": h, "num_steps": num_steps})
            state, info = kernel(sub, state, 1, params)
            acc = jnp.mean(info.update_info)
            # multiplicative step-size update towards MALA's optimal acceptance
            return state, h * jnp.exp(2.0 * (acc - 0.574)), n + 1, k

        state, h, n, _ = jax.lax.while_loop(cond, body, (state, h0, 0, key_loop))
        return state.particles, state.tempering_param, n, h

    key_pilot, key_run = random.split(key)
    pilot_steps = int(smc(key_pilot, 10)[2])
    per_particle = budget * num_chains / num_particles
    num_mcmc = int(max(1, per_particle // max(pilot_steps, 1)))
    particles, temp, n, h = smc(key_run, num_mcmc)
    n = int(n)
    total = float(num_particles * n * num_mcmc)
    return {"draws": np.asarray(particles)[None], "grads_per_chain": total / num_chains,
            "grads_total": total, "grads_per_particle": float(n * num_mcmc),
            "num_tempering_steps": n, "mala_steps_per_tempering_step": num_mcmc,
            "final_temperature": float(temp), "final_step_size": float(h),
            "num_particles": num_particles}


def pt_num_replicas(dim: int) -> int:
    """Temperatures of the parallel-tempering ladder: ``max(8, ceil(2 sqrt(d)))``."""
    return max(PT_MIN_REPLICAS, math.ceil(2.0 * math.sqrt(dim)))


def run_pt(target: Mixture, key: jax.Array, *, num_chains: int, budget: int,
           num_replicas: int | None = None, num_leapfrog: int = PT_LEAPFROG,
           adapt_mass_matrix: bool = True) -> dict:
    """Parallel tempering: NumPyro's functional HMC kernel per temperature, plus swaps.

    Each of the ``num_chains`` independent PT chains runs ``num_replicas``
    replicas on the path ``rho^(1 - beta) pi^beta`` from the reference ``rho``
    (the SMC prior: independent Gaussians of scale ``max_k |m_kj| + 3``) to the
    target ``pi``, with ``beta = 0`` and ``num_replicas - 1`` values geometric
    in ``[PT_BETA_MIN, 1]``.  Every iteration moves each replica by one HMC
    transition of ``num_leapfrog`` leapfrog steps (:func:`numpyro.infer.hmc.hmc`,
    step size and diagonal mass matrix adapted per temperature during warmup),
    then proposes swaps between neighbouring temperatures, even pairs on even
    iterations and odd pairs on odd ones (deterministic even-odd scheme).  The
    swaps need ``log pi - log rho`` and its gradient at every replica, one
    more gradient per replica and iteration.  The draws are the ``beta = 1``
    replica's over the sampling half.

    The gradient budget is per PT chain, all replicas together: ``budget``
    gradients buy ``(budget / num_replicas - 1) / (num_leapfrog + 1)``
    iterations, half of them warmup.  Chains start from uniform draws in the box
    around the modes, as NUTS and AIES do.
    """
    from numpyro.infer.hmc import hmc

    dim = target.dim
    num_replicas = num_replicas or pt_num_replicas(dim)
    per_iteration = num_leapfrog + 1
    num_iters = max(4, int((budget / num_replicas - 1) // per_iteration))
    num_warmup = num_iters // 2
    betas = jnp.asarray(np.concatenate([[0.0], np.geomspace(PT_BETA_MIN, 1.0, num_replicas - 1)]),
                        dtype=jnp.float32)
    inv_var = jnp.asarray(1.0 / (np.abs(target.means).max(0) + 3.0) ** 2, dtype=jnp.float32)

    def ref_potential(x):  # -log rho up to a constant
        return 0.5 * jnp.sum(inv_var * x**2)

    def log_ratio(x):  # log pi - log rho: the tempered part
        return -target.potential(x) + ref_potential(x)

    def potential_at(beta):
        return lambda x: ref_potential(x) - beta * log_ratio(x)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_at, algo="HMC")
    ratio_and_grad = jax.vmap(jax.value_and_grad(log_ratio))
    pairs = jnp.arange(num_replicas - 1)

    def one_chain(key, z0):
        key_init, key_swap = random.split(key)

        def init(z, beta, k):
            # trajectory_length=None: num_steps fixed, step size adapted (not L / num_steps)
            return init_kernel(z, num_warmup, num_steps=num_leapfrog, trajectory_length=None,
                               adapt_mass_matrix=adapt_mass_matrix, model_args=(beta,), rng_key=k)

        states = jax.vmap(init)(z0, betas, random.split(key_init, num_replicas))

        def step(states, inputs):
            t, k = inputs
            states = jax.vmap(lambda st, b: sample_kernel(st, model_args=(b,)))(states, betas)
            ell, ell_grad = ratio_and_grad(states.z)
            # accept the swap of replicas r and r + 1 with prob
            # min(1, exp((beta_{r+1} - beta_r) (ell_r - ell_{r+1})))
            log_acc = (betas[1:] - betas[:-1]) * (ell[:-1] - ell[1:])
            active = pairs % 2 == t % 2
            log_u = jnp.log(random.uniform(k, (num_replicas - 1,)))
            swap = active & (log_u < log_acc)
            up = jnp.concatenate([swap, jnp.zeros(1, bool)])
            down = jnp.concatenate([jnp.zeros(1, bool), swap])
            perm = jnp.arange(num_replicas) + up.astype(int) - down.astype(int)
            z, ell, ell_grad = states.z[perm], ell[perm], ell_grad[perm]
            # the position's energy and gradient at its new temperature, exactly
            states = states._replace(
                z=z, potential_energy=ref_potential_batch(z) - betas * ell,
                z_grad=inv_var * z - betas[:, None] * ell_grad)
            acc_prob = jnp.where(active, jnp.minimum(1.0, jnp.exp(log_acc)), jnp.nan)
            return states, (z[-1], acc_prob)

        ts = jnp.arange(num_iters)
        states, (draws, acc) = jax.lax.scan(step, states, (ts, random.split(key_swap, num_iters)))
        return (draws[num_warmup:], jnp.nanmean(acc[num_warmup:], axis=0),
                states.adapt_state.step_size, jnp.mean(states.mean_accept_prob))

    def ref_potential_batch(z):
        return 0.5 * jnp.sum(inv_var * z**2, axis=-1)

    key_init, key_run = random.split(key)
    z0 = _uniform_init(target, key_init, num_chains * num_replicas).reshape(
        num_chains, num_replicas, dim)
    draws, swap_acc, step_size, accept = jax.jit(jax.vmap(one_chain))(
        random.split(key_run, num_chains), z0)
    jax.block_until_ready(draws)
    grads = float(num_replicas * (1 + num_iters * per_iteration))
    return {"draws": np.asarray(draws), "grads_per_chain": grads, "grads_total": grads * num_chains,
            "pt": {"num_replicas": num_replicas, "num_leapfrog": num_leapfrog,
                   "num_iterations": num_iters, "num_warmup": num_warmup,
                   "num_samples": num_iters - num_warmup,
                   "betas": np.asarray(betas).round(5).tolist(),
                   "swap_accept_by_pair": np.asarray(swap_acc).mean(0).round(4).tolist(),
                   "step_size_by_replica": np.median(np.asarray(step_size), 0).round(5).tolist(),
                   "hmc_accept_prob": float(np.mean(accept))}}


# ----------------------------------------------------------------------------- label switching


def label_switching(key: jax.Array, *, num_chains: int, num_warmup: int, num_samples: int,
                    ensemble: bool) -> dict:
    """K = 3 Bayesian Gaussian mixture (exchangeable priors): fraction of draws per labelling."""
    from numpyro_dilation import DilationLangevin
    from numpyro_dilation.workflow.examples import get_example

    example = get_example("gaussian_mixture")
    args, kwargs = example.data()
    mcmc = _mcmc(DilationLangevin(example.model, ensemble=ensemble), num_warmup,
                 num_samples, num_chains)

    def go():
        mcmc.run(key, *args, extra_fields=("num_grad_evals",), **kwargs)
        mu = np.asarray(mcmc.get_samples()["mu"])
        # labelling = order of the component means, as workflow.examples.gaussian_mixture_mode
        order = np.argsort(mu, axis=-1)
        codes = order[:, 0] * 9 + order[:, 1] * 3 + order[:, 2]
        perms = [(a, b, c) for a in range(3) for b in range(3) for c in range(3)
                 if len({a, b, c}) == 3]
        frac = {"<".join(f"mu{k}" for k in p): float(np.mean(codes == p[0] * 9 + p[1] * 3 + p[2]))
                for p in perms}
        grads = np.asarray(mcmc.get_extra_fields()["num_grad_evals"]).reshape(num_chains, -1)[:, -1]
        return {"fractions": frac, "max_abs_error": max(abs(v - 1 / 6) for v in frac.values()),
                "grads_per_chain": float(grads.mean())}

    return timed(go)


# ----------------------------------------------------------------------------- suite


def _main_samplers(s: dict) -> dict[str, Callable]:
    nc = s["num_chains"]
    common = {"num_chains": nc, "num_warmup": s["num_warmup"], "num_samples": s["num_samples"]}
    return {
        "dilation": lambda t, k: run_dilation(t, k, **common),
        "dilation_ensemble": lambda t, k: run_dilation(t, k, ensemble=True, **common),
        "nuts": lambda t, k: run_nuts(t, k, num_chains=nc, num_warmup=s["nuts_warmup"],
                                      budget=s["budget"]),
        "aies": lambda t, k: run_aies(t, k, num_chains=nc, budget=s["budget"]),
        "smc": lambda t, k: run_smc(t, k, num_particles=s["smc_particles"], num_chains=nc,
                                    budget=s["budget"]),
        # no path: one annealing step from t_min = 0.99 (num_anneal_steps must be >= 1)
        "mala_no_path": lambda t, k: run_dilation(t, k, num_anneal_steps=1, t_min=0.99, **common),
        "pt": lambda t, k: run_pt(t, k, num_chains=nc, budget=s["budget"]),
        # the issue's "same gradient budget": PT given the ensemble's gradients per chain on
        # the same target (the loop in :func:`run` sets it, after the ensemble has run)
        "pt_matched": lambda t, k, budget: run_pt(t, k, num_chains=nc, budget=budget),
    }


SAMPLER_LABELS = {
    "dilation": "DilationLangevin (defaults)",
    "dilation_ensemble": "DilationLangevin ensemble=True",
    "nuts": "NUTS (random inits)",
    "aies": "AIES (DE + stretch)",
    "smc": "BlackJAX tempered SMC (MALA)",
    "mala_no_path": "no path: the stationary kernel from the origin (ablation)",
    "pt": "parallel tempering (HMC per temperature)",
    "pt_matched": "parallel tempering, the ensemble's gradient budget",
    "exact": "exact draws (floor)",
}

#: (alpha, annealing steps) of the ablation: a star around the defaults (0.75, 500),
#: which are the main run; the full 3 x 3 grid would cost twice as long.
ABLATION = ((0.5, 500), (1.0, 500), (0.75, 100), (0.75, 2000))
ABLATION_TARGETS = ("gauss2d_4", "gauss8d_4")
#: MALA iterations after the annealing in the ablation (warmup = annealing + this).
ABLATION_ADAPT = 500


def run(quick: bool = False, only_targets: list[str] | None = None,
        only_samplers: list[str] | None = None) -> dict:
    """Run the suite.

    Parameters
    ----------
    quick : bool, default False
        Tiny version (16 chains, 80 iterations, the 2-D 4-mode target with
        the samplers of :data:`QUICK_SAMPLERS`; no ablation or label switching)
        that finishes in well under a minute.
    only_targets, only_samplers : list of str, optional
        Run only these targets (names of :func:`targets`) and main samplers
        (keys of :data:`SAMPLER_LABELS`), in the full configuration unless
        ``quick``; the ablation and label-switching runs are left out.  The
        result is marked ``"subset": true``.

    Returns
    -------
    dict
        ``{"suite": "multimodal", "settings": {...}, "runs": [...]}``; each run
        has ``target``, ``sampler``, ``group`` (``"main"``, ``"ablation"``,
        ``"label_switching"``), the metrics of :func:`score` and the cost fields.
    """
    jax.config.update("jax_enable_x64", False)
    s = dict(QUICK) if quick else {"num_chains": NUM_CHAINS, "num_warmup": NUM_WARMUP,
                                   "num_samples": NUM_SAMPLES, "budget": BUDGET,
                                   "nuts_warmup": NUTS_WARMUP, "smc_particles": SMC_PARTICLES}
    all_targets = targets()
    samplers = _main_samplers(s)
    subset = only_targets is not None or only_samplers is not None
    for name in only_targets or ():
        if name not in all_targets:
            raise ValueError(f"only_targets: unknown target {name!r}; valid: {sorted(all_targets)}")
    for name in only_samplers or ():
        if name not in samplers:
            raise ValueError(f"only_samplers: unknown sampler {name!r}; valid: {sorted(samplers)}")
    if quick and not subset:
        plan = {"gauss2d_4": list(QUICK_SAMPLERS)}
    else:
        # d > 16 last (their ensemble runs are the longest; the partial file keeps the rest)
        order = sorted(only_targets or all_targets, key=lambda n: all_targets[n].dim > 16)
        plan = {name: list(only_samplers or samplers) for name in order}
        if "gauss32d_4" in plan and "dilation_ensemble" in plan["gauss32d_4"]:
            plan["gauss32d_4"] = [n for n in plan["gauss32d_4"] if n != "dilation_ensemble"]
            plan["gauss32d_4"].append("dilation_ensemble")
    for names in plan.values():  # PT at the ensemble's budget needs the ensemble's run first
        if "pt_matched" in names:
            names.remove("pt_matched")
            names.append("pt_matched")
    runs: list[dict] = []
    key = random.PRNGKey(2024)
    settings = {
        **s,
        "targets": {t.name: {"label": t.label, "dim": t.dim, "weights": t.weights.tolist(),
                             "means": t.means[:, :2].tolist(), "df": t.df}
                    for t in all_targets.values() if t.name in plan},
        "energy_draws": ENERGY_DRAWS, "found_fraction": FOUND_FRACTION,
        "smc_mcmc_steps": SMC_MCMC_STEPS, "ablation_adapt": ABLATION_ADAPT,
        "pt_leapfrog": PT_LEAPFROG, "pt_beta_min": PT_BETA_MIN, "pt_min_replicas": PT_MIN_REPLICAS,
    }
    partial_path = PARTIAL.with_name("multimodal.subset.partial.json") if subset else PARTIAL

    def checkpoint():
        # a long run on a busy machine can be cut short: keep what is done so far
        if not quick:
            partial_path.write_text(json.dumps({"suite": "multimodal", "settings": settings,
                                                "runs": runs, "partial": True, "subset": subset},
                                               indent=1))

    def record(target, ref, name, group, out, **extra):
        draws = out.pop("draws")
        row = {"target": target.name, "sampler": name, "group": group, **extra,
               **score(target, ref, draws), **out}
        runs.append(row)
        steps = row.get("step_size")
        spread = (f" h min/median={steps['min']:.2g}/{steps['median']:.2g}" if steps else "")
        print(f"  {target.name:14s} {name:28s} TV={row['tv']:.3f} found={row['modes_found']:.2f}"
              f" cov={row['coverage']:.3f} ED={row['energy_distance']:.3f}"
              f" far={row['far_fraction']:.3f}"
              f" grads/chain={row['grads_per_chain']:.0f} sample={row['sample_s']:.1f}s"
              f" compile={row['compile_s']:.1f}s{spread}", flush=True)

    for tname, names in plan.items():
        target = all_targets[tname]
        ref = reference(target, s["num_chains"] * s["num_samples"])
        runs.append({"target": tname, "sampler": "exact", "group": "main", "tv": ref.tv_floor,
                     "modes_found": 1.0, "mode_fractions": ref.region_mass.round(5).tolist(),
                     "coverage": entropic_coverage(ref.region_mass),
                     "far_fraction": 1.0 - FAR_QUANTILE, "energy_distance": ref.energy_floor})
        for name in names:
            key, sub = random.split(key)
            if name == "pt_matched":
                ensemble = next((r for r in runs if r["target"] == tname
                                 and r["sampler"] == "dilation_ensemble"), None)
                if ensemble is None:  # nothing to match
                    continue
                budget = round(ensemble["grads_per_chain"])
                record(target, ref, name, "main",
                       timed(lambda t=target, k=sub, b=budget: samplers["pt_matched"](t, k, b)),
                       budget=budget)
            else:
                record(target, ref, name, "main",
                       timed(lambda n=name, t=target, k=sub: samplers[n](t, k)))
            checkpoint()

    if not quick and not subset:
        for ensemble in (False, True):
            key, sub = random.split(key)
            out = label_switching(sub, num_chains=s["num_chains"], num_warmup=s["num_warmup"],
                                  num_samples=s["num_samples"], ensemble=ensemble)
            name = "dilation_ensemble" if ensemble else "dilation"
            runs.append({"target": "gmm_label_switching", "sampler": name,
                         "group": "label_switching", **out})
            print(f"  label switching {name}: max |frac - 1/6| = {out['max_abs_error']:.3f}"
                  f" ({out['sample_s']:.1f}s)", flush=True)
            checkpoint()

    for tname in () if quick or subset else ABLATION_TARGETS:
        target = all_targets[tname]
        ref = reference(target, s["num_chains"] * s["num_samples"])
        for alpha, anneal in ABLATION:
            key, sub = random.split(key)
            out = timed(lambda target=target, sub=sub, anneal=anneal, alpha=alpha: run_dilation(
                target, sub, num_chains=s["num_chains"], num_warmup=anneal + ABLATION_ADAPT,
                num_samples=s["num_samples"], alpha=alpha, num_anneal_steps=anneal))
            record(target, ref, f"alpha={alpha:g}, anneal={anneal}", "ablation", out,
                   alpha=alpha, num_anneal_steps=anneal)
            checkpoint()
    out = {"suite": "multimodal", "settings": settings, "runs": runs}
    if subset:
        out["subset"] = True
    return out


# ----------------------------------------------------------------------------- report


MAIN_ORDER = ("dilation_ensemble", "dilation", "pt_matched", "pt", "nuts", "aies", "smc", "mala_no_path", "exact")


def _tv_target(name: str, dim: int) -> float | None:
    """The issues' TV target for ``ensemble=True``, ``None`` where there is none.

    Issue 5: 0.05 for d <= 16, 0.10 at d = 32 and for the 4-mode Student-t
    mixture.  Issue 13: 0.05 on the heavy-tailed 3-mode mixtures and on the
    d = 64 mixture; the 40-mode target is judged against parallel tempering only.
    """
    if name.startswith("gmm40"):
        return None
    if name == "gauss64d_4" or (name.startswith("student") and "_3_" in name):
        return TV_TARGET_LOW_DIM
    return TV_TARGET_HARD if dim > 16 or name.startswith("student") else TV_TARGET_LOW_DIM


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def _cost(r: dict) -> tuple[str, str]:
    if r["sampler"] == "aies":
        return f"{r['density_evals_per_chain']:.0f} dens.", f"{r['density_evals_total']:.3g} dens."
    if r["sampler"] == "exact":
        return "–", "–"
    return f"{r['grads_per_chain']:.0f}", f"{r['grads_total']:.3g}"


def report(result: dict, figure_dir: Path) -> str:
    """Markdown section for ``docs/benchmarks.md``.

    Parameters
    ----------
    result : dict
        The output of :func:`run` (as stored in ``benchmarks/results/multimodal.json``).
    figure_dir : pathlib.Path
        Where the PNG figures go (``docs/benchmarks``); the markdown links them
        as ``benchmarks/<file>.png``, relative to ``docs/``.

    Returns
    -------
    str
        The section, starting with a level-2 heading.
    """
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    s = result["settings"]
    runs = result["runs"]
    main = [r for r in runs if r["group"] == "main"]
    tnames = list(dict.fromkeys(r["target"] for r in main))
    tinfo = s["targets"]
    by = {(r["target"], r["sampler"]): r for r in main}
    quick = s["num_chains"] < NUM_CHAINS
    out = ["## Multimodal: mode weights on mixtures with known weights", ""]
    if quick:
        out += ["*Quick run (tiny settings): the numbers below only show the suite works.*", ""]
    if result.get("subset"):
        out += ["*Subset run: only some targets and samplers; no ablation or label switching.*", ""]
    if result.get("partial"):
        missing = [t for t in tnames if (t, "dilation_ensemble") not in by]
        out += ["**Partial results: the full run was cut short** (it hung inside XLA; see the"
                " comment in `run_dilation`).  Missing: the ensemble run on "
                + (", ".join(f"`{t}`" for t in missing) or "no target")
                + ("" if any(r["group"] == "label_switching" for r in runs)
                   else "; the label-switching runs")
                + ("" if any(r["group"] == "ablation" for r in runs) else "; the ablation")
                + ".", ""]
    out += [
        (f"{s['num_chains']} chains per sampler (vectorised), on the targets below; every"
        " DilationLangevin chain starts at the origin (the dilation centre), NUTS and AIES"
        " from uniform draws in a box 3 units beyond the modes.  DilationLangevin runs its"
        f" defaults, {s['num_warmup']} warmup + {s['num_samples']} draws, and spends what it"
        f" spends; NUTS, AIES and SMC are given a budget of {s['budget']} evaluations per chain"
        f" (NUTS: {s['nuts_warmup']} warmup iterations, then as many draws as the gradient"
        " budget allows at its measured tree size; AIES: the same number of *density*"
        " evaluations, half warmup, no gradients; SMC: "
        f"{s['smc_particles']} particles with as many MALA steps per tempering step as fill"
        f" {s['budget']} x {s['num_chains']} gradients, set by an uncounted pilot run)."),
        "",
    ]
    if any(r["sampler"] == "pt" for r in main):
        out += [
        (f"Parallel tempering (PT) gets the same {s['budget']} gradients per chain, all its"
        " replicas together: each chain is max(8, ceil(2 sqrt(d))) replicas on the path"
        " from a broad Gaussian reference (the SMC prior) to the target, inverse temperatures"
        f" 0 and geometric in [{s.get('pt_beta_min', PT_BETA_MIN):g}, 1], one HMC transition of"
        f" {s.get('pt_leapfrog', PT_LEAPFROG)} leapfrog steps per replica (NumPyro's functional"
        " `hmc` kernel, step size and diagonal mass matrix adapted per temperature) and one round"
        " of neighbour swaps (even-odd) per iteration, one more gradient per replica and"
        " iteration for the swaps; half the iterations are warmup, the draws are the"
        " target replica's.  Neither TensorFlow Probability's `ReplicaExchangeMC` (0.25.0"
        " does not import with jax 0.10) nor BlackJAX 1.7 (no replica exchange) was"
        " available, hence this small implementation in the suite.  DilationLangevin spends"
        " more than the suite's budget with its HMC default, so a second PT run"
        " (*parallel tempering, the ensemble's gradient budget*) gets the ensemble's own"
        " gradients per chain on each target: the comparison at equal cost."),
        "",
        ]
    out += [
        ("- **TV**: total variation between the fraction of draws in each mode (the component"
        " of highest log density, weights left out) and the true mass of that region (10^6"
        " exact draws).  The *exact* row is the TV of as many independent exact draws: the"
        " Monte Carlo floor for a perfect sampler."),
        (f"- **modes found**: fraction of modes holding at least {s['found_fraction']:.0%} of the"
        " draws (every mode holds at least 2% of the mass)."),
        ("- **coverage**: entropic mode coverage, the entropy of the mode fractions over"
        " log(number of modes); the *exact* row is the truth's (1 for equal weights)."),
        ("- **far draws**: fraction of the draws farther from every mode than all but 0.1% of"
        " the exact draws (0.001 for a perfect sampler): chains lost in the tails, where the"
        " mode assignment, and so the TV, says little."),
        (f"- **energy distance** between {s['energy_draws']} draws taken at random over chains and"
        f" iterations and {s['energy_draws']} exact draws; the *exact* row is its floor (two"
        " exact samples)."),
        ("- **grads/chain**: gradient evaluations per chain, warmup included (SMC: total / "
        f"{s['num_chains']}); AIES counts density evaluations.  Times: sampling wall seconds"
        " with compilation excluded, and compile seconds apart (JAX's compile events), from"
        " one run each (no repeats: the suite would not fit in its time budget)."),
        ("- **chains changing mode**: fraction of chains whose draws visit more than one mode"
         " (not defined for SMC's particles)."),
        "",
        "| target | d | modes |",
        "|---|---|---|",
    ]
    for t in tnames:
        info = tinfo[t]
        out.append(f"| `{t}` | {info['dim']} | {info['label']} |")
    out += ["", "### Headline", "",
            ("| target | sampler | TV | modes found | coverage | energy dist. | far draws"
             " | chains changing mode | grads/chain | grads total | sampling s | compile s |"),
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tnames:
        for name in MAIN_ORDER:
            r = by.get((t, name))
            if r is None:
                continue
            per, tot = _cost(r)
            out.append(
                f"| `{t}` | {SAMPLER_LABELS[name]} | {_fmt(r['tv'])} | {_fmt(r['modes_found'], '.2f')}"
                f" | {_fmt(r.get('coverage'))}"
                f" | {_fmt(r['energy_distance'])} | {_fmt(r.get('far_fraction'), '.4f')}"
                f" | {_fmt(r.get('chains_switching'), '.2f')}"
                f" | {per} | {tot} | {_fmt(r.get('sample_s'), '.1f')}"
                f" | {_fmt(r.get('compile_s'), '.1f')} |")
    fig = _figure_tv(main, tnames, figure_dir)
    out += ["", f"![TV by sampler and target](benchmarks/{fig})", ""]

    ens = [by[(t, "dilation_ensemble")] for t in tnames if (t, "dilation_ensemble") in by]
    if ens:
        out += ["### Ensemble moves", "",
                ("Cumulative over warmup and sampling; acceptance and final move probabilities"
                " of (DE, translate, independence)."), "",
                ("| target | mode jumps / chain | acceptance by move | move probs | population prob"
                " | clusters |"), "|---|---|---|---|---|---|"]
        for r in ens:
            e = r["ensemble"]
            out.append(
                f"| `{r['target']}` | {e['mode_jumps_per_chain']:.1f} | "
                + ", ".join(f"{a:.3f}" for a in e["accept_rate_by_move"]) + " | "
                + ", ".join(f"{a:.2f}" for a in e["move_probs"])
                + f" | {e['population_prob']:.2f} | {e['num_clusters']} |")
        out.append("")

    out += _step_size_section(main)
    out += _pt_section(main)
    out += _targets_section(by, tnames, tinfo, runs)

    abl = [r for r in runs if r["group"] == "ablation"]
    if abl:
        fig = _figure_ablation(abl, by, figure_dir)
        out += ["### Ablation: the path's alpha and length", "",
                (f"Non-ensemble kernel; warmup = annealing + {s['ablation_adapt']} MALA iterations"
                f" (the defaults, alpha 0.75 and {s['num_warmup'] // 2} annealing steps, are the"
                f" main run), {s['num_samples']} draws."), "",
                ("| target | alpha | annealing steps | TV | modes found | energy dist. | grads/chain"
                 " | sampling s | compile s |"),
                "|---|---|---|---|---|---|---|---|---|"]
        rows = abl + [dict(by[(t, "dilation")], alpha=0.75, num_anneal_steps=s["num_warmup"] // 2)
                      for t in dict.fromkeys(r["target"] for r in abl) if (t, "dilation") in by]
        rows += [dict(by[(t, "mala_no_path")], alpha=float("nan"), num_anneal_steps=0)
                 for t in dict.fromkeys(r["target"] for r in abl) if (t, "mala_no_path") in by]
        rows.sort(key=lambda r: (r["target"], -1 if r["num_anneal_steps"] == 0 else r["alpha"],
                                 r["num_anneal_steps"]))
        for r in rows:
            alpha = "no path" if r["num_anneal_steps"] == 0 else f"{r['alpha']:g}"
            out.append(f"| `{r['target']}` | {alpha} | {r['num_anneal_steps']} | {_fmt(r['tv'])}"
                       f" | {_fmt(r['modes_found'], '.2f')} | {_fmt(r['energy_distance'])}"
                       f" | {r['grads_per_chain']:.0f} | {_fmt(r.get('sample_s'), '.1f')}"
                       f" | {_fmt(r.get('compile_s'), '.1f')} |")
        out += ["", f"![Ablation](benchmarks/{fig})", ""]

    fig = _figure_fractions(main, tnames, tinfo, figure_dir)
    out += [f"![Mode fractions against the truth](benchmarks/{fig})", ""]
    out += _observations(by, tnames, abl)
    return "\n".join(out)


def _step_size_section(main: list[dict]) -> list[str]:
    """Spread of DilationLangevin's adapted step sizes across chains."""
    rows = [r for r in main if r.get("step_size")]
    if not rows:
        return []
    out = ["### Adapted step sizes across chains", "",
           ("DilationLangevin's final adapted step size (`mcmc.last_state.adapt_state.step_size`),"
            " over chains; a chain below 1e-3 of the median has stopped moving."), "",
           "| target | sampler | min | median | max | min / median | chains < 1e-3 median |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r["step_size"]
        out.append(f"| `{r['target']}` | {SAMPLER_LABELS[r['sampler']]} | {h['min']:.2g}"
                   f" | {h['median']:.2g} | {h['max']:.2g} | {h['min_over_median']:.2g}"
                   f" | {h['frac_below_1e-3_median']:.1%} |")
    return out + [""]


def _pt_section(main: list[dict]) -> list[str]:
    """Parallel tempering's ladder, swap and HMC acceptance per target."""
    rows = [r for r in main if r["sampler"] in ("pt", "pt_matched")]
    if not rows:
        return []
    out = ["### Parallel tempering", "",
           ("Swap acceptance of each neighbouring pair (hottest first) and mean HMC acceptance,"
            " over the sampling half."), "",
           ("| target | grads/chain | replicas | iterations (warmup + draws) |"
            " swap acceptance by pair | HMC acceptance |"),
           "|---|---|---|---|---|---|"]
    for r in rows:
        p = r["pt"]
        out.append(f"| `{r['target']}` | {r['grads_per_chain']:.0f} | {p['num_replicas']} |"
                   f" {p['num_warmup']} +"
                   f" {p['num_samples']} | " + ", ".join(f"{a:.2f}" for a in p["swap_accept_by_pair"])
                   + f" | {p['hmc_accept_prob']:.2f} |")
    return out + [""]


def _targets_section(by: dict, tnames: list[str], tinfo: dict, runs: list[dict]) -> list[str]:
    """Issue 5's and issue 13's targets, measured; misses say by how much."""
    out = ["### Issue 5 and 13 targets (ensemble mode), measured", "",
           "| target | requirement | measured | met |", "|---|---|---|---|"]
    misses = []

    def row(t, req, measured, ok, miss):
        out.append(f"| `{t}` | {req} | {measured} | {'yes' if ok else '**no**'} |")
        if not ok:
            misses.append(f"`{t}`: {req}, missed by {miss}")

    for t in tnames:
        e = by.get((t, "dilation_ensemble"))
        if e is None:
            continue
        dim = tinfo[t]["dim"]
        goal = _tv_target(t, dim)
        if goal is not None:
            row(t, f"TV <= {goal:.2f}", f"{e['tv']:.3f}", e["tv"] <= goal, f"{e['tv'] - goal:.3f}")
        for key, budget in (("pt_matched", "at the ensemble's"), ("pt", "at the suite's")):
            p = by.get((t, key))
            if p is not None:
                row(t, f"TV at or below PT's {budget} grads/chain",
                    f"{e['tv']:.3f} vs {p['tv']:.3f} ({e['grads_per_chain']:.0f} vs"
                    f" {p['grads_per_chain']:.0f} grads/chain)", e["tv"] <= p["tv"],
                    f"{e['tv'] - p['tv']:.3f}")
        h = e.get("step_size")
        if h is not None and t.startswith("student") and tinfo[t].get("df") is not None \
                and len(tinfo[t]["weights"]) == 3:
            row(t, "no step size below 1e-3 of the median", f"min / median {h['min_over_median']:.2g}",
                h["min_over_median"] >= 1e-3, f"{h['frac_below_1e-3_median']:.1%} of the chains")
        a = by.get((t, "aies"))
        if a is not None:
            if dim >= 8:
                row(t, "TV below AIES's", f"{e['tv']:.3f} vs {a['tv']:.3f}", e["tv"] < a["tv"],
                    f"{e['tv'] - a['tv']:.3f}")
            else:
                row(t, "TV not above AIES's", f"{e['tv']:.3f} vs {a['tv']:.3f}", e["tv"] <= a["tv"],
                    f"{e['tv'] - a['tv']:.3f}")
        n = by.get((t, "nuts"))
        if n is not None:
            row(t, "grads/chain <= NUTS's", f"{e['grads_per_chain']:.0f} vs {n['grads_per_chain']:.0f}",
                e["grads_per_chain"] <= n["grads_per_chain"],
                f"{e['grads_per_chain'] - n['grads_per_chain']:.0f} gradients per chain")
    label = [r for r in runs if r["group"] == "label_switching"]
    for r in label:
        err = r["max_abs_error"]
        row("gmm_label_switching", f"{SAMPLER_LABELS[r['sampler']]}: every labelling 1/6 ± {LABEL_TARGET_TOL}",
            f"max abs. error {err:.3f}", err <= LABEL_TARGET_TOL, f"{err - LABEL_TARGET_TOL:.3f}")
    out.append("")
    if label:
        perms = list(label[0]["fractions"])
        out += [("Label switching: K = 3 Bayesian Gaussian mixture (`numpyro_dilation.workflow."
                "examples.gaussian_mixture_model`, exchangeable priors, 120 points); fraction of draws in"
                " each of the 3! = 6 labellings (order of the component means; truth 1/6 = 0.167)."),
                "", "| sampler | " + " | ".join(f"`{p}`" for p in perms) + " | max abs. error | grads/chain"
                " | sampling s |", "|---|" + "---|" * (len(perms) + 3)]
        for r in label:
            out.append(f"| {SAMPLER_LABELS[r['sampler']]} | "
                       + " | ".join(f"{r['fractions'][p]:.3f}" for p in perms)
                       + f" | {r['max_abs_error']:.3f} | {r['grads_per_chain']:.0f} | {r['sample_s']:.1f} |")
        out.append("")
    if misses:
        out += ["Missed: " + "; ".join(misses) + ".", ""]
    else:
        out += ["Every target above is met.", ""]
    return out


def _observations(by: dict, tnames: list[str], abl: list[dict]) -> list[str]:
    """Closing notes computed from the figures (which sampler wins where, and the spread)."""
    out = ["### Reading the numbers", ""]
    samplers = [n for n in MAIN_ORDER if n != "exact"]
    for t in tnames:
        rows = [(by[(t, n)]["tv"], n) for n in samplers if (t, n) in by]
        if rows:
            best_tv, best = min(rows)
            out.append(f"- `{t}`: lowest TV {best_tv:.3f} ({SAMPLER_LABELS[best]}); "
                       + ", ".join(f"{SAMPLER_LABELS[n]} {v:.3f}" for v, n in rows if n != best)
                       + ".")
    for name in ("nuts", "dilation", "mala_no_path"):
        rows = [by[(t, name)] for t in tnames if (t, name) in by]
        sw = [r["chains_switching"] for r in rows if r.get("chains_switching") is not None]
        if rows and sw:
            out.append(
                f"- {SAMPLER_LABELS[name]}: TV {min(r['tv'] for r in rows):.3f}-"
                f"{max(r['tv'] for r in rows):.3f}, and at most {max(sw):.0%} of its chains ever"
                " change mode during sampling: its mode fractions are fixed by where the chains"
                " settle during warmup, so more draws cannot correct them.")
    for t in dict.fromkeys(r["target"] for r in abl):
        rows = [r for r in abl if r["target"] == t]
        worst = max(rows, key=lambda r: r["tv"])
        best = min(rows, key=lambda r: r["tv"])
        default = f"; defaults {by[(t, 'dilation')]['tv']:.3f}" if (t, "dilation") in by else ""
        out.append(f"- Ablation on `{t}`: TV from {best['tv']:.3f} (alpha {best['alpha']:g},"
                   f" {best['num_anneal_steps']} annealing steps) to {worst['tv']:.3f} (alpha"
                   f" {worst['alpha']:g}, {worst['num_anneal_steps']} steps){default}.")
    out.append("")
    return out


def _figure_tv(main: list[dict], tnames: list[str], figure_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in MAIN_ORDER if any(r["sampler"] == n for r in main)]
    fig, ax = plt.subplots(figsize=(max(9.0, 1.1 * len(tnames)), 3.8))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = [next((r["tv"] for r in main if r["target"] == t and r["sampler"] == name), np.nan)
                for t in tnames]
        ax.bar(np.arange(len(tnames)) + (j - (len(names) - 1) / 2) * width, np.maximum(vals, 1e-4),
               width, label=SAMPLER_LABELS[name])
    ax.axhline(TV_TARGET_LOW_DIM, color="k", lw=0.8, ls="--")
    ax.axhline(TV_TARGET_HARD, color="k", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(tnames)), tnames, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("mode-weight TV (log)")
    ax.set_title("Mode-weight TV (dashed: 0.05, dotted: 0.10 targets)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    name = "multimodal_tv.png"
    fig.savefig(figure_dir / name, dpi=110)
    plt.close(fig)
    return name


def _figure_ablation(abl: list[dict], by: dict, figure_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tnames = list(dict.fromkeys(r["target"] for r in abl))
    fig, axes = plt.subplots(1, len(tnames), figsize=(4.5 * len(tnames), 3.4), squeeze=False)
    for ax, t in zip(axes[0], tnames):
        rows = [r for r in abl if r["target"] == t]
        if (t, "dilation") in by:
            default = by[(t, "dilation")]
            rows.append({**default, "alpha": 0.75,
                         "num_anneal_steps": NUM_WARMUP // 2})
        for alpha in sorted({r["alpha"] for r in rows}):
            pts = sorted((r["num_anneal_steps"], r["tv"]) for r in rows if r["alpha"] == alpha)
            ax.plot(*zip(*pts), "o-", label=f"alpha = {alpha:g}")
        if (t, "mala_no_path") in by:
            ax.axhline(by[(t, "mala_no_path")]["tv"], color="gray", ls="--", label="no path")
        ax.set_xscale("log")
        ax.set_xlabel("annealing steps")
        ax.set_ylabel("TV")
        ax.set_title(t, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    name = "multimodal_ablation.png"
    fig.savefig(figure_dir / name, dpi=110)
    plt.close(fig)
    return name


def _figure_fractions(main: list[dict], tnames: list[str], tinfo: dict, figure_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in MAIN_ORDER if n != "exact" and any(r["sampler"] == n for r in main)]
    ncols = min(len(tnames), 5)
    nrows = -(-len(tnames) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(tnames):]:
        ax.axis("off")
    for ax, t in zip(axes.flat, tnames):
        truth = next(r["mode_fractions"] for r in main if r["target"] == t and r["sampler"] == "exact")
        k = np.arange(len(truth))
        ax.bar(k, truth, color="lightgray", label="truth")
        for j, name in enumerate(names):
            r = next((r for r in main if r["target"] == t and r["sampler"] == name), None)
            if r is not None:
                ax.plot(k + (j - len(names) / 2) * 0.08, r["mode_fractions"], "o", ms=3,
                        label=SAMPLER_LABELS[name])
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("mode")
    for row in axes:
        row[0].set_ylabel("fraction of draws")
    axes.flat[len(tnames) - 1].legend(fontsize=6)
    fig.tight_layout()
    name = "multimodal_fractions.png"
    fig.savefig(figure_dir / name, dpi=100)
    plt.close(fig)
    return name


def main(argv: list[str] | None = None) -> None:
    """Standalone run: ``python -m benchmarks.multimodal [--quick] [--targets ...] [--samplers ...]``.

    A full run writes ``results/multimodal.json`` (the suite's JSON without the
    metadata that ``python -m benchmarks.run multimodal`` adds), a quick one
    ``results/quick/multimodal.json``, a subset ``results/multimodal.subset.partial.json``
    (not committed).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.multimodal",
                                     description="Multimodal benchmark suite (standalone).")
    parser.add_argument("--quick", action="store_true", help="tiny settings (seconds)")
    parser.add_argument("--targets", nargs="+", metavar="TARGET", choices=sorted(targets()),
                        help="run only these targets (no ablation or label switching)")
    parser.add_argument("--samplers", nargs="+", metavar="SAMPLER",
                        choices=[n for n in SAMPLER_LABELS if n != "exact"],
                        help="run only these samplers")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    res = run(quick=args.quick, only_targets=args.targets, only_samplers=args.samplers)
    print(f"total {time.perf_counter() - t0:.1f}s")
    results = Path(__file__).resolve().parent / "results"
    if res.get("subset"):
        path = results / "multimodal.subset.partial.json"
    else:
        path = results / "quick" / "multimodal.json" if args.quick else results / "multimodal.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
