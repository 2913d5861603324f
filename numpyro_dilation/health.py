"""Run-time warnings when a run is not working: collapsed acceptance, stuck chains.

The checks run on the host through :func:`jax.debug.callback`, at the last
warmup iteration and during sampling (acceptance every :data:`ACCEPT_CHECK_EVERY`
iterations, convergence and modes every :data:`CHECK_EVERY`), and only look at
quantities the state already carries.
"""

from __future__ import annotations

import warnings

import numpy as np

#: A phase whose mean acceptance probability is below this is not sampling.
MIN_MEAN_ACCEPT_PROB = 0.05
#: An adapted step size below this moves a chain a negligible distance: the
#: metric is adapted to the posterior's scale, where a good step is of order 0.1-1.
MIN_STEP_SIZE = 1e-4
#: An adapted step size above this, in a metric adapted to the posterior's scale,
#: means the potential barely changes over huge moves: a flat or improper posterior.
MAX_STEP_SIZE = 1e3
#: Sampling iterations between two convergence and mode checks (a block of draws).
CHECK_EVERY = 1000
#: Sampling iterations between two checks of the chains' recent acceptance: the
#: memory of that running mean, so that a run of any length is checked (the
#: kernel is never told ``num_samples``).
ACCEPT_CHECK_EVERY = 100


class SamplerHealthWarning(UserWarning):
    """Warning issued when DilationLangevin chains stop moving or stop accepting."""


def warn_if_unhealthy(
    sampling,
    iteration,
    mean_accept_prob,
    step_size,
    *,
    check_large_step: bool = True,
    reported: set | None = None,
) -> None:
    """Warn, naming the chains concerned, if acceptance collapsed or the step vanished or exploded.

    Parameters
    ----------
    sampling : bool
        False at the end of warmup, True at a sampling checkpoint.
    iteration : int
        Iteration just completed (0-based).
    mean_accept_prob, step_size : array
        Per-chain mean acceptance (of the adaptation phase at the end of warmup,
        of about the last 100 iterations during sampling) and adapted step size
        (scalars for a single chain).
    check_large_step : bool, default True
        Also warn when the adapted step size exceeds :data:`MAX_STEP_SIZE`
        (meaningful only when both the step size and the mass matrix were
        adapted, so that the step is in units of the posterior's scale).
    reported : set, optional
        Chains already named for collapsed acceptance during sampling since the
        kernel was initialised: they are not named again, and the chains named
        now are added (the sampling check runs every :data:`ACCEPT_CHECK_EVERY`
        iterations).
    """
    batched = np.ndim(mean_accept_prob) > 0
    accept = np.atleast_1d(np.asarray(mean_accept_prob, dtype=float))
    step = np.atleast_1d(np.asarray(step_size, dtype=float))
    where = (
        "after warmup"
        if not bool(sampling)
        else f"over the ~100 iterations before iteration {int(iteration) + 1}"
    )

    def chains(idx):
        return f"chain(s) {idx.tolist()}" if batched else "a chain"

    collapsed = np.flatnonzero(~(accept >= MIN_MEAN_ACCEPT_PROB))
    if bool(sampling) and reported is not None:
        collapsed = np.asarray([c for c in collapsed.tolist() if c not in reported], dtype=int)
        reported.update(collapsed.tolist())
    if collapsed.size:
        warnings.warn(
            f"DilationLangevin: mean acceptance probability {where} is below"
            f" {MIN_MEAN_ACCEPT_PROB} for {chains(collapsed)}"
            f" (lowest {np.nanmin(accept[collapsed]):.3g}): those chains are barely moving."
            " The posterior may be improper, non-smooth or badly scaled; check r_hat and ESS,"
            " lengthen the warmup or reparametrise the model.",
            SamplerHealthWarning,
            stacklevel=2,
        )
    tiny = np.flatnonzero(step < MIN_STEP_SIZE)
    if not sampling and tiny.size:
        warnings.warn(
            f"DilationLangevin: the adapted step size {where} is below {MIN_STEP_SIZE} for"
            f" {chains(tiny)} (smallest {step[tiny].min():.3g}): those chains will"
            " hardly move. The posterior may be extremely ill-conditioned or have a region of"
            " very high curvature; try dense_mass=True, a longer warmup or a reparametrisation.",
            SamplerHealthWarning,
            stacklevel=2,
        )
    huge = np.flatnonzero(step > MAX_STEP_SIZE)
    if not sampling and check_large_step and huge.size:
        warnings.warn(
            f"DilationLangevin: the adapted step size {where} is above {MAX_STEP_SIZE:g} for"
            f" {chains(huge)} (largest {step[huge].max():.3g}) in a metric adapted to the"
            " posterior's scale: the potential hardly changes over huge moves. The posterior"
            " is probably improper (not integrable) or flat in some direction; check the"
            " priors, and whether every parameter is informed by a prior or the data.",
            SamplerHealthWarning,
            stacklevel=2,
        )


#: The fraction of draws in a mode differs between the halves of a sampling block
#: when the difference exceeds this many Monte Carlo standard errors ...
MODE_HALVES_Z = 4.0
#: ... and this much (smaller differences do not matter whatever the error).
MODE_HALVES_MIN_DIFFERENCE = 0.01


def mode_components(visited: np.ndarray) -> np.ndarray:
    """Group modes that some chain visited together: ``(n, C) bool -> (C,)`` component ids.

    Two modes are connected when one chain visited both during the block; each
    mode's id is the smallest mode it is connected to.
    """
    visited = np.asarray(visited, dtype=bool)
    together = (visited.T.astype(int) @ visited.astype(int)) > 0
    label = np.arange(visited.shape[1])
    for _ in range(visited.shape[1]):
        label = np.min(np.where(together, label[None, :], visited.shape[1]), axis=1)
        label = np.minimum(label, np.arange(visited.shape[1]))
    return label


def warn_if_modes_not_equilibrated(iteration, block_start, occupancy, ensemble: bool) -> None:
    """Warn when the chains' modes show that the mode weights cannot be trusted.

    Parameters
    ----------
    iteration, block_start : int
        Last iteration of the sampling block checked, and its first (0-based).
    occupancy : array of int, shape (n, 2, C)
        Per chain, iterations spent in each mode in the block's first and second half.
    ensemble : bool
        Whether mode moves ran (``ensemble=True``), for the advice.

    Two findings are reported: modes that hold draws although no chain moved
    between them during the block (their weights are those the warmup left),
    and a fraction of draws in a mode that differs between the block's halves
    by more than :data:`MODE_HALVES_Z` Monte Carlo standard errors (chains
    are independent during sampling, so the spread of the per-chain
    differences gives the error).
    """
    occupancy = np.asarray(occupancy, dtype=float)
    if occupancy.ndim != 3 or occupancy.shape[0] < 2:
        return
    total = occupancy.sum(axis=(0, 1))
    occupied = np.flatnonzero(total > 0)
    if occupied.size < 2:
        return
    advice = (
        "run more chains or a longer warmup, so that every mode holds chains when the"
        " mode moves are tuned"
        if ensemble
        else "use DilationLangevin(..., ensemble=True) with chain_method='vectorized' and"
        " 64 or more chains, whose mode moves carry chains between modes"
    )
    where = f"sampling iterations {int(block_start)}-{int(iteration)}"
    visited = occupancy.sum(axis=1) > 0
    groups = mode_components(visited)[occupied]
    fractions = total[occupied] / total.sum()
    if np.unique(groups).size > 1:
        parts = ", ".join(
            "{" + ", ".join(f"{f:.3f}" for f in fractions[groups == g]) + "}"
            for g in np.unique(groups)
        )
        warnings.warn(
            f"DilationLangevin: the chains sit in {occupied.size} separate modes of the"
            f" posterior, and no chain moved between some of them during {where}"
            f" (fractions of the draws by group of connected modes: {parts}).  The"
            " fraction of draws in each mode is what the warmup left, not the posterior's"
            f" mass, so the mode weights cannot be trusted; {advice}.",
            SamplerHealthWarning,
            stacklevel=2,
        )
        return
    half = occupancy.sum(axis=2, keepdims=True)
    share = occupancy / np.maximum(half, 1)  # per chain, fraction of each half in each mode
    difference = share[:, 0, occupied] - share[:, 1, occupied]
    mean = difference.mean(axis=0)
    error = difference.std(axis=0, ddof=1) / np.sqrt(difference.shape[0])
    flagged = (np.abs(mean) > MODE_HALVES_Z * error) & (np.abs(mean) > MODE_HALVES_MIN_DIFFERENCE)
    if flagged.any():
        worst = int(np.argmax(np.where(flagged, np.abs(mean) / np.maximum(error, 1e-12), 0)))
        warnings.warn(
            f"DilationLangevin: the fraction of draws in a mode changed between the halves"
            f" of {where}: {share[:, 0, occupied[worst]].mean():.3f} in the first half,"
            f" {share[:, 1, occupied[worst]].mean():.3f} in the second ({abs(mean[worst]):.3f}"
            f" apart, {abs(mean[worst]) / max(error[worst], 1e-12):.1f} Monte Carlo standard"
            " errors).  The chains had not settled in the modes with the posterior's"
            f" weights, so the mode weights cannot be trusted; {advice}.",
            SamplerHealthWarning,
            stacklevel=2,
        )


__all__ = [
    "ACCEPT_CHECK_EVERY",
    "CHECK_EVERY",
    "MAX_STEP_SIZE",
    "MIN_MEAN_ACCEPT_PROB",
    "MIN_STEP_SIZE",
    "MODE_HALVES_MIN_DIFFERENCE",
    "MODE_HALVES_Z",
    "SamplerHealthWarning",
    "mode_components",
    "warn_if_modes_not_equilibrated",
    "warn_if_unhealthy",
]
