"""scaling suite: cost per effective draw as the dimension grows.

Two Gaussian targets in ``d`` dimensions -- isotropic (unit sds) and
ill-conditioned (sds log-spaced over 1e-2 ... 1e2, condition number 1e8 of
the covariance, 1e4 of the scales) -- sampled by DilationLangevin (defaults:
dense metric up to 100 dimensions, diagonal above) and NUTS (defaults:
diagonal), 4 vectorised chains each.  Cost per effective draw is the number
of gradient evaluations (warmup + sampling, all chains) and the seconds
(compilation excluded) per unit of the minimum bulk ESS over coordinates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import NUTS

from benchmarks import common
from numpyro_dilation import DilationLangevin

SAMPLERS = ("DilationLangevin", "NUTS")
TARGETS = ("isotropic", "ill-conditioned")


def scales(target: str, d: int) -> np.ndarray:
    """Standard deviations of the target's coordinates."""
    return np.ones(d) if target == "isotropic" else np.logspace(-2, 2, d)


def gaussian(sd):
    numpyro.sample("x", dist.Normal(0.0, sd).to_event(1))


def measure(target: str, d: int, sampler: str, settings: dict) -> dict:
    sd = jnp.asarray(scales(target, d))
    kernel = DilationLangevin(gaussian) if sampler == "DilationLangevin" else NUTS(gaussian)
    r = common.run_mcmc(
        kernel,
        jax.random.PRNGKey(settings["seed"]),
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        num_chains=settings["num_chains"],
        model_args=(sd,),
        repeats=settings["repeats"],
    )
    x = r.samples["x"]
    ess = common.min_ess({f"x[{i}]": x[..., i] for i in range(d)})
    # accuracy on the known answer: worst standardised mean error and sd ratio
    z = np.abs(x.mean(axis=(0, 1))) / np.asarray(sd)
    sd_ratio = x.std(axis=(0, 1), ddof=1) / np.asarray(sd)
    return {
        "target": target,
        "d": d,
        "sampler": sampler,
        **ess,
        "grads_per_ess": r.grad_evals / max(ess["ess_bulk"], 1e-9),
        "seconds_per_ess": r.total_s / max(ess["ess_bulk"], 1e-9),
        "grad_evals": r.grad_evals,
        "total_s": r.total_s,
        "compile_s": r.compile_s,
        "max_z": float(z.max()),
        "worst_sd_ratio": float(sd_ratio[np.argmax(np.abs(np.log(sd_ratio)))]),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Every target x dimension x sampler; see the module docstring."""
    settings = {
        "targets": ["isotropic"] if quick else list(TARGETS),
        "dims": [10] if quick else [10, 100, 1000],
        "samplers": list(SAMPLERS),
        "num_chains": 4,
        "num_warmup": 150 if quick else 1000,
        "num_samples": 150 if quick else 1000,
        "repeats": 1,
        "seed": 0,
        "ill_conditioned_sds": "logspace(-2, 2, d)",
    }
    runs = []
    for target in settings["targets"]:
        for d in settings["dims"]:
            for sampler in SAMPLERS:
                row = measure(target, d, sampler, settings)
                print(
                    f"  {target} d={d} {sampler}: ess {row['ess_bulk']:.0f}"
                    f" grads/ess {row['grads_per_ess']:.1f} s/ess {row['seconds_per_ess']:.2e}",
                    flush=True,
                )
                runs.append(row)
    return {"suite": "scaling", "settings": settings, "runs": runs}


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: cost per effective draw against d, table and figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, runs = result["settings"], result["runs"]
    lines = [
        "## scaling: cost per effective draw against dimension",
        "",
        (
            f"Gaussian targets, isotropic and ill-conditioned (sds {s['ill_conditioned_sds']});"
            f" {s['num_chains']} vectorised chains, {s['num_warmup']} warmup + {s['num_samples']}"
            " draws each; DilationLangevin and NUTS with defaults (DilationLangevin dense up to 100"
            " dimensions, diagonal above; NUTS diagonal). Cost per effective draw = gradient"
            " evaluations (or seconds, compilation excluded) of warmup + sampling, all chains, per"
            " unit of the minimum bulk ESS over coordinates."
        ),
        "",
        "| target | d | sampler | min ESS bulk / tail | grads per ESS | ms per ESS | z | sd |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['target']} | {r['d']} | {r['sampler']} | {r['ess_bulk']:.0f} /"
            f" {r['ess_tail']:.0f} | {r['grads_per_ess']:.1f} | {r['seconds_per_ess'] * 1e3:.2f}"
            f" | {r['max_z']:.3f} | {r['worst_sd_ratio']:.2f} |"
        )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, label in (
        (axes[0], "grads_per_ess", "gradient evaluations per ESS"),
        (axes[1], "seconds_per_ess", "seconds per ESS"),
    ):
        for target in s["targets"]:
            for sampler in SAMPLERS:
                sub = [r for r in runs if r["target"] == target and r["sampler"] == sampler]
                ax.plot(
                    [r["d"] for r in sub],
                    [r[metric] for r in sub],
                    "o-" if sampler == "DilationLangevin" else "s--",
                    label=f"{sampler}, {target}",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("dimension d")
        ax.set_title(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure_dir / "scaling.png", dpi=110)
    plt.close(fig)
    lines += ["", "![scaling](benchmarks/scaling.png)", ""]
    for target in s["targets"]:
        parts = []
        for d in s["dims"]:
            pick = {r["sampler"]: r for r in runs if r["target"] == target and r["d"] == d}
            if len(pick) == 2:
                q = pick["DilationLangevin"]["grads_per_ess"] / pick["NUTS"]["grads_per_ess"]
                parts.append(f"d = {d}: {q:.2f}x")
        lines.append(
            f"- {target}: DilationLangevin's gradients per ESS relative to NUTS's"
            f" (below 1 = cheaper): {', '.join(parts)}."
        )
    return "\n".join(lines)
