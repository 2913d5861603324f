"""ensemble_iteration suite: wall time of an ensemble iteration against a default one.

The four-mode Gaussian mixtures of :mod:`benchmarks.mixtures` (weights 0.1,
0.2, 0.3, 0.4) in d = 2 and 32 (:data:`DIMS`), each sampled by ``DilationLangevin``
with its defaults and with ``ensemble=True``, 256 vectorised chains from the
origin, 1000 warmup + 1000 draws, in the same process.  Warmup and sampling are
compiled ahead of time (``compile_s`` apart) and run as one ``lax.scan`` of
``kernel.sample`` each (what ``MCMC.run`` compiles); the sampling phase is timed
``repeats`` times from the same post-warmup state, the two samplers' repeats
interleaved so that both see the same load, and the median is reported.

Figures per target: the seconds per sampling iteration of each sampler and
their ratio (target of the issue: at most 2 for d <= 32), gradient evaluations
per chain per sampling iteration (local step, plus one per population move),
the ratio of seconds per gradient, and the mode-weight TV of the draws
(:func:`benchmarks.mode_metrics.score`), with the tuned population-move settings.

JSON layout of :func:`run`: ``settings`` (``dims``, ``num_chains``,
``num_warmup``, ``num_samples``, ``repeats``, ``seed``) and ``runs``, one per
target and sampler: ``target``, ``dim``, ``sampler`` (``default`` or
``ensemble``), ``sample_s_per_iter`` (median), ``sample_s_repeats``,
``warmup_s``, ``compile_s``, ``grads_per_chain_per_iter`` (sampling),
``grads_per_chain`` (warmup and sampling), ``tv``, ``tv_floor``, ``modes_found``,
``mode_fractions`` and, for the ensemble, ``mode_move_prob`` (``population_prob`` and
``num_clusters`` in results recorded before the mode moves),
``move_probs``, ``mode_jumps_per_chain`` (sampling phase).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, mixtures, mode_metrics
from numpyro_dilation import DilationLangevin

SAMPLERS = ("default", "ensemble")
DIMS = (2, 32)
#: The issue's target: an ensemble iteration costs at most this many default ones.
MAX_TIME_RATIO = 2.0


def _target(dim: int) -> mixtures.Mixture:
    return mixtures.targets()["gauss2d_4" if dim == 2 else f"gauss{dim}d_4"]


def _loop(kernel: DilationLangevin, length: int, collect: bool):
    """A jitted scan of ``kernel.sample`` returning the last state (and the draws)."""

    def loop(state):
        def body(s, _):
            s = kernel.sample(s, (), {})
            return s, (s.z if collect else None)

        return jax.lax.scan(body, state, None, length=length)

    return jax.jit(loop)


def _prepare(target: mixtures.Mixture, ensemble: bool, s: dict) -> dict[str, Any]:
    """Initialise, compile both programs and run the warmup of one sampler."""
    n = s["num_chains"]
    kernel = DilationLangevin(potential_fn=target.potential, ensemble=ensemble)
    keys = jax.random.split(jax.random.PRNGKey(s["seed"]), n)
    state = common.block(kernel.init(keys, s["num_warmup"], jnp.zeros((n, target.dim)), (), {}))
    start = time.perf_counter()
    warmup = _loop(kernel, s["num_warmup"], False).lower(state).compile()
    sample = _loop(kernel, s["num_samples"], True).lower(state).compile()
    compile_s = time.perf_counter() - start
    (warm, _), warmup_s = common.timed(warmup, state)
    return {
        "sample": sample,
        "state": warm,
        "initial": state,
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "times": [],
        "out": None,
    }


def _finish(target, ref, name: str, p: dict, s: dict) -> dict[str, Any]:
    last, draws = p["out"]
    n_iter = s["num_samples"]
    warm, initial = p["state"], p["initial"]
    grads_sample = np.asarray(last.num_grad_evals - warm.num_grad_evals, dtype=float)
    grads_all = np.asarray(last.num_grad_evals - initial.num_grad_evals, dtype=float)
    draws = np.swapaxes(np.asarray(draws), 0, 1)  # (chains, draws, d)
    scored = mode_metrics.score(target, ref, draws)
    row = {
        "target": target.name,
        "dim": target.dim,
        "sampler": name,
        "sample_s_per_iter": common.median(p["times"]) / n_iter,
        "sample_s_repeats": p["times"],
        "warmup_s": p["warmup_s"],
        "compile_s": p["compile_s"],
        "grads_per_chain_per_iter": float(grads_sample.mean() / n_iter),
        "grads_per_chain": float(grads_all.mean()),
        "tv": scored["tv"],
        "tv_floor": ref.tv_floor,
        "modes_found": scored["modes_found"],
        "mode_fractions": scored["mode_fractions"],
    }
    if name == "ensemble":
        settings = last.ensemble.settings
        jumps = last.ensemble.num_mode_jumps - warm.ensemble.num_mode_jumps
        row.update(
            mode_move_prob=float(settings.mode_move_prob),
            move_probs=np.asarray(settings.move_probs).round(4).tolist(),
            mode_jumps_per_chain=float(np.mean(np.asarray(jumps))),
        )
    return row


def run(quick: bool = False) -> dict[str, Any]:
    """Both samplers on each mixture (d = 2 only, tiny sizes, in the quick version)."""
    jax.config.update("jax_enable_x64", False)
    settings = {
        "dims": [2] if quick else list(DIMS),
        "num_chains": 16 if quick else 256,
        "num_warmup": 60 if quick else 1000,
        "num_samples": 40 if quick else 1000,
        "repeats": 1 if quick else 3,
        "seed": 0,
    }
    runs = []
    for dim in settings["dims"]:
        target = _target(dim)
        ref = mode_metrics.reference(target, settings["num_chains"] * settings["num_samples"])
        prepared = {name: _prepare(target, name == "ensemble", settings) for name in SAMPLERS}
        for _ in range(settings["repeats"]):  # interleaved: both samplers see the same load
            for p in prepared.values():
                p["out"], seconds = common.timed(p["sample"], p["state"])
                p["times"].append(seconds)
        rows = [_finish(target, ref, name, prepared[name], settings) for name in SAMPLERS]
        a, b = rows
        print(
            f"  d={dim}: s/iter {a['sample_s_per_iter'] * 1e3:.2f} /"
            f" {b['sample_s_per_iter'] * 1e3:.2f} ms"
            f" (x{b['sample_s_per_iter'] / a['sample_s_per_iter']:.2f}), grads/chain/iter"
            f" {a['grads_per_chain_per_iter']:.2f} / {b['grads_per_chain_per_iter']:.2f},"
            f" TV {a['tv']:.3f} / {b['tv']:.3f}, compile {a['compile_s']:.1f} /"
            f" {b['compile_s']:.1f} s",
            flush=True,
        )
        runs.extend(rows)
    return {"suite": "ensemble_iteration", "settings": settings, "runs": runs}


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: per target, default against ensemble."""
    s, runs = result["settings"], result["runs"]
    by = {(r["dim"], r["sampler"]): r for r in runs}
    lines = [
        "## ensemble_iteration: wall time of an ensemble iteration",
        "",
        (
            "Four-mode Gaussian mixtures (weights 0.1-0.4), DilationLangevin with its"
            f" defaults (HMC) and with `ensemble=True`, {s['num_chains']} vectorised chains"
            " from the origin,"
            f" {s['num_warmup']} warmup + {s['num_samples']} draws, seed {s['seed']}.  Seconds"
            f" per sampling iteration (all chains), median of {s['repeats']} interleaved runs,"
            " compilation excluded; gradients per chain and sampling iteration; TV of the"
            f" mode weights (the exact row of the multimodal suite is its floor).  Target: an"
            f" ensemble iteration costs at most {MAX_TIME_RATIO:g} default ones for d <= 32."
        ),
        "",
        (
            "| d | ms per iteration (default / ensemble) | ratio | grads per chain and"
            " iteration | ratio per gradient | TV (default / ensemble / floor) |"
            " mode jumps per chain | mode-move (population) prob. | compile s | target |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dim in s["dims"]:
        a, b = by.get((dim, "default")), by.get((dim, "ensemble"))
        if a is None or b is None:
            continue
        ratio = b["sample_s_per_iter"] / a["sample_s_per_iter"]
        per_grad = ratio * a["grads_per_chain_per_iter"] / b["grads_per_chain_per_iter"]
        met = ratio <= MAX_TIME_RATIO
        lines.append(
            f"| {dim} | {a['sample_s_per_iter'] * 1e3:.2f} / {b['sample_s_per_iter'] * 1e3:.2f} |"
            f" x{ratio:.2f} | {a['grads_per_chain_per_iter']:.1f} /"
            f" {b['grads_per_chain_per_iter']:.1f} | x{per_grad:.2f} |"
            f" {a['tv']:.3f} / {b['tv']:.3f} / {b['tv_floor']:.3f} |"
            f" {b['mode_jumps_per_chain']:.0f} |"
            f" {b.get('mode_move_prob', b.get('population_prob', float('nan'))):.2f} |"
            f" {a['compile_s']:.0f} / {b['compile_s']:.0f} | {'met' if met else '**missed**'} |"
        )
    lines.append("")
    return "\n".join(lines)
