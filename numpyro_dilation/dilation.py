"""The sampler as pure functions: ``init`` and ``build_kernel``.

:func:`init` puts a chain at the dilation centre, at the first level of the
path.  :func:`build_kernel` composes the functions that run it:

* :mod:`.moves`: one iteration of one chain, the move (Langevin while
  annealing, MALA or HMC at ``t = 1``) and what the warmup learns from it;
* :mod:`.iteration`: one iteration of a lone chain or of vectorised chains,
  with the warmup work around the move (the lone chain's basin search, the
  pooled adaptation, the window ends).

The state and the settings they pass around live in :mod:`.state`; this module
re-exports them, and the names the kernel takes from here.

Nothing here knows about NumPyro's ``MCMCKernel``: the kernel class
(:mod:`.kernel`) builds the potential, the centre and the settings, then calls
these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from numpyro_dilation import iteration, moves, path
from numpyro_dilation.adaptation import WindowAdapter, initial_curvature
from numpyro_dilation.locate import locate
from numpyro_dilation.moves import (
    RECENT_WEIGHT,
    flat_potential_and_grad,
    initial_step_size,
    trajectory_length,
)
from numpyro_dilation.state import DilationSettings, DilationState, phases

#: Stationary kernels after the annealing.
STATIONARY_KERNELS = ("hmc", "mala")


def init(
    rng_key: jax.Array,
    params: Any,
    potential_fn: Callable,
    adapter: WindowAdapter,
    settings: DilationSettings,
    *,
    center: jax.Array | None,
    step_size: float,
    inverse_mass_matrix: Any,
    num_anneal_steps: int,
    num_warmup: int,
) -> DilationState:
    """State of one chain at the dilation centre, at the first level of the path.

    Parameters
    ----------
    rng_key : jax.Array
        The chain's random key.
    params : pytree
        Unconstrained parameters fixing the structure (and, for
        ``center=None``, the centre).
    potential_fn : callable
        Potential energy of a pytree like ``params``.
    adapter : WindowAdapter
        The warmup adaptation (:func:`numpyro_dilation.adaptation.window_adapter`).
    settings : DilationSettings
        Transition settings.
    center : array or None
        Flat centre of the dilation; ``None`` for the chain's own ``params``.
    step_size, inverse_mass_matrix
        Initial step size and inverse mass matrix (``None`` for the identity).
    num_anneal_steps, num_warmup : int
        Phase boundaries, kept in the state.
    """
    flat, unravel = ravel_pytree(params)
    size = flat.size
    c = flat if center is None else center.astype(flat.dtype)
    # Without annealing the chains start on the target itself.
    t0 = (
        path.initial_level(settings.levels, flat.dtype)
        if num_anneal_steps > 0
        else jnp.ones((), flat.dtype)
    )
    pag = flat_potential_and_grad(potential_fn, unravel, settings.forward_mode_differentiation)
    pe, grad = pag(c)
    int_zero = jnp.array(0, dtype=jnp.result_type(int))
    adapt_state = adapter.init(size, step_size, inverse_mass_matrix, flat.dtype)
    grads = 1
    if num_anneal_steps > 0 and size > 0:
        # a centre far outside the posterior is first moved towards it (the annealing
        # could not leave it): the dilation then centres there
        located = locate(pag, c, pe, grad)
        c, pe, grad = located.y, located.potential_energy, located.grad
        grads += located.num_grad_evals
        # the annealing's first step must not be sized for a curvature of 1
        curvature = initial_curvature(pag, c, grad, adapt_state.metric, adapt_state.curvature)
        adapt_state = adapt_state._replace(curvature=curvature)
        grads += 1
    return DilationState(
        i=int_zero,
        z=unravel(c),
        potential_energy=pe + path.log_normalizer(size, t0),
        y=c,
        y_grad=grad,
        center=c,
        t=t0,
        step_size=jnp.zeros((), flat.dtype),
        accept_prob=jnp.zeros((), flat.dtype),
        mean_accept_prob=jnp.zeros((), flat.dtype),
        recent_accept_prob=jnp.ones((), flat.dtype),
        diverging=jnp.array(False),
        num_grad_evals=int_zero + grads,
        num_steps=int_zero,
        adapt_state=adapt_state,
        rng_key=rng_key,
        num_anneal_steps=int_zero + num_anneal_steps,
        num_warmup=int_zero + num_warmup,
    )


class DilationKernel(NamedTuple):
    """What :func:`build_kernel` returns.

    Attributes
    ----------
    transition : callable
        ``(state, i, num_anneal_steps, num_warmup, potential_fn, num_steps) -> state``:
        one iteration of one chain adapting alone, without the window-end work.
    step : callable
        ``(state, potential_fn, batched, label_weights=None) -> state``: one
        iteration of one chain or of a batch of vectorised chains, window ends
        included (:func:`numpyro_dilation.iteration.step`).  Vectorised
        chains adapt together: one step size from the geometric mean of their
        acceptance (:func:`~numpyro_dilation.adaptation.pooled_acceptance`), one
        mass matrix from their mean within-chain covariance, one trajectory
        length from their mean ChEES gradient.
    """

    transition: Callable
    step: Callable


def build_kernel(settings: DilationSettings, adapter: WindowAdapter) -> DilationKernel:
    """Build the transition of the dilation sampler (see the module docstring).

    The kernel's functions are :func:`numpyro_dilation.moves.transition` and
    :func:`numpyro_dilation.iteration.step` with the settings and the adapter given.

    Parameters
    ----------
    settings : DilationSettings
        Transition settings.
    adapter : WindowAdapter
        The warmup adaptation built for this run's phase boundaries.

    Returns
    -------
    DilationKernel
    """
    if settings.stationary not in STATIONARY_KERNELS:
        raise ValueError(f"stationary must be one of {STATIONARY_KERNELS}")
    return DilationKernel(
        transition=partial(moves.transition, settings, adapter),
        step=partial(iteration.step, settings, adapter),
    )


__all__ = [
    "RECENT_WEIGHT",
    "STATIONARY_KERNELS",
    "DilationKernel",
    "DilationSettings",
    "DilationState",
    "build_kernel",
    "flat_potential_and_grad",
    "init",
    "initial_step_size",
    "phases",
    "trajectory_length",
]
