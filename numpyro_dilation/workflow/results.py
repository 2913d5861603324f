"""What a comparison produces, and the two measurements every caller shares.

This is the leaf of :mod:`numpyro_dilation.workflow`: it imports nothing else
from the package, so that the modules that build results (``comparison``,
``tables``), present them (``report``, ``plots``) and the benchmark suites can
all use it without importing one another.  It holds

* the result types (:class:`Timing`, :class:`SamplerRun`, :class:`Annealing`,
  :class:`ComparisonData`) and the column names and thresholds of the tables;
* the one compile-time measurement, :func:`measure_compile`;
* the one gradient counter, :func:`grad_evals_per_draw` and its phase totals
  :func:`count_grad_evals`;
* :func:`model_sites`, the shapes and supports of a model's sites.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from numpyro import handlers
from numpyro.infer import init_to_sample

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from numpyro.infer.mcmc import MCMCKernel

#: Columns of :attr:`ComparisonData.parameters` (ArviZ's summary, 94% HDI).
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
#: Columns of :attr:`ComparisonData.samplers`.
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
#: Thresholds of the warnings in :attr:`ComparisonData.samplers` (``flags``).
MAX_R_HAT = 1.01
MIN_ESS = 400
MAX_MEAN_ERROR_MCSE = 4.0
MAX_MODE_TV = 0.1


# ---------------------------------------------------------------- compile time

#: JAX's duration events for tracing, lowering and compiling a computation;
#: their sum is the compilation time :func:`measure_compile` separates from the run.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


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

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> with measure_compile() as timing:
    ...     _ = jax.block_until_ready(jax.jit(lambda x: x + 1)(jnp.ones(3)))
    >>> 0.0 < timing.compile_s <= timing.wall_s
    True
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


# ---------------------------------------------------------------- gradient evaluations

#: Extra fields the gradient evaluations are counted from: DilationLangevin's
#: cumulative ``num_grad_evals``, or the leapfrog steps ``num_steps`` of HMC and NUTS.
GRAD_EVAL_FIELDS: tuple[str, ...] = ("num_grad_evals", "num_steps")


def grad_evals_per_draw(
    extra: Mapping[str, Any], before: int | np.ndarray = 0
) -> np.ndarray | None:
    """Cumulative potential-and-gradient evaluations of each chain, up to each draw.

    Parameters
    ----------
    extra : mapping of str to array
        Extra fields of a run, each shaped ``(chain, draw)``.
    before : int or array of int, default 0
        Evaluations of each chain before the first draw (one number, or one per
        chain); used with ``num_steps`` only (``num_grad_evals`` counts from the
        chain's initialisation already).

    Returns
    -------
    numpy.ndarray of int64 or None
        Shape ``(chain, draw)``: ``num_grad_evals`` as collected, or the running
        sum of ``num_steps`` (one gradient per leapfrog step) plus ``before``;
        ``None`` if ``extra`` holds neither field.

    Examples
    --------
    >>> import numpy as np
    >>> grad_evals_per_draw({"num_steps": np.array([[3, 7, 1]])}, before=np.array([10]))
    array([[13, 20, 21]])
    """
    if "num_grad_evals" in extra:
        return np.asarray(extra["num_grad_evals"], np.int64)
    if "num_steps" in extra:
        total = np.cumsum(np.asarray(extra["num_steps"], np.int64), axis=1)
        return total + np.reshape(np.asarray(before, np.int64), (-1, 1))
    return None


def count_grad_evals(warmup: Mapping[str, Any], sampling: Mapping[str, Any]) -> tuple[float, float]:
    """Gradient evaluations of the warmup and of the sampling, summed over chains.

    Parameters
    ----------
    warmup, sampling : mapping of str to array
        Extra fields of the two phases of one run, each shaped ``(chain, draw)``,
        holding one of :data:`GRAD_EVAL_FIELDS`.

    Returns
    -------
    tuple of float
        ``(warmup, sampling)``.  The gradient at each chain's initialisation is
        charged to the warmup (NumPyro's HMC and NUTS compute it, uncounted by
        ``num_steps``); both are NaN if the fields are missing.

    Examples
    --------
    >>> import numpy as np
    >>> count_grad_evals({"num_steps": np.full((2, 5), 3)}, {"num_steps": np.full((2, 4), 7)})
    (32.0, 56.0)
    """
    warm = grad_evals_per_draw(warmup, before=1)
    sample = None if warm is None else grad_evals_per_draw(sampling, before=warm[:, -1])
    if sample is None:
        return float("nan"), float("nan")
    return float(warm[:, -1].sum()), float((sample[:, -1] - warm[:, -1]).sum())


# ---------------------------------------------------------------- model sites


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


# ---------------------------------------------------------------- results


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
class SamplerRun:
    """One sampler's run inside a comparison.

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
    annealing : Annealing or None
        For DilationLangevin, snapshots of its own chains' annealing.
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
class ComparisonData:
    """The data of a comparison: the attributes of :class:`~numpyro_dilation.Comparison`.

    The report and the figures read these; :class:`~numpyro_dilation.Comparison`
    (what :func:`~numpyro_dilation.compare` returns) adds the methods that
    write them.
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


__all__ = [
    "COMPILE_EVENTS",
    "GRAD_EVAL_FIELDS",
    "MAX_MEAN_ERROR_MCSE",
    "MAX_MODE_TV",
    "MAX_R_HAT",
    "MIN_ESS",
    "PARAMETER_COLUMNS",
    "SAMPLER_COLUMNS",
    "Annealing",
    "ComparisonData",
    "SamplerRun",
    "Site",
    "Timing",
    "count_grad_evals",
    "grad_evals_per_draw",
    "measure_compile",
    "model_sites",
]
