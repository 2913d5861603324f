"""ensemble_cost suite: what ``ensemble=True`` costs on unimodal posteriors.

The six posteriordb posteriors (:mod:`benchmarks.posteriors`), each sampled by
``DilationLangevin`` with its defaults and with ``ensemble=True``, 64 vectorised
chains, same seed, in the same process.  Figures: accuracy against the
reference draws (max standardised mean error, worst sd ratio), min bulk ESS,
gradient evaluations (warmup + sampling, all chains, population moves
included) and ESS per 1000 of them, and the tuned share of iterations that ran
population moves.  Target (issue: ensemble mode): no loss of accuracy and at
most 20% less ESS per gradient than the default kernel.

Runs go through ``numpyro.infer.MCMC`` (the ensemble state carries one key for
all chains, which the timing loop of :mod:`benchmarks.common` does not model),
so wall times include compilation and are reported for information only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC

from benchmarks import common
from benchmarks.posteriors import POSTERIORS, accuracy
from numpyro_dilation import DilationLangevin

SAMPLERS = ("default", "ensemble")
MAX_ESS_PER_GRAD_LOSS = 0.20


def measure(name: str, ensemble: bool, settings: dict) -> dict[str, Any]:
    posterior = POSTERIORS[name]
    args, kwargs = posterior.args()
    fields = ("num_grad_evals",)
    if ensemble:
        fields += ("ensemble.mode_move_prob", "ensemble.num_mode_jumps")
    mcmc = MCMC(
        DilationLangevin(posterior.model, ensemble=ensemble),
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        num_chains=settings["num_chains"],
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(settings["seed"]), *args, extra_fields=fields, **kwargs)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    wall = time.perf_counter() - start
    acc = accuracy(samples, posterior)
    fields_out = mcmc.get_extra_fields(group_by_chain=True)
    grads = float(np.asarray(fields_out["num_grad_evals"])[:, -1].sum())
    ess = common.min_ess(common.scalar_draws(samples))
    row = {
        "posterior": name,
        "sampler": "ensemble" if ensemble else "default",
        "max_z": max(v["z_mean"] for v in acc.values()),
        "worst_sd_ratio": max((v["sd_ratio"] for v in acc.values()), key=lambda r: abs(r - 1)),
        **ess,
        "grad_evals": grads,
        "ess_per_1k_grads": 1000.0 * ess["ess_bulk"] / grads,
        "wall_s_with_compile": wall,
    }
    if ensemble:
        row["mode_move_prob"] = float(np.asarray(fields_out["ensemble.mode_move_prob"])[0, -1])
        row["mode_jumps"] = int(np.asarray(fields_out["ensemble.num_mode_jumps"])[:, -1].sum())
    return row


def run(quick: bool = False) -> dict[str, Any]:
    """Both configurations on every posterior (two in the quick version)."""
    settings = {
        "posteriors": list(POSTERIORS)[:2] if quick else list(POSTERIORS),
        "num_chains": 8 if quick else 64,
        "num_warmup": 60 if quick else 1000,
        "num_samples": 60 if quick else 1000,
        "seed": 0,
    }
    runs = []
    for name in settings["posteriors"]:
        for ensemble in (False, True):
            row = measure(name, ensemble, settings)
            print(
                f"  {name} {row['sampler']}: z {row['max_z']:.3f} sd {row['worst_sd_ratio']:.3f}"
                f" ess {row['ess_bulk']:.0f} ess/1k {row['ess_per_1k_grads']:.1f}",
                flush=True,
            )
            runs.append(row)
    return {"suite": "ensemble_cost", "settings": settings, "runs": runs}


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: default against ensemble, side by side per posterior."""
    s, runs = result["settings"], result["runs"]
    by = {(r["posterior"], r["sampler"]): r for r in runs}
    lines = [
        "## ensemble_cost: ensemble mode on unimodal posteriors",
        "",
        (
            f"The posteriordb posteriors, DilationLangevin with its defaults and with"
            f" `ensemble=True`, {s['num_chains']} vectorised chains, {s['num_warmup']} warmup +"
            f" {s['num_samples']} draws, seed {s['seed']}.  Gradient evaluations count warmup and"
            " sampling of all chains, population moves included.  Target: no loss of accuracy"
            f" and at most {MAX_ESS_PER_GRAD_LOSS:.0%} less ESS per gradient than the default."
        ),
        "",
        (
            "| posterior | max z (default / ensemble) | worst sd ratio | min bulk ESS |"
            " ESS per 1000 grads | ratio | mode-move (population-move) share | target |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    misses = []
    for name in s["posteriors"]:
        a, b = by.get((name, "default")), by.get((name, "ensemble"))
        if a is None or b is None:
            continue
        ratio = b["ess_per_1k_grads"] / a["ess_per_1k_grads"]
        accurate = b["max_z"] <= max(0.1, a["max_z"]) and abs(b["worst_sd_ratio"] - 1) <= max(
            0.1, abs(a["worst_sd_ratio"] - 1)
        )
        met = ratio >= 1 - MAX_ESS_PER_GRAD_LOSS and accurate
        if not met:
            misses.append(f"{name} (ESS per gradient x{ratio:.2f}, max z {b['max_z']:.3f})")
        lines.append(
            f"| {name} | {a['max_z']:.3f} / {b['max_z']:.3f} |"
            f" {a['worst_sd_ratio']:.3f} / {b['worst_sd_ratio']:.3f} |"
            f" {a['ess_bulk']:.0f} / {b['ess_bulk']:.0f} |"
            f" {a['ess_per_1k_grads']:.1f} / {b['ess_per_1k_grads']:.1f} | x{ratio:.2f} |"
            f" {b.get('mode_move_prob', b.get('population_prob', float('nan'))):.2f} | {'met' if met else '**missed**'} |"
        )
    lines.append("")
    if misses:
        lines.append("Target missed on: " + "; ".join(misses) + ".")
    else:
        lines.append("Target met on every posterior.")
    lines.append("")
    return "\n".join(lines)
