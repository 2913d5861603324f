"""Multimodal suite: mode weights on mixtures with known weights, equivariance, cost, label switching.

The pieces live in their own modules: the targets in :mod:`benchmarks.mixtures`,
the metrics in :mod:`benchmarks.mode_metrics`, the samplers in
:mod:`benchmarks.mixture_samplers`, parallel tempering in
:mod:`benchmarks.tempering`, the label-switching posteriors in
:mod:`benchmarks.label_switching`, the sizes and sampler names in
:mod:`benchmarks.multimodal_settings` and the report section (:func:`report`)
in :mod:`benchmarks.multimodal_report`; this module plans and runs them
(:func:`run`).

Groups of runs (256 vectorised chains each in the full configuration):

- ``main``: every base target (:func:`benchmarks.mixtures.targets`) with
  DilationLangevin (defaults, and ``ensemble=True``; 1000 warmup + 1000 draws,
  every chain started at the origin), NUTS (1000 warmup + 1000 draws, chains
  started uniformly in the box around the modes), parallel tempering at the
  ensemble's own gradients per chain on the target (``pt_matched``: TFP's
  ``ReplicaExchangeMC``, ladder tuned as Syed et al. 2021), AIES and BlackJAX
  tempered SMC at :data:`~benchmarks.multimodal_settings.BUDGET` evaluations
  per chain, and DilationLangevin without the path (``mala_no_path``, one
  annealing step from ``t_min = 0.99``; an ablation).  ``exact`` rows hold the Monte Carlo floors.
- ``equivariance``: the translated and scaled copies of every base target
  (:func:`benchmarks.mixtures.copies`), DilationLangevin only (both kernels),
  with the same random key as on the original.
- ``label_switching``: the galaxy-velocity mixture (real data, not centred)
  and the synthetic mixture of the package's examples, with DilationLangevin
  (both kernels) and, on the galaxies, NUTS.
- ``ablation``: the path's ``alpha`` and annealing length on two targets.

The full run is ordered so that the most informative runs come first (the
core comparison on every base target, then the copies, the real-data
posterior, the other baselines, the synthetic label switching and the
ablation), checkpoints its results after every run to
``results/multimodal.partial.json`` and, started again with the same settings,
resumes from that file (the runs done are kept; each run's random key depends
only on its target and sampler, not on the order).  The checkpoint is removed
when the run completes.

Run with ``python -m benchmarks.run multimodal`` (or ``python -m
benchmarks.multimodal [--quick] [--targets ...] [--samplers ...] [--chains N
--warmup N --samples N]`` for a standalone or reduced run: see :func:`main`).

JSON layout of :func:`run`: ``{"suite": "multimodal", "settings": {...},
"runs": [...], "provenance": {...}}``.  ``settings`` holds the sizes
(``num_chains``, ``num_warmup``, ``num_samples``, ``budget``,
``smc_particles``, ``energy_draws``, ``found_fraction``, ``pt`` (the
parallel-tempering constants), ``shift_seed``, ``shift_multiples``,
``scale_factors``, ``shift_directions`` (the unit direction of the shifts,
per dimension), ``targets`` (per target: label, dim, weights, scales, first
two coordinates of the means, ``df``, and for copies ``base`` and
``transform``) and ``label_switching`` (per model: description, K).
``provenance`` holds ``git`` (commit, dirty), ``date_start``/``date_end`` and
``load_average`` (``start``/``end``) of this run, and ``resumed_from`` (the
provenance of the checkpoints it continued).

Each entry of ``runs`` has ``target``, ``sampler``, ``group`` and:

- main and equivariance runs: ``tv``, ``coverage``, ``modes_found``,
  ``mode_fractions``, ``energy_distance``, ``far_fraction``,
  ``chains_switching``, ``num_nonfinite``, ``grads_per_chain``,
  ``grads_total``, ``ess_bulk`` (ArviZ bulk ESS, minimum over coordinates;
  ``null`` for SMC), ``ess_per_1k_grads``, ``ess_per_s`` (compilation
  included), ``ess_per_s_sampling`` (excluded), ``wall_s``, ``compile_s``,
  ``sample_s``; copies add ``base`` and ``transform``; sampler extras:
  ``step_size`` and ``ensemble`` (DilationLangevin, where the kernel reports
  them), ``grads_warmup_per_chain``/``divergences`` (NUTS),
  ``density_evals_*`` (AIES, and PT's density evaluations), SMC's
  ``num_tempering_steps`` etc., ``pt`` (replicas, ladder, barrier by round,
  swap rejection by pair, HMC acceptance and step size by replica) and
  ``budget`` (``pt_matched``);
- ``exact`` rows: the floors (``tv``, ``energy_distance``, ``mode_fractions``
  = the true region masses, ``coverage``, ``far_fraction``);
- label switching: ``fractions`` (per labelling), ``max_abs_error``,
  ``num_components``, ``outside_fraction`` (draws whose log-likelihood is more
  than 50 below the best EM fit, ``loglik_reference``), ``loglik_median``,
  ``sorted_mu_median``, ``grads_per_chain``, ``grads_total``, ``ess_bulk``
  (unconstrained draws), ``divergences`` (NUTS), timings;
- ablation: the main fields plus ``alpha`` and ``num_anneal_steps``.

A subset or resized run is marked ``"subset": true``.
"""
from __future__ import annotations

import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax import random

from benchmarks import tempering
from benchmarks.common import SCHEMA_VERSION, release_compiled_code
from benchmarks.label_switching import MODELS, run_model
from benchmarks.mixture_samplers import (
    run_aies,
    run_dilation,
    run_nuts,
    run_smc,
    timed_with_compile,
)
from benchmarks.mixtures import (
    SCALE_FACTORS,
    SHIFT_MULTIPLES,
    SHIFT_SEED,
    Mixture,
    all_targets,
    copies,
    shift_direction,
    targets,
)
from benchmarks.mode_metrics import (
    ENERGY_DRAWS,
    FAR_QUANTILE,
    FOUND_FRACTION,
    entropic_coverage,
    min_bulk_ess,
    reference,
    score,
)
from benchmarks.multimodal_report import followup_report, report
from benchmarks.multimodal_settings import (
    ABLATION,
    ABLATION_ADAPT,
    ABLATION_TARGETS,
    BUDGET,
    COPY_SAMPLERS,
    CORE_SAMPLERS,
    LABEL_SAMPLERS,
    NUM_CHAINS,
    NUM_SAMPLES,
    NUM_WARMUP,
    OTHER_SAMPLERS,
    QUICK,
    QUICK_LABEL,
    QUICK_PLAN,
    SAMPLER_LABELS,
    SEED,
    SMC_PARTICLES,
)

__all__ = ["followup_report", "main", "report", "run"]

#: Where an unfinished full run keeps its results so far (not committed).
PARTIAL = Path(__file__).resolve().parent / "results" / "multimodal.partial.json"


# ----------------------------------------------------------------------------- plan


def _run_key(target: str, sampler: str) -> jax.Array:
    """The random key of one run: depends on the (base) target and sampler only."""
    return random.fold_in(random.PRNGKey(SEED), zlib.crc32(f"{target}/{sampler}".encode()) & 0x7FFFFFFF)


def _base_order(names) -> list[str]:
    # cheap and low-dimensional first; the long d > 16 runs last
    base = targets()
    return sorted(names, key=lambda n: (base[n].dim > 16, base[n].dim))


def full_plan() -> list[tuple[str, str, str]]:
    """``(group, target or model, sampler)`` of the full run, most informative first."""
    base = _base_order(targets())
    plan = [("main", t, s) for t in base for s in CORE_SAMPLERS]
    plan += [("equivariance", c.name, s) for t in base for c in copies(targets()[t])
             for s in COPY_SAMPLERS]
    plan += [("label_switching", "galaxies_k3", s) for s in LABEL_SAMPLERS["galaxies_k3"]]
    plan += [("main", t, s) for t in base for s in OTHER_SAMPLERS]
    plan += [("label_switching", "gmm_label_switching", s)
             for s in LABEL_SAMPLERS["gmm_label_switching"]]
    plan += [("ablation", t, f"alpha={a:g}, anneal={n}") for t in ABLATION_TARGETS
             for a, n in ABLATION]
    return plan


def subset_plan(only_targets: list[str] | None, only_samplers: list[str] | None) -> list[tuple]:
    """The runs of a subset: named targets (base, copies or label-switching models) and samplers."""
    every = all_targets()
    samplers = set(only_samplers or ())
    plan = []
    for name in only_targets or _base_order(targets()):
        if name in MODELS:
            plan += [("label_switching", name, s) for s in LABEL_SAMPLERS[name]
                     if not samplers or s in samplers]
        elif name in every and every[name].base is not None:
            plan += [("equivariance", name, s) for s in COPY_SAMPLERS if not samplers or s in samplers]
        elif name in every:
            plan += [("main", name, s) for s in (*CORE_SAMPLERS, *OTHER_SAMPLERS)
                     if not samplers or s in samplers]
        else:
            valid = sorted([*every, *MODELS])
            raise ValueError(f"only_targets: unknown target {name!r}; valid: {valid}")
    return plan


def quick_plan() -> list[tuple[str, str, str]]:
    plan = [("equivariance" if "@" in t else "main", t, s) for t, ss in QUICK_PLAN.items() for s in ss]
    return plan + [("label_switching", m, s) for m, ss in QUICK_LABEL.items() for s in ss]


# ----------------------------------------------------------------------------- running


def _samplers(s: dict) -> dict[str, Callable]:
    common = {"num_chains": s["num_chains"], "num_warmup": s["num_warmup"],
              "num_samples": s["num_samples"]}
    return {
        "dilation": lambda t, k: run_dilation(t, k, **common),
        "dilation_ensemble": lambda t, k: run_dilation(t, k, ensemble=True, **common),
        "nuts": lambda t, k: run_nuts(t, k, **common),
        "aies": lambda t, k: run_aies(t, k, num_chains=s["num_chains"], budget=s["budget"]),
        "smc": lambda t, k: run_smc(t, k, num_particles=s["smc_particles"],
                                    num_chains=s["num_chains"], budget=s["budget"]),
        # no path: one annealing step from t_min = 0.99 (num_anneal_steps must be >= 1)
        "mala_no_path": lambda t, k: run_dilation(t, k, num_anneal_steps=1, t_min=0.99, **common),
    }


def _efficiency(row: dict) -> None:
    """Add ESS per 1000 gradients and per second (compilation included and excluded)."""
    ess, grads = row.get("ess_bulk"), row.get("grads_total") or 0.0
    ok = ess is not None and math.isfinite(ess)
    row["ess_per_1k_grads"] = 1000.0 * ess / grads if ok and grads > 0 else None
    row["ess_per_s"] = ess / row["wall_s"] if ok and row.get("wall_s") else None
    row["ess_per_s_sampling"] = ess / row["sample_s"] if ok and row.get("sample_s") else None


def _settings(s: dict, plan: list[tuple]) -> dict:
    every = all_targets()
    names = list(dict.fromkeys(t for g, t, _ in plan if g != "label_switching"))
    # an equivariance table needs the originals' exact rows: describe the bases too
    names += [every[n].base for n in names if every[n].base and every[n].base not in names]
    dims = sorted({every[n].dim for n in names if every[n].base is not None})
    return {
        **s,
        "seed": SEED,
        "energy_draws": ENERGY_DRAWS, "found_fraction": FOUND_FRACTION,
        "far_quantile": FAR_QUANTILE, "ablation_adapt": ABLATION_ADAPT,
        "pt": {"num_leapfrog": tempering.PT_LEAPFROG, "pilot_replicas": tempering.PT_PILOT_REPLICAS,
               "pilot_min_beta": tempering.PT_PILOT_BETA, "min_replicas": tempering.PT_MIN_REPLICAS,
               "max_replicas": tempering.PT_MAX_REPLICAS, "rounds": tempering.PT_ROUNDS,
               "target_accept": tempering.PT_TARGET_ACCEPT, "beta_min": 0.0,
               "reference": "Gaussian over the box around the modes"},
        "shift_seed": SHIFT_SEED, "shift_multiples": list(SHIFT_MULTIPLES),
        "scale_factors": list(SCALE_FACTORS),
        "shift_directions": {str(d): shift_direction(d).round(8).tolist() for d in dims},
        "targets": {n: _describe(every[n]) for n in names},
        "label_switching": {m: {"description": MODELS[m][0], "num_components": MODELS[m][1]}
                            for m in dict.fromkeys(t for g, t, _ in plan if g == "label_switching")},
    }


def _describe(t: Mixture) -> dict:
    out = {"label": t.label, "dim": t.dim, "weights": t.weights.tolist(),
           "scales": t.scales.tolist(), "means": t.means[:, :2].tolist(), "df": t.df}
    if t.base is not None:
        out["base"] = t.base
        out["transform"] = t.transform
    return out


def _provenance() -> dict:
    from benchmarks.run import git_state, load_average, utc_now

    return {"git": git_state(), "date": utc_now(), "load_average": load_average()}


def run(quick: bool = False, only_targets: list[str] | None = None,
        only_samplers: list[str] | None = None, sizes: dict | None = None,
        resume: bool = True) -> dict:
    """Run the suite.

    Parameters
    ----------
    quick : bool, default False
        Tiny version (16 chains, 40 + 40 iterations; :data:`QUICK_PLAN` and
        :data:`QUICK_LABEL`: the ensemble, NUTS and PT on ``gauss2d_4``, the
        ensemble on ``gauss2d_4@shift100``, the default kernel on the galaxy
        mixture) that only shows that the pipeline works.
    only_targets, only_samplers : list of str, optional
        Run only these targets (base targets, copies or label-switching models)
        and samplers (keys of :data:`SAMPLER_LABELS`).  The result is marked
        ``"subset": true``.
    sizes : dict, optional
        Overrides of ``num_chains``, ``num_warmup``, ``num_samples`` (a reduced
        configuration; marked ``"subset": true``).
    resume : bool, default True
        Continue a full run from its checkpoint when the settings match.

    Returns
    -------
    dict
        See the module docstring.
    """
    jax.config.update("jax_enable_x64", False)
    subset = only_targets is not None or only_samplers is not None or bool(sizes)
    for name in only_samplers or ():
        if name not in SAMPLER_LABELS or name in ("exact", "pt"):
            raise ValueError(f"only_samplers: unknown sampler {name!r}; valid:"
                             f" {sorted(set(SAMPLER_LABELS) - {'exact', 'pt'})}")
    s = dict(QUICK) if quick else {"num_chains": NUM_CHAINS, "num_warmup": NUM_WARMUP,
                                   "num_samples": NUM_SAMPLES, "budget": BUDGET,
                                   "smc_particles": SMC_PARTICLES}
    s.update(sizes or {})
    if quick and not (only_targets or only_samplers):
        plan = quick_plan()
    elif only_targets or only_samplers:
        plan = subset_plan(only_targets, only_samplers)
    else:
        plan = full_plan()
    settings = _settings(s, plan)
    every = all_targets()
    samplers = _samplers(s)
    partial_path = PARTIAL.with_name("multimodal.subset.partial.json") if subset else PARTIAL
    provenance = {**_provenance(), "resumed_from": []}
    provenance["date_start"] = provenance.pop("date")
    provenance["load_average"] = {"start": provenance.pop("load_average")}
    runs: list[dict] = []
    if resume and not quick and partial_path.exists():
        old = json.loads(partial_path.read_text())
        if old.get("settings") == json.loads(json.dumps(settings)):
            runs = old["runs"]
            provenance["resumed_from"] = [*old.get("provenance", {}).get("resumed_from", []),
                                          {k: v for k, v in old.get("provenance", {}).items()
                                           if k != "resumed_from"}]
            print(f"resuming from {partial_path} ({len(runs)} runs done)", flush=True)
        else:
            print(f"{partial_path} has other settings: starting afresh", flush=True)
    done = {(r["group"], r["target"], r["sampler"]) for r in runs}

    def checkpoint():
        # a long run on a busy machine can be cut short: keep what is done so far
        if not quick:
            partial_path.parent.mkdir(parents=True, exist_ok=True)
            partial_path.write_text(json.dumps({"suite": "multimodal", "settings": settings,
                                                "runs": runs, "partial": True, "subset": subset,
                                                "provenance": provenance}, indent=1, default=float))

    refs: dict[str, Any] = {}

    def ref_of(target: Mixture):
        if target.name not in refs:
            refs[target.name] = reference(target, s["num_chains"] * s["num_samples"])
            if ("exact", target.name) not in {(r["sampler"], r["target"]) for r in runs}:
                ref = refs[target.name]
                runs.append({"target": target.name, "sampler": "exact",
                             "group": "equivariance" if target.base else "main",
                             "tv": ref.tv_floor, "modes_found": 1.0,
                             "mode_fractions": ref.region_mass.round(5).tolist(),
                             "coverage": entropic_coverage(ref.region_mass),
                             "far_fraction": 1.0 - FAR_QUANTILE,
                             "energy_distance": ref.energy_floor})
        return refs[target.name]

    def record(target: Mixture, name: str, group: str, out: dict, **extra):
        draws = out.pop("draws")
        row = {"target": target.name, "sampler": name, "group": group, **extra,
               **score(target, ref_of(target), draws), **out}
        if target.base is not None:
            row["base"], row["transform"] = target.base, target.transform
        row["ess_bulk"] = min_bulk_ess(draws) if draws.shape[0] > 1 else None
        _efficiency(row)
        runs.append(row)
        steps = row.get("step_size")
        spread = f" h min/median={steps['min']:.2g}/{steps['median']:.2g}" if steps else ""
        ess = row["ess_bulk"]
        print(f"  {target.name:22s} {name:20s} TV={row['tv']:.3f} found={row['modes_found']:.2f}"
              f" ED={row['energy_distance']:.3f} far={row['far_fraction']:.3f}"
              f" grads/chain={row['grads_per_chain']:.0f}"
              f" ESS={'-' if ess is None else format(ess, '.0f')}"
              f" sample={row['sample_s']:.1f}s compile={row['compile_s']:.1f}s{spread}", flush=True)

    for group, tname, name in plan:
        if (group, tname, name) in done:
            continue
        if group == "label_switching":
            out = timed_with_compile(lambda m=tname, n=name: run_model(
                m, n, _run_key(m, n), num_chains=s["num_chains"], num_warmup=s["num_warmup"],
                num_samples=s["num_samples"]))
            _efficiency(out)
            runs.append({"target": tname, "sampler": name, "group": group, **out})
            print(f"  label switching {tname} {name}: max |frac - 1/K!| ="
                  f" {out['max_abs_error']:.3f}, grads/chain {out['grads_per_chain']:.0f}"
                  f" ({out['sample_s']:.1f}s + compile {out['compile_s']:.1f}s)", flush=True)
        elif group == "ablation":
            target = every[tname]
            alpha, anneal = _parse_ablation(name)
            out = timed_with_compile(lambda t=target, a=alpha, n=anneal: run_dilation(
                t, _run_key(t.name, f"ablation {a} {n}"), num_chains=s["num_chains"],
                num_warmup=n + ABLATION_ADAPT, num_samples=s["num_samples"], alpha=a,
                num_anneal_steps=n))
            record(target, name, group, out, alpha=alpha, num_anneal_steps=anneal)
        else:
            target = every[tname]
            key = _run_key(target.base or target.name, name)
            if name == "pt_matched":
                ens = next((r for r in runs if r["target"] == tname
                            and r["sampler"] == "dilation_ensemble"), None)
                if ens is None:  # nothing to match
                    continue
                budget = round(ens["grads_per_chain"])
                out = timed_with_compile(lambda t=target, k=key, b=budget: tempering.run_pt(
                    t, k, num_chains=s["num_chains"], budget=b))
                record(target, name, group, out, budget=budget)
            else:
                record(target, name, group, timed_with_compile(lambda n=name, t=target, k=key: samplers[n](t, k)))
        checkpoint()
        release_compiled_code()

    provenance["date_end"] = _provenance()["date"]
    provenance["load_average"]["end"] = _provenance()["load_average"]
    out = {"suite": "multimodal", "settings": settings, "runs": runs, "provenance": provenance}
    if subset:
        out["subset"] = True
    if not quick and not subset and partial_path.exists():
        partial_path.unlink()  # complete: the next run starts afresh
    return out


def _parse_ablation(name: str) -> tuple[float, int]:
    a, n = name.split(", ")
    return float(a.split("=")[1]), int(n.split("=")[1])



def main(argv: list[str] | None = None) -> None:
    """Standalone run: ``python -m benchmarks.multimodal [--quick] [--targets ...] [--samplers ...]``.

    A full run writes ``results/multimodal.json`` (the suite's JSON with the
    provenance that ``python -m benchmarks.run multimodal`` also records), a
    quick one ``results/quick/multimodal.json``, a subset or resized run
    ``results/multimodal.subset.partial.json`` (not committed), unless
    ``--out`` names a file.
    """
    import argparse

    from benchmarks.run import load_average, machine, package_versions

    parser = argparse.ArgumentParser(prog="python -m benchmarks.multimodal",
                                     description="Multimodal benchmark suite (standalone).")
    parser.add_argument("--quick", action="store_true", help="tiny settings (a couple of minutes)")
    parser.add_argument("--targets", nargs="+", metavar="TARGET",
                        choices=sorted([*all_targets(), *MODELS]),
                        help="run only these targets (base targets, copies such as"
                             " gauss2d_4@shift100, or label-switching models)")
    parser.add_argument("--samplers", nargs="+", metavar="SAMPLER",
                        choices=sorted(set(SAMPLER_LABELS) - {"exact", "pt"}),
                        help="run only these samplers")
    parser.add_argument("--chains", type=int, help="number of chains (a reduced configuration)")
    parser.add_argument("--warmup", type=int, help="warmup iterations")
    parser.add_argument("--samples", type=int, help="draws per chain")
    parser.add_argument("--fresh", action="store_true", help="ignore the checkpoint of a cut run")
    parser.add_argument("--out", type=Path, help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = {k: v for k, v in (("num_chains", args.chains), ("num_warmup", args.warmup),
                               ("num_samples", args.samples)) if v is not None}
    load_start = load_average()
    t0 = time.perf_counter()
    res = run(quick=args.quick, only_targets=args.targets, only_samplers=args.samplers,
              sizes=sizes or None, resume=not args.fresh)
    wall = time.perf_counter() - t0
    print(f"total {wall:.1f}s")
    # the layout benchmarks.run writes; the commit is the one the run started at
    res = {"schema_version": SCHEMA_VERSION, "suite": "multimodal", "quick": args.quick,
           "date": res["provenance"]["date_start"],
           "git": res["provenance"]["git"],
           "load_average": {"start": load_start, "end": load_average()},
           "versions": package_versions(), "machine": machine(),
           "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.multimodal",
                                *(sys.argv[1:] if argv is None else argv)]),
           "wall_time_s": wall, **res}
    results = Path(__file__).resolve().parent / "results"
    if args.out is not None:
        path = args.out
    elif res.get("subset"):
        path = results / "multimodal.subset.partial.json"
    else:
        path = results / "quick" / "multimodal.json" if args.quick else results / "multimodal.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
