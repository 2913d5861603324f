"""The multimodal section of the benchmark page, from the suite's JSON.

:func:`report` writes the headline table (mode-weight TV, modes found,
coverage, energy distance, far draws, cost), the equivariance, cost, label
switching, ensemble, step-size and parallel-tempering tables, the issue
targets measured against :data:`TV_TARGET` and the other tolerances,
where a peer wins, and three figures.  It reads the sizes from the result's
``settings``; the suite is :mod:`benchmarks.multimodal`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.label_switching import BULK_DROP, MODELS
from benchmarks.mixtures import SCALE_FACTORS, SHIFT_MULTIPLES
from benchmarks.multimodal_settings import COPY_SAMPLERS, NUM_CHAINS, SAMPLER_LABELS

__all__ = [
    "EQUIVARIANCE_TOL",
    "LABEL_TARGET_TOL",
    "MAIN_ORDER",
    "OUTSIDE_TOL",
    "TV_TARGET",
    "followup_report",
    "report",
]

#: Issue targets (reported, not asserted).
#: Issue 20: the ensemble's mode-weight TV on every target of the suite (it
#: replaced issue 5's 0.10 at d = 32, and the unequal-width targets, which had none).
TV_TARGET = 0.05
LABEL_TARGET_TOL = 0.03
#: Largest fraction of label-switching draws allowed outside the posterior bulk.
OUTSIDE_TOL = 0.01
#: Largest |TV(copy) - TV(original)| the issue allows ``ensemble=True``.
EQUIVARIANCE_TOL = 0.02

MAIN_ORDER = ("dilation_ensemble", "dilation", "pt_matched", "pt", "nuts", "aies", "smc",
              "mala_no_path", "exact")
PEERS = ("pt_matched", "pt", "nuts", "aies", "smc")


def _fmt(x: Any, spec: str = ".3f") -> str:
    return common.fmt(x, spec, missing="–")


def _cost(r: dict) -> tuple[str, str]:
    if r["sampler"] == "aies":
        return f"{r['density_evals_per_chain']:.0f} dens.", f"{r['density_evals_total']:.3g} dens."
    if r["sampler"] == "exact":
        return "–", "–"
    return f"{r['grads_per_chain']:.0f}", f"{r['grads_total']:.3g}"


#: Labels of the report being written (see :func:`report`: older results relabel PT).
_labels = dict(SAMPLER_LABELS)
OLD_PT_MATCHED = "parallel tempering (hand-written HMC PT of older results), the ensemble's gradients"


def _label(name: str) -> str:
    return _labels.get(name, name)


def report(result: dict, figure_dir: Path) -> str:
    """Markdown section for ``docs/benchmarks.md``.

    Parameters
    ----------
    result : dict
        The output of :func:`benchmarks.multimodal.run` (as stored in
        ``benchmarks/results/multimodal.json``).
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
    _labels.clear()
    _labels.update(SAMPLER_LABELS)
    if any(r["sampler"] == "pt_matched" and "barrier_by_round" not in r.get("pt", {}) for r in runs):
        _labels["pt_matched"] = OLD_PT_MATCHED  # results recorded before TFP's PT
    main = [r for r in runs if r["group"] == "main"]
    equi = [r for r in runs if r["group"] == "equivariance"]
    label = [r for r in runs if r["group"] == "label_switching"]
    tnames = list(dict.fromkeys(r["target"] for r in main))
    tinfo = s["targets"]
    by = {(r["target"], r["sampler"]): r for r in main + equi}
    quick = s["num_chains"] < NUM_CHAINS
    out = ["## Multimodal: mode weights on mixtures with known weights", ""]
    if quick:
        out += [("*Quick or reduced run (small settings): the numbers below only show the suite"
                 " works.*"), ""]
    if result.get("subset"):
        out += ["*Subset run: only some targets and samplers.*", ""]
    if result.get("partial"):
        out += [("**Partial results: the full run was cut short**; the tables show the runs"
                 " done."), ""]
    out += _intro(s, main)
    out += ["| target | d | modes |", "|---|---|---|"]
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
                f"| `{t}` | {_label(name)} | {_fmt(r['tv'])} | {_fmt(r['modes_found'], '.2f')}"
                f" | {_fmt(r.get('coverage'))}"
                f" | {_fmt(r['energy_distance'])} | {_fmt(r.get('far_fraction'), '.4f')}"
                f" | {_fmt(r.get('chains_switching'), '.2f')}"
                f" | {per} | {tot} | {_fmt(r.get('sample_s'), '.1f')}"
                f" | {_fmt(r.get('compile_s'), '.1f')} |")
    if tnames:
        fig = _figure_tv(main, tnames, figure_dir)
        out += ["", f"![TV by sampler and target](benchmarks/{fig})", ""]
    out += _equivariance_section(by, equi, s)
    out += _cost_section(by, tnames, s)
    out += _label_section(label, s)
    out += _ensemble_section(by, tnames)
    out += _step_size_section(main)
    out += _pt_section(main)
    out += _targets_section(by, tnames, equi, label)
    abl = [r for r in runs if r["group"] == "ablation"]
    if abl:
        fig = _figure_ablation(abl, by, figure_dir, s)
        out += ["### Ablation: the path's alpha and length", "",
                (f"Non-ensemble kernel; warmup = annealing + {s['ablation_adapt']} iterations at t = 1"
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
    if tnames:
        fig = _figure_fractions(main, tnames, figure_dir)
        out += [f"![Mode fractions against the truth](benchmarks/{fig})", ""]
    out += _peer_wins(by, tnames, equi, label)
    out += _observations(by, tnames, abl)
    return "\n".join(out)


def _intro(s: dict, main: list[dict]) -> list[str]:
    pt = s.get("pt", {})
    out = [
        (f"{s['num_chains']} chains per sampler (vectorised).  Every DilationLangevin chain starts"
         " at the origin (the dilation centre); NUTS, AIES and parallel tempering start from"
         " uniform draws in a box 3 component scales beyond the modes.  DilationLangevin runs its"
         f" defaults, {s['num_warmup']} warmup + {s['num_samples']} draws, and spends what it"
         " spends; NUTS runs the same numbers of warmup iterations and draws (its gradients per"
         " chain, 1 + the leapfrog steps of warmup and sampling, are what the cost table compares)."
         f"  AIES and SMC are given {s['budget']} evaluations per chain (AIES: density evaluations,"
         f" half warmup; SMC: {s['smc_particles']} particles from a Gaussian over the box, as many"
         " MALA steps per tempering step as fill the budget, set by an uncounted pilot run)."),
        "",
    ]
    if any(r["sampler"] == "pt_matched" for r in main) and pt:
        out += [
            ("Parallel tempering (PT) is TensorFlow Probability's `ReplicaExchangeMC` (JAX"
             f" substrate) with HMC ({pt.get('num_leapfrog')} leapfrog steps) in every replica and"
             " the deterministic even-odd swaps of non-reversible PT, on the path from a Gaussian"
             " reference over the box (beta = 0) to the target (beta = 1).  The ladder is tuned as"
             " Syed et al. (2021) describe: rounds of doubling length in the first half of the"
             " budget; after each, the swap rejection rate of each neighbouring pair (pooled over"
             " chains) gives the cumulative barrier Lambda(beta), and the new inverse temperatures"
             " sit at equal increments of Lambda.  A pilot round with"
             f" {pt.get('pilot_replicas')} replicas sets the number of replicas to"
             f" ceil(2 Lambda) + 1 (between {pt.get('min_replicas')} and {pt.get('max_replicas')});"
             " step sizes per replica are adapted towards an HMC acceptance of"
             f" {pt.get('target_accept')}.  Every gradient is counted, tuning included: each"
             " iteration costs replicas x (leapfrog steps + 1) gradients, since TFP re-evaluates"
             " the gradient of every replica after the swaps.  PT is given the ensemble's own"
             " gradients per chain on each target: the comparison at equal cost."),
            "",
        ]
    out += [
        ("- **TV**: total variation between the fraction of draws in each mode (the component"
         " of highest normalised log density, weights left out) and the true mass of that region"
         " (10^6 exact draws).  The *exact* row is the TV of as many independent exact draws: the"
         " Monte Carlo floor for a perfect sampler."),
        (f"- **modes found**: fraction of modes holding at least {s['found_fraction']:.0%} of the"
         " draws (every mode holds at least 2% of the mass)."),
        ("- **coverage**: entropic mode coverage, the entropy of the mode fractions over"
         " log(number of modes); the *exact* row is the truth's (1 for equal weights)."),
        ("- **far draws**: fraction of the draws farther from every mode (in that mode's scales)"
         " than all but 0.1% of the exact draws (0.001 for a perfect sampler): chains lost in the"
         " tails."),
        (f"- **energy distance** between {s['energy_draws']} draws taken at random over chains and"
         f" iterations and {s['energy_draws']} exact draws; the *exact* row is its floor."),
        ("- **grads/chain**: gradient evaluations per chain, warmup (and PT's tuning) included"
         f" (SMC: total / {s['num_chains']}); AIES counts density evaluations.  Times: sampling"
         " wall seconds with compilation excluded, and compile seconds apart (JAX's compile"
         " events), from one run each."),
        ("- **chains changing mode**: fraction of chains whose draws visit more than one mode"
         " (not defined for SMC's particles)."),
        "",
    ]
    return out


def _equivariance_section(by: dict, equi: list[dict], s: dict) -> list[str]:
    """TV of each base target and of its translated and scaled copies, both kernels."""
    rows = [r for r in equi if r["sampler"] in COPY_SAMPLERS]
    if not rows:
        return []
    bases = list(dict.fromkeys(r["base"] for r in rows))
    suffixes = ([f"@shift{m:g}" for m in s.get("shift_multiples", SHIFT_MULTIPLES)]
                + [f"@scale{f:g}" for f in s.get("scale_factors", SCALE_FACTORS)])
    shifts = ", ".join(f"{m:g}" for m in s.get("shift_multiples", SHIFT_MULTIPLES))
    factors = " and ".join(f"{f:g}" for f in s.get("scale_factors", SCALE_FACTORS))
    out = ["### Equivariance: translated and scaled copies", "",
           (f"Each base target moved by {shifts} times its largest mode standard deviation"
            f" along one fixed random unit direction (seed {s.get('shift_seed')}), and scaled by"
            f" {factors} about the origin; the mode masses are unchanged.  DilationLangevin with"
            " the same random key as on the original, chains still started at the origin.  The"
            " last column is the largest |TV(copy) - TV(original)|; the issue asks for at most"
            f" {EQUIVARIANCE_TOL} with `ensemble=True`."), "",
           "| target | sampler | original | " + " | ".join(f"`{x}`" for x in suffixes)
           + " | max abs. change |",
           "|---|---|---|" + "---|" * len(suffixes) + "---|"]
    for b in bases:
        for name in COPY_SAMPLERS:
            orig = by.get((b, name))
            tvs = [by.get((b + x, name), {}).get("tv") for x in suffixes]
            if orig is None and all(v is None for v in tvs):
                continue
            diffs = [abs(v - orig["tv"]) for v in tvs if v is not None and orig is not None]
            worst = max(diffs) if diffs else None
            flag = ""
            if worst is not None and name == "dilation_ensemble" and worst > EQUIVARIANCE_TOL:
                flag = " **(over)**"
            out.append(f"| `{b}` | {_label(name)} | {_fmt(orig and orig['tv'])} | "
                       + " | ".join(_fmt(v) for v in tvs) + f" | {_fmt(worst)}{flag} |")
    return out + [""]


def _cost_section(by: dict, tnames: list[str], s: dict | None = None) -> list[str]:
    """Gradients per chain, ESS per 1000 gradients and ESS per second: both kernels and NUTS."""
    kernels = ("dilation_ensemble", "dilation", "nuts")
    rows = [t for t in tnames if any((t, k) in by for k in kernels)]
    if not rows:
        return []
    s = {"num_warmup": "the same", "num_samples": "the same", **(s or {})}
    out = [f"### Cost: DilationLangevin against NUTS ({s['num_warmup']} + {s['num_samples']})", "",
           ("NUTS runs as many warmup iterations and draws as DilationLangevin."
            "  Gradients per chain, warmup included; the ratio is DilationLangevin's over NUTS's"
            " (the issue asks for at most 1 with both kernels).  ESS is ArviZ's bulk ESS of each"
            " coordinate over all chains, minimum over coordinates; per 1000 gradients of all"
            " chains, and per second with compilation included and excluded (compile seconds"
            " apart).  On a multimodal target a low ESS also reflects mode weights that the chains"
            " do not share."), "",
           ("| target | grads/chain ens. / def. / NUTS | ratio ens. / def. | ESS ens. / def. / NUTS"
            " | ESS per 1k grads ens. / def. / NUTS | ESS/s incl. compile | ESS/s excl. compile"
            " | compile s |"),
           "|---|---|---|---|---|---|---|---|"]

    def trio(t, key, spec):
        return " / ".join(_fmt(by.get((t, k), {}).get(key), spec) for k in kernels)

    for t in rows:
        n = by.get((t, "nuts"), {}).get("grads_per_chain")
        ratios = " / ".join(
            _fmt(by[(t, k)]["grads_per_chain"] / n if (t, k) in by and n else None, ".2f")
            for k in kernels[:2])
        out.append(f"| `{t}` | {trio(t, 'grads_per_chain', '.0f')} | {ratios}"
                   f" | {trio(t, 'ess_bulk', '.0f')} | {trio(t, 'ess_per_1k_grads', '.2f')}"
                   f" | {trio(t, 'ess_per_s', '.1f')} | {trio(t, 'ess_per_s_sampling', '.1f')}"
                   f" | {trio(t, 'compile_s', '.1f')} |")
    return out + [""]


def _label_section(label: list[dict], s: dict) -> list[str]:
    if not label:
        return []
    out = ["### Label switching", ""]
    models = s.get("label_switching") or {}
    for m in dict.fromkeys(r["target"] for r in label):
        rows = [r for r in label if r["target"] == m]
        perms = list(rows[0]["fractions"])
        k = rows[0].get("num_components") or models.get(m, {}).get("num_components") or 3
        desc = models.get(m, {}).get("description") or MODELS.get(m, ("", 0))[0]
        ref = next((r["loglik_reference"] for r in rows if "loglik_reference" in r), None)
        out += [(f"`{m}`: {desc}.  Fraction of draws in each of the {k}! = {len(perms)}"
                 f" labellings (order of the component means; truth 1/{len(perms)} ="
                 f" {1 / len(perms):.3f}).  DilationLangevin starts at the origin of unconstrained"
                 " space; NUTS from a draw of the prior.  Uniform fractions only mean something"
                 " for draws from the posterior (chains left near the origin order their"
                 " near-zero means at random): *outside bulk* is the fraction of draws whose"
                 f" log-likelihood is more than {BULK_DROP:g} below the best EM fit"
                 + (f" ({ref:.1f})" if ref is not None else "")
                 + ", and the median of the sorted component means shows where the draws are."),
                "",
                "| sampler | " + " | ".join(f"`{p}`" for p in perms)
                + " | max abs. error | outside bulk | median sorted means | grads/chain"
                " | ESS (unconstr.) | sampling s | compile s |",
                "|---|" + "---|" * (len(perms) + 7)]
        for r in rows:
            means = r.get("sorted_mu_median")
            out.append(f"| {_label(r['sampler'])} | "
                       + " | ".join(f"{r['fractions'][p]:.3f}" for p in perms)
                       + f" | {r['max_abs_error']:.3f} | {_fmt(r.get('outside_fraction'))}"
                       + f" | {', '.join(f'{v:.0f}' for v in means) if means else '–'}"
                       + f" | {r['grads_per_chain']:.0f}"
                       + f" | {_fmt(r.get('ess_bulk'), '.0f')} | {_fmt(r.get('sample_s'), '.1f')}"
                       + f" | {_fmt(r.get('compile_s'), '.1f')} |")
        out.append("")
    return out


def _ensemble_section(by: dict, tnames: list[str]) -> list[str]:
    ens = [by[(t, "dilation_ensemble")] for t in tnames
           if (t, "dilation_ensemble") in by and by[(t, "dilation_ensemble")].get("ensemble")]
    if not ens:
        return []
    out = ["### Ensemble moves", "",
           ("Cumulative over warmup and sampling; acceptance and final move probabilities"
            " of each move type (as the kernel reports them)."), "",
           ("| target | mode jumps / chain | acceptance by move | move probs | population prob"
            " | clusters |"), "|---|---|---|---|---|---|"]
    for r in ens:
        e = r["ensemble"]
        out.append(
            f"| `{r['target']}` | {_fmt(e.get('mode_jumps_per_chain'), '.1f')} | "
            + ", ".join(f"{a:.3f}" for a in e.get("accept_rate_by_move", [])) + " | "
            + ", ".join(f"{a:.2f}" for a in e.get("move_probs", []))
            + f" | {_fmt(e.get('population_prob'), '.2f')} | {e.get('num_clusters', '–')} |")
    return out + [""]


def _step_size_section(main: list[dict]) -> list[str]:
    """Spread of DilationLangevin's adapted step sizes across chains."""
    rows = [r for r in main if r.get("step_size")]
    if not rows:
        return []
    out = ["### Adapted step sizes across chains", "",
           ("DilationLangevin's final adapted step size over chains; a chain below 1e-3 of the"
            " median has stopped moving."), "",
           "| target | sampler | min | median | max | min / median | chains < 1e-3 median |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r["step_size"]
        out.append(f"| `{r['target']}` | {_label(r['sampler'])} | {h['min']:.2g}"
                   f" | {h['median']:.2g} | {h['max']:.2g} | {h['min_over_median']:.2g}"
                   f" | {h['frac_below_1e-3_median']:.1%} |")
    return out + [""]


def _pt_section(main: list[dict]) -> list[str]:
    """Parallel tempering's tuned ladder, barrier, swap rejection and HMC acceptance per target."""
    rows = [r for r in main if r["sampler"] == "pt_matched" and "barrier_by_round" in r.get("pt", {})]
    if not rows:
        return []
    out = ["### Parallel tempering", "",
           ("The tuned ladder: replicas (the pilot's barrier sets them), the barrier estimate"
            " Lambda after each tuning round, and over the sampling phase the swap rejection of"
            " each neighbouring pair (coldest first) and the HMC acceptance of each replica."), "",
           ("| target | grads/chain (tuning) | replicas | Lambda by round | draws per chain"
            " | swap rejection by pair | HMC acceptance by replica |"),
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["pt"]
        out.append(f"| `{r['target']}` | {r['grads_per_chain']:.0f} ({p['grads_tuning']:.0f})"
                   f" | {p['num_replicas']} | " + ", ".join(f"{b:.2f}" for b in p["barrier_by_round"])
                   + f" | {p['num_samples']} | "
                   + ", ".join(f"{a:.2f}" for a in p["swap_rejection_by_pair"]) + " | "
                   + ", ".join(f"{a:.2f}" for a in p["hmc_accept_by_replica"]) + " |")
    return out + [""]


def _targets_section(by: dict, tnames: list[str], equi: list[dict],
                     label: list[dict]) -> list[str]:
    """The issues' targets, measured; misses say by how much."""
    out = ["### Issue targets, measured", "",
           "| target | requirement | measured | met |", "|---|---|---|---|"]
    misses = []

    def row(t, req, measured, ok, miss):
        out.append(f"| `{t}` | {req} | {measured} | {'yes' if ok else '**no**'} |")
        if not ok:
            misses.append(f"`{t}`: {req}, missed by {miss}")

    for t in tnames:
        e = by.get((t, "dilation_ensemble"))
        d = by.get((t, "dilation"))
        n = by.get((t, "nuts"))
        if e is not None:
            row(t, f"ensemble TV <= {TV_TARGET:.2f}", f"{e['tv']:.3f}", e["tv"] <= TV_TARGET,
                f"{e['tv'] - TV_TARGET:.3f}")
            p = by.get((t, "pt_matched"))
            if p is not None:
                row(t, "ensemble TV at or below PT's at the ensemble's grads/chain",
                    f"{e['tv']:.3f} vs {p['tv']:.3f}", e["tv"] <= p["tv"], f"{e['tv'] - p['tv']:.3f}")
            copies_tv = [r["tv"] for r in equi if r.get("base") == t and r["sampler"] == "dilation_ensemble"]
            if copies_tv:
                worst = max(abs(v - e["tv"]) for v in copies_tv)
                row(t, f"ensemble: largest change of TV on the copies <= {EQUIVARIANCE_TOL}",
                    f"{worst:.3f}",
                    worst <= EQUIVARIANCE_TOL, f"{worst - EQUIVARIANCE_TOL:.3f}")
        if n is not None:
            for r in (e, d):
                if r is not None:
                    row(t, f"{_label(r['sampler'])}: grads/chain <= NUTS's",
                        f"{r['grads_per_chain']:.0f} vs {n['grads_per_chain']:.0f}",
                        r["grads_per_chain"] <= n["grads_per_chain"],
                        f"{r['grads_per_chain'] - n['grads_per_chain']:.0f} gradients per chain")
    for r in label:
        if r["sampler"] == "nuts":
            continue
        k = len(r["fractions"])
        err = r["max_abs_error"]
        row(r["target"], f"{_label(r['sampler'])}: every labelling 1/{k} ± {LABEL_TARGET_TOL}",
            f"max abs. error {err:.3f}", err <= LABEL_TARGET_TOL, f"{err - LABEL_TARGET_TOL:.3f}")
        outside = r.get("outside_fraction")
        if outside is not None:
            row(r["target"], f"{_label(r['sampler'])}: at most {OUTSIDE_TOL:.0%} of the draws"
                " outside the posterior bulk", f"{outside:.3f}", outside <= OUTSIDE_TOL,
                f"{outside - OUTSIDE_TOL:.3f}")
    out.append("")
    out += (["Missed: " + "; ".join(misses) + ".", ""] if misses
            else ["Every target above is met.", ""])
    return out


def _peer_wins(by: dict, tnames: list[str], equi: list[dict], label: list[dict]) -> list[str]:
    """Where a peer beats DilationLangevin ``ensemble=True``, computed from the rows."""
    notes = []
    for t in tnames:
        e = by.get((t, "dilation_ensemble"))
        if e is None:
            continue
        floor = by.get((t, "exact"), {}).get("tv", 0.0)
        better = [(by[(t, p)]["tv"], p) for p in PEERS
                  if (t, p) in by and by[(t, p)]["tv"] < e["tv"] - floor]
        if better:
            notes.append(f"`{t}`: lower TV than the ensemble's {e['tv']:.3f} from "
                         + ", ".join(f"{_label(p)} ({v:.3f})" for v, p in sorted(better)) + ".")
        n = by.get((t, "nuts"))
        if n is not None:
            cheaper = n["grads_per_chain"] < e["grads_per_chain"]
            eff = [(k, by[(t, k)].get("ess_per_1k_grads")) for k in ("dilation_ensemble", "dilation")
                   if (t, k) in by]
            nuts_eff = n.get("ess_per_1k_grads")
            if cheaper:
                notes.append(f"`{t}`: NUTS spends fewer gradients per chain ({n['grads_per_chain']:.0f}"
                             f" against the ensemble's {e['grads_per_chain']:.0f}).")
            beaten = [k for k, v in eff if v is not None and nuts_eff is not None and nuts_eff > v]
            if beaten:
                notes.append(f"`{t}`: NUTS has more ESS per 1000 gradients ({nuts_eff:.2f}) than "
                             + " and ".join(f"{_label(k)} ({by[(t, k)]['ess_per_1k_grads']:.2f})"
                                            for k in beaten) + ".")
    for m in dict.fromkeys(r["target"] for r in label):
        rows = {r["sampler"]: r for r in label if r["target"] == m}
        ens, nuts = rows.get("dilation_ensemble"), rows.get("nuts")
        for r in (ens, rows.get("dilation")):
            if r is not None and (r.get("outside_fraction") or 0.0) > OUTSIDE_TOL:
                notes.append(f"`{m}`: {_label(r['sampler'])} leaves {r['outside_fraction']:.0%}"
                             " of its draws outside the posterior bulk (median sorted means "
                             + ", ".join(f"{v:.0f}" for v in r.get("sorted_mu_median", []))
                             + "): its labelling fractions say nothing about the posterior"
                             + (f"; NUTS leaves {nuts['outside_fraction']:.0%}"
                                if nuts is not None and "outside_fraction" in nuts else "")
                             + ".")
        if ens is not None and nuts is not None and nuts["max_abs_error"] < ens["max_abs_error"]:
            notes.append(f"`{m}`: NUTS's labelling fractions are closer to uniform (max error"
                         f" {nuts['max_abs_error']:.3f} against {ens['max_abs_error']:.3f}), from"
                         " prior draws that already spread its chains over the labellings; its"
                         f" gradients per chain: {nuts['grads_per_chain']:.0f} against"
                         f" {ens['grads_per_chain']:.0f}.")
    for b in dict.fromkeys(r.get("base") for r in equi):
        orig = by.get((b, "dilation_ensemble"))
        if orig is None:
            continue
        worst = max(((abs(r["tv"] - orig["tv"]), r["target"]) for r in equi
                     if r.get("base") == b and r["sampler"] == "dilation_ensemble"), default=None)
        if worst is not None and worst[0] > EQUIVARIANCE_TOL:
            notes.append(f"`{worst[1]}`: the ensemble's TV moves by {worst[0]:.3f} from the"
                         " original's: the sampler is not invariant to where the target sits.")
    out = ["### Where a peer wins", ""]
    if notes:
        out += [("Computed from the tables above (a peer's TV counts as lower when it is below the"
                 " ensemble's by more than the exact draws' floor):"), ""]
        out += [f"- {n}" for n in notes]
    else:
        out.append("No peer beats DilationLangevin `ensemble=True` on TV, gradients per chain,"
                   " ESS per gradient or labelling fractions in these runs.")
    return out + [""]


def _observations(by: dict, tnames: list[str], abl: list[dict]) -> list[str]:
    """Closing notes computed from the figures (which sampler wins where, and the spread)."""
    out = ["### Reading the numbers", ""]
    samplers = [n for n in MAIN_ORDER if n != "exact"]
    for t in tnames:
        rows = [(by[(t, n)]["tv"], n) for n in samplers if (t, n) in by]
        if rows:
            best_tv, best = min(rows)
            out.append(f"- `{t}`: lowest TV {best_tv:.3f} ({_label(best)}); "
                       + ", ".join(f"{_label(n)} {v:.3f}" for v, n in rows if n != best) + ".")
    for name in ("nuts", "dilation", "mala_no_path"):
        rows = [by[(t, name)] for t in tnames if (t, name) in by]
        sw = [r["chains_switching"] for r in rows if r.get("chains_switching") is not None]
        if rows and sw:
            out.append(
                f"- {_label(name)}: TV {min(r['tv'] for r in rows):.3f}-"
                f"{max(r['tv'] for r in rows):.3f}, and at most {max(sw):.0%} of its chains ever"
                " change mode during sampling.")
    for t in dict.fromkeys(r["target"] for r in abl):
        rows = [r for r in abl if r["target"] == t]
        worst = max(rows, key=lambda r: r["tv"])
        best = min(rows, key=lambda r: r["tv"])
        default = f"; defaults {by[(t, 'dilation')]['tv']:.3f}" if (t, "dilation") in by else ""
        out.append(f"- Ablation on `{t}`: TV from {best['tv']:.3f} (alpha {best['alpha']:g},"
                   f" {best['num_anneal_steps']} annealing steps) to {worst['tv']:.3f} (alpha"
                   f" {worst['alpha']:g}, {worst['num_anneal_steps']} steps){default}.")
    out.append("")
    return out if len(out) > 3 else []


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
               width, label=_label(name))
    ax.axhline(TV_TARGET, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(tnames)), tnames, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("mode-weight TV (log)")
    ax.set_title(f"Mode-weight TV (dashed: the {TV_TARGET} target)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    name = "multimodal_tv.png"
    fig.savefig(figure_dir / name, dpi=110)
    plt.close(fig)
    return name


def _figure_ablation(abl: list[dict], by: dict, figure_dir: Path, s: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tnames = list(dict.fromkeys(r["target"] for r in abl))
    fig, axes = plt.subplots(1, len(tnames), figsize=(4.5 * len(tnames), 3.4), squeeze=False)
    for ax, t in zip(axes[0], tnames):
        rows = [r for r in abl if r["target"] == t]
        if (t, "dilation") in by:
            rows.append({**by[(t, "dilation")], "alpha": 0.75,
                         "num_anneal_steps": s["num_warmup"] // 2})
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


def _figure_fractions(main: list[dict], tnames: list[str], figure_dir: Path) -> str:
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
        truth = next((r["mode_fractions"] for r in main if r["target"] == t
                      and r["sampler"] == "exact"), None)
        if truth is None:
            continue
        k = np.arange(len(truth))
        ax.bar(k, truth, color="lightgray", label="truth")
        for j, name in enumerate(names):
            r = next((r for r in main if r["target"] == t and r["sampler"] == name), None)
            if r is not None:
                ax.plot(k + (j - len(names) / 2) * 0.08, r["mode_fractions"], "o", ms=3,
                        label=_label(name))
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


def _commit(result: dict) -> str:
    return ((result.get("git") or {}).get("commit") or "?")[:7]


def followup_report(full: dict, followup: dict) -> str:
    """A later subset run beside the full run's rows for the same targets and samplers.

    ``followup`` is a subset run of :mod:`benchmarks.multimodal` at a later
    commit (same settings and random keys); each of its runs whose figures
    differ from the full run's for the same target and sampler is shown beside
    them, and the runs that gave the same figures are counted, so that a change
    made after the full run is measured where it acts, without passing the
    subset off as the suite.
    """
    old = {(r["target"], r["sampler"]): r for r in full["runs"]}
    s = followup["settings"]

    def error(r: dict) -> Any:
        return r.get("tv", r.get("max_abs_error"))

    def figures(r: dict) -> tuple:
        return error(r), r.get("modes_found"), r.get("grads_per_chain")

    runs = [r for r in followup["runs"] if r["sampler"] != "exact"]
    changed = [r for r in runs if figures(r) != figures(old.get((r["target"], r["sampler"]), {}))]
    same = len(runs) - len(changed)
    out = ["### Follow-up: a later commit on some targets", "",
           (f"A subset of the suite rerun at commit {_commit(followup)} (the full run above"
            f" is {_commit(full)}), with the suite's settings ({s['num_chains']} chains,"
            f" {s['num_warmup']} + {s['num_samples']}) and random keys; what changed in"
            f" between is in the changelog.  Of its {len(runs)} runs, {same}"
            " gave the full run's figures exactly; the table lists the others, each cell"
            " the full run's figure, then the subset's."), "",
           ("| target | sampler | TV (label switching: largest error of a labelling)"
            " | modes found | grads/chain |"), "|---|---|---|---|---|"]
    for r in changed:
        o = old.get((r["target"], r["sampler"]), {})
        pairs = zip(figures(o), figures(r), (".3f", ".2f", ".0f"))
        cells = [f"{_fmt(a, spec)} → {_fmt(b, spec)}" for a, b, spec in pairs]
        out.append(f"| `{r['target']}` | {_label(r['sampler'])} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"
