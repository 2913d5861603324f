"""DilationLangevin beside NUTS on one model: the numbers that say how far to trust each.

:func:`compare` runs several NumPyro kernels on the same model, data and seed
and returns a :class:`Comparison`: one ArviZ ``InferenceData`` per sampler, a
per-parameter table (ArviZ's summary statistics, samplers side by side), a
per-sampler table (cost, efficiency, divergences, acceptance and warnings),
and, when asked, the fraction of draws in each mode of a multimodal posterior
and the error against reference draws or moments.
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, init_to_sample
from numpyro.infer.mcmc import MCMCKernel

from numpyro_dilation._checks import check_positive_int
from numpyro_dilation.inference_data import (
    WarmupDraws,
    extra_fields_for,
    get_group,
    to_inference_data,
)
from numpyro_dilation.kernel import DilationLangevin

#: JAX's duration events for tracing, lowering and compiling a computation;
#: their sum is the compilation time :func:`compare` separates from the run.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
#: Columns of :attr:`Comparison.parameters` (ArviZ's summary, 94% HDI).
PARAMETER_COLUMNS = (
    "mean",
    "sd",
    "hdi_3%",
    "hdi_97%",
    "mcse_mean",
    "ess_bulk",
    "ess_tail",
    "r_hat",
)
#: Columns of :attr:`Comparison.samplers`.
SAMPLER_COLUMNS = (
    "chains",
    "draws",
    "compile_s",
    "warmup_s",
    "sampling_s",
    "grad_evals",
    "min_ess_bulk",
    "min_ess_tail",
    "ess_per_s",
    "ess_per_1000_grads",
    "max_r_hat",
    "divergences",
    "mean_accept",
)
#: Thresholds of the warnings in :attr:`Comparison.samplers` (``flags``).
MAX_R_HAT = 1.01
MIN_ESS = 400
MAX_MEAN_ERROR_MCSE = 4.0
MAX_MODE_TV = 0.1


# ---------------------------------------------------------------- timing


@dataclass
class Timing:
    """Wall time of a block and the part of it JAX spent compiling."""

    wall_s: float = 0.0
    compile_s: float = 0.0

    @property
    def run_s(self) -> float:
        """Wall time without compilation."""
        return max(self.wall_s - self.compile_s, 0.0)


@contextmanager
def measure_compile() -> Iterator[Timing]:
    """Time a block, and sum JAX's tracing, lowering and compilation durations in it.

    JAX reports each of these steps through :mod:`jax.monitoring`
    (:data:`COMPILE_EVENTS`); a listener adds them up while the block runs.  The
    block must end with :func:`jax.block_until_ready` on its results, so that
    the wall time includes the computation itself.
    """
    timing = Timing()

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event in COMPILE_EVENTS:
            timing.compile_s += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing.wall_s = time.perf_counter() - start
        jax.monitoring.unregister_event_duration_listener(listener)
        timing.compile_s = min(timing.compile_s, timing.wall_s)


# ---------------------------------------------------------------- results


@dataclass
class SamplerRun:
    """One sampler's run inside a :class:`Comparison`.

    Attributes
    ----------
    name : str
        The sampler's name (key of ``samplers``).
    kernel : numpyro.infer.mcmc.MCMCKernel
        The kernel.
    idata : arviz.InferenceData or xarray.DataTree
        The run, from :func:`~numpyro_dilation.to_inference_data`, with the warmup groups.
    warmup, sampling : Timing
        Wall and compilation time of ``mcmc.warmup`` and ``mcmc.run``.
    grad_evals_warmup, grad_evals_sampling : float
        Gradient evaluations of all chains in each phase (NaN when the kernel does
        not report them).
    """

    name: str
    kernel: MCMCKernel
    idata: Any
    warmup: Timing
    sampling: Timing
    grad_evals_warmup: float
    grad_evals_sampling: float
    annealing: Annealing | None = None


@dataclass
class Annealing:
    """Particles of DilationLangevin's annealing at a few levels of the dilation path.

    Attributes
    ----------
    levels : numpy.ndarray
        Level ``t`` of each snapshot, shape ``(k,)``.
    iterations : numpy.ndarray
        Warmup iteration of each snapshot.
    samples : dict of str to numpy.ndarray
        Constrained particle positions per variable, shape ``(k, chains, ...)``.
    center : numpy.ndarray
        The dilation centre (flat, unconstrained) of the first chain.
    """

    levels: np.ndarray
    iterations: np.ndarray
    samples: dict[str, np.ndarray]
    center: np.ndarray


@dataclass
class Comparison:
    """The result of :func:`compare`.

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
    """

    title: str
    runs: dict[str, SamplerRun]
    parameters: pd.DataFrame
    samplers: pd.DataFrame
    modes: pd.DataFrame | None
    modes_per_chain: dict[str, np.ndarray] | None
    annealing: Annealing | None
    settings: dict[str, Any]
    model: Callable = field(repr=False)
    model_args: tuple = field(repr=False, default=())
    model_kwargs: dict = field(repr=False, default_factory=dict)
    var_names: list[str] = field(default_factory=list)
    reference_draws: dict[str, np.ndarray] | None = field(repr=False, default=None)
    reference_moments: dict[str, tuple[np.ndarray, np.ndarray]] | None = field(
        repr=False, default=None
    )

    @property
    def idata(self) -> dict[str, Any]:
        """One ArviZ ``InferenceData`` (``DataTree`` with ArviZ 1.x) per sampler."""
        return {name: run.idata for name, run in self.runs.items()}

    def to_dataframe(self, table: str = "parameters") -> pd.DataFrame:
        """One of the tables as a DataFrame.

        Parameters
        ----------
        table : {"parameters", "samplers", "modes"}
            Which table.
        """
        tables = {"parameters": self.parameters, "samplers": self.samplers, "modes": self.modes}
        if table not in tables:
            raise ValueError(f"`table` must be one of {sorted(tables)}; got {table!r}.")
        if tables[table] is None:
            raise ValueError("There is no modes table: pass `mode_fn` to compare().")
        return tables[table].copy()

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
        from numpyro_dilation.report import comparison_markdown

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
        from numpyro_dilation.plots import plot_comparison

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


@dataclass(frozen=True)
class Site:
    """Shape and support of a model site (from an abstract trace of the model)."""

    shape: tuple
    support: Any = None


def model_sites(model, args, kwargs) -> tuple[dict[str, Site], dict[str, Site]]:
    """Latent sample sites, and all sites reported in the posterior (latent and deterministic).

    The model is traced abstractly (:func:`jax.eval_shape`, values from
    ``init_to_sample``), which is fast and computes nothing.
    """
    latent: dict[str, Site] = {}
    reported: dict[str, Site] = {}

    def trace_model():
        seeded = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_sample)
        trace = handlers.trace(seeded).get_trace(*args, **kwargs)
        for name, site in trace.items():
            if site["type"] == "sample" and not site["is_observed"]:
                latent[name] = reported[name] = Site(
                    tuple(np.shape(site["value"])), site["fn"].support
                )
            elif site["type"] == "deterministic":
                reported[name] = Site(tuple(np.shape(site["value"])))
        return 0

    jax.eval_shape(trace_model)
    return latent, reported


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


# ---------------------------------------------------------------- statistics


def _summary(idata, var_name: str) -> pd.DataFrame:
    """ArviZ's summary of one variable (94% HDI, unrounded), in ArviZ 0.x's column names."""
    import arviz as az

    if "hdi_prob" in inspect.signature(az.summary).parameters:  # ArviZ 0.x
        df = az.summary(idata, var_names=[var_name], hdi_prob=0.94, round_to="none")
    else:  # ArviZ 1.x
        df = az.summary(idata, var_names=[var_name], ci_prob=0.94, ci_kind="hdi", round_to="none")
        df = df.rename(columns={"hdi94_lb": "hdi_3%", "hdi94_ub": "hdi_97%"})
    return df[list(PARAMETER_COLUMNS)].astype(float)


def _grad_evals(kernel, warm: WarmupDraws, extra: Mapping[str, np.ndarray]) -> tuple[float, float]:
    if "num_grad_evals" in extra:
        warm_total = float(np.sum(warm.extra_fields["num_grad_evals"][:, -1]))
        return warm_total, float(np.sum(extra["num_grad_evals"][:, -1])) - warm_total
    if "num_steps" in extra:
        # one gradient per leapfrog step, plus one at each chain's initialisation
        init = warm.extra_fields["num_steps"].shape[0]
        return (
            float(np.sum(warm.extra_fields["num_steps"])) + init,
            float(np.sum(extra["num_steps"])),
        )
    return math.nan, math.nan


def _posterior_numpy(idata) -> dict[str, np.ndarray]:
    posterior = get_group(idata, "posterior")
    return {k: np.asarray(v.values) for k, v in posterior.data_vars.items()}


def _mode_labels(mode_fn, draws: Mapping[str, np.ndarray], lead: int) -> np.ndarray:
    """Apply ``mode_fn`` to every draw; ``lead`` leading axes index the draws."""
    names = list(draws)
    shape = next(iter(draws.values())).shape[:lead]
    flat = {k: v.reshape(-1, *v.shape[lead:]) for k, v in draws.items()}
    n = int(np.prod(shape))
    labels = np.empty(n, dtype=object)
    for i in range(n):
        labels[i] = str(mode_fn({k: flat[k][i] for k in names}))
    return labels.reshape(shape)


def _tv(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def _fractions(labels: np.ndarray) -> dict[str, float]:
    values, counts = np.unique(labels.ravel().astype(str), return_counts=True)
    return {str(v): c / labels.size for v, c in zip(values, counts, strict=True)}


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
    grads = _grad_evals(kernel, warm, extra)
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
    compilation (see :func:`measure_compile`).

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
    tracing, lowering and compiling inside them (:data:`COMPILE_EVENTS`, via
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
    >>> result = compare(model, samplers={"dilation": DilationLangevin(model, eps=0.5)},
    ...                  num_warmup=100, num_samples=100, num_chains=2)
    >>> result.samplers.loc["dilation", "grad_evals"]  # 2 chains x (1 + 100 + 100)
    np.float64(402.0)
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

    draws = {name: _posterior_numpy(run.idata) for name, run in runs.items()}
    parameters, samplers_table = _tables(runs, draws, var_names, ref_moments, settings)
    modes = modes_per_chain = None
    if mode_fn is not None:
        modes, modes_per_chain = _mode_table(mode_fn, draws, ref_draws)
        _mode_flags(samplers_table, modes, modes_per_chain)
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


def _tables(runs, draws, var_names, ref_moments, settings):
    param_frames = {}
    rows = {}
    for name, run in runs.items():
        posterior = draws[name]
        per_var = {}
        for var in posterior:
            df = _summary(run.idata, var)
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


def _mode_table(mode_fn, draws, ref_draws):
    rows, per_chain = {}, {}
    fractions = {}
    for name, posterior in draws.items():
        labels = _mode_labels(mode_fn, posterior, lead=2)
        fractions[name] = _fractions(labels)
        per_chain[name] = np.array([len(set(chain)) for chain in labels])
    reference = None
    if ref_draws:
        try:
            reference = _fractions(_mode_labels(mode_fn, ref_draws, lead=1))
        except (KeyError, IndexError, TypeError, ValueError):
            reference = None  # the reference lacks a variable mode_fn needs
    all_labels = sorted(set().union(*fractions.values(), *([reference] if reference else [])))
    for name, frac in fractions.items():
        row = {f"p[{label}]": frac.get(label, 0.0) for label in all_labels}
        row["modes_per_chain_min"] = int(per_chain[name].min())
        row["modes_per_chain_mean"] = float(per_chain[name].mean())
        row["modes_per_chain_max"] = int(per_chain[name].max())
        if reference is not None:
            row["tv_to_reference"] = _tv(frac, reference)
        rows[name] = row
    if reference is not None:
        rows["reference"] = {f"p[{label}]": reference.get(label, 0.0) for label in all_labels}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "sampler"
    return table, per_chain


def _mode_flags(samplers_table, modes, modes_per_chain):
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
    "COMPILE_EVENTS",
    "Annealing",
    "Comparison",
    "SamplerRun",
    "Timing",
    "compare",
    "measure_compile",
]
