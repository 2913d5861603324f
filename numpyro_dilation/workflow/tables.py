"""The tables of a comparison: per parameter, per sampler, and per mode.

:func:`comparison_tables` puts ArviZ's summary statistics of every sampler side
by side (:data:`~numpyro_dilation.workflow.results.PARAMETER_COLUMNS`) and
reduces each run to one row of cost, efficiency and diagnostics
(:data:`~numpyro_dilation.workflow.results.SAMPLER_COLUMNS`, with warnings in
``flags``); :func:`mode_table` counts the draws in each mode of a multimodal
posterior and :func:`add_mode_flags` adds its warnings to the sampler table.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from numpyro_dilation.workflow.inference_data import get_group
from numpyro_dilation.workflow.results import (
    MAX_MEAN_ERROR_MCSE,
    MAX_MODE_TV,
    MAX_R_HAT,
    MIN_ESS,
    PARAMETER_COLUMNS,
    SamplerRun,
)


def summary(idata, var_name: str) -> pd.DataFrame:
    """ArviZ's summary of one variable (94% HDI, unrounded), in ArviZ 0.x's column names."""
    import arviz as az

    if "hdi_prob" in inspect.signature(az.summary).parameters:  # ArviZ 0.x
        df = az.summary(idata, var_names=[var_name], hdi_prob=0.94, round_to="none")
    else:  # ArviZ 1.x
        df = az.summary(idata, var_names=[var_name], ci_prob=0.94, ci_kind="hdi", round_to="none")
        df = df.rename(columns={"hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%"})
    return df[list(PARAMETER_COLUMNS)].astype(float)


def mode_labels(mode_fn, draws: Mapping[str, np.ndarray], lead: int) -> np.ndarray:
    """Apply ``mode_fn`` to every draw; ``lead`` leading axes index the draws."""
    names = list(draws)
    shape = next(iter(draws.values())).shape[:lead]
    flat = {k: v.reshape(-1, *v.shape[lead:]) for k, v in draws.items()}
    n = int(np.prod(shape))
    labels = np.empty(n, dtype=object)
    for i in range(n):
        labels[i] = str(mode_fn({k: flat[k][i] for k in names}))
    return labels.reshape(shape)


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance between two mode-fraction tables (label -> fraction)."""
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def mode_fractions(labels: np.ndarray) -> dict[str, float]:
    """Fraction of ``labels`` equal to each distinct label."""
    values, counts = np.unique(labels.ravel().astype(str), return_counts=True)
    return {str(v): c / labels.size for v, c in zip(values, counts, strict=True)}


def comparison_tables(
    runs: Mapping[str, SamplerRun],
    draws: Mapping[str, Mapping[str, np.ndarray]],
    var_names: list[str],
    ref_moments: Mapping[str, tuple[np.ndarray, np.ndarray]],
    settings: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The parameter and sampler tables of a comparison.

    Parameters
    ----------
    runs : mapping of str to SamplerRun
        The runs, by sampler name.
    draws : mapping of str to dict
        Each sampler's posterior as arrays ``(chain, draw, ...)``.
    var_names : list of str
        Variables of the parameter table (the sampler table covers all).
    ref_moments : mapping of str to (mean, sd)
        Reference moments per variable (may be empty).
    settings : mapping
        ``num_chains`` and ``num_samples`` of the runs.

    Returns
    -------
    parameters, samplers : pandas.DataFrame
        As :attr:`~numpyro_dilation.workflow.results.ComparisonData.parameters`
        and :attr:`~numpyro_dilation.workflow.results.ComparisonData.samplers`.
    """
    param_frames = {}
    rows = {}
    for name, run in runs.items():
        posterior = draws[name]
        per_var = {}
        for var in posterior:
            df = summary(run.idata, var)
            if var in ref_moments:
                ref_mean, ref_sd = ref_moments[var]
                values = posterior[var].reshape(-1, *posterior[var].shape[2:])
                df["z_mean"] = ((values.mean(0) - ref_mean) / ref_sd).ravel()
                df["sd_ratio"] = (values.std(0, ddof=1) / ref_sd).ravel()
            per_var[var] = df
        every = pd.concat(per_var.values())
        param_frames[name] = pd.concat([per_var[v] for v in var_names])

        stats = get_group(run.idata, "sample_stats")
        accept = stats["acceptance_rate"].values if "acceptance_rate" in stats else None
        diverging = stats["diverging"].values if "diverging" in stats else None
        cost_s = run.warmup.run_s + run.sampling.run_s
        grads = run.grad_evals_warmup + run.grad_evals_sampling
        min_ess = (
            float(np.nanmin(every["ess_bulk"])) if every["ess_bulk"].notna().any() else math.nan
        )
        row = {
            "chains": settings["num_chains"],
            "draws": settings["num_samples"],
            "compile_s": run.warmup.compile_s + run.sampling.compile_s,
            "warmup_s": run.warmup.run_s,
            "sampling_s": run.sampling.run_s,
            "grad_evals": grads,
            "min_ess_bulk": min_ess,
            "min_ess_tail": float(np.nanmin(every["ess_tail"]))
            if every["ess_tail"].notna().any()
            else math.nan,
            "ess_per_s": min_ess / cost_s if cost_s > 0 else math.nan,
            "ess_per_1000_grads": 1000.0 * min_ess / grads if grads > 0 else math.nan,
            "max_r_hat": float(np.nanmax(every["r_hat"]))
            if every["r_hat"].notna().any()
            else math.nan,
            "divergences": int(np.sum(diverging)) if diverging is not None else math.nan,
            "mean_accept": float(np.mean(accept)) if accept is not None else math.nan,
        }
        flags = []
        if row["max_r_hat"] > MAX_R_HAT:
            flags.append(f"r_hat > {MAX_R_HAT}")
        if not min(row["min_ess_bulk"], row["min_ess_tail"]) >= MIN_ESS:
            flags.append(f"ESS < {MIN_ESS}")
        if row["divergences"] and row["divergences"] > 0:
            flags.append(f"{row['divergences']} divergences")
        if ref_moments:
            with_ref = every.dropna(subset=["z_mean"])
            row["max_abs_z_mean"] = float(np.max(np.abs(with_ref["z_mean"])))
            row["min_sd_ratio"] = float(np.min(with_ref["sd_ratio"]))
            row["max_sd_ratio"] = float(np.max(with_ref["sd_ratio"]))
            ref_sd = np.concatenate(
                [np.ravel(ref_moments[v][1]) for v in posterior if v in ref_moments]
            )
            error_mcse = (
                np.abs(with_ref["z_mean"].to_numpy()) * ref_sd / with_ref["mcse_mean"].to_numpy()
            )
            if np.any(error_mcse > MAX_MEAN_ERROR_MCSE):
                flags.append(f"mean off reference (> {MAX_MEAN_ERROR_MCSE:g} MCSE)")
        row["flags"] = "; ".join(flags) if flags else "ok"
        rows[name] = row

    parameters = pd.concat(param_frames, names=["sampler", "parameter"])
    order = list(dict.fromkeys(parameters.index.get_level_values("parameter")))
    parameters = parameters.swaplevel().sort_index(
        level="parameter", key=lambda idx: idx.map(order.index), sort_remaining=False
    )
    samplers_table = pd.DataFrame.from_dict(rows, orient="index")
    samplers_table.index.name = "sampler"
    return parameters, samplers_table


def mode_table(
    mode_fn: Callable[[Mapping[str, np.ndarray]], Any],
    draws: Mapping[str, Mapping[str, np.ndarray]],
    ref_draws: Mapping[str, np.ndarray] | None,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The fraction of draws in each mode, and the modes each chain visited.

    Parameters
    ----------
    mode_fn : callable
        ``mode_fn(draw) -> label``.
    draws : mapping of str to dict
        Each sampler's posterior as arrays ``(chain, draw, ...)``.
    ref_draws : mapping of str to array, optional
        Reference draws ``(n, ...)``, for the reference fractions.

    Returns
    -------
    table : pandas.DataFrame
        As :attr:`~numpyro_dilation.workflow.results.ComparisonData.modes`.
    per_chain : dict of str to numpy.ndarray
        The number of distinct modes each chain of each sampler visited.
    """
    rows, per_chain = {}, {}
    fractions = {}
    for name, posterior in draws.items():
        labels = mode_labels(mode_fn, posterior, lead=2)
        fractions[name] = mode_fractions(labels)
        per_chain[name] = np.array([len(set(chain)) for chain in labels])
    reference = None
    if ref_draws:
        try:
            reference = mode_fractions(mode_labels(mode_fn, ref_draws, lead=1))
        except (KeyError, IndexError, TypeError, ValueError):
            reference = None  # the reference lacks a variable mode_fn needs
    all_labels = sorted(set().union(*fractions.values(), *([reference] if reference else [])))
    for name, frac in fractions.items():
        row = {f"p[{label}]": frac.get(label, 0.0) for label in all_labels}
        row["modes_per_chain_min"] = int(per_chain[name].min())
        row["modes_per_chain_mean"] = float(per_chain[name].mean())
        row["modes_per_chain_max"] = int(per_chain[name].max())
        if reference is not None:
            row["tv_to_reference"] = total_variation(frac, reference)
        rows[name] = row
    if reference is not None:
        rows["reference"] = {f"p[{label}]": reference.get(label, 0.0) for label in all_labels}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "sampler"
    return table, per_chain


def add_mode_flags(
    samplers_table: pd.DataFrame,
    modes: pd.DataFrame,
    modes_per_chain: Mapping[str, np.ndarray],
) -> None:
    """Add the mode warnings to the ``flags`` of ``samplers_table`` (in place)."""
    for name, counts in modes_per_chain.items():
        flags = (
            [] if samplers_table.at[name, "flags"] == "ok" else [samplers_table.at[name, "flags"]]
        )
        found = int(np.sum(modes.loc[name, [c for c in modes.columns if c.startswith("p[")]] > 0))
        if found > 1 and counts.max() == 1 and counts.size > 1:
            flags.append("each chain stays in one mode")
        if "tv_to_reference" in modes and modes.at[name, "tv_to_reference"] > MAX_MODE_TV:
            flags.append(f"mode weights off (TV {modes.at[name, 'tv_to_reference']:.2f})")
        samplers_table.at[name, "flags"] = "; ".join(flags) if flags else "ok"


__all__ = [
    "add_mode_flags",
    "comparison_tables",
    "mode_fractions",
    "mode_labels",
    "mode_table",
    "summary",
    "total_variation",
]
