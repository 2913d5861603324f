"""Convergence of a finished run: rank-normalised split R-hat and bulk ESS per parameter.

:func:`check_convergence` is the end-of-run check that NumPyro's
:class:`~numpyro.infer.MCMC` cannot ask of a kernel (the kernel never learns
``num_samples``): given all the draws, grouped by chain, it computes for every
element of every site

- the rank-normalised split R-hat of Vehtari et al. (2021), as ArviZ's
  ``az.rhat`` computes it: the larger of the split R-hat of the rank-normalised
  draws (bulk) and of the rank-normalised distances from the median (tails);
- the bulk effective sample size: the ESS of the rank-normalised split chains,
  as ArviZ's ``az.ess(method="bulk")``.

Both use :func:`numpyro.diagnostics.split_gelman_rubin` and
:func:`numpyro.diagnostics.effective_sample_size` on the normalised draws.
For a single chain R-hat is the split-chain R-hat (its two halves compared).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from scipy.special import ndtri
from scipy.stats import rankdata

from numpyro_dilation.health import SamplerHealthWarning

#: R-hat above this flags a parameter (Vehtari et al., 2021).
MAX_RHAT = 1.01
#: Bulk ESS (over all chains) below this flags a parameter.
MIN_ESS = 100.0
#: Fewest draws per chain for which split R-hat is defined.
MIN_DRAWS = 4
#: Parameters named in a warning, worst first.
MAX_NAMED = 5


def rank_normalize(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of ``x`` (shape ``(chains, draws, ...)``), ties averaged.

    ``z = Phi^-1((r - 3/8) / (S + 1/4))`` with ``r`` the rank of a draw among all
    ``S`` draws of the same element, as in Vehtari et al. (2021).
    """
    x = np.asarray(x, dtype=np.float64)
    size = x.shape[0] * x.shape[1]
    flat = x.reshape(size, -1)
    ranks = rankdata(flat, axis=0, method="average")
    return ndtri((ranks - 0.375) / (size + 0.25)).reshape(x.shape)


def split_chains(x: np.ndarray) -> np.ndarray:
    """The two halves of each chain as separate chains (the middle draw of an odd length dropped)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def rank_rhat(x: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat of ``x`` (``(chains, draws, ...)``): max of bulk and tail.

    Parameters
    ----------
    x : numpy.ndarray
        Draws grouped by chain, at least :data:`MIN_DRAWS` per chain.

    Returns
    -------
    numpy.ndarray
        Shape ``x.shape[2:]``.
    """
    x = np.asarray(x, dtype=np.float64)  # split_gelman_rubin splits the chains itself
    bulk = split_gelman_rubin(rank_normalize(x))
    folded = np.abs(x - np.median(x.reshape(-1, *x.shape[2:]), axis=0))
    tail = split_gelman_rubin(rank_normalize(folded))
    with np.errstate(invalid="ignore"):
        return np.fmax(bulk, tail)


def bulk_ess(x: np.ndarray) -> np.ndarray:
    """Bulk ESS of ``x`` (``(chains, draws, ...)``): ESS of the rank-normalised split chains."""
    return np.asarray(effective_sample_size(split_chains(rank_normalize(x))))


def _label(name: str, shape: tuple[int, ...], flat_index: int) -> str:
    if not shape:
        return name
    where = np.unravel_index(flat_index, shape)
    return f"{name}[{', '.join(str(int(j)) for j in where)}]"


@dataclass(frozen=True)
class ConvergenceCheck:
    """What :func:`check_convergence` found.

    Attributes
    ----------
    rhat : dict of str to numpy.ndarray
        Rank-normalised split R-hat of each site, shaped like one draw of it
        (NaN where every draw is the same: such elements are not judged).
    ess_bulk : dict of str to numpy.ndarray
        Bulk ESS over all chains, shaped alike.
    max_rhat, min_ess : float
        The thresholds used.
    num_chains, num_draws : int
        Chains, and draws per chain, of the draws checked.
    failures : list of (str, float, float)
        ``(parameter, R-hat, bulk ESS)`` of each element above ``max_rhat``, below
        ``min_ess`` or with non-finite draws, worst R-hat first.
    """

    rhat: dict[str, np.ndarray]
    ess_bulk: dict[str, np.ndarray]
    max_rhat: float
    min_ess: float
    num_chains: int
    num_draws: int
    failures: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """True when every element passed (and there were enough draws to tell)."""
        return not self.failures and self.num_draws >= MIN_DRAWS

    @property
    def message(self) -> str | None:
        """The warning text, or ``None`` for a converged run."""
        if self.converged:
            return None
        if self.num_draws < MIN_DRAWS:
            return (
                f"Convergence cannot be checked from {self.num_draws} draws per chain (split R-hat"
                f" needs at least {MIN_DRAWS}); run more iterations."
            )
        # a NaN R-hat comes only from non-finite draws (constant elements are skipped)
        broken = [f[0] for f in self.failures if np.isnan(f[1])]
        high = [f for f in self.failures if f[1] > self.max_rhat]
        low = [f for f in self.failures if f[2] < self.min_ess]
        parts = []
        if broken:
            more = f" and {len(broken) - MAX_NAMED} more" if len(broken) > MAX_NAMED else ""
            parts.append(f"non-finite draws of {', '.join(broken[:MAX_NAMED])}{more}")
        if high:
            named = ", ".join(f"{n} ({r:.3g})" for n, r, _ in high[:MAX_NAMED])
            more = f" and {len(high) - MAX_NAMED} more" if len(high) > MAX_NAMED else ""
            parts.append(f"R-hat above {self.max_rhat} for {named}{more}")
        if low:
            worst = sorted(low, key=lambda f: f[2])
            named = ", ".join(f"{n} ({e:.3g})" for n, _, e in worst[:MAX_NAMED])
            more = f" and {len(low) - MAX_NAMED} more" if len(low) > MAX_NAMED else ""
            parts.append(f"bulk ESS below {self.min_ess:g} for {named}{more}")
        chains = f"{self.num_chains} chain{'s' if self.num_chains > 1 else ''}"
        return (
            f"The draws have not converged ({chains} of {self.num_draws} draws):"
            f" {'; '.join(parts)}.  Do not trust estimates from them: lengthen num_warmup"
            " (chains still travelling when warmup ended) and num_samples, run more chains, or"
            " reparametrise the model; then check again."
        )


def _grouped_draws(source: Any) -> dict[str, np.ndarray]:
    """``{site: (chain, draw, ...)}`` from an MCMC, a mapping, or ArviZ's posterior."""
    if hasattr(source, "get_samples"):  # numpyro.infer.MCMC
        draws = source.get_samples(group_by_chain=True)
    elif isinstance(source, Mapping) and not hasattr(source, "children"):
        draws = source
    elif hasattr(source, "children") and "posterior" in source.children:  # DataTree
        draws = {k: v.values for k, v in source["posterior"].to_dataset().data_vars.items()}
    elif hasattr(source, "posterior"):  # arviz.InferenceData
        draws = {k: v.values for k, v in source.posterior.data_vars.items()}
    else:
        raise TypeError(
            "check_convergence needs a numpyro.infer.MCMC that has run, a dict of draws"
            " shaped (chain, draw, ...), or an ArviZ object with a posterior group;"
            f" got {type(source).__name__}."
        )
    if hasattr(draws, "_asdict"):
        draws = draws._asdict()
    out = {}
    for name, value in jax.device_get(dict(draws)).items():
        value = np.asarray(value)
        if value.ndim < 2:
            raise ValueError(
                f"draws of {name!r} have shape {value.shape}: check_convergence needs them"
                " grouped by chain, shaped (chain, draw, ...) (a single chain: (1, draw, ...))."
            )
        if np.issubdtype(value.dtype, np.number) or value.dtype == bool:
            out[name] = value.astype(np.float64)
    return out


def check_convergence(
    mcmc_or_samples: Any,
    *,
    max_rhat: float = MAX_RHAT,
    min_ess: float = MIN_ESS,
    warn: bool = True,
) -> ConvergenceCheck:
    """Check the rank-normalised split R-hat and bulk ESS of every parameter; warn if any fails.

    Parameters
    ----------
    mcmc_or_samples : numpyro.infer.MCMC or dict or arviz.InferenceData
        A finished run (its ``get_samples(group_by_chain=True)``, deterministic
        sites included), a dict of draws shaped ``(chain, draw, ...)``, or an
        ArviZ object with a ``posterior`` group.
    max_rhat : float, default 1.01
        An element whose R-hat exceeds this fails.
    min_ess : float, default 100
        An element whose bulk ESS (over all chains) is below this fails.
    warn : bool, default True
        Issue a :class:`~numpyro_dilation.SamplerHealthWarning` naming the worst
        parameters when some element fails.

    Returns
    -------
    ConvergenceCheck
        Per-site R-hat and bulk ESS, the failures, and ``converged``.

    Warns
    -----
    SamplerHealthWarning
        If an element's R-hat is above ``max_rhat``, its bulk ESS below
        ``min_ess``, or its draws are not finite (and ``warn``).

    Examples
    --------
    >>> import numpy as np
    >>> draws = {"x": np.random.default_rng(0).normal(size=(4, 500))}
    >>> result = check_convergence(draws)
    >>> result.converged, float(result.rhat["x"]) < 1.01
    (True, True)
    >>> shifted = {"x": draws["x"] + np.arange(4)[:, None]}  # chains that disagree
    >>> check_convergence(shifted, warn=False).failures[0][0]
    'x'
    """
    draws = _grouped_draws(mcmc_or_samples)
    shapes = {v.shape[:2] for v in draws.values()}
    if len(shapes) > 1:
        raise ValueError(f"the sites have different (chain, draw) shapes: {sorted(shapes)}")
    num_chains, num_draws = shapes.pop() if shapes else (0, 0)
    rhat: dict[str, np.ndarray] = {}
    ess: dict[str, np.ndarray] = {}
    failures: list[tuple[str, float, float]] = []
    if num_draws >= MIN_DRAWS:
        for name, x in draws.items():
            event = x.shape[2:]
            flat = x.reshape(num_chains, num_draws, -1)
            finite = np.isfinite(flat).all(axis=(0, 1))
            moving = finite & (np.ptp(np.where(np.isfinite(flat), flat, 0.0), axis=(0, 1)) > 0)
            r = np.full(flat.shape[2], np.nan)
            e = np.full(flat.shape[2], np.nan)
            if moving.any():
                r[moving] = rank_rhat(flat[..., moving])
                e[moving] = bulk_ess(flat[..., moving])
            rhat[name], ess[name] = r.reshape(event), e.reshape(event)
            bad = ~finite | (moving & ~((r <= max_rhat) & (e >= min_ess)))
            failures += [
                (_label(name, event, j), float(r[j]), float(e[j])) for j in np.flatnonzero(bad)
            ]
    failures.sort(key=lambda f: -np.nan_to_num(f[1], nan=np.inf))
    result = ConvergenceCheck(
        rhat=rhat,
        ess_bulk=ess,
        max_rhat=float(max_rhat),
        min_ess=float(min_ess),
        num_chains=int(num_chains),
        num_draws=int(num_draws),
        failures=failures,
    )
    if warn and not result.converged:
        warnings.warn(result.message, SamplerHealthWarning, stacklevel=2)
    return result


__all__ = [
    "MAX_RHAT",
    "MIN_DRAWS",
    "MIN_ESS",
    "ConvergenceCheck",
    "bulk_ess",
    "check_convergence",
    "rank_normalize",
    "rank_rhat",
    "split_chains",
]
