"""DilationLangevin beside NUTS on one model: the numbers that say how far to trust each.

:func:`compare` runs several NumPyro kernels on the same model, data and seed
and returns a :class:`Comparison`: one ArviZ ``InferenceData`` per sampler, a
per-parameter table (ArviZ's summary statistics, samplers side by side), a
per-sampler table (cost, efficiency, divergences, acceptance and warnings),
and, when asked, the fraction of draws in each mode of a multimodal posterior
and the error against reference draws or moments.  :func:`compare_example`
runs it on a bundled example (:mod:`numpyro_dilation.workflow.examples`).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS
from numpyro.infer.mcmc import MCMCKernel

from numpyro_dilation._checks import check_positive_int
from numpyro_dilation.kernel import DilationLangevin
from numpyro_dilation.workflow.examples import Example, Run, get_example
from numpyro_dilation.workflow.inference_data import (
    WarmupDraws,
    extra_fields_for,
    get_group,
    posterior_arrays,
    to_inference_data,
)
from numpyro_dilation.workflow.plots import plot_comparison
from numpyro_dilation.workflow.report import comparison_markdown
from numpyro_dilation.workflow.results import (
    Annealing,
    ComparisonData,
    SamplerRun,
    count_grad_evals,
    measure_compile,
    model_sites,
)
from numpyro_dilation.workflow.tables import add_mode_flags, comparison_tables, mode_table


class Comparison(ComparisonData):
    """The result of :func:`compare`: its data (see the attributes) and its presentation.

    Attributes
    ----------
    title : str
        A name for the comparison (used in reports).
    runs : dict of str to SamplerRun
        One run per sampler, in the order given.
    parameters : pandas.DataFrame
        Per-parameter table, indexed by (parameter, sampler) so that the samplers
        sit side by side: ArviZ's ``mean``, ``sd``, ``hdi_3%``, ``hdi_97%`` (94%
        HDI), ``mcse_mean``, ``ess_bulk``, ``ess_tail``, ``r_hat``; with a
        reference also ``z_mean`` (``(mean - ref_mean) / ref_sd``) and
        ``sd_ratio`` (``sd / ref_sd``).
    samplers : pandas.DataFrame
        Per-sampler table, indexed by sampler: ``chains``, ``draws`` (per chain),
        ``compile_s``, ``warmup_s`` and ``sampling_s`` (wall seconds without
        compilation), ``grad_evals`` (warmup and sampling, all chains),
        ``min_ess_bulk`` and ``min_ess_tail`` (over every scalar of the
        posterior), ``ess_per_s`` (``min_ess_bulk`` per second of warmup plus
        sampling), ``ess_per_1000_grads``, ``max_r_hat``, ``divergences`` (in
        the sampling phase), ``mean_accept``; with a reference ``max_abs_z_mean``,
        ``min_sd_ratio``, ``max_sd_ratio``; and ``flags``, the warnings.
    modes : pandas.DataFrame or None
        With ``mode_fn``: per sampler (and ``reference``, given reference draws)
        the fraction of draws in each mode (``p[label]``), the number of modes
        each chain visited (``modes_per_chain_min``/``_mean``/``_max``), and the
        total-variation distance to the reference fractions (``tv_to_reference``).
    modes_per_chain : dict of str to numpy.ndarray or None
        With ``mode_fn``: the number of distinct modes each chain visited.
    annealing : Annealing or None
        Snapshots of DilationLangevin's annealing, for :meth:`plot`.
    settings : dict
        ``num_warmup``, ``num_samples``, ``num_chains``, ``chain_method``, ``seed``.

    Notes
    -----
    The data live in :class:`~numpyro_dilation.workflow.results.ComparisonData`,
    which the report and the figures read; this class adds the two methods that
    call them, so that neither depends on the module that runs comparisons.
    """

    def to_markdown(self, figures: Mapping[str, str] | None = None, level: int = 2) -> str:
        """The tables (and links to figures) as a Markdown section.

        Parameters
        ----------
        figures : mapping of str to str, optional
            Figure name to a path relative to the Markdown file (as returned by
            :meth:`plot`, made relative); each is embedded as an image.
        level : int, default 2
            Heading level of the section.
        """
        return comparison_markdown(self, figures=figures, level=level)

    def plot(self, out_dir: str | Path, prefix: str = "") -> dict[str, Path]:
        """Write the figures as PNG files into ``out_dir`` (created if needed).

        Figures: ``marginals`` (overlaid marginal histograms per parameter,
        with the reference), ``pair`` (pair plot coloured by sampler), ``rank``
        (rank plots, one column per sampler), ``density`` (for targets with two
        scalar parameters: the density's contours with each sampler's draws),
        ``modes`` (with ``mode_fn``), and ``annealing`` (DilationLangevin's
        particles at several levels of the dilation path).

        Needs matplotlib (``pip install "numpyro-dilation[examples]"``).

        Returns
        -------
        dict of str to pathlib.Path
            Figure name to the file written.
        """
        return plot_comparison(self, out_dir, prefix=prefix)


# ---------------------------------------------------------------- validation


def _check_samplers(samplers, model) -> dict[str, MCMCKernel]:
    if samplers is None:
        return {"DilationLangevin": DilationLangevin(model), "NUTS": NUTS(model)}
    if not isinstance(samplers, Mapping) or not samplers:
        raise TypeError(
            "`samplers` must be a non-empty dict of name -> NumPyro MCMC kernel, e.g."
            f" {{'DilationLangevin': DilationLangevin(model), 'NUTS': NUTS(model)}}; got {samplers!r}."
        )
    for name, kernel in samplers.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"`samplers` keys must be non-empty strings; got {name!r}.")
        if not isinstance(kernel, MCMCKernel):
            raise TypeError(
                f"`samplers[{name!r}]` must be a NumPyro MCMCKernel (NUTS(model),"
                f" DilationLangevin(model), ...); got {type(kernel).__name__}."
            )
    return dict(samplers)


def _check_var_names(var_names, reported) -> list[str]:
    if var_names is None:
        return list(reported)
    if isinstance(var_names, str) or not isinstance(var_names, Sequence):
        raise TypeError(f"`var_names` must be a list of site names; got {var_names!r}.")
    unknown = [v for v in var_names if v not in reported]
    if unknown or not var_names:
        raise ValueError(
            f"`var_names` must name latent or deterministic sites of the model, {list(reported)};"
            f" got {list(var_names)!r}."
        )
    return list(var_names)


def _reference(reference, reported) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Reference moments per variable and, where given, reference draws."""
    if reference is None:
        return {}, {}
    if hasattr(reference, "posterior") or hasattr(reference, "children"):
        reference = get_group(reference, "posterior")
    if hasattr(reference, "data_vars"):  # an xarray Dataset with chain and draw dims
        reference = {
            k: np.asarray(v.values).reshape(-1, *v.shape[2:])
            for k, v in reference.data_vars.items()
        }
    if not isinstance(reference, Mapping):
        raise TypeError(
            "`reference` must be a dict of variable -> draws (array, leading axis = draws)"
            f" or -> (mean, sd), or an InferenceData; got {type(reference).__name__}."
        )
    moments, draws = {}, {}
    for name, value in reference.items():
        if name not in reported:
            raise ValueError(
                f"`reference` has {name!r}, which is not a latent or deterministic site of the"
                f" model; valid names: {list(reported)}."
            )
        shape = reported[name].shape
        if isinstance(value, tuple | list) and len(value) == 2:
            mean = np.broadcast_to(np.asarray(value[0], float), shape)
            sd = np.broadcast_to(np.asarray(value[1], float), shape)
        else:
            arr = np.asarray(value, float)
            if arr.ndim < len(shape) + 1 or tuple(arr.shape[arr.ndim - len(shape) :]) != shape:
                raise ValueError(
                    f"`reference[{name!r}]` must be draws shaped (n, *{shape}) or (chains, draws,"
                    f" *{shape}), or a (mean, sd) pair; got shape {arr.shape}."
                )
            arr = arr.reshape(-1, *shape)
            if arr.shape[0] < 2:
                raise ValueError(f"`reference[{name!r}]` needs at least 2 draws.")
            draws[name] = arr
            mean, sd = arr.mean(0), arr.std(0, ddof=1)
        if np.any(~np.isfinite(sd)) or np.any(sd <= 0):
            raise ValueError(f"`reference[{name!r}]` must have positive finite sds.")
        moments[name] = (np.asarray(mean), np.asarray(sd))
    return moments, draws


# ---------------------------------------------------------------- running


def _run_sampler(name, kernel, args, kwargs, settings, keys, keep_warmup, progress):
    fields = extra_fields_for(kernel)
    mcmc = MCMC(
        kernel,
        num_warmup=settings["num_warmup"],
        num_samples=settings["num_samples"],
        num_chains=settings["num_chains"],
        chain_method=settings["chain_method"],
        progress_bar=False,
    )
    if progress:
        progress(f"{name}: warmup")
    with measure_compile() as warmup_time:
        mcmc.warmup(keys[0], *args, collect_warmup=True, extra_fields=fields, **kwargs)
        jax.block_until_ready(mcmc.post_warmup_state)
    warm = WarmupDraws.from_mcmc(mcmc)
    if progress:
        progress(f"{name}: sampling")
    with measure_compile() as sampling_time:
        mcmc.run(keys[1], *args, extra_fields=fields, **kwargs)
        jax.block_until_ready(mcmc.last_state)
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    idata = to_inference_data(mcmc, warmup=warm if keep_warmup else None)
    grads = count_grad_evals(warm.extra_fields, extra)
    annealing = None
    if isinstance(kernel, DilationLangevin):
        annealing = annealing_snapshots(warm, mcmc.post_warmup_state.center)
    return SamplerRun(name, kernel, idata, warmup_time, sampling_time, *grads, annealing=annealing)


def annealing_snapshots(warmup: WarmupDraws, center, n_levels: int = 6) -> Annealing:
    """Particles of a DilationLangevin warmup at ``n_levels`` levels of the dilation path.

    Picks iterations whose levels ``t`` are about equally spaced in ``log t``
    over the annealing, the first iteration at ``t = 1`` and the last warmup
    iteration.  ``warmup`` must hold the extra field ``t``.
    """
    t = np.asarray(warmup.extra_fields["t"])[0]
    annealing = np.flatnonzero(t < 1.0)
    if annealing.size == 0:
        picks = np.array([0, t.size - 1])
    else:
        targets = np.geomspace(t[annealing[0]], 1.0, max(n_levels - 1, 2))[:-1]
        picks = [
            int(annealing[np.argmin(np.abs(np.log(t[annealing]) - np.log(x)))]) for x in targets
        ]
        picks += [int(annealing[-1]) + 1, t.size - 1]
        picks = np.unique(np.minimum(picks, t.size - 1))
    samples = {k: np.moveaxis(np.asarray(v)[:, picks], 1, 0) for k, v in warmup.samples.items()}
    center = np.asarray(center)
    return Annealing(
        levels=t[picks],
        iterations=picks,
        samples=samples,
        center=center.reshape(-1, center.shape[-1])[0],
    )


def _run_annealing(kernel, args, kwargs, num_warmup, num_chains, key) -> Annealing:
    """A warmup-only run of many vectorised chains, for the annealing figure."""
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=1,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.warmup(key, *args, collect_warmup=True, extra_fields=("t",), **kwargs)
    return annealing_snapshots(WarmupDraws.from_mcmc(mcmc), mcmc.post_warmup_state.center)


#: With ``annealing_chains=None``, :func:`compare` keeps the annealing of its own
#: DilationLangevin run when it has at least this many chains.
MIN_ANNEALING_CHAINS = 16


def compare(
    model: Callable,
    *args: Any,
    samplers: Mapping[str, MCMCKernel] | None = None,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    seed: int = 0,
    mode_fn: Callable[[Mapping[str, np.ndarray]], Any] | None = None,
    reference: Mapping[str, Any] | Any | None = None,
    var_names: Sequence[str] | None = None,
    chain_method: str = "vectorized",
    annealing_chains: int | None = None,
    keep_warmup: bool = True,
    title: str | None = None,
    progress: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> Comparison:
    """Run DilationLangevin and NUTS (or any kernels) on one model and compare them.

    Every sampler runs on the same model, data and seed: ``mcmc.warmup`` (with
    its draws kept) and then ``mcmc.run``, each timed apart from JAX's
    compilation (see :func:`~numpyro_dilation.workflow.results.measure_compile`).

    Parameters
    ----------
    model : callable
        A NumPyro model.
    *args, **kwargs
        The model's arguments (keyword arguments other than the parameters below).
    samplers : dict of str to MCMCKernel, optional
        Kernels to compare, by name; default
        ``{"DilationLangevin": DilationLangevin(model), "NUTS": NUTS(model)}``.
    num_warmup, num_samples, num_chains : int
        MCMC settings, the same for every sampler.
    seed : int, default 0
        Seed of ``jax.random.PRNGKey``; every sampler gets the same keys.
    mode_fn : callable, optional
        ``mode_fn(draw) -> label``, where ``draw`` maps each posterior variable to
        one draw's value: the mode a draw belongs to.  Adds the ``modes`` table.
    reference : dict or InferenceData, optional
        What the posterior should look like: per variable either draws (array
        whose trailing axes are the variable's shape) or a ``(mean, sd)`` pair;
        or an InferenceData whose posterior holds draws.  Adds ``z_mean`` and
        ``sd_ratio`` to the parameter table (and reference mode fractions).
    var_names : list of str, optional
        Variables shown in the parameter table and figures (default all); the
        minimum ESS and maximum r_hat always cover every variable.
    chain_method : {"vectorized", "sequential", "parallel"}, default "vectorized"
        How NumPyro runs the chains.
    annealing_chains : int, optional
        Particles for the ``annealing`` figure.  ``None``: the first
        DilationLangevin run's own chains, if there are at least 16; a positive
        number: an extra warmup-only run with that many vectorised chains (one
        more compilation); 0: no annealing record.
    keep_warmup : bool, default True
        Keep the warmup draws as ``warmup_posterior``/``warmup_sample_stats``.
    title : str, optional
        Name of the comparison in reports (default: the model's name).
    progress : callable, optional
        Called with a short message before each stage (for progress displays).

    Returns
    -------
    Comparison

    Notes
    -----
    Times are wall-clock seconds on this machine, measured with
    :func:`time.perf_counter` around ``mcmc.warmup`` and ``mcmc.run`` (each
    ending with :func:`jax.block_until_ready`), less the time JAX reports for
    tracing, lowering and compiling inside them
    (:data:`~numpyro_dilation.workflow.results.COMPILE_EVENTS`, via
    :mod:`jax.monitoring`).  The compilation time is reported apart
    (``compile_s``).  ``ess_per_s`` and ``ess_per_1000_grads`` charge the
    warmup as well as the sampling, since DilationLangevin's annealing is part
    of its cost.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro_dilation import DilationLangevin, compare
    >>> def model():
    ...     numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]))
    >>> kernel = DilationLangevin(model, eps=0.5, stationary="mala")
    >>> result = compare(model, samplers={"dilation": kernel},
    ...                  num_warmup=100, num_samples=100, num_chains=2)
    >>> result.samplers.loc["dilation", "grad_evals"]  # 2 chains x (3 + 100 + 100)
    np.float64(406.0)
    >>> list(result.parameters.index)
    [('x[0]', 'dilation'), ('x[1]', 'dilation')]
    """
    if not callable(model):
        raise TypeError(
            f"`model` must be a NumPyro model (a callable); got {type(model).__name__}."
        )
    samplers = _check_samplers(samplers, model)
    settings = {
        "num_warmup": check_positive_int("num_warmup", num_warmup),
        "num_samples": check_positive_int("num_samples", num_samples),
        "num_chains": check_positive_int("num_chains", num_chains),
        "chain_method": chain_method,
        "seed": seed,
    }
    if chain_method not in ("vectorized", "sequential", "parallel"):
        raise ValueError(
            "`chain_method` must be 'vectorized', 'sequential' or 'parallel';"
            f" got {chain_method!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed!r}.")
    if annealing_chains is not None and (
        isinstance(annealing_chains, bool) or not isinstance(annealing_chains, numbers.Integral)
    ):
        raise TypeError(
            f"`annealing_chains` must be None or a non-negative integer; got {annealing_chains!r}."
        )
    if annealing_chains is not None and annealing_chains < 0:
        raise ValueError(
            f"`annealing_chains` must be a non-negative integer; got {annealing_chains!r}."
        )
    if not isinstance(keep_warmup, bool):
        raise TypeError(f"`keep_warmup` must be True or False; got {keep_warmup!r}.")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"`title` must be a string; got {title!r}.")
    if mode_fn is not None and not callable(mode_fn):
        raise TypeError(f"`mode_fn` must be a function from a draw to a label; got {mode_fn!r}.")
    latent, reported = model_sites(model, args, kwargs)
    if not latent:
        raise ValueError("The model has no latent sample sites: there is nothing to compare.")
    var_names = _check_var_names(var_names, reported)
    ref_moments, ref_draws = _reference(reference, reported)

    key_warmup, key_sample, key_anneal = jax.random.split(jax.random.PRNGKey(seed), 3)
    runs = {}
    for name, kernel in samplers.items():
        runs[name] = _run_sampler(
            name, kernel, args, kwargs, settings, (key_warmup, key_sample), keep_warmup, progress
        )

    annealing = None
    dilation = [name for name, k in samplers.items() if isinstance(k, DilationLangevin)]
    if dilation and annealing_chains:
        if progress:
            progress(f"annealing: {annealing_chains} chains")
        annealing = _run_annealing(
            samplers[dilation[0]],
            args,
            kwargs,
            settings["num_warmup"],
            annealing_chains,
            key_anneal,
        )
    elif dilation and annealing_chains is None and settings["num_chains"] >= MIN_ANNEALING_CHAINS:
        annealing = runs[dilation[0]].annealing

    draws = {name: posterior_arrays(run.idata) for name, run in runs.items()}
    parameters, samplers_table = comparison_tables(runs, draws, var_names, ref_moments, settings)
    modes = modes_per_chain = None
    if mode_fn is not None:
        modes, modes_per_chain = mode_table(mode_fn, draws, ref_draws)
        add_mode_flags(samplers_table, modes, modes_per_chain)
    return Comparison(
        title=title or getattr(model, "__name__", "model"),
        runs=runs,
        parameters=parameters,
        samplers=samplers_table,
        modes=modes,
        modes_per_chain=modes_per_chain,
        annealing=annealing,
        settings=settings,
        model=model,
        model_args=args,
        model_kwargs=kwargs,
        var_names=var_names,
        reference_draws=ref_draws or None,
        reference_moments=ref_moments or None,
    )


def compare_example(
    example: Example | str,
    *,
    num_chains: int | None = None,
    num_warmup: int | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    runs: Sequence[Run] | None = None,
) -> list[Comparison]:
    """Run :func:`compare` on each run of a bundled example.

    Parameters
    ----------
    example : Example or str
        The example, or its name in :data:`~numpyro_dilation.workflow.examples.EXAMPLES`.
    num_chains, num_warmup, num_samples : int, optional
        Settings of the comparison; ``None`` takes the example's own.
    seed : int, default 0
        Seed of every comparison.
    progress : callable, optional
        Called with a short message (prefixed by the run's label) before each stage.
    runs : list of Run, optional
        The runs to compare (default :meth:`Example.runs`: one, or one per value
        of the example's sweep).

    Returns
    -------
    list of Comparison
        One per run.
    """
    if isinstance(example, str):
        example = get_example(example)
    chains = num_chains or example.num_chains
    out = []
    for run in runs if runs is not None else example.runs():
        out.append(
            compare(
                example.model,
                *run.args,
                samplers=example.samplers(example.model, chains) if example.samplers else None,
                num_warmup=num_warmup or example.num_warmup,
                num_samples=num_samples or example.num_samples,
                num_chains=chains,
                seed=seed,
                mode_fn=example.mode_fn,
                reference=run.reference,
                var_names=example.var_names,
                annealing_chains=example.annealing_chains,
                title=run.label,
                progress=(lambda m, label=run.label: progress(f"{label}: {m}"))
                if progress
                else None,
                **run.kwargs,
            )
        )
    return out


__all__ = [
    "MIN_ANNEALING_CHAINS",
    "Comparison",
    "annealing_snapshots",
    "compare",
    "compare_example",
]
