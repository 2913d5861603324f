"""warmup_split suite: how much of ``num_warmup`` the annealing needs.

``DilationLangevin`` splits ``num_warmup`` into an annealing phase along the
dilation path (``num_anneal_steps``, half of warmup by default) and a
stationary phase that adapts the step size, the metric and the trajectory
length at ``t = 1``.  On a unimodal posterior the annealing only transports the
chains to the posterior, and every iteration it takes is one fewer for the
stationary adaptation; on a multimodal one the annealing is what weighs the
modes.  This suite measures both sides at NUTS's budget (1000 warmup + 1000
draws):

* unimodal hard targets of :mod:`benchmarks.geometry_targets` (:data:`UNIMODAL`),
  4 vectorised chains from ``init_to_uniform``, each fraction of warmup in
  :data:`FRACTIONS` and each seed in :data:`SEEDS`: the hard_geometry figures
  (pass, z, sd ratio, min bulk / tail ESS, ESS/s, ESS per 1000 gradients)
  and the ``SamplerHealthWarning`` messages the run gave;
* mixtures of :mod:`benchmarks.mixtures` (:data:`MULTIMODAL`), default
  kernel, :data:`MIXTURE_CHAINS` chains from the origin: the mode-weight TV
  (each chain stays in the mode the annealing left it in, so the TV measures
  the annealing alone).

JSON layout of :func:`run`: ``settings`` and ``runs``; a unimodal run holds
``kind = "unimodal"``, ``target``, ``fraction``, ``num_anneal_steps``,
``seed``, the figures of :func:`benchmarks.hard_geometry.figures` and
``warnings`` (messages, each cut to 160 characters); a mixture run holds
``kind = "multimodal"``, ``target``, ``fraction``, ``num_anneal_steps``,
``seed``, ``tv``, ``modes_found``, ``grads_per_chain``, ``compile_s`` and
``sample_s``.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import jax

from benchmarks import (
    geometry_samplers,
    geometry_targets,
    hard_geometry,
    mixture_samplers,
    mixtures,
    mode_metrics,
)

#: Fractions of ``num_warmup`` given to the annealing (0.5 is the default).
FRACTIONS = (0.1, 0.25, 0.5)
UNIMODAL = ("eight_schools_centered", "banana", "gaussian_100", "brownian_bridge", "lgcp")
MULTIMODAL = ("gauss8d_4", "student10d_3_df5")
SEEDS = (0, 1)
NUM_CHAINS = 4
MIXTURE_CHAINS = 64
NUM_WARMUP = 1000
NUM_SAMPLES = 1000
QUICK = {
    "unimodal": ("banana",),
    "multimodal": ("gauss8d_4",),
    "seeds": (0,),
    "num_warmup": 60,
    "num_samples": 40,
    "mixture_chains": 8,
}


def _settings(quick: bool) -> dict[str, Any]:
    return {
        "fractions": list(FRACTIONS),
        "unimodal": list(QUICK["unimodal"] if quick else UNIMODAL),
        "multimodal": list(QUICK["multimodal"] if quick else MULTIMODAL),
        "seeds": list(QUICK["seeds"] if quick else SEEDS),
        "num_chains": NUM_CHAINS,
        "mixture_chains": QUICK["mixture_chains"] if quick else MIXTURE_CHAINS,
        "num_warmup": QUICK["num_warmup"] if quick else NUM_WARMUP,
        "num_samples": QUICK["num_samples"] if quick else NUM_SAMPLES,
        "chain_method": "vectorized",
        "xla_flags": hard_geometry.XLA_FLAG,
    }


def unimodal_run(name: str, fraction: float, seed: int, s: dict) -> dict:
    """One 4-chain run on a hard_geometry target with ``fraction`` of warmup annealing."""
    from numpyro_dilation import DilationLangevin

    steps = round(fraction * s["num_warmup"])
    sample = geometry_samplers.numpyro_sampler(
        lambda m: DilationLangevin(m, num_anneal_steps=steps)
    )
    row = hard_geometry.measure(
        geometry_targets.TARGETS[name], "DilationLangevin", s["num_chains"], s, seed, sample=sample
    )
    return {
        "kind": "unimodal",
        "fraction": fraction,
        "num_anneal_steps": steps,
        "seed": seed,
        **row,
    }


def mixture_run(name: str, fraction: float, seed: int, s: dict) -> dict:
    """The default kernel on a mixture from the origin; TV of the mode weights."""
    target = mixtures.targets()[name]
    steps = round(fraction * s["num_warmup"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unmixed chains are what the default kernel gives here
        out = mixture_samplers.timed_with_compile(
            lambda: mixture_samplers.run_dilation(
                target,
                jax.random.PRNGKey(seed),
                num_chains=s["mixture_chains"],
                num_warmup=s["num_warmup"],
                num_samples=s["num_samples"],
                num_anneal_steps=steps,
            )
        )
    ref = mode_metrics.reference(target, mode_metrics.ENERGY_DRAWS)
    scored = mode_metrics.score(target, ref, out["draws"])  # (chains, draws, dim)
    return {
        "kind": "multimodal",
        "target": name,
        "fraction": fraction,
        "num_anneal_steps": steps,
        "seed": seed,
        "tv": scored["tv"],
        "modes_found": scored["modes_found"],
        "grads_per_chain": out["grads_per_chain"],
        "compile_s": out["compile_s"],
        "sample_s": out["sample_s"],
    }


def _line(row: dict) -> str:
    head = f"  {row['target']} f={row['fraction']} seed {row['seed']}:"
    if row["kind"] == "multimodal":
        return f"{head} tv {row['tv']:.3f} modes {row['modes_found']}"
    return (
        f"{head} pass {row['pass']} z {row['max_z']:.3f} sd [{row['sd_ratio_min']:.2f},"
        f" {row['sd_ratio_max']:.2f}] ess {row['ess_bulk']:.0f}/{row['ess_tail']:.0f}"
        f" ess/1k {row['ess_per_1k_grads']:.2f} warnings {len(row['warnings'])}"
    )


def run(quick: bool = False) -> dict[str, Any]:
    """Run the suite (see the module docstring), under hard_geometry's XLA flag (``lgcp``)."""
    if not hard_geometry.flag_set():
        return hard_geometry.run_under_flag("benchmarks.warmup_split", quick)
    s = _settings(quick)
    runs = []
    for fraction in s["fractions"]:
        for seed in s["seeds"]:
            for name in s["unimodal"]:
                start = time.perf_counter()
                row = unimodal_run(name, fraction, seed, s)
                row["wall_s"] = time.perf_counter() - start
                runs.append(row)
                print(_line(row), flush=True)
            for name in s["multimodal"]:
                row = mixture_run(name, fraction, seed, s)
                runs.append(row)
                print(_line(row), flush=True)
    return {"suite": "warmup_split", "settings": s, "runs": runs}


def report(result: dict[str, Any], figure_dir=None) -> str:
    """Markdown: one table per kind, fractions side by side, seeds pooled."""
    s = result["settings"]
    runs = result["runs"]
    lines = [
        "## warmup_split: how much of num_warmup the annealing needs",
        "",
        (
            f"`DilationLangevin` defaults except `num_anneal_steps` = fraction x num_warmup;"
            f" {s['num_warmup']} warmup + {s['num_samples']} draws.  Unimodal hard targets:"
            f" {s['num_chains']} vectorised chains from `init_to_uniform`, seeds {s['seeds']}"
            " (one row per seed: min bulk ESS is noisy at 4 chains).  Mixtures: the default kernel,"
            f" {s['mixture_chains']} chains from the origin; each chain stays in the mode the"
            " annealing left it in, so the TV measures the annealing alone.  *warn* = number of"
            " distinct `SamplerHealthWarning` messages the run gave (the end-of-warmup and"
            " sampling convergence checks, and the step-size checks)."
        ),
        "",
        "### Unimodal targets",
        "",
        "| target | seed | "
        + " | ".join(f"f = {f:g}: pass, z, sd, ESS, ESS/1k grad, warn" for f in s["fractions"])
        + " |",
        "|---|---|" + "---|" * len(s["fractions"]),
    ]
    uni = [r for r in runs if r["kind"] == "unimodal"]
    for name in s["unimodal"]:
        for seed in s["seeds"]:
            cells = []
            for f in s["fractions"]:
                r = next(
                    (
                        r
                        for r in uni
                        if r["target"] == name and r["seed"] == seed and r["fraction"] == f
                    ),
                    None,
                )
                if r is None:
                    cells.append("-")
                    continue
                cells.append(
                    f"{'yes' if r['pass'] else '**no**'}, {r['max_z']:.2f},"
                    f" {r['sd_ratio_min']:.2f}-{r['sd_ratio_max']:.2f}, {r['ess_bulk']:.0f},"
                    f" {r['ess_per_1k_grads']:.2f}, {len(r['warnings'])}"
                )
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Mixtures (mode-weight TV, default kernel)",
        "",
        "| target | seed | " + " | ".join(f"f = {f:g}" for f in s["fractions"]) + " |",
        "|---|---|" + "---|" * len(s["fractions"]),
    ]
    mix = [r for r in runs if r["kind"] == "multimodal"]
    for name in s["multimodal"]:
        for seed in s["seeds"]:
            cells = [
                next(
                    (
                        f"{r['tv']:.3f} ({r['modes_found']:.0%} of modes)"
                        for r in mix
                        if r["target"] == name and r["seed"] == seed and r["fraction"] == f
                    ),
                    "-",
                )
                for f in s["fractions"]
            ]
            lines.append(f"| {name} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.warmup_split [--quick]`` (``benchmarks.run`` writes the JSON)."""
    hard_geometry.flagged_main("benchmarks.warmup_split", run, __doc__, argv)


if __name__ == "__main__":
    main()
