"""The dilation path and its annealing schedule (pure functions on arrays).

The dilation path of a target ``p`` with centre ``c`` is the law of
``X_t = c + sqrt(t) (X - c)`` with ``X ~ p``, for ``t`` in ``(0, 1]``.  Its density
and score are in closed form,

.. math::

    \\log p_t(x) = -\\tfrac{d}{2} \\log t + \\log p\\bigl(c + (x - c) / \\sqrt{t}\\bigr),
    \\qquad
    \\nabla \\log p_t(x) = t^{-1/2} \\, \\nabla \\log p\\bigl(c + (x - c) / \\sqrt{t}\\bigr),

and every ``p_t`` has the normalising constant of ``p`` (a linear change of
variables).  The sampler works in the *rescaled* coordinates
``y = c + (x - c) / sqrt(t)``, where a Langevin step of size ``h`` on ``p_t`` is a
Langevin step of size ``h / t`` on ``p`` itself; moving from level ``t`` to
``t'`` is then the contraction ``y -> c + sqrt(t / t') (y - c)``.  Nothing in
these coordinates divides by ``sqrt(t)``, so small levels are as well conditioned
as ``t = 1``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

Schedule = str | Callable[[ArrayLike], ArrayLike]

SCHEDULES = ("geometric", "linear")


def log_density(log_prob_fn: Callable, x: ArrayLike, t: ArrayLike, center: ArrayLike):
    """Unnormalised log density of the level-``t`` distribution of the dilation path.

    Parameters
    ----------
    log_prob_fn : callable
        Unnormalised log density of the target on flat arrays.
    x : array, shape (d,)
        Point at which to evaluate.
    t : float
        Level of the path, in ``(0, 1]``.
    center : array, shape (d,)
        Centre ``c`` of the dilation.

    Returns
    -------
    float
        ``log p_t(x)``, exact up to the target's own normalising constant.
    """
    d = jnp.size(x)
    return -log_normalizer(d, t) + log_prob_fn(to_rescaled(x, t, center))


def score(grad_log_prob_fn: Callable, x: ArrayLike, t: ArrayLike, center: ArrayLike):
    """Closed-form score ``grad log p_t(x)`` of the dilation path.

    Parameters
    ----------
    grad_log_prob_fn : callable
        Gradient of the target's log density on flat arrays.
    x, t, center
        As in :func:`log_density`.
    """
    return grad_log_prob_fn(to_rescaled(x, t, center)) / jnp.sqrt(t)


def to_rescaled(x: ArrayLike, t: ArrayLike, center: ArrayLike):
    """Map a point ``x`` of level ``t`` to rescaled coordinates ``c + (x - c)/sqrt(t)``."""
    return center + (x - center) / jnp.sqrt(t)


def from_rescaled(y: ArrayLike, t: ArrayLike, center: ArrayLike):
    """Map rescaled coordinates ``y`` back to the level-``t`` point ``c + sqrt(t)(y - c)``."""
    return center + jnp.sqrt(t) * (y - center)


def contract(y: ArrayLike, t_from: ArrayLike, t_to: ArrayLike, center: ArrayLike):
    """Move a rescaled point from level ``t_from`` to level ``t_to``.

    The point ``x`` on the path does not move when the level changes; only its
    rescaled coordinates do, by the factor ``sqrt(t_from / t_to)`` (a contraction
    towards the centre when the level increases).
    """
    return center + contraction(t_from, t_to) * (y - center)


def contraction(t_from: ArrayLike, t_to: ArrayLike):
    """Factor ``sqrt(t_from / t_to)`` by which rescaled coordinates shrink between levels."""
    return jnp.sqrt(t_from / t_to)


def log_normalizer(d: int, t: ArrayLike):
    """``(d / 2) log t``: the level's potential is the target's plus this term.

    In rescaled coordinates ``y`` the level-``t`` potential at ``x`` is
    ``U(y) + (d / 2) log t`` (the log Jacobian of ``x -> y``); the sampler stores
    the level's potential and subtracts this term to get the target's.
    """
    return 0.5 * d * jnp.log(t)


def level_after(i: ArrayLike, num_anneal_steps: ArrayLike, levels: Callable, dtype):
    """Level reached by iteration ``i``'s move: ``levels((i + 1) / n)``, and 1 from the last on.

    Parameters
    ----------
    i : int
        Iteration (0-based) whose move ends at the returned level.
    num_anneal_steps : int
        Iterations of annealing ``n``; iterations ``>= n - 1`` end at ``t = 1``.
    levels : callable
        The schedule ``u -> t`` (see :func:`make_schedule`).
    dtype
        Floating dtype of the result.
    """
    u_next = ((i + 1) / jnp.maximum(num_anneal_steps, 1)).astype(dtype)
    return jnp.where(i + 1 < num_anneal_steps, levels(u_next), 1.0).astype(dtype)


def initial_level(levels: Callable, dtype):
    """Level of the path where every chain starts: ``levels(0)``."""
    return jnp.asarray(levels(jnp.zeros((), dtype)), dtype)


def rescaled_step_size(eps: ArrayLike, alpha: ArrayLike, t: ArrayLike, curvature: ArrayLike):
    """Annealing step in rescaled coordinates: the paper's ``h = eps t**alpha`` on ``p_t``.

    On the target that step is ``h / t = eps * t**(alpha - 1)``; dividing by the
    curvature estimate ``L`` measures ``eps`` in units of ``1 / L``, so that the
    annealing is equally hot on posteriors of any scale.
    """
    return eps * t ** (alpha - 1) / curvature


def geometric_schedule(u: ArrayLike, t_min: float):
    """Levels equally spaced in ``log t``: ``t = t_min ** (1 - u)`` for ``u`` in [0, 1]."""
    return jnp.power(t_min, 1.0 - u)


def linear_schedule(u: ArrayLike, t_min: float):
    """Levels equally spaced in ``t``: ``t = t_min + (1 - t_min) u`` for ``u`` in [0, 1]."""
    return t_min + (1.0 - t_min) * u


def make_schedule(schedule: Schedule, t_min: float) -> Callable[[ArrayLike], ArrayLike]:
    """Return ``u -> t``, the level reached after a fraction ``u`` of the annealing.

    Parameters
    ----------
    schedule : {"geometric", "linear"} or callable
        A named schedule, or a JAX-traceable function of ``u`` in ``[0, 1]``
        returning levels in ``(0, 1]`` that increase to ``t = 1`` at ``u = 1``
        (``t_min`` is then unused).
    t_min : float
        First level of the named schedules.
    """
    if schedule == "geometric":
        return lambda u: geometric_schedule(u, t_min)
    if schedule == "linear":
        return lambda u: linear_schedule(u, t_min)
    return schedule


def check_schedule(schedule: Schedule) -> None:
    """Raise a clear error unless ``schedule`` is a valid annealing schedule.

    A callable is evaluated on a grid of ``u`` in ``[0, 1]``: it must return finite
    levels in ``(0, 1]``, non-decreasing, and exactly 1 at ``u = 1``.
    """
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {SCHEDULES} or a callable u -> t; got {schedule!r}."
            )
        return
    if not callable(schedule):
        raise TypeError(
            f"`schedule` must be one of {SCHEDULES} or a callable u -> t; "
            f"got an object of type {type(schedule).__name__}."
        )
    grid = np.linspace(0.0, 1.0, 101)
    try:
        levels = np.asarray([float(schedule(jnp.asarray(u))) for u in grid])
    except Exception as err:  # the user's function, any failure is theirs to see
        raise ValueError(
            "`schedule` callable must map a scalar u in [0, 1] to a level t in (0, 1]; "
            f"calling it failed with {type(err).__name__}: {err}"
        ) from err
    if not np.all(np.isfinite(levels)) or np.any(levels <= 0) or np.any(levels > 1):
        raise ValueError(
            "`schedule` callable must return finite levels in (0, 1] for every u in [0, 1]; "
            f"it returned values between {levels.min():.3g} and {levels.max():.3g}."
        )
    if np.any(np.diff(levels) < 0):
        raise ValueError("`schedule` callable must be non-decreasing in u.")
    if not np.isclose(levels[-1], 1.0, rtol=0, atol=1e-6):
        raise ValueError(
            f"`schedule` callable must reach t = 1 at u = 1 (the target); got t = {levels[-1]:.6g}."
        )


__all__ = [
    "SCHEDULES",
    "Schedule",
    "check_schedule",
    "contract",
    "contraction",
    "from_rescaled",
    "geometric_schedule",
    "initial_level",
    "level_after",
    "linear_schedule",
    "log_density",
    "log_normalizer",
    "make_schedule",
    "rescaled_step_size",
    "score",
    "to_rescaled",
]
