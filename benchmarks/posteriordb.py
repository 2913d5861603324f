"""posteriordb suite: accuracy and cost on the reference posteriors of :mod:`benchmarks.posteriors`.

Samplers, side by side in one process on the models of
:mod:`benchmarks.posteriors`:

* ``DilationLangevin`` with its defaults (a dense metric up to 100 dimensions);
* NumPyro ``NUTS`` with its defaults (diagonal mass matrix, dual averaging), and
  ``NUTS (dense)`` with ``dense_mass=True``, the metric DilationLangevin uses here;
* BlackJAX MALA on the same NumPyro potential
  (:func:`numpyro.infer.util.initialize_model`), started like NUTS
  (``init_to_uniform``) and tuned by dual averaging towards acceptance 0.574
  over the same warmup length.  ``blackjax.mala`` takes no mass matrix, so it
  runs unpreconditioned; one gradient per step.

Every sampler runs vectorised chains (``chain_method="vectorized"``
semantics) at 4 and at 64 chains, 1000 warmup + 1000 draws.  A run passes when
its means and sds are within tolerance of the reference **and** it meets Stan's
diagnostics (:func:`benchmarks.common.diagnostics_pass`: R-hat, bulk and tail
ESS per chain, divergences); ESS ratios are given only where both samplers pass,
with and without compilation.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
from numpyro.infer import NUTS
from numpyro.infer.util import initialize_model

from benchmarks import common
from benchmarks.posteriors import POSTERIORS, accuracy, stan_names
from numpyro_dilation import DilationLangevin

SAMPLERS = ("DilationLangevin", "NUTS", "NUTS (dense)", "BlackJAX MALA")
#: The NUTS runs the ESS ratios are taken against.
PEERS = ("NUTS", "NUTS (dense)")
Z_TARGET = 0.1
SD_TARGET = (0.9, 1.1)


def _mala(posterior, key, num_chains, num_warmup, num_samples, repeats):
    args, kwargs = posterior.args()
    info = initialize_model(
        jax.random.split(key, num_chains), posterior.model, model_args=args, model_kwargs=kwargs
    )
    r = common.run_blackjax_mala(
        info.potential_fn,
        info.param_info.z,
        jax.random.fold_in(key, 1),
        num_warmup=num_warmup,
        num_samples=num_samples,
        repeats=repeats,
    )
    # constrained values and deterministic sites, for every chain and draw
    samples = jax.vmap(jax.vmap(info.postprocess_fn))(r.positions)
    # MALA has no divergence flag: a rejected step is its only fault
    return r, {k: np.asarray(v) for k, v in samples.items()}, r.accept_rate, 0


def _numpyro(kernel, posterior, key, num_chains, num_warmup, num_samples, repeats):
    args, kwargs = posterior.args()
    r = common.run_mcmc(
        kernel,
        key,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        model_args=args,
        model_kwargs=kwargs,
        extra_fields=("accept_prob", "diverging"),
        repeats=repeats,
    )
    accept = float(np.mean(r.extra["accept_prob"]))
    return r, r.samples, accept, int(np.sum(r.extra["diverging"]))


def measure(posterior, sampler: str, num_chains: int, settings: dict, seed: int) -> dict:
    """One run's figures (see ``benchmarks/README.md``)."""
    key = jax.random.PRNGKey(seed)
    n = (num_chains, settings["num_warmup"], settings["num_samples"], settings["repeats"])
    if sampler == "BlackJAX MALA":
        r, samples, accept, divergences = _mala(posterior, key, *n)
    else:
        kernel = {
            "DilationLangevin": DilationLangevin,
            "NUTS": NUTS,
            "NUTS (dense)": partial(NUTS, dense_mass=True),
        }[sampler](posterior.model)
        r, samples, accept, divergences = _numpyro(kernel, posterior, key, *n)
    acc = accuracy({k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}, posterior)
    draws = stan_names(samples, posterior.reference_moments())
    ess = common.min_ess(draws)
    rhat = common.max_rhat(draws)
    zp = max(acc, key=lambda k: acc[k]["z_mean"])
    sdp = max(acc, key=lambda k: abs(np.log(acc[k]["sd_ratio"])))
    accurate = bool(
        acc[zp]["z_mean"] <= Z_TARGET and SD_TARGET[0] <= acc[sdp]["sd_ratio"] <= SD_TARGET[1]
    )
    num_draws = np.shape(next(iter(draws.values())))[1]
    trusted = common.diagnostics_pass(
        rhat["r_hat"], ess["ess_bulk"], ess["ess_tail"], divergences, num_chains, num_draws
    )
    return {
        "posterior": posterior.name,
        "sampler": sampler,
        "num_chains": num_chains,
        "pass": accurate and trusted,
        "pass_accuracy": accurate,
        "pass_diagnostics": trusted,
        "max_z": acc[zp]["z_mean"],
        "max_z_param": zp,
        "worst_sd_ratio": acc[sdp]["sd_ratio"],
        "worst_sd_param": sdp,
        **rhat,
        **ess,
        "divergences": divergences,
        **common.efficiency(ess["ess_bulk"], r.total_s, r.grad_evals),
        "ess_per_s_sampling": ess["ess_bulk"] / r.sample_s,
        "ess_per_s_with_compile": ess["ess_bulk"] / (r.total_s + r.compile_s),
        "warmup_s": r.warmup_s,
        "sample_s": r.sample_s,
        "total_s": r.total_s,
        "compile_s": r.compile_s,
        "grad_evals": r.grad_evals,
        "grad_evals_warmup": r.grad_evals_warmup,
        "mean_accept_prob": accept,
        "accuracy": acc,
    }


def run(quick: bool = False) -> dict[str, Any]:
    """Run every posterior x sampler x chain count; see the module docstring."""
    settings = {
        "posteriors": ["kidiq-kidscore_momiq"] if quick else list(POSTERIORS),
        "samplers": list(SAMPLERS),
        "num_chains": [4] if quick else [4, 64],
        "num_warmup": 150 if quick else 1000,
        "num_samples": 150 if quick else 1000,
        # one timed run: 64-chain NUTS alone takes minutes on this shared 2-core machine
        "repeats": 1,
        "chain_method": "vectorized",
        "seed": 0,
        "time_definition": "warmup + sampling wall time, compilation excluded, median of repeats",
        "ess_definition": "min over reference parameters of ArviZ bulk (tail) ESS",
    }
    runs = []
    for name in settings["posteriors"]:
        for num_chains in settings["num_chains"]:
            for sampler in SAMPLERS:
                row = measure(POSTERIORS[name], sampler, num_chains, settings, settings["seed"])
                print(
                    f"  {name} {sampler} x{num_chains}: z {row['max_z']:.3f}"
                    f" sd {row['worst_sd_ratio']:.3f} ess {row['ess_bulk']:.0f}"
                    f" ess/s {row['ess_per_s']:.0f} ess/1k {row['ess_per_1k_grads']:.1f}",
                    flush=True,
                )
                runs.append(row)
    return {"suite": "posteriordb", "settings": settings, "runs": runs}


def _short(name: str) -> str:
    return name.split("-")[0]


def _figure(runs: list[dict], num_chains: int, figure_dir: Path, samplers: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["posterior"] for r in runs))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(samplers)
    for ax, metric, label in (
        (axes[0], "ess_per_s_with_compile", "min bulk ESS per second, compilation counted"),
        (axes[1], "ess_per_1k_grads", "min bulk ESS per 1000 gradients"),
    ):
        for j, sampler in enumerate(samplers):
            values = [
                next(
                    (r[metric] for r in runs if r["posterior"] == n and r["sampler"] == sampler),
                    np.nan,
                )
                for n in names
            ]
            ax.bar(
                np.arange(len(names)) + j * width, np.maximum(values, 1e-3), width, label=sampler
            )
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(names)) + width * (len(samplers) - 1) / 2)
        ax.set_xticklabels([_short(n) for n in names], rotation=30, ha="right")
        ax.set_title(f"{label}, {num_chains} chains")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    file = f"posteriordb_{num_chains}chains.png"
    fig.savefig(figure_dir / file, dpi=110)
    plt.close(fig)
    return file


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: per chain count a table, a figure and the targets."""
    s = result["settings"]
    count = len({r["posterior"] for r in result["runs"]}) if result["runs"] else 0
    lines = [
        f"## posteriordb: accuracy and cost on {count} reference posteriors",
        "",
        (
            f"Samplers: {', '.join(s['samplers'])}; {s['num_warmup']} warmup + {s['num_samples']}"
            f" draws per chain, {s['chain_method']} chains, timings the median of {s['repeats']}"
            " timed run(s). DilationLangevin and NUTS run with their defaults (DilationLangevin:"
            f" dense mass matrix up to 100 dimensions, so on all {count}; NUTS: diagonal);"
            " *NUTS (dense)* is NUTS with `dense_mass=True`, the metric DilationLangevin uses"
            " here. BlackJAX MALA runs on the same NumPyro potential with its step size tuned by"
            " dual averaging towards acceptance 0.574 over the same warmup; `blackjax.mala` takes"
            " no mass matrix, so it is unpreconditioned."
        ),
        "",
        (
            f"*pass* = every mean within {Z_TARGET} reference sd and every sd ratio in"
            f" [{SD_TARGET[0]}, {SD_TARGET[1]}] (*no (accuracy)* otherwise), **and** R-hat <="
            f" {common.RHAT_TARGET}, bulk and tail ESS >= {common.ESS_PER_CHAIN_TARGET} per"
            f" chain, divergent transitions <= {common.DIVERGENT_FRACTION_TARGET:.0%} of the"
            " draws (*no (diagnostics)* otherwise).  Columns: *z* = largest standardised mean"
            " error |mean - ref| / ref sd over parameters; *sd* = sd ratio farthest from 1;"
            " *R-hat* = largest rank-normalised split R-hat; *ESS* = minimum bulk / tail ESS over"
            " parameters; *div* = divergent transitions while sampling (MALA has none to flag);"
            " *ESS/s* = min bulk ESS per second of warmup + sampling + compilation, and in"
            " brackets without compilation; *ESS/1k grad* = min bulk ESS per 1000 gradient"
            " evaluations of warmup + sampling, all chains."
        ),
        "",
    ]
    runs = result["runs"]
    for num_chains in s["num_chains"]:
        sub = [r for r in runs if r["num_chains"] == num_chains]
        lines += [
            f"### {num_chains} chains",
            "",
            (
                "| posterior | sampler | pass | z | sd | R-hat | ESS bulk / tail | div | ESS/s"
                " (without compile) | ESS/1k grad | time s | compile s | accept |"
            ),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub:
            lines.append(
                f"| {_short(r['posterior'])} | {r['sampler']} | {_verdict(r)} | {r['max_z']:.3f}"
                f" ({r['max_z_param']}) | {r['worst_sd_ratio']:.2f} ({r['worst_sd_param']})"
                f" | {r['r_hat']:.3f} | {r['ess_bulk']:.0f} / {r['ess_tail']:.0f}"
                f" | {r['divergences']} | {r['ess_per_s_with_compile']:.0f}"
                f" ({r['ess_per_s']:.0f}) | {r['ess_per_1k_grads']:.1f} | {r['total_s']:.2f}"
                f" | {r['compile_s']:.1f} | {r['mean_accept_prob']:.2f} |"
            )
        file = _figure(sub, num_chains, figure_dir, s["samplers"])
        lines += ["", f"![posteriordb, {num_chains} chains](benchmarks/{file})", ""]
    lines += ["### Summary", ""] + _targets(result)
    return "\n".join(lines)


def _verdict(row: dict) -> str:
    if row["pass"]:
        return "yes"
    return "no (accuracy)" if not row["pass_accuracy"] else "no (diagnostics)"


def _targets(result: dict[str, Any]) -> list[str]:
    """Summary lines: passes per sampler, ESS ratios against each NUTS where both passed."""
    runs = result["runs"]
    s = result["settings"]
    out = []
    for num_chains in s["num_chains"]:
        for sampler in s["samplers"]:
            rows = [r for r in runs if r["sampler"] == sampler and r["num_chains"] == num_chains]
            failed = [f"{_short(r['posterior'])} ({_verdict(r)})" for r in rows if not r["pass"]]
            out.append(
                f"- {num_chains} chains, {sampler}: passes {len(rows) - len(failed)} of"
                f" {len(rows)}" + (f"; fails {', '.join(failed)}" if failed else "") + "."
            )
    for num_chains in s["num_chains"]:
        for peer in PEERS:
            for key, what in (
                ("ess_per_s_with_compile", "ESS/s with compilation"),
                ("ess_per_s", "ESS/s without compilation"),
                ("ess_per_1k_grads", "ESS per gradient"),
            ):
                ratios, skipped = [], []
                for name in s["posteriors"]:
                    pick = {
                        r["sampler"]: r
                        for r in runs
                        if r["posterior"] == name and r["num_chains"] == num_chains
                    }
                    dl, other = pick.get("DilationLangevin"), pick.get(peer)
                    if dl is None or other is None:
                        continue
                    # a ratio against a sampler that failed measures nothing
                    if dl["pass"] and other["pass"]:
                        ratios.append((name, dl[key] / other[key]))
                    else:
                        skipped.append(_short(name))
                if not ratios:
                    continue
                values = [q for _, q in ratios]
                behind = [f"{_short(n)} {q:.2f}x" for n, q in ratios if q < 1]
                out.append(
                    f"- {num_chains} chains, {what}, DilationLangevin / {peer} where both pass:"
                    f" {min(values):.2g}x-{max(values):.3g}x over {len(ratios)} posteriors"
                    + (f"; {peer} ahead on {', '.join(behind)}" if behind else "")
                    + (f"; no ratio where a sampler failed: {', '.join(skipped)}" if skipped else "")
                    + "."
                )
    return out
