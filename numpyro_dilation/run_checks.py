"""The checks that run inside the compiled loop, after each iteration.

Each is a function of the state: it updates the running sums it needs (the
convergence sums, the modes' occupancy) and, at a checkpoint, hands the figures
to a host function that warns (:mod:`.health`, :mod:`.convergence`).  The host
call is a parameter: :func:`host_call` makes one, or one that does nothing
where callbacks cannot run (:func:`numpyro_dilation.sharding.host_checks_work`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import vmap

from numpyro_dilation import convergence, pooling
from numpyro_dilation.health import (
    ACCEPT_CHECK_EVERY,
    CHECK_EVERY,
    warn_if_modes_not_equilibrated,
    warn_if_unhealthy,
)
from numpyro_dilation.state import DilationState, phases

HostCall = Callable[..., None]


def host_call(enabled: bool) -> HostCall:
    """``call(fn, *args)``: ``fn(*args)`` on the host from compiled code, or nothing."""

    def call(fn: Callable, *args) -> None:
        if enabled:
            jax.debug.callback(fn, *args)

    return call


def check_health(
    state: DilationState,
    batched: bool,
    *,
    check_warmup: bool,
    check_large_step: bool,
    reported: set,
    call: HostCall,
) -> None:
    """Warn at the end of warmup and every ACCEPT_CHECK_EVERY sampling iterations
    (each chain named once for collapsed acceptance, through ``reported``)."""
    # the counter has already moved past the iteration just run
    i, _, num_warmup = phases(state, batched)
    i = i - 1
    sampling = i >= num_warmup
    checkpoint = ((i == num_warmup - 1) & check_warmup) | (
        sampling & ((i - num_warmup) % ACCEPT_CHECK_EVERY == ACCEPT_CHECK_EVERY - 1)
    )
    warn = partial(warn_if_unhealthy, check_large_step=check_large_step, reported=reported)
    jax.lax.cond(
        checkpoint,
        lambda s: call(
            warn,
            sampling,
            i,
            jnp.where(sampling, s.recent_accept_prob, s.mean_accept_prob),
            s.adapt_state.step_size,
        ),
        lambda s: None,
        state,
    )


def check_convergence(
    state: DilationState,
    batched: bool,
    leaves: tuple,
    *,
    ensemble: bool,
    call: HostCall,
) -> DilationState:
    """Add the new position to the window's sums; warn from the host at a window's end."""
    i, num_anneal, num_warmup = phases(state, batched)
    i = i - 1  # the counter has already moved past the iteration just run
    k, length = convergence.window_position(i, num_anneal, num_warmup, CHECK_EVERY)
    update = convergence.update
    if batched:
        update = vmap(update, in_axes=(0, 0, None, None, 0))
    # unbatched predicates: real branches, no per-iteration select over the sums
    sums = jax.lax.cond(
        k >= 0,
        lambda c: update(c, state.y, k, length, state.diverging),
        lambda c: c,
        state.convergence,
    )
    warn = partial(convergence.warn_if_not_converged, leaves=leaves)
    report = (k >= 0) & (k == length - 1)
    if ensemble:
        # chains of an ensemble sit apart in the modes until its mode moves start,
        # late in the warmup; the sampling checks judge whether they equilibrated
        report = report & ((i >= num_warmup) | (jnp.sum(jnp.isfinite(state.modes.log_weight)) < 2))
    jax.lax.cond(
        report,
        lambda c: call(warn, i >= num_warmup, i, c.count, c.mean, c.m2, c.divergences),
        lambda c: None,
        sums,
    )
    return state._replace(convergence=sums)


def check_modes(state: DilationState, *, ensemble: bool, call: HostCall) -> DilationState:
    """Count the modes the (vectorised) chains are in; warn from the host at a block's end."""
    i, _, num_warmup = phases(state, True)
    i = i - 1  # the counter has already moved past the iteration just run
    position = (i - num_warmup) % CHECK_EVERY
    sampling = i >= num_warmup
    modes = jax.lax.cond(
        sampling,
        lambda m: pooling.count_occupancy(m, state.y, position, CHECK_EVERY),
        lambda m: m,
        state.modes,
    )
    warn = partial(warn_if_modes_not_equilibrated, ensemble=ensemble)
    jax.lax.cond(
        sampling & (position == CHECK_EVERY - 1),
        lambda m: call(warn, i, i - position, m.occupancy),
        lambda m: None,
        modes,
    )
    return state._replace(modes=modes)


def run_checks(
    state: DilationState,
    sums,
    batched: bool,
    leaves: tuple,
    *,
    check_warmup: bool,
    check_large_step: bool,
    ensemble: bool,
    reported: set,
    call: HostCall,
) -> DilationState:
    """All three after an iteration; ``sums`` are the convergence sums from before it
    (``None``: convergence checks off)."""
    check_health(
        state,
        batched,
        check_warmup=check_warmup,
        check_large_step=check_large_step,
        reported=reported,
        call=call,
    )
    if sums is not None:
        state = check_convergence(
            state._replace(convergence=sums), batched, leaves, ensemble=ensemble, call=call
        )
    if batched and state.modes is not None:
        state = check_modes(state, ensemble=ensemble, call=call)
    return state


__all__ = [
    "HostCall",
    "check_convergence",
    "check_health",
    "check_modes",
    "host_call",
    "run_checks",
]
