"""The hard_geometry section of the benchmark page, from the suite's JSON.

:func:`report` writes one table per chain count (pass, accuracy, diagnostics,
ESS and cost of every target and sampler), the weak references, and a summary
(pass counts, and where NUTS or ChEES-HMC beats DilationLangevin).  It reads
the sizes and sampler names from the result's ``settings``; the suite is
:mod:`benchmarks.hard_geometry`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.geometry_samplers import SAMPLER_LABELS
from benchmarks.geometry_targets import REFERENCE_MIN_ESS, RHAT_TARGET, Z_TARGET, reference_quality

__all__ = ["report"]


def _fmt(x: Any, spec: str) -> str:
    return common.fmt(x, spec, missing="-")


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: one table per chain count, pass counts and NUTS comparisons."""
    s = result["settings"]
    runs = result["runs"]
    samplers = s["samplers"]
    labels = [SAMPLER_LABELS.get(n, n) for n in samplers]
    lines = [
        "## hard_geometry: accuracy and cost on hard posteriors",
        "",
        (
            "Targets: " + ", ".join(f"`{t}` (d = {s['dims'][t]})" for t in s["targets"]) + "."
            " References: exact moments for the banana, the funnel and the ill-conditioned Gaussian;"
            " posteriordb's reference draws for the posteriordb models and the centred eight schools;"
            " quadrature over the two noise scales for the Brownian bridge; long float64 NUTS runs"
            " (non-centred; cached in `benchmarks/references/`) for the others."
        ),
        "",
        (
            f"Samplers: {', '.join(labels)}; {s['num_warmup']} warmup + {s['num_samples']} draws per"
            f" chain, {s['chain_method']} chains, {s['dtype']}, one timed run each, under"
            f" `XLA_FLAGS={s['xla_flags']}`. ChEES-HMC: `blackjax.chees_adaptation` (diagonal metric"
            f" estimated over the ensemble, Adam at {s['chees']['learning_rate']}) then"
            " `blackjax.dynamic_hmc` with the jittered trajectory length it tuned."
        ),
        "",
        (
            "Columns: *pass* = every |mean - ref| / ref sd <= 0.1 and every sd ratio in [0.9, 1.1],"
            " and, in runs that recorded them, the diagnostics Stan asks for: R-hat <= 1.01, bulk"
            " and tail ESS >= 100 per chain, at most 1% divergent transitions (*no (diagnostics)*:"
            " accurate but not to be trusted from its diagnostics; *R-hat* = the largest over"
            " parameters);"
            " *z* = largest standardised mean error; *sd ratio* = smallest and largest sd / ref sd;"
            " *ESS* = minimum bulk / tail ESS over parameters; *ESS/s* = min bulk ESS per second of"
            " warmup + sampling, and of sampling alone (compilation excluded, shown apart);"
            " *ESS/1k grad* = per 1000 gradient evaluations of warmup + sampling, all chains;"
            " *div* = divergent transitions while sampling.  For DilationLangevin, *(warned)*"
            " marks a run that gave a `SamplerHealthWarning` (convergence, divergences, acceptance"
            " or step size) and *(silent)* a failed run that gave none."
        ),
        "",
    ]
    quality = s.get("reference_quality") or {t: reference_quality(t) for t in s["targets"]}
    weak = {t for t, q in quality.items() if q and q["weak"]}
    if weak:
        lines += [
            "*(weak ref.)*: a float64 NUTS reference too noisy to judge the pass bar (bulk ESS"
            f" below {REFERENCE_MIN_ESS} in some parameter, so that its own Monte Carlo error in"
            f" a mean is above a third of the bar of {Z_TARGET} sd), or one that fails the"
            f" diagnostics asked of the samplers (R-hat above {RHAT_TARGET}, divergent"
            " transitions): "
            + "; ".join(
                f"`{t}`: min bulk ESS {quality[t]['min_ess_bulk']:.0f}, max R-hat"
                f" {quality[t]['max_r_hat']:.3f}, {quality[t]['divergences']} divergent"
                for t in sorted(weak)
            )
            + ".  Its moments carry that run's Monte Carlo error (1 / sqrt(ESS) reference sd"
            " in a mean), so a miss or a pass near the bar says little there.",
            "",
        ]
    for num_chains in s["num_chains"]:
        sub = [r for r in runs if r["num_chains"] == num_chains]
        if not sub:
            continue
        lines += [
            f"### {num_chains} chains",
            "",
            "| target | sampler | pass | z | sd ratio | R-hat | ESS bulk / tail | ESS/s (sampling) | ESS/1k grad | div | time s | compile s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub:
            label = SAMPLER_LABELS.get(r["sampler"], r["sampler"])
            target = r["target"] + (" (weak ref.)" if r["target"] in weak else "")
            if "error" in r:
                lines.append(f"| {target} | {label} | error | {r['error']} |||||||")
                continue
            verdict = "yes" if r["pass"] else "**no**"
            if not r["pass"] and r.get("pass_accuracy"):
                verdict = "**no** (diagnostics)"
            if "warnings" in r:  # DilationLangevin: did it warn?
                verdict += " (warned)" if r["warnings"] else ("" if r["pass"] else " (silent)")
            lines.append(
                f"| {target} | {label} | {verdict}"
                f" | {_fmt(r['max_z'], '.3f')} | {_fmt(r['sd_ratio_min'], '.2f')}-{_fmt(r['sd_ratio_max'], '.2f')}"
                f" | {_fmt(r.get('r_hat'), '.3f')} | {r['ess_bulk']:.0f} / {r['ess_tail']:.0f}"
                f" | {_fmt(r['ess_per_s'], '.1f')} ({_fmt(r['ess_per_s_sampling'], '.1f')})"
                f" | {_fmt(r['ess_per_1k_grads'], '.2f')} | {r['divergences']}"
                f" | {r['total_s']:.1f} | {r['compile_s']:.1f} |"
            )
        lines.append("")
    commands = [c for c in result.get("command", "").split("; ") if c]
    if len(commands) > 1:
        lines += [
            (
                f"These tables merge {len(commands)} runs (`python -m benchmarks.hard_geometry"
                " --merge`; the record's `command` lists them, a later run's rows replacing an"
                " earlier one's).  Samplers measured in the same run are side by side; a ratio"
                " between rows of different runs also carries the machine's load at each time."
            ),
            "",
        ]
    lines += ["### Summary", ""] + _summary(result)
    return "\n".join(lines)


def _summary(result: dict[str, Any]) -> list[str]:
    """Pass counts per sampler, and where NUTS still wins on ESS/s."""
    s, runs = result["settings"], result["runs"]
    out = []
    for num_chains in s["num_chains"]:
        for sampler in s["samplers"]:
            rows = [r for r in runs if r["num_chains"] == num_chains and r["sampler"] == sampler]
            if rows:
                passed = [r["target"] for r in rows if r["pass"]]
                out.append(
                    f"- {num_chains} chains, {SAMPLER_LABELS.get(sampler, sampler)}: passes"
                    f" {len(passed)}/{len(rows)} targets."
                )
    for num_chains in s["num_chains"]:
        pick = {
            (r["target"], r["sampler"]): r
            for r in runs
            if r["num_chains"] == num_chains and "error" not in r
        }
        only_nuts = [
            t
            for t in s["targets"]
            if (t, "NUTS") in pick
            and (t, "DilationLangevin") in pick
            and pick[(t, "NUTS")]["pass"]
            and not pick[(t, "DilationLangevin")]["pass"]
        ]
        if only_nuts:
            out.append(
                f"- {num_chains} chains: NUTS passes and DilationLangevin (defaults) does not on "
                + ", ".join(only_nuts)
                + "."
            )
        # a ratio against a sampler that failed measures nothing
        for peer in ("NUTS", "NUTS (dense)"):
            for field, what in (
                ("ess_per_s", "compilation excluded"),
                ("ess_per_s_with_compile", "compilation included"),
            ):
                ratios = [
                    (t, pick[(t, "DilationLangevin")][field] / pick[(t, peer)][field])
                    for t in s["targets"]
                    if (t, "DilationLangevin") in pick
                    and (t, peer) in pick
                    and pick[(t, "DilationLangevin")]["pass"]
                    and pick[(t, peer)]["pass"]
                    and field in pick[(t, peer)]
                ]
                if not ratios:
                    continue
                wins = [f"{t} ({q:.2f}x)" for t, q in ratios if not q >= 1]
                values = [q for _, q in ratios]
                out.append(
                    f"- {num_chains} chains, ESS/s of DilationLangevin / {SAMPLER_LABELS[peer]}"
                    f" ({what}) where both passed: {min(values):.2f}x-{max(values):.2f}x on"
                    f" {len(ratios)} targets; {SAMPLER_LABELS[peer]} wins on {len(wins)}"
                    + (": " + ", ".join(wins) if wins else "")
                    + "."
                )
        for peer in ("NUTS", "NUTS (dense)", "ChEES-HMC"):
            for field, what in (("ess_per_1k_grads", "ESS per gradient"), ("ess_per_s", "ESS/s")):
                if peer.startswith("NUTS") and field == "ess_per_s":
                    continue  # the lines above
                wins = [
                    t
                    for t in s["targets"]
                    if (t, "DilationLangevin") in pick
                    and (t, peer) in pick
                    and pick[(t, peer)][field] > pick[(t, "DilationLangevin")][field]
                ]
                if wins:
                    out.append(
                        f"- {num_chains} chains: {SAMPLER_LABELS[peer]} has the higher {what} on "
                        + ", ".join(wins)
                        + "."
                    )
        dilation = [
            pick[(t, "DilationLangevin")] for t in s["targets"] if (t, "DilationLangevin") in pick
        ]
        failed = [r for r in dilation if not r["pass"] and "warnings" in r]
        if failed:
            silent = [r["target"] for r in failed if not r["warnings"]]
            out.append(
                f"- {num_chains} chains, DilationLangevin (defaults): {len(failed) - len(silent)} of"
                f" {len(failed)} failed runs gave a `SamplerHealthWarning`"
                + (f"; silent: {', '.join(silent)}" if silent else "")
                + "."
            )
    return out
