"""Samplers of the hard_geometry suite, each run on a :class:`~benchmarks.geometry_targets.Target`.

A sampler is a function ``(target, key, num_chains, num_warmup, num_samples) ->``
:class:`Outcome` (constrained draws, times, gradient evaluations, divergences).
:func:`numpyro_sampler` makes one from a NumPyro kernel factory (DilationLangevin
and NUTS); :func:`chees_hmc` runs BlackJAX's ChEES-HMC on the model's NumPyro
potential.  :data:`SAMPLERS` is the suite's table ``name -> sampler`` and
:data:`SAMPLER_LABELS` their names on the page.  The suite is
:mod:`benchmarks.hard_geometry`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import NUTS
from numpyro.infer.util import initialize_model

from benchmarks import common
from benchmarks.geometry_targets import Target

__all__ = [
    "CHEES_INITIAL_STEP",
    "CHEES_LEARNING_RATE",
    "SAMPLERS",
    "SAMPLER_LABELS",
    "Outcome",
    "chees_hmc",
    "numpyro_sampler",
]


@dataclass
class Outcome:
    """What a sampler returns: constrained draws and costs (see :class:`common.MCMCRun`)."""

    samples: dict[str, np.ndarray]  # {site: (chains, draws, ...)}
    warmup_s: float
    sample_s: float
    compile_s: float
    grad_evals_warmup: int
    grad_evals_sample: int
    divergences: int
    accept: float
    extra: dict[str, Any]


def numpyro_sampler(make_kernel: Callable[[Callable], Any]) -> Callable[..., Outcome]:
    """A sampler from a NumPyro kernel factory ``model -> kernel``, run by :func:`common.run_mcmc`."""

    def sample(target: Target, key, num_chains: int, num_warmup: int, num_samples: int) -> Outcome:
        args, kwargs = target.args()
        r = common.run_mcmc(
            make_kernel(target.model),
            key,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            model_args=args,
            model_kwargs=kwargs,
            extra_fields=("accept_prob", "diverging"),
        )
        return Outcome(
            samples=r.samples,
            warmup_s=r.warmup_s,
            sample_s=r.sample_s,
            compile_s=r.compile_s,
            grad_evals_warmup=r.grad_evals_warmup,
            grad_evals_sample=r.grad_evals_sample,
            divergences=int(np.sum(r.extra["diverging"])),
            accept=float(np.mean(r.extra["accept_prob"])),
            extra={},
        )

    return sample


#: ChEES settings: Adam learning rate of Hoffman, Radul & Sountsov (2021) and an initial step size.
CHEES_LEARNING_RATE = 0.025
CHEES_INITIAL_STEP = 0.1


def chees_hmc(
    target: Target,
    key,
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    *,
    start: Callable | None = None,
    initial_step_size: float | Callable = CHEES_INITIAL_STEP,
) -> Outcome:
    """BlackJAX ChEES-HMC on the model's NumPyro potential, vectorised over chains.

    ``start(key, info)``, if given, returns ``(positions, grad_evals)``: where
    the chains start instead of NumPyro's initial points, and the gradients
    spent finding them (``benchmarks.chees_starts``).  ``initial_step_size`` may
    be a function of ``(logdensity, positions)``.

    Warmup is ``blackjax.chees_adaptation`` (cross-chain step size by dual
    averaging towards acceptance 0.651, trajectory length by the ChEES
    criterion with Adam, diagonal metric estimated over the ensemble); sampling
    is ``blackjax.dynamic_hmc`` with the tuned step size, metric and Halton-
    jittered number of leapfrog steps, the Halton index carried on from warmup.
    Gradients: the leapfrog steps of every chain plus one initial gradient per chain.
    """
    import blackjax
    import optax
    from blackjax.adaptation.base import get_filter_adapt_info_fn
    from blackjax.mcmc import dynamic_hmc

    args, kwargs = target.args()
    k_init, k_warm, k_sample = jax.random.split(key, 3)
    info = initialize_model(
        jax.random.split(k_init, num_chains), target.model, model_args=args, model_kwargs=kwargs
    )
    potential = info.potential_fn

    def logdensity(x):
        return -potential(x)

    positions, start_grads = info.param_info.z, 0
    if start is not None:
        positions, start_grads = start(jax.random.fold_in(k_init, 1), info)
    if callable(initial_step_size):
        initial_step_size = initial_step_size(logdensity, positions)

    adaptation = blackjax.chees_adaptation(
        logdensity,
        num_chains,
        mass_matrix_estimation="diagonal",
        adaptation_info_fn=get_filter_adapt_info_fn(
            info_keys={"num_integration_steps", "is_divergent"}
        ),
    )

    def warmup(key, positions):
        (states, params), adapt_info = adaptation.run(
            key,
            positions,
            initial_step_size,
            optax.adam(CHEES_LEARNING_RATE),
            num_warmup,
            max_sampling_steps=num_samples,
        )
        return (
            states,
            params["step_size"],
            params["inverse_mass_matrix"],
            params["integration_steps_params"][0],
            jnp.sum(adapt_info.info.num_integration_steps),
        )

    # the jitter of chees_adaptation's kernel: a Halton point scaled to the tuned length
    max_bits = math.ceil(math.log2(num_warmup + num_samples))

    def integration_steps(index, num_leapfrog_steps):
        return jnp.ceil(dynamic_hmc.halton_sequence(index, max_bits) * num_leapfrog_steps).astype(
            int
        )

    def sample(key, states, step_size, inverse_mass_matrix, num_leapfrog_steps):
        kernel = blackjax.dynamic_hmc(
            logdensity,
            step_size,
            inverse_mass_matrix,
            next_random_arg_fn=lambda i: i + 1,
            integration_steps_fn=integration_steps,
            integration_steps_params=(num_leapfrog_steps,),
        )

        def body(states, key):
            states, step_info = jax.vmap(kernel.step)(jax.random.split(key, num_chains), states)
            return states, (
                states.position,
                step_info.acceptance_rate,
                step_info.is_divergent,
                step_info.num_integration_steps,
            )

        _, out = jax.lax.scan(body, states, jax.random.split(key, num_samples))
        return out

    t0 = time.perf_counter()
    warmup_c = jax.jit(warmup).lower(k_warm, positions).compile()
    compile_s = time.perf_counter() - t0
    (states, step, imm, num_steps, warm_grads), warmup_s = common.timed(warmup_c, k_warm, positions)
    t0 = time.perf_counter()
    sample_c = jax.jit(sample).lower(k_sample, states, step, imm, num_steps).compile()
    compile_s += time.perf_counter() - t0
    (draws, accept, divergent, steps), sample_s = common.timed(
        sample_c, k_sample, states, step, imm, num_steps
    )
    # scan stacks iterations first: (draws, chains, ...) -> (chains, draws, ...)
    draws = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), draws)
    samples = jax.vmap(jax.vmap(info.postprocess_fn))(draws)
    return Outcome(
        samples={k: np.asarray(v) for k, v in samples.items()},
        warmup_s=warmup_s,
        sample_s=sample_s,
        compile_s=compile_s,
        grad_evals_warmup=int(warm_grads) + num_chains + int(start_grads),
        grad_evals_sample=int(np.sum(steps)),
        divergences=int(np.sum(divergent)),
        accept=float(np.mean(accept)),
        extra={
            "step_size": float(step),
            "num_leapfrog_steps": float(num_steps),
        },
    )


def _dilation(stationary: str | None = None) -> Callable:
    def make(model):
        from numpyro_dilation import DilationLangevin

        return (
            DilationLangevin(model)
            if stationary is None
            else DilationLangevin(model, stationary=stationary)
        )

    return make


#: Samplers: ``name -> sampler(target, key, num_chains, num_warmup, num_samples) -> Outcome``.
#: A new sampler or stationary option is one line, e.g.
#: ``"DilationLangevin (X)": numpyro_sampler(lambda m: DilationLangevin(m, stationary="X"))``.
SAMPLERS: dict[str, Callable[..., Outcome]] = {
    "DilationLangevin": numpyro_sampler(_dilation()),
    "DilationLangevin (MALA)": numpyro_sampler(_dilation("mala")),
    "DilationLangevin (NUTS)": numpyro_sampler(_dilation("nuts")),
    "NUTS": numpyro_sampler(NUTS),
    "NUTS (dense)": numpyro_sampler(partial(NUTS, dense_mass=True)),
    "ChEES-HMC": chees_hmc,
}
SAMPLER_LABELS = {
    "DilationLangevin": "Dilation (default, hmc)",
    "DilationLangevin (MALA)": "Dilation (mala)",
    "DilationLangevin (NUTS)": "Dilation (nuts)",
    "NUTS": "NUTS",
    "NUTS (dense)": "NUTS (dense_mass=True)",
    "ChEES-HMC": "ChEES-HMC (BlackJAX)",
}
