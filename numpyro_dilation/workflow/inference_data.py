"""ArviZ ``InferenceData`` from DilationLangevin (and NUTS) runs.

:func:`to_inference_data` is a thin layer over :func:`arviz.from_numpyro`: ArviZ
does the conversion (posterior, observed data, log likelihood, dims and coords);
this module makes the ``sample_stats`` group hold the statistics a reader of an
MCMC run needs, under ArviZ's names, and keeps the warmup (for DilationLangevin
the annealing along the dilation path) as ``warmup_posterior`` and
``warmup_sample_stats`` groups when asked.

``sample_stats`` variables (dimensions ``chain``, ``draw``):

==================  ===================================================================
``lp``              log density of the draw, ``-potential_energy`` (in unconstrained
                    space, with the Jacobian of the transforms, as NumPyro computes it)
``acceptance_rate`` Metropolis acceptance probability of the transition (NumPyro's
                    ``accept_prob``; for NUTS the mean over the trajectory)
``step_size``       step size of the transition
``diverging``       whether the transition diverged
``dilation_level``  DilationLangevin only: the level ``t`` of the dilation path (1 once
                    the annealing is over; below 1 in the warmup group)
``n_grad_evals``    cumulative potential-and-gradient evaluations of the chain, up to and
                    including this draw (see below)
==================  ===================================================================

``n_grad_evals`` counts from the chain's initialisation: DilationLangevin keeps
this count itself (``num_grad_evals``: two at initialisation, one for the
potential and one for the curvature probe, then one per leapfrog step).
For HMC and NUTS it is the running sum of ``num_steps`` (leapfrog steps, one
gradient each), plus the warmup's total when the warmup was recorded (see
:class:`WarmupDraws`); the variable's ``description`` attribute says which.
Whatever else the kernel collected stays as ArviZ put it (``n_steps`` and
``tree_depth`` for NUTS, ``mean_accept_prob``...).

The functions work with ArviZ 0.x (``InferenceData``) and ArviZ 1.x (where
``from_numpyro`` returns an ``xarray.DataTree``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import xarray as xr

from numpyro_dilation.health import SamplerHealthWarning
from numpyro_dilation.kernel import DilationLangevin
from numpyro_dilation.workflow.diagnostics import check_convergence as run_convergence_check
from numpyro_dilation.workflow.results import grad_evals_per_draw

#: Extra fields to collect from a :class:`~numpyro_dilation.DilationLangevin` run
#: (``mcmc.run(..., extra_fields=DILATION_EXTRA_FIELDS)``) for :func:`to_inference_data`.
DILATION_EXTRA_FIELDS: tuple[str, ...] = (
    "potential_energy",
    "accept_prob",
    "mean_accept_prob",
    "step_size",
    "diverging",
    "t",
    "num_grad_evals",
)
#: Extra fields to collect from an HMC or NUTS run for :func:`to_inference_data`.
HMC_EXTRA_FIELDS: tuple[str, ...] = (
    "potential_energy",
    "accept_prob",
    "adapt_state.step_size",
    "diverging",
    "num_steps",
)

#: ``sample_stats`` variables guaranteed for DilationLangevin, HMC and NUTS runs.
REQUIRED_STATS: tuple[str, ...] = (
    "lp",
    "acceptance_rate",
    "step_size",
    "diverging",
    "n_grad_evals",
)
#: Additionally guaranteed for DilationLangevin runs.
DILATION_STATS: tuple[str, ...] = ("dilation_level",)

# extra field -> sample_stats name, where they differ (ArviZ's names; ``t`` is ours)
_RENAME = {
    "potential_energy": "lp",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
    "num_steps": "n_steps",
    "t": "dilation_level",
}


def _is_hmc(kernel) -> bool:
    from numpyro.infer import HMC

    return isinstance(kernel, HMC)


def extra_fields_for(kernel) -> tuple[str, ...]:
    """The ``extra_fields`` to collect from ``kernel`` for :func:`to_inference_data`.

    Parameters
    ----------
    kernel : numpyro.infer.mcmc.MCMCKernel
        The kernel of the run.

    Returns
    -------
    tuple of str
        :data:`DILATION_EXTRA_FIELDS` for :class:`~numpyro_dilation.DilationLangevin`,
        :data:`HMC_EXTRA_FIELDS` for HMC and NUTS, ``()`` for other kernels (which
        then contribute their default fields only).

    Examples
    --------
    >>> from numpyro.infer import NUTS
    >>> extra_fields_for(NUTS(lambda: None))
    ('potential_energy', 'accept_prob', 'adapt_state.step_size', 'diverging', 'num_steps')
    """
    if isinstance(kernel, DilationLangevin):
        return DILATION_EXTRA_FIELDS
    if _is_hmc(kernel):
        return HMC_EXTRA_FIELDS
    return ()


def grad_eval_field(kernel) -> str | None:
    """The extra field from which ``kernel``'s gradient evaluations are counted.

    Returns
    -------
    str or None
        ``"num_grad_evals"`` for :class:`~numpyro_dilation.DilationLangevin`
        (cumulative per chain), ``"num_steps"`` for HMC and NUTS (leapfrog steps
        per iteration), ``None`` for other kernels.  Either is read by
        :func:`~numpyro_dilation.workflow.results.grad_evals_per_draw`.

    Examples
    --------
    >>> from numpyro.infer import NUTS
    >>> grad_eval_field(NUTS(lambda: None))
    'num_steps'
    """
    fields = extra_fields_for(kernel)
    return next((f for f in ("num_grad_evals", "num_steps") if f in fields), None)


@dataclass(frozen=True)
class WarmupDraws:
    """Draws and extra fields of a warmup phase, to keep beside the posterior.

    NumPyro's :class:`~numpyro.infer.MCMC` holds the draws of its latest call
    only, so the warmup must be recorded before :meth:`~numpyro.infer.MCMC.run`
    replaces it::

        mcmc.warmup(key, *args, collect_warmup=True, extra_fields=extra_fields_for(kernel))
        warmup = WarmupDraws.from_mcmc(mcmc)
        mcmc.run(key2, *args, extra_fields=extra_fields_for(kernel))
        idata = to_inference_data(mcmc, warmup=warmup)

    Attributes
    ----------
    samples : dict of str to numpy.ndarray
        Constrained draws (with deterministic sites), shaped ``(chain, draw, ...)``.
    extra_fields : dict of str to numpy.ndarray
        Collected extra fields, shaped ``(chain, draw, ...)``.
    """

    samples: dict[str, np.ndarray]
    extra_fields: dict[str, np.ndarray]

    @classmethod
    def from_mcmc(cls, mcmc) -> WarmupDraws:
        """Record the warmup draws of ``mcmc`` (call right after ``warmup(collect_warmup=True)``).

        Raises
        ------
        ValueError
            If the latest call of ``mcmc`` was not ``warmup(..., collect_warmup=True)``.
        """
        num_draws = mcmc.num_warmup // mcmc.thinning
        samples = _samples_or_none(mcmc)
        lengths = {np.shape(v)[1] for v in samples.values()} if samples else set()
        # MCMC.warmup keeps its final state as both post_warmup_state and
        # last_state; a later run() replaces last_state only.
        just_warmed_up = (
            mcmc.post_warmup_state is not None and mcmc.post_warmup_state is mcmc.last_state
        )
        if not just_warmed_up or lengths != {num_draws}:
            raise ValueError(
                "WarmupDraws.from_mcmc needs an MCMC whose latest call was"
                " `mcmc.warmup(rng_key, ..., collect_warmup=True)`; call it after warmup and"
                " before `mcmc.run`."
            )
        extra = _numpy_tree(mcmc.get_extra_fields(group_by_chain=True))
        return cls(samples=samples, extra_fields=extra)


def _samples_or_none(mcmc) -> dict[str, np.ndarray] | None:
    """Constrained draws grouped by chain, or ``None`` if ``mcmc`` has not run."""
    try:
        samples = mcmc.get_samples(group_by_chain=True)
    except (AssertionError, TypeError, KeyError, AttributeError):  # no run yet
        return None
    return (
        _numpy_tree(samples) if hasattr(samples, "items") or hasattr(samples, "_asdict") else None
    )


def _numpy_tree(tree) -> dict[str, np.ndarray]:
    if hasattr(tree, "_asdict"):
        tree = tree._asdict()
    return {k: np.asarray(v) for k, v in jax.device_get(tree).items()}


# ---------------------------------------------------------------- ArviZ 0.x / 1.x


def get_group(idata, name: str) -> xr.Dataset | None:
    """Group ``name`` of an ArviZ 0.x ``InferenceData`` or 1.x ``DataTree``, or ``None``."""
    if isinstance(idata, xr.Dataset):
        return idata
    if hasattr(idata, "children"):  # xarray.DataTree (ArviZ 1.x)
        return idata[name].to_dataset() if name in idata.children else None
    return getattr(idata, name) if name in idata.groups() else None


def posterior_arrays(idata) -> dict[str, np.ndarray]:
    """The posterior group as NumPy arrays, ``{variable: (chain, draw, ...)}``."""
    posterior = get_group(idata, "posterior")
    return {k: np.asarray(v.values) for k, v in posterior.data_vars.items()}


def group_names(idata) -> list[str]:
    """Names of the groups of an ArviZ 0.x ``InferenceData`` or 1.x ``DataTree``."""
    if hasattr(idata, "children"):
        return list(idata.children)
    return list(idata.groups())


def _set_group(idata, name: str, ds: xr.Dataset) -> None:
    if hasattr(idata, "children"):
        idata[name] = xr.DataTree(ds)
    elif name in idata.groups():
        setattr(idata, name, ds)
    else:
        idata.add_groups({name: ds}, warn_on_custom_groups=False)


# ---------------------------------------------------------------- conversion


def _stats(
    extra: Mapping[str, np.ndarray],
    kernel,
    thinning: int,
    grad_offset: np.ndarray | None,
    coords: dict,
    warmup_phase: bool = False,
) -> tuple[dict[str, xr.DataArray], list[str]]:
    """Guaranteed sample_stats from raw extra fields; also the names that are missing."""
    dims = ("chain", "draw")
    out: dict[str, xr.DataArray] = {}
    dilation = isinstance(kernel, DilationLangevin)
    if "potential_energy" in extra:
        out["lp"] = xr.DataArray(-np.asarray(extra["potential_energy"]), dims=dims, coords=coords)
    if "accept_prob" in extra:
        out["acceptance_rate"] = xr.DataArray(extra["accept_prob"], dims=dims, coords=coords)
    for field in ("step_size", "adapt_state.step_size"):
        if field in extra:
            out["step_size"] = xr.DataArray(extra[field], dims=dims, coords=coords)
    if "diverging" in extra:
        out["diverging"] = xr.DataArray(
            np.asarray(extra["diverging"], bool), dims=dims, coords=coords
        )
    if "t" in extra:
        out["dilation_level"] = xr.DataArray(extra["t"], dims=dims, coords=coords)
    description = None
    if "num_grad_evals" in extra:
        description = "cumulative gradient evaluations since initialisation"
    elif "num_steps" in extra:
        if thinning > 1:
            warnings.warn(
                "n_grad_evals is left out of sample_stats: with thinning > 1 the collected"
                " `num_steps` do not count the gradient evaluations of the dropped iterations.",
                UserWarning,
                stacklevel=3,
            )
        else:
            what = "since the start of sampling (warmup not recorded)"
            if warmup_phase or grad_offset is not None:
                what = "since the start of warmup"
            description = f"cumulative gradient evaluations (leapfrog steps) {what}"
    if description is not None:
        out["n_grad_evals"] = xr.DataArray(
            grad_evals_per_draw(extra, before=0 if grad_offset is None else grad_offset),
            dims=dims,
            coords=coords,
            attrs={"description": description},
        )
    required = list(REQUIRED_STATS) + (list(DILATION_STATS) if dilation else [])
    if thinning > 1 and not dilation:
        required.remove("n_grad_evals")
    missing = [name for name in required if name not in out]
    return out, missing


def _warn_missing(kernel, missing: list[str], what: str) -> None:
    """Warn that ``missing`` statistics are left out, and say how to collect them."""
    fields = extra_fields_for(kernel)
    warnings.warn(
        f"sample_stats of the {what} leave out {missing}: the {what} did not collect the extra"
        f" fields behind them. Collect them with `mcmc.run(..., extra_fields={fields!r})`"
        " (numpyro_dilation.extra_fields_for(kernel)).",
        UserWarning,
        stacklevel=3,
    )


def _warmup_groups(idata, warmup: WarmupDraws, kernel, thinning: int) -> dict[str, xr.Dataset]:
    posterior = get_group(idata, "posterior")
    n_chains, n_draws = next(iter(warmup.samples.values())).shape[:2]
    sample_coords = {"chain": np.arange(n_chains), "draw": np.arange(n_draws)}
    data_vars = {}
    for name, value in warmup.samples.items():
        if posterior is not None and name in posterior:
            event_dims = posterior[name].dims[2:]
        else:
            event_dims = tuple(f"{name}_dim_{k}" for k in range(np.ndim(value) - 2))
        coords = dict(sample_coords)
        if posterior is not None:
            coords.update(
                {d: posterior.coords[d].values for d in event_dims if d in posterior.coords}
            )
        data_vars[name] = xr.DataArray(value, dims=("chain", "draw", *event_dims), coords=coords)
    stats, missing = _stats(
        warmup.extra_fields, kernel, thinning, None, sample_coords, warmup_phase=True
    )
    if missing and (isinstance(kernel, DilationLangevin) or _is_hmc(kernel)):
        _warn_missing(kernel, missing, "warmup record")
    others = {
        _RENAME.get(k, k): xr.DataArray(v, dims=("chain", "draw"), coords=sample_coords)
        for k, v in warmup.extra_fields.items()
        if np.ndim(v) == 2 and _RENAME.get(k, k) not in stats and k not in ("num_grad_evals",)
    }
    attrs = dict(posterior.attrs) if posterior is not None else {}
    return {
        "warmup_posterior": xr.Dataset(data_vars, attrs=attrs),
        "warmup_sample_stats": xr.Dataset({**stats, **others}, attrs=attrs),
    }


def to_inference_data(
    mcmc, *, warmup: WarmupDraws | None = None, check_convergence: bool = True, **kwargs: Any
):
    """Convert a NumPyro MCMC run to ArviZ, with the sampler statistics ArviZ expects.

    Calls :func:`arviz.from_numpyro` and then fills the ``sample_stats``
    group with ``lp``, ``acceptance_rate``, ``step_size``, ``diverging`` and
    ``n_grad_evals`` (and ``dilation_level`` for DilationLangevin), as described
    in :mod:`numpyro_dilation.workflow.inference_data`.

    Parameters
    ----------
    mcmc : numpyro.infer.MCMC
        A finished run.  Any run converts; for DilationLangevin, HMC and NUTS,
        ``sample_stats`` holds every statistic above only if the run collected
        the extra fields of :func:`extra_fields_for` (the kernel's default fields
        give ``diverging`` alone).  Other kernels give what they collected.
    warmup : WarmupDraws, optional
        The run's warmup, recorded with :meth:`WarmupDraws.from_mcmc`; it is kept as
        the ``warmup_posterior`` and ``warmup_sample_stats`` groups (for
        DilationLangevin: the annealing along the dilation path, then the
        adaptation at ``t = 1``).  For HMC and NUTS it also lets ``n_grad_evals``
        count the warmup's gradient evaluations.
    check_convergence : bool, default True
        Check the draws with :func:`~numpyro_dilation.check_convergence`
        (rank-normalised split R-hat at most 1.01 and bulk ESS at least 100 for
        every parameter) and warn if they fail.
    **kwargs
        Passed on to :func:`arviz.from_numpyro` (``coords``, ``dims``,
        ``log_likelihood``, ``posterior_predictive``...).  ``log_likelihood``
        defaults to ``True`` with both ArviZ 0.x and 1.x (ArviZ 1.x's own default
        is ``False``).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
        ``InferenceData`` with ArviZ 0.x, ``DataTree`` with ArviZ 1.x.

    Raises
    ------
    ValueError
        If the run has no draws.

    Warns
    -----
    UserWarning
        If the run (or the warmup record) lacks the extra fields behind some of
        the statistics above: what the run has is converted, and the warning
        names the statistics left out and the ``extra_fields`` to collect.
    SamplerHealthWarning
        If the draws have not converged (``check_convergence=True``): the warning
        names the worst parameters with their R-hat and bulk ESS.

    Examples
    --------
    >>> import jax
    >>> import numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> from numpyro_dilation import DilationLangevin, extra_fields_for, to_inference_data
    >>> def model():
    ...     numpyro.sample("x", dist.Normal(0.0, 1.0))
    >>> kernel = DilationLangevin(model)
    >>> mcmc = MCMC(kernel, num_warmup=100, num_samples=50, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0), extra_fields=extra_fields_for(kernel))
    >>> idata = to_inference_data(mcmc)
    >>> sorted(idata.sample_stats.data_vars)  # doctest: +NORMALIZE_WHITESPACE
    ['acceptance_rate', 'dilation_level', 'diverging', 'lp', 'mean_accept_prob',
     'n_grad_evals', 'step_size']
    """
    import arviz as az

    if warmup is not None and not isinstance(warmup, WarmupDraws):
        raise TypeError(
            "`warmup` must be a WarmupDraws (WarmupDraws.from_mcmc(mcmc) after"
            f" mcmc.warmup(..., collect_warmup=True)); got {type(warmup).__name__}."
        )
    if _samples_or_none(mcmc) is None:
        raise ValueError("`mcmc` has no draws: call mcmc.run(...) before to_inference_data.")
    kernel = mcmc.sampler
    # ArviZ 1.x leaves the log likelihood out by default (0.x puts it in); the same
    # groups on both keep loo/compare working.
    kwargs.setdefault("log_likelihood", True)
    idata = az.from_numpyro(mcmc, **kwargs)

    extra = _numpy_tree(mcmc.get_extra_fields(group_by_chain=True))
    grad_offset = None
    if warmup is not None and "num_steps" in warmup.extra_fields:
        grad_offset = grad_evals_per_draw(warmup.extra_fields)[:, -1]
    stats_ds = get_group(idata, "sample_stats")
    if stats_ds is None:  # nothing but the draws was collected
        posterior = get_group(idata, "posterior")
        stats_ds = xr.Dataset(
            coords={"chain": posterior.coords["chain"], "draw": posterior.coords["draw"]},
            attrs=dict(posterior.attrs),
        )
    coords = {"chain": stats_ds.coords["chain"].values, "draw": stats_ds.coords["draw"].values}
    stats, missing = _stats(extra, kernel, mcmc.thinning, grad_offset, coords)
    if missing and (isinstance(kernel, DilationLangevin) or _is_hmc(kernel)):
        _warn_missing(kernel, missing, "run")
    # ArviZ's own copies under the raw names are replaced by the guaranteed ones.
    drop = [name for name in ("t", "num_grad_evals") if name in stats_ds]
    stats_ds = stats_ds.drop_vars(drop).assign(stats)
    _set_group(idata, "sample_stats", stats_ds)

    if warmup is not None:
        for name, ds in _warmup_groups(idata, warmup, kernel, mcmc.thinning).items():
            _set_group(idata, name, ds)
    if check_convergence:
        result = run_convergence_check(mcmc, warn=False)
        if not result.converged:
            warnings.warn(result.message, SamplerHealthWarning, stacklevel=2)
    return idata


__all__ = [
    "DILATION_EXTRA_FIELDS",
    "DILATION_STATS",
    "HMC_EXTRA_FIELDS",
    "REQUIRED_STATS",
    "WarmupDraws",
    "extra_fields_for",
    "get_group",
    "grad_eval_field",
    "group_names",
    "posterior_arrays",
    "to_inference_data",
]
