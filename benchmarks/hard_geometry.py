"""hard_geometry suite: accuracy and cost on posteriors with hard geometry.

Targets (NumPyro models, all of :data:`benchmarks.geometry_targets.TARGETS`):

* ``eight_schools_centered`` (d = 10): eight schools, centred parametrisation;
* ``banana`` (d = 2): a twisted Gaussian, ``x1 ~ N(0, 10)``,
  ``x2 | x1 ~ N(0.05 (x1^2 - 100), 1)``;
* ``funnel`` (d = 10): Neal's funnel, ``v ~ N(0, 3)``, ``x_i ~ N(0, exp(v / 2))``;
* ``gaussian_100`` (d = 100): a zero-mean Gaussian whose standard deviations are
  log-spaced from 1e-2 to 1e2 along randomly rotated axes (fixed seed);
* ``brownian_bridge`` (d = 32): a Gaussian random walk of 30 positions with
  unknown innovation and observation noise scales, positions 11-20 unobserved;
* ``stochastic_volatility`` (d = 103): centred AR(1) log-volatilities of 100
  synthetic daily returns (fixed seed), with unknown mean, persistence and scale;
* ``item_response_2pl`` (d = 501): 2PL item response, 400 students x 50 items;
* ``lgcp`` (d = 102): log-Gaussian Cox process on a 10 x 10 grid, the latent
  field's multivariate normal density (with its own Cholesky factorisation
  and triangular solve) in the potential, unknown mean and scale;
* the nine posteriordb posteriors of :mod:`benchmarks.posteriors`.

References: exact moments where the truth is analytic (``banana``, ``funnel``,
``gaussian_100``); posteriordb's reference draws for the posteriordb models and
for ``eight_schools_centered`` (posteriordb's non-centred eight schools is the
same posterior); quadrature over the two noise scales for ``brownian_bridge``
(the walk is Gaussian given them); otherwise long float64 NUTS runs on a
non-centred parametrisation where it helps.  The computed ones are cached in
``benchmarks/references/*.npz`` (regenerate with ``python -m benchmarks.make_references``).

Samplers (:data:`benchmarks.geometry_samplers.SAMPLERS`, a table
``name -> factory``: a further sampler or stationary option is one more line):
DilationLangevin with its defaults (and its MALA and NUTS stationary options),
NumPyro NUTS with its defaults and with
``dense_mass=True`` (DilationLangevin's default metric is dense up to 100
dimensions), and BlackJAX ChEES-HMC (``blackjax.chees_adaptation``
with the ensemble-estimated diagonal metric, Adam at learning rate 0.025, then
``blackjax.dynamic_hmc`` with the Halton-jittered trajectory length it tuned).
Each runs vectorised chains, 4 and 64, 1000 warmup + 1000 draws, from NumPyro's
``init_to_uniform``; the float32 default is kept.

Figures per run: ``max_z`` (largest |mean - ref mean| / ref sd), ``sd_ratio_min``
and ``sd_ratio_max``, ``pass_accuracy`` (every ``z <= 0.1`` and every sd ratio in
[0.9, 1.1]), ``r_hat`` (largest split R-hat), ``pass_diagnostics`` (R-hat <= 1.01,
bulk and tail ESS >= 100 per chain, at most 1% divergent transitions: Stan's
guidance), ``pass`` (both), minimum bulk and tail ESS over the reference parameters,
``ess_per_s`` (min bulk ESS per second of warmup + sampling),
``ess_per_s_sampling`` (per second of sampling only), ``ess_per_s_with_compile``
(per second of compilation, warmup and sampling), ``ess_per_1k_grads``
(per 1000 gradient evaluations of warmup + sampling, all chains),
``divergences`` (sampling phase, all chains), times with compilation apart.

**LAPACK and threads.**  jaxlib 0.10.2 on CPU can deadlock on batched LAPACK
calls (a ``vmap`` of Cholesky factorisations or triangular solves, as the
``lgcp`` potential makes with vectorised chains) when Eigen's thread pool is on.
The suite therefore always runs with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``:
:func:`run` re-executes itself in a subprocess with that flag unless the current
process was started with it (the flag must be set before JAX creates its CPU
backend).  Every sampler runs under the same flag.

Run with ``python -m benchmarks.run hard_geometry`` or, writing the results
after every run so that a long run can be inspected while it goes, ``python -m
benchmarks.hard_geometry --out benchmarks/results/hard_geometry.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks import common
from benchmarks.geometry_report import report
from benchmarks.geometry_samplers import (
    CHEES_INITIAL_STEP,
    CHEES_LEARNING_RATE,
    SAMPLERS,
    Outcome,
)
from benchmarks.geometry_targets import (
    QUICK_TARGETS,
    RHAT_TARGET,
    TARGETS,
    Z_TARGET,
    Target,
    reference_quality,
)
from benchmarks.posteriors import stan_names

__all__ = [
    "XLA_FLAG",
    "figures",
    "flag_set",
    "flagged_main",
    "measure",
    "report",
    "run",
    "run_under_flag",
]

#: Set before JAX starts (see the module docstring).
XLA_FLAG = "--xla_cpu_multi_thread_eigen=false"
ROOT = Path(__file__).resolve().parent.parent
SD_TARGET = (0.9, 1.1)
#: Stan's guidance for trusting a run (:func:`benchmarks.common.diagnostics_pass`).
ESS_PER_CHAIN_TARGET = common.ESS_PER_CHAIN_TARGET
DIVERGENT_FRACTION_TARGET = common.DIVERGENT_FRACTION_TARGET

# ----------------------------------------------------------------------------- measuring


def accuracy(
    samples: dict[str, np.ndarray], moments: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """``{param: {"z_mean", "sd_ratio", "mean", "sd"}}`` of pooled draws against reference
    ``moments``; the run's own ``mean`` and ``sd`` let a later reference re-score it."""
    draws = stan_names(samples, moments)
    out = {}
    for name, (ref_mean, ref_sd) in moments.items():
        x = np.asarray(draws[name], dtype=float).ravel()
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        out[name] = {
            "z_mean": float(abs(mean - ref_mean) / ref_sd),
            "sd_ratio": float(sd / ref_sd),
            "mean": mean,
            "sd": sd,
        }
    return out


def measure(
    target: Target,
    sampler: str,
    num_chains: int,
    settings: dict,
    seed: int,
    sample: Callable[..., Outcome] | None = None,
) -> dict:
    """One run's figures (see the module docstring and ``benchmarks/README.md``).

    ``sample`` runs the sampler (``SAMPLERS[sampler]`` by default; another suite
    may pass a variant, e.g. with other settings, labelled ``sampler``).
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), num_chains)
    sample = SAMPLERS[sampler] if sample is None else sample
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = sample(target, key, num_chains, settings["num_warmup"], settings["num_samples"])
    row = figures(target, r, sampler, num_chains)
    if sampler.startswith("DilationLangevin"):
        # did a run that fails say so?  (NumPyro's NUTS and BlackJAX give no such warnings)
        row["warnings"] = health_messages(caught)
    return row


def health_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct ``SamplerHealthWarning`` messages among ``caught``, each cut to 160 characters."""
    return sorted(
        {str(w.message)[:160] for w in caught if w.category.__name__ == "SamplerHealthWarning"}
    )


def figures(target: Target, r: Outcome, sampler: str, num_chains: int) -> dict:
    """The figures of one finished run ``r`` of ``sampler`` on ``target``."""
    moments = target.moments()
    acc = accuracy(r.samples, moments)
    ess = common.min_ess(stan_names(r.samples, moments))
    finite = {
        k: v for k, v in acc.items() if np.isfinite(v["z_mean"]) and np.isfinite(v["sd_ratio"])
    }
    if len(finite) < len(acc):  # non-finite draws: no figure can pass
        zp = sdp_lo = sdp_hi = next(k for k in acc if k not in finite)
        max_z, sd_lo, sd_hi = float("inf"), float("nan"), float("nan")
    else:
        zp = max(acc, key=lambda k: acc[k]["z_mean"])
        sdp_lo = min(acc, key=lambda k: acc[k]["sd_ratio"])
        sdp_hi = max(acc, key=lambda k: acc[k]["sd_ratio"])
        max_z, sd_lo, sd_hi = acc[zp]["z_mean"], acc[sdp_lo]["sd_ratio"], acc[sdp_hi]["sd_ratio"]
    accurate = bool(max_z <= Z_TARGET and SD_TARGET[0] <= sd_lo and sd_hi <= SD_TARGET[1])
    rhat = common.max_rhat(stan_names(r.samples, moments))
    num_draws = np.shape(next(iter(r.samples.values())))[1]
    trusted = common.diagnostics_pass(
        rhat["r_hat"], ess["ess_bulk"], ess["ess_tail"], r.divergences, num_chains, num_draws
    )
    passed = accurate and trusted
    grads = r.grad_evals_warmup + r.grad_evals_sample
    total = r.warmup_s + r.sample_s
    return {
        "target": target.name,
        "dim": target.dim,
        "sampler": sampler,
        "num_chains": num_chains,
        "pass": passed,
        "pass_accuracy": accurate,
        "pass_diagnostics": trusted,
        **rhat,
        "max_z": max_z,
        "max_z_param": zp,
        "sd_ratio_min": sd_lo,
        "sd_ratio_min_param": sdp_lo,
        "sd_ratio_max": sd_hi,
        "sd_ratio_max_param": sdp_hi,
        **ess,
        **common.efficiency(ess["ess_bulk"], total, grads),
        "ess_per_s_sampling": ess["ess_bulk"] / r.sample_s if r.sample_s > 0 else float("nan"),
        "ess_per_s_with_compile": ess["ess_bulk"] / (total + r.compile_s),
        "divergences": r.divergences,
        "mean_accept_prob": r.accept,
        "warmup_s": r.warmup_s,
        "sample_s": r.sample_s,
        "total_s": total,
        "compile_s": r.compile_s,
        "grad_evals": grads,
        "grad_evals_warmup": r.grad_evals_warmup,
        **r.extra,
        "accuracy": acc,
    }


def _settings(quick: bool, only: dict[str, list] | None = None) -> dict[str, Any]:
    settings = _default_settings(quick)
    for key, values in (only or {}).items():
        if values:
            unknown = sorted(set(values) - set(settings[key]))
            if unknown:
                raise ValueError(f"unknown {key}: {unknown}; choose from {settings[key]}")
            settings[key] = [v for v in settings[key] if v in values]
    return settings


def _default_settings(quick: bool) -> dict[str, Any]:
    return {
        "targets": list(QUICK_TARGETS) if quick else list(TARGETS),
        "dims": {name: TARGETS[name].dim for name in (QUICK_TARGETS if quick else TARGETS)},
        "references": {
            name: TARGETS[name].reference for name in (QUICK_TARGETS if quick else TARGETS)
        },
        "reference_quality": {
            name: reference_quality(name) for name in (QUICK_TARGETS if quick else TARGETS)
        },
        "samplers": list(SAMPLERS),
        "num_chains": [4] if quick else [4, 64],
        "num_warmup": 50 if quick else 1000,
        "num_samples": 50 if quick else 1000,
        "repeats": 1,
        "chain_method": "vectorized",
        "dtype": "float32",
        "seed": 0,
        "xla_flags": XLA_FLAG,
        "chees": {
            "learning_rate": CHEES_LEARNING_RATE,
            "initial_step_size": CHEES_INITIAL_STEP,
            "mass_matrix_estimation": "diagonal",
        },
        "pass_definition": (
            f"every |mean - ref| / ref sd <= {Z_TARGET} and sd ratio in {list(SD_TARGET)},"
            f" and R-hat <= {RHAT_TARGET}, bulk and tail ESS >= {ESS_PER_CHAIN_TARGET} per chain,"
            f" divergent transitions <= {DIVERGENT_FRACTION_TARGET:.0%} of the draws"
        ),
        "time_definition": "ess_per_s: warmup + sampling; ess_per_s_sampling: sampling only; compilation apart",
        "ess_definition": "min over reference parameters of ArviZ bulk (tail) ESS",
    }


def _run_here(
    quick: bool,
    on_row: Callable[[dict, list], None] | None = None,
    only: dict[str, list] | None = None,
) -> dict[str, Any]:
    """Run every chain count x target x sampler in this process (flag already set)."""
    settings = _settings(quick, only)
    runs: list[dict] = []
    for num_chains in settings["num_chains"]:
        for name in settings["targets"]:
            for sampler in settings["samplers"]:
                start = time.perf_counter()
                try:
                    row = measure(TARGETS[name], sampler, num_chains, settings, settings["seed"])
                except Exception as error:  # a failed run is a result too; keep going
                    traceback.print_exc()
                    row = {
                        "target": name,
                        "dim": TARGETS[name].dim,
                        "sampler": sampler,
                        "num_chains": num_chains,
                        "pass": False,
                        "error": f"{type(error).__name__}: {error}",
                    }
                row["wall_s"] = time.perf_counter() - start
                runs.append(row)
                print(_progress_line(row), flush=True)
                if on_row is not None:
                    on_row(settings, runs)
    return {"suite": "hard_geometry", "settings": settings, "runs": runs}


def _progress_line(row: dict) -> str:
    head = f"  {row['target']} {row['sampler']} x{row['num_chains']}:"
    if "error" in row:
        return f"{head} ERROR {row['error']}"
    return (
        f"{head} pass {row['pass']} z {row['max_z']:.3f} sd [{row['sd_ratio_min']:.2f},"
        f" {row['sd_ratio_max']:.2f}] ess {row['ess_bulk']:.0f}/{row['ess_tail']:.0f}"
        f" ess/s {row['ess_per_s']:.1f} ess/1k {row['ess_per_1k_grads']:.2f}"
        f" div {row['divergences']} ({row['wall_s']:.0f} s)"
    )


def flag_set() -> bool:
    return XLA_FLAG in os.environ.get("XLA_FLAGS", "").split()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join([*env.get("XLA_FLAGS", "").split(), XLA_FLAG])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run(quick: bool = False) -> dict[str, Any]:
    """Run the suite (see the module docstring); re-executes itself under :data:`XLA_FLAG` if needed."""
    if flag_set():
        return _run_here(quick)
    return run_under_flag("benchmarks.hard_geometry", quick)


def run_under_flag(module: str, quick: bool) -> dict[str, Any]:
    """Run ``python -m module --result FILE [--quick]`` under :data:`XLA_FLAG`; its result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", module, "--result", str(out)]
        subprocess.run(
            command + (["--quick"] if quick else []), cwd=ROOT, env=child_env(), check=True
        )
        return json.loads(out.read_text())


def flagged_main(module: str, run: Callable[[bool], dict], description: str, argv=None) -> None:
    """``python -m module [--quick]``: the command line that :func:`run_under_flag` calls."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny version (for tests)")
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # used by run_under_flag
    args = parser.parse_args(argv)
    result = run(args.quick)
    if args.result is not None:
        args.result.write_text(json.dumps(result, default=jsonable))


# ----------------------------------------------------------------------------- command line


def merge_records(records: list[dict]) -> dict:
    """One record from several partial runs (``--chains``/``--targets``/``--samplers``).

    Runs are keyed by (chain count, target, sampler); a later record's run
    replaces an earlier one's.  Settings list the union, in the suite's order.
    """
    runs: dict[tuple, dict] = {}
    for record in records:
        for r in record["runs"]:
            runs[(r["num_chains"], r["target"], r["sampler"])] = r
    full = _default_settings(quick=False)
    settings = dict(records[-1]["settings"])
    for key in ("targets", "samplers", "num_chains"):
        present = {v for record in records for v in record["settings"][key]}
        settings[key] = [v for v in full[key] if v in present]
    settings["dims"] = {t: TARGETS[t].dim for t in settings["targets"]}
    settings["references"] = {t: TARGETS[t].reference for t in settings["targets"]}
    settings["reference_quality"] = {t: reference_quality(t) for t in settings["targets"]}
    merged = dict(records[-1])
    merged.update(
        settings=settings,
        runs=sorted(
            runs.values(),
            key=lambda r: (
                full["num_chains"].index(r["num_chains"]),
                full["targets"].index(r["target"]),
                full["samplers"].index(r["sampler"]),
            ),
        ),
        # runs of several commits are marked as such (one run of one commit is the norm)
        git=_merged_git([record.get("git") for record in records]),
        wall_time_s=sum(record["wall_time_s"] for record in records),
        command="; ".join(record["command"] for record in records),
        complete=all(record.get("complete", False) for record in records),
    )
    return merged


def _merged_git(states: list[dict | None]) -> dict | None:
    distinct = {json.dumps(g, sort_keys=True) for g in states}
    if len(distinct) == 1:
        return states[-1]
    return {"commit": None, "dirty": None, "merged_from": states}


def _record(
    settings: dict, runs: list, start: float, quick: bool, complete: bool, provenance: dict
) -> dict:
    from benchmarks.run import load_average, machine, package_versions

    return {
        "schema_version": common.SCHEMA_VERSION,
        "suite": "hard_geometry",
        "quick": quick,
        "complete": complete,
        "date": provenance["date"],
        "git": provenance["git"],
        "load_average": {"start": provenance["load_average"], "end": load_average()},
        "versions": package_versions(),
        "machine": machine(),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.hard_geometry", *sys.argv[1:]]
        ),
        "wall_time_s": time.perf_counter() - start,
        "settings": settings,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.hard_geometry [--quick] [--out PATH]``: run, writing after every run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hard_geometry", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny version (for tests)")
    parser.add_argument("--out", type=Path, help="write the full JSON record here after every run")
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # used by run()
    parser.add_argument("--chains", type=int, nargs="+", help="only these chain counts (4, 64)")
    parser.add_argument("--targets", nargs="+", help="only these targets")
    parser.add_argument("--samplers", nargs="+", help="only these samplers")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="merge these partial results into --out, run nothing"
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_records([json.loads(p.read_text()) for p in args.merge])
        args.out.write_text(json.dumps(merged, indent=1, default=jsonable) + "\n")
        return
    if not flag_set():
        # re-execute with the flag before JAX creates its backend
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "benchmarks.hard_geometry", *sys.argv[1:]],
            child_env(),
        )
    from benchmarks.run import git_state, load_average, utc_now

    # the commit, date and load of the run's start (runs the same as run.py records)
    provenance = {"date": utc_now(), "git": git_state(), "load_average": load_average()}
    start = time.perf_counter()

    def write(settings, runs, complete=False):
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            record = _record(settings, runs, start, args.quick, complete, provenance)
            args.out.write_text(json.dumps(record, indent=1, default=jsonable) + "\n")

    only = {"num_chains": args.chains, "targets": args.targets, "samplers": args.samplers}
    result = _run_here(args.quick, on_row=write, only=only)
    write(result["settings"], result["runs"], complete=True)
    if args.result is not None:
        args.result.write_text(json.dumps(result, default=jsonable))


def jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    main()
