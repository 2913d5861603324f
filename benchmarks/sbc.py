"""Simulation-based calibration (SBC, Talts et al. 2018) of DilationLangevin.

For each replication a parameter vector is drawn from the prior and a data set
from the model given it; the sampler is run on that data set and the rank of
the true value of every scalar quantity among ``L`` roughly independent
posterior draws is recorded.  A calibrated sampler gives ranks uniform on
``0, ..., L`` (for *any* model), which is tested per quantity with a chi-square
test on ``B`` equal bins of ranks.

Draws are thinned to roughly independent ones with the bulk effective sample
size (:func:`arviz.ess`): each chain keeps every ``ceil(N / ESS)``-th draw and
``L`` draws are taken evenly from the pooled thinned draws.  When a quantity's
ESS is below ``L`` the chains are continued from their last state (NumPyro's
``post_warmup_state``) and the extended run is thinned instead, as Talts et al.
recommend, rather than ranking among autocorrelated draws (which biases the
ranks towards the extremes).

Each replication runs :class:`numpyro.infer.MCMC` (vectorised chains) inside
:func:`jax.jit`, the pattern NumPyro documents for running MCMC under a JAX
transform: the sampler is compiled once per model and every replication reuses
it.  Its draws are bitwise identical to an eager ``MCMC.run`` with the same key.

Run the full calibration (three models, ``--replications`` each, and the
deliberately biased unadjusted-Langevin variant, ``--biased-replications``
each) with::

    python -m benchmarks.sbc --out benchmarks/results/sbc.json

which writes the JSON results and one PNG rank-histogram figure per run next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, Predictive
from scipy import stats

from numpyro_dilation import DilationLangevin, SamplerHealthWarning

# ------------------------------------------------------------------ models

#: Known measurement scales of the hierarchical normal model (as in eight schools).
SCHOOL_SIGMA = np.array([1.0, 2.0, 1.5, 1.0, 2.5, 1.0, 1.5, 2.0])


def hierarchical_normal(sigma, y=None):
    """Eight-schools-like hierarchical normal model, non-centred.

    ``mu ~ N(0, 2)``, ``tau ~ HalfNormal(2)``, ``theta_j = mu + tau z_j`` with
    ``z_j ~ N(0, 1)``, and ``y_j ~ N(theta_j, sigma_j)``.
    """
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    tau = numpyro.sample("tau", dist.HalfNormal(2.0))
    with numpyro.plate("J", sigma.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * z)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def logistic_regression(X, y=None):
    """Logistic regression with an intercept: ``y_i ~ Bernoulli(logit^-1(a + X_i b))``.

    ``a ~ N(0, 1.5)``, ``b_k ~ N(0, 1)``.
    """
    a = numpyro.sample("a", dist.Normal(0.0, 1.5))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=a + X @ b), obs=y)


def constrained(counts=None, successes=None, categories=None, x=None, z=None):
    """Parameters on five kinds of constrained support, each with its own data.

    ``rate ~ Gamma(2, 1)`` (positive) with 5 Poisson counts; ``p ~ Beta(2, 2)``
    (unit interval) with a Binomial(10) count; ``w ~ Dirichlet(2, 2, 2)``
    (simplex) with a Multinomial(20) count vector; ``sigma ~ LogNormal(0, 0.5)``
    (positive, a scale) with 5 draws of ``N(0, sigma)``; ``u ~ Uniform(0, 3)``
    (bounded interval, with posterior mass near its bounds) with 3 draws of
    ``N(u, 1)``.
    """
    rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    w = numpyro.sample("w", dist.Dirichlet(jnp.full(3, 2.0)))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 0.5))
    u = numpyro.sample("u", dist.Uniform(0.0, 3.0))
    numpyro.sample("counts", dist.Poisson(rate).expand([5]).to_event(1), obs=counts)
    numpyro.sample("successes", dist.Binomial(10, p), obs=successes)
    numpyro.sample("categories", dist.Multinomial(20, w), obs=categories)
    numpyro.sample("x", dist.Normal(0.0, sigma).expand([5]).to_event(1), obs=x)
    numpyro.sample("z", dist.Normal(u, 1.0).expand([3]).to_event(1), obs=z)


@dataclass(frozen=True)
class SBCModel:
    """A model for SBC: its fixed arguments, observed sites and ranked quantities.

    Attributes
    ----------
    name : str
        Short name (used in file names).
    model : callable
        NumPyro model; observed sites take their data as keyword arguments
        named like the sites (``None`` samples them).
    fixed : dict
        Keyword arguments that stay the same in every replication (covariates).
    observed : tuple of str
        Names of the observed sites, drawn from the prior predictive.
    params : tuple of str
        Sites (latent or deterministic) whose scalar components are ranked.
    """

    name: str
    model: Callable
    fixed: dict = field(default_factory=dict)
    observed: tuple[str, ...] = ()
    params: tuple[str, ...] = ()


def _design(n: int = 40, k: int = 3, seed: int = 20240614) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)


MODELS: dict[str, SBCModel] = {
    "hierarchical_normal": SBCModel(
        "hierarchical_normal",
        hierarchical_normal,
        fixed={"sigma": jnp.asarray(SCHOOL_SIGMA, jnp.float32)},
        observed=("y",),
        params=("mu", "tau", "theta"),
    ),
    "logistic_regression": SBCModel(
        "logistic_regression",
        logistic_regression,
        fixed={"X": jnp.asarray(_design())},
        observed=("y",),
        params=("a", "b"),
    ),
    "constrained": SBCModel(
        "constrained",
        constrained,
        observed=("counts", "successes", "categories", "x", "z"),
        params=("rate", "p", "w", "sigma", "u"),
    ),
}


# ------------------------------------------------------------------ sampling


#: Step of the deliberately biased variant, in units of the adapted mass matrix.
BIASED_STEP_SIZE = 1.0


def unadjusted_langevin(step_size: float = BIASED_STEP_SIZE) -> Callable[[Callable], DilationLangevin]:
    """Factory of a deliberately biased sampler: unadjusted Langevin with a fixed step.

    The step is in the units of the adapted mass matrix (about the posterior's
    scale), where unadjusted Langevin inflates a Gaussian posterior's variance
    by ``1 / (1 - h / 2)`` (2 for ``h = 1``): SBC ranks pile up in the middle.
    The warmup (annealing, then MALA adapting the mass matrix) is unchanged.
    """

    def factory(model: Callable) -> DilationLangevin:
        return DilationLangevin(
            model, stationary="mala", adjust=False, step_size=step_size, adapt_step_size=False
        )

    factory.__name__ = f"unadjusted Langevin, step {step_size:g} (biased)"
    return factory


@dataclass(frozen=True)
class SamplerConfig:
    """Settings of the MCMC run of every replication."""

    num_warmup: int = 500
    num_samples: int = 1000
    num_chains: int = 4
    max_extensions: int = 4


def make_runner(spec: SBCModel, kernel_factory: Callable, config: SamplerConfig):
    """Compiled ``(run, extend)`` for one model and sampler.

    ``run(rng_key, observed)`` runs warmup and sampling; ``extend(state,
    observed)`` continues the chains from ``state`` for ``num_samples`` more
    draws, as ``mcmc.post_warmup_state = state; mcmc.run(state.rng_key)`` does.
    Both return ``(samples, diverging, last_state)`` with samples shaped
    ``(chains, draws, ...)``.  Each call builds a :class:`numpyro.infer.MCMC`
    inside :func:`jax.jit`, so the sampler compiles once for all replications.
    """

    def mcmc():
        return MCMC(
            kernel_factory(spec.model),
            num_warmup=config.num_warmup,
            num_samples=config.num_samples,
            num_chains=config.num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )

    def collect(sampler):
        samples = sampler.get_samples(group_by_chain=True)
        samples = {k: v for k, v in samples.items() if k in spec.params}
        diverging = sampler.get_extra_fields(group_by_chain=True)["diverging"]
        return samples, diverging, sampler.last_state

    def run(rng_key, observed):
        sampler = mcmc()
        sampler.run(rng_key, **spec.fixed, **observed)
        return collect(sampler)

    def extend(state, observed):
        sampler = mcmc()
        sampler.post_warmup_state = state
        sampler.run(state.rng_key, **spec.fixed, **observed)
        return collect(sampler)

    return jax.jit(run), jax.jit(extend)


def scalar_components(samples: dict[str, Any], params: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Split sites into scalar quantities: ``{"b[0]": (chains, draws), ...}``."""
    out = {}
    for name in params:
        x = np.asarray(samples[name], dtype=float)
        if x.ndim == 2:
            out[name] = x
        else:
            flat = x.reshape(x.shape[0], x.shape[1], -1)
            for j in range(flat.shape[-1]):
                out[f"{name}[{j}]"] = flat[..., j]
    return out


def thin(draws: np.ndarray, num_draws: int) -> np.ndarray | None:
    """``num_draws`` roughly independent draws of a (chains, draws) array, or None.

    Every chain keeps every ``ceil(N / ESS)``-th draw (``N`` the total number
    of draws, ``ESS`` the bulk effective sample size); ``num_draws`` draws are
    then taken evenly from the pooled thinned draws.  Returns None when the ESS
    is below ``num_draws`` (too few independent draws to rank among).
    """
    chains, n = draws.shape
    ess = float(az.ess(draws))
    if not np.isfinite(ess) or ess < num_draws:
        return None
    step = max(1, math.ceil(chains * n / ess))
    pooled = draws[:, ::step].reshape(-1)
    if pooled.size < num_draws:
        return None
    idx = np.linspace(0, pooled.size - 1, num_draws).round().astype(int)
    return pooled[idx]


def rank(true_value: float, draws: np.ndarray) -> int:
    """Number of draws below the true value (``0, ..., len(draws)``)."""
    return int(np.sum(draws < true_value))


@dataclass
class SBCResult:
    """Ranks of every scalar quantity over the replications, with run diagnostics."""

    model: str
    sampler: str
    num_ranks: int
    ranks: dict[str, list[int]]
    extensions: list[int]
    divergences: list[int]
    health_warnings: list[int]
    not_ranked: int
    seconds: float

    @property
    def num_ranked(self) -> int:
        """Replications whose ranks were recorded (ESS reached ``num_ranks``)."""
        return len(next(iter(self.ranks.values()), []))

    def test(self, num_bins: int) -> dict[str, dict[str, float]]:
        """Chi-square test of rank uniformity per quantity (see :func:`rank_uniformity`)."""
        return {k: rank_uniformity(v, self.num_ranks, num_bins) for k, v in self.ranks.items()}


def rank_uniformity(ranks, num_ranks: int, num_bins: int) -> dict[str, Any]:
    """Chi-square test that ranks in ``0..num_ranks`` are uniform, on ``num_bins`` equal bins.

    Parameters
    ----------
    ranks : sequence of int
        One rank per replication.
    num_ranks : int
        ``L``, the number of draws ranked among (ranks run from 0 to ``L``).
    num_bins : int
        Number of bins; must divide ``L + 1`` so that every bin holds as many
        rank values.

    Returns
    -------
    dict
        ``counts`` per bin, the chi-square ``statistic`` and its ``p_value``
        (:func:`scipy.stats.chisquare`, ``num_bins - 1`` degrees of freedom).
    """
    if (num_ranks + 1) % num_bins:
        raise ValueError(f"num_bins={num_bins} must divide num_ranks + 1 = {num_ranks + 1}.")
    ranks = np.asarray(ranks, dtype=int)
    counts = np.bincount(ranks * num_bins // (num_ranks + 1), minlength=num_bins)
    result = stats.chisquare(counts)
    return {
        "counts": counts.tolist(),
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
    }


def run_sbc(
    spec: SBCModel,
    kernel_factory: Callable = DilationLangevin,
    *,
    num_replications: int = 200,
    num_ranks: int = 99,
    config: SamplerConfig = SamplerConfig(),
    seed: int = 0,
    sampler_name: str | None = None,
) -> SBCResult:
    """Run SBC for one model and one sampler.

    Parameters
    ----------
    spec : SBCModel
        The model (see :data:`MODELS`).
    kernel_factory : callable
        ``model -> MCMCKernel``; :class:`DilationLangevin` with its defaults by default.
    num_replications : int
        Number of (prior draw, data set, posterior run) replications.
    num_ranks : int
        ``L``: the true value is ranked among ``L`` thinned draws.
    config : SamplerConfig
        Warmup, draws, chains, and how often a run may be extended.
    seed : int
        Seed of the prior draws and of the runs (replication ``r`` uses key
        ``fold_in(PRNGKey(seed), r)``).
    sampler_name : str, optional
        Label stored in the result.

    Returns
    -------
    SBCResult
        A replication whose ESS stays below ``L`` after ``max_extensions``
        extensions is left out of the ranks and counted in ``not_ranked``.
    """
    start = time.perf_counter()
    key_prior, key_runs = jax.random.split(jax.random.PRNGKey(seed))
    prior = Predictive(spec.model, num_samples=num_replications)(key_prior, **spec.fixed)
    run, extend = make_runner(spec, kernel_factory, config)

    ranks: dict[str, list[int]] = {}
    extensions, divergences, health, not_ranked = [], [], [], 0
    for r in range(num_replications):
        observed = {name: prior[name][r] for name in spec.observed}
        truth = scalar_components(
            {k: np.asarray(prior[k][r])[None, None] for k in spec.params}, spec.params
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplerHealthWarning)
            samples, diverging, state = run(jax.random.fold_in(key_runs, r), observed)
            parts, n_div = [samples], int(np.sum(diverging))
            for n_ext in range(config.max_extensions + 1):
                draws = scalar_components(
                    {k: np.concatenate([np.asarray(p[k]) for p in parts], axis=1) for k in samples},
                    spec.params,
                )
                thinned = {k: thin(v, num_ranks) for k, v in draws.items()}
                if all(v is not None for v in thinned.values()) or n_ext == config.max_extensions:
                    break
                samples, diverging, state = extend(state, observed)
                parts.append(samples)
                n_div += int(np.sum(diverging))
        extensions.append(n_ext)
        divergences.append(n_div)
        health.append(sum(issubclass(w.category, SamplerHealthWarning) for w in caught))
        if any(v is None for v in thinned.values()):
            not_ranked += 1
            continue
        for k, v in thinned.items():
            ranks.setdefault(k, []).append(rank(float(truth[k][0, 0]), v))
    return SBCResult(
        model=spec.name,
        sampler=sampler_name or getattr(kernel_factory, "__name__", str(kernel_factory)),
        num_ranks=num_ranks,
        ranks=ranks,
        extensions=extensions,
        divergences=divergences,
        health_warnings=health,
        not_ranked=not_ranked,
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------ report


def plot_ranks(result: SBCResult, num_bins: int, path: Path, level: float = 0.99) -> None:
    """Rank histograms, one panel per quantity, with the ``level`` binomial band.

    The grey band is where each bin's count falls with probability ``level``
    under uniform ranks (pointwise, :func:`scipy.stats.binom.interval`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = result.test(num_bins)
    names = list(tests)
    if not names:
        return  # no replication could be ranked: nothing to draw
    cols = min(5, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    n = result.num_ranked
    lo, hi = stats.binom.interval(level, n, 1.0 / num_bins)
    for ax, name in zip(axes.flat, names):
        ax.axhspan(lo, hi, color="0.85", zorder=0)
        ax.axhline(n / num_bins, color="0.5", lw=0.8, zorder=1)
        ax.bar(np.arange(num_bins), tests[name]["counts"], width=1.0, color="C0", edgecolor="white")
        ax.set_title(f"{name}  p={tests[name]['p_value']:.2g}", fontsize=9)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"SBC ranks: {result.model}, {result.sampler} ({n} replications, L={result.num_ranks},"
        f" {num_bins} bins; grey: {int(level * 100)}% band)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(result: SBCResult, num_bins: int) -> dict[str, Any]:
    """JSON-ready summary of one SBC run."""
    return {
        "model": result.model,
        "sampler": result.sampler,
        "replications_ranked": result.num_ranked,
        "not_ranked": result.not_ranked,
        "num_ranks": result.num_ranks,
        "num_bins": num_bins,
        "tests": result.test(num_bins),
        "extended_runs": int(np.sum(np.asarray(result.extensions) > 0)),
        "divergences_total": int(np.sum(result.divergences)),
        "replications_with_divergences": int(np.sum(np.asarray(result.divergences) > 0)),
        "replications_with_health_warnings": int(np.sum(np.asarray(result.health_warnings) > 0)),
        "seconds": round(result.seconds, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the full SBC and write JSON results and PNG figures (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sbc.json"))
    parser.add_argument("--replications", type=int, default=500)
    parser.add_argument(
        "--biased-replications",
        type=int,
        default=200,
        help="replications of the biased variant (whose stuck chains make each one slow)",
    )
    parser.add_argument("--num-ranks", type=int, default=99)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--biased-step", type=float, default=BIASED_STEP_SIZE)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = SamplerConfig()

    biased = unadjusted_langevin(args.biased_step)
    runs = [(name, DilationLangevin, "DilationLangevin", args.replications) for name in args.models]
    runs += [(name, biased, biased.__name__, args.biased_replications) for name in args.models]
    report: dict[str, Any] = {
        "config": {
            "replications": args.replications,
            "biased_replications": args.biased_replications,
            "num_ranks": args.num_ranks,
            "num_bins": args.bins,
            "seed": args.seed,
            "num_warmup": config.num_warmup,
            "num_samples": config.num_samples,
            "num_chains": config.num_chains,
            "max_extensions": config.max_extensions,
            "biased_step_size": args.biased_step,
            "chain_method": "vectorized",
            "numpyro": numpyro.__version__,
            "jax": jax.__version__,
            "python": platform.python_version(),
        },
        "runs": [],
    }
    all_ranks = []
    for name, factory, label, replications in runs:
        result = run_sbc(
            MODELS[name],
            factory,
            num_replications=replications,
            num_ranks=args.num_ranks,
            config=config,
            seed=args.seed,
            sampler_name=label,
        )
        summary = summarize(result, args.bins)
        tag = "dilation" if factory is DilationLangevin else "biased"
        figure = args.out.parent / f"sbc_{name}_{tag}.png"
        plot_ranks(result, args.bins, figure)
        summary["figure"] = figure.name if result.num_ranked else None
        report["runs"].append(summary)
        all_ranks.append({"model": name, "sampler": label, "ranks": result.ranks})
        worst = min((t["p_value"] for t in summary["tests"].values()), default=math.nan)
        print(
            f"{name:22s} {label:40s} min p = {worst:.3g}, ranked {result.num_ranked}"
            f" ({summary['seconds']} s)",
            flush=True,
        )
        # Written after every run, so that an interrupted benchmark keeps what it did.
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        # The raw ranks (to re-bin or draw ECDFs), compactly, beside the summary.
        ranks_path = args.out.with_name(args.out.stem + "_ranks.json")
        ranks_path.write_text(json.dumps(all_ranks, separators=(",", ":")) + "\n")
    return report


if __name__ == "__main__":
    main()
