"""Run-time warnings when a run is not working: collapsed acceptance, stuck chains.

The checks run on the host through :func:`jax.debug.callback`, at the last
warmup iteration and every :data:`CHECK_EVERY` sampling iterations, and only
look at quantities the state already carries.
"""

from __future__ import annotations

import warnings

import numpy as np

#: A phase whose mean acceptance probability is below this is not sampling.
MIN_MEAN_ACCEPT_PROB = 0.05
#: An adapted step size below this moves a chain a negligible distance: the
#: metric is adapted to the posterior's scale, where a good MALA step is 0.1-1.5.
MIN_STEP_SIZE = 1e-4
#: An adapted step size above this, in a metric adapted to the posterior's scale,
#: means the potential barely changes over huge moves: a flat or improper posterior.
MAX_STEP_SIZE = 1e3
#: Sampling iterations between two checks.
CHECK_EVERY = 1000


class SamplerHealthWarning(UserWarning):
    """Warning issued when DilationLangevin chains stop moving or stop accepting."""


def warn_if_unhealthy(
    sampling, iteration, mean_accept_prob, step_size, *, check_large_step: bool = True
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


__all__ = [
    "CHECK_EVERY",
    "MAX_STEP_SIZE",
    "MIN_MEAN_ACCEPT_PROB",
    "MIN_STEP_SIZE",
    "SamplerHealthWarning",
    "warn_if_unhealthy",
]
