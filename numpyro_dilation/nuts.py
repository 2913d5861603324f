"""The NUTS stationary option: the annealed chains handed to NumPyro's own NUTS.

For users who want NUTS's robustness together with the path's mode discovery:
the annealing runs as usual, and at ``t = 1`` each chain's state becomes the
starting point of NumPyro's functional NUTS
(:func:`numpyro.infer.hmc.hmc` with ``algo="NUTS"``), which then adapts over
the rest of the warmup exactly as NUTS does (dual averaging and Stan's
windows, from the step size the annealing's curvature suggests) and samples.
Nothing of NUTS is written again here: this module only moves the position,
potential and gradient across, and mirrors NUTS's state into
:class:`~numpyro_dilation.state.DilationState` so that extra fields and the
health checks read the same names whichever kernel runs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import hmc
from numpyro.infer.hmc_util import dual_averaging

from numpyro_dilation.dilation import RECENT_WEIGHT, DilationState, initial_step_size, phases


def nuts_kernel(potential_fn: Callable | None, potential_fn_gen: Callable | None):
    """NumPyro's functional NUTS ``(init_kernel, sample_kernel)`` for this potential."""
    return hmc(potential_fn=potential_fn, potential_fn_gen=potential_fn_gen, algo="NUTS")


def init(
    init_kernel: Callable,
    state: DilationState,
    rng_key: jax.Array,
    *,
    num_warmup: int,
    step_size: float,
    adapt_step_size: bool,
    adapt_mass_matrix: bool,
    dense_mass: bool,
    target_accept_prob: float,
    forward_mode_differentiation: bool,
    regularize_mass_matrix: bool,
    model_args: tuple,
    model_kwargs: dict,
) -> DilationState:
    """One chain's state with a NUTS state attached (started, for now, at the centre).

    ``num_warmup`` is the warmup left after the annealing: NUTS adapts over it.
    """
    nuts_state = init_kernel(
        state.z,
        num_warmup,
        step_size=step_size,
        adapt_step_size=adapt_step_size,
        adapt_mass_matrix=adapt_mass_matrix,
        dense_mass=dense_mass,
        target_accept_prob=target_accept_prob,
        forward_mode_differentiation=forward_mode_differentiation,
        regularize_mass_matrix=regularize_mass_matrix,
        model_args=model_args,
        model_kwargs=model_kwargs,
        rng_key=rng_key,
    )
    return state._replace(nuts=nuts_state)


def hand_over(state: DilationState, adapt_step_size: bool) -> Any:
    """The NUTS state moved to the annealed chain's position and metric, at the start of its warmup."""
    nuts_state = state.nuts
    _, unravel = ravel_pytree(state.z)
    nuts_state = nuts_state._replace(
        z=state.z,
        z_grad=unravel(state.y_grad),
        potential_energy=state.potential_energy,
    )
    # NUTS starts in the metric the annealing adapted (its own windows then take
    # over): with M = P^{-1} = W^T W, momenta r = W^T xi, as NumPyro draws them
    # from `mass_matrix_sqrt`; `mass_matrix_sqrt_inv` is its inverse, A^T.
    metric = state.adapt_state.metric
    dense = metric.whitening.ndim == 2
    nuts_state = nuts_state._replace(
        adapt_state=nuts_state.adapt_state._replace(
            inverse_mass_matrix=metric.inverse_mass_matrix,
            mass_matrix_sqrt=metric.whitening.T if dense else metric.whitening,
            mass_matrix_sqrt_inv=(
                metric.inverse_mass_matrix_sqrt.T if dense else metric.inverse_mass_matrix_sqrt
            ),
        )
    )
    if adapt_step_size:
        # dual averaging starts from the step the annealing's curvature suggests
        step = initial_step_size(state.adapt_state.curvature, "hmc").astype(state.y.dtype)
        ss_init, _ = dual_averaging()
        adapt = nuts_state.adapt_state._replace(
            step_size=step, ss_state=ss_init(jnp.log(10.0) + jnp.log(step))
        )
        nuts_state = nuts_state._replace(adapt_state=adapt)
    return nuts_state


def transition(
    state: DilationState,
    handing_over: jax.Array,
    model_args: tuple,
    model_kwargs: dict,
    *,
    sample_kernel: Callable,
    adapt_step_size: bool,
) -> DilationState:
    """One NUTS iteration of one chain, mirrored into the dilation state."""
    nuts_state = jax.lax.cond(
        handing_over,
        lambda s: hand_over(s, adapt_step_size),
        lambda s: s.nuts,
        state,
    )
    nuts_state = sample_kernel(nuts_state, model_args, model_kwargs)
    flat, _ = ravel_pytree(nuts_state.z)
    grad, _ = ravel_pytree(nuts_state.z_grad)
    accept_prob = nuts_state.accept_prob.astype(flat.dtype)
    step_size = nuts_state.adapt_state.step_size
    num_steps = nuts_state.num_steps.astype(state.num_steps.dtype)
    return state._replace(
        i=state.i + 1,
        z=nuts_state.z,
        potential_energy=nuts_state.potential_energy,
        y=flat,
        y_grad=grad,
        t=jnp.ones_like(state.t),
        step_size=step_size,
        accept_prob=accept_prob,
        mean_accept_prob=nuts_state.mean_accept_prob.astype(flat.dtype),
        recent_accept_prob=state.recent_accept_prob
        + RECENT_WEIGHT * (accept_prob - state.recent_accept_prob),
        diverging=nuts_state.diverging,
        num_grad_evals=state.num_grad_evals + num_steps,
        num_steps=num_steps,
        adapt_state=state.adapt_state._replace(step_size=step_size),
        nuts=nuts_state,
    )


def attach(
    state: DilationState,
    rng_key: jax.Array,
    step: Callable,
    *,
    potential_fn: Callable | None,
    potential_fn_gen: Callable | None,
    num_adapt: int,
    vectorized: bool,
    model_args: tuple,
    model_kwargs: dict,
    **nuts_options: Any,
) -> tuple[DilationState, Callable]:
    """Attach NumPyro's NUTS to the state, and a step that hands over to it at ``t = 1``.

    ``step(state, potential_fn, batched)`` is the annealing's step; the returned
    ``nuts_step(state, potential_fn, batched, model_args, model_kwargs)`` runs it
    before ``t = 1`` and NUTS from there.  ``nuts_options`` are :func:`init`'s
    (step size, adaptation switches, ``dense_mass``, ``target_accept_prob``, ...).
    """
    init_kernel, sample_kernel = nuts_kernel(potential_fn, potential_fn_gen)
    init_one = partial(
        init,
        init_kernel,
        num_warmup=num_adapt,
        model_args=model_args,
        model_kwargs=model_kwargs,
        **nuts_options,
    )
    keys = (
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(rng_key)
        if vectorized
        else jax.random.fold_in(rng_key, 1)
    )
    state = jax.vmap(init_one)(state, keys) if vectorized else init_one(state, keys)
    nuts_one = partial(
        transition, adapt_step_size=nuts_options["adapt_step_size"], sample_kernel=sample_kernel
    )

    def nuts_step(state, potential_fn, batched, model_args, model_kwargs):
        i, num_anneal, _ = phases(state, batched)
        run = jax.vmap(nuts_one, in_axes=(0, None, None, None)) if batched else nuts_one

        def nuts(s):
            # NUTS adapts each chain alone: the modes' pooled state stays aside
            chains = run(s._replace(modes=None), i == num_anneal, model_args, model_kwargs)
            return chains._replace(modes=s.modes)

        # the phase is unbatched (vectorised chains share the counter): a real branch
        return jax.lax.cond(i < num_anneal, lambda s: step(s, potential_fn, batched), nuts, state)

    return state, nuts_step


__all__ = ["attach", "hand_over", "init", "nuts_kernel", "transition"]
