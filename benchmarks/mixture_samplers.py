"""Samplers of the multimodal suite, run on the mixture targets of :mod:`benchmarks.mixtures`.

Each ``run_*`` returns a dict with ``draws`` ``(chains, draws, d)`` and the cost
fields ``grads_per_chain`` and ``grads_total`` (plus sampler-specific extras);
:func:`timed_with_compile` adds ``wall_s``, ``compile_s`` and ``sample_s``.  Parallel
tempering is in :mod:`benchmarks.tempering`.

- :func:`run_dilation`: DilationLangevin, every chain started at the origin
  (the dilation centre), ``num_warmup`` + ``num_samples``; gradients from the
  kernel's ``num_grad_evals`` extra field.  Ensemble statistics (mode jumps,
  move acceptance, ...) are read from the final state when the kernel has them,
  and left out otherwise (their names are not part of the kernel's contract).
- :func:`run_nuts`: NumPyro's NUTS, ``num_warmup`` + ``num_samples`` from
  uniform draws in the box around the modes; gradients ``1 + sum(num_steps)``
  per chain, warmup included.
- :func:`run_aies`: NumPyro's AIES (DE + stretch moves), a budget of density
  evaluations per walker.
- :func:`run_smc`: BlackJAX adaptive tempered SMC with a MALA inner kernel,
  filling a gradient budget.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from benchmarks.mixtures import Mixture

__all__ = [
    "run_aies",
    "run_dilation",
    "run_nuts",
    "run_smc",
    "step_size_spread",
    "timed_with_compile",
    "uniform_init",
]


def timed_with_compile(fn: Callable[[], dict]) -> dict:
    """Run ``fn`` and add ``wall_s``, ``compile_s`` and ``sample_s`` to its result.

    ``compile_s`` sums JAX's compile-time events (trace, lowering, backend
    compile) during the call, as the package's ``measure_compile`` reports them:
    compilation is separated from sampling without a second, warm run.
    """
    from numpyro_dilation.workflow.results import measure_compile

    with measure_compile() as timing:
        out = fn()
    out.update(wall_s=timing.wall_s, compile_s=timing.compile_s, sample_s=timing.run_s)
    return out


def _mcmc(kernel, num_warmup, num_samples, num_chains, thinning=1):
    from numpyro.infer import MCMC

    return MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False, thinning=thinning)


def _get(state: Any, path: str) -> np.ndarray | None:
    """``state.a.b`` as a numpy array, ``None`` if the state has no such field."""
    try:
        value = operator.attrgetter(path)(state)
    except (AttributeError, TypeError):
        return None
    try:
        return None if value is None else np.asarray(value)
    except (TypeError, ValueError):  # not an array (a structure of them)
        return None


def ensemble_summary(state: Any) -> dict[str, Any] | None:
    """Population-move statistics from the kernel's final (vectorised) state, where present.

    Counts are cumulative over warmup and sampling.  Every field is optional:
    a kernel without ``state.ensemble`` gives ``None``, and a field it lacks is
    left out.
    """
    if getattr(state, "ensemble", None) is None:
        return None
    out: dict[str, Any] = {}
    jumps = _get(state, "ensemble.num_mode_jumps")
    if jumps is not None:
        out["mode_jumps_total"] = int(jumps.sum())
        out["mode_jumps_per_chain"] = float(jumps.mean())
    proposals, accepted = _get(state, "ensemble.num_proposals"), _get(state, "ensemble.num_accepted")
    if proposals is not None and accepted is not None and proposals.ndim >= 1:
        total = proposals.reshape(-1, proposals.shape[-1]).sum(0)
        out["accept_rate_by_move"] = (accepted.reshape(-1, accepted.shape[-1]).sum(0)
                                      / np.maximum(total, 1)).round(4).tolist()
        out["proposals_by_move"] = total.astype(int).tolist()
    probs = _get(state, "ensemble.move_probs")
    if probs is not None:
        out["move_probs"] = np.asarray(probs, float).reshape(-1, probs.shape[-1])[0].round(4).tolist()
    for name, cast in (("population_prob", float), ("num_clusters", int)):
        value = _get(state, f"ensemble.{name}")
        if value is not None:
            out[name] = cast(np.asarray(value).reshape(-1)[0])
    return out


def run_dilation(target: Mixture, key: jax.Array, *, num_chains: int, num_warmup: int,
                 num_samples: int, **kwargs: Any) -> dict:
    """DilationLangevin from the origin (every chain at the dilation centre)."""
    from numpyro_dilation import DilationLangevin

    mcmc = _mcmc(DilationLangevin(potential_fn=target.potential, **kwargs), num_warmup,
                 num_samples, num_chains)
    mcmc.run(key, init_params=jnp.zeros((num_chains, target.dim)), extra_fields=("num_grad_evals",))
    # Wait with the GIL released: np.asarray blocks holding it, and the kernel's health
    # check (a jax.debug.callback) then deadlocks (seen twice on gauss32d_4, ensemble).
    jax.block_until_ready((mcmc.get_samples(), mcmc.get_extra_fields(), mcmc.last_state))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))
    grads = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_grad_evals"])[:, -1]
    out = {"draws": draws, "grads_per_chain": float(grads.mean()), "grads_total": float(grads.sum())}
    step = _get(mcmc.last_state, "adapt_state.step_size")
    if step is not None:
        out["step_size"] = step_size_spread(step)
    if kwargs.get("ensemble", False):
        summary = ensemble_summary(mcmc.last_state)
        if summary is not None:
            out["ensemble"] = summary
    return out


def step_size_spread(step_size: np.ndarray) -> dict[str, float]:
    """Spread of the adapted step sizes across chains.

    ``frac_below_1e-3_median`` is the fraction of chains whose step size is
    below 1e-3 of the median chain's (issue 13's collapse criterion).
    """
    h = np.asarray(step_size, dtype=float).reshape(-1)
    med = float(np.median(h))
    return {"min": float(h.min()), "median": med, "max": float(h.max()),
            "min_over_median": float(h.min() / med) if med > 0 else float("nan"),
            "frac_below_1e-3_median": float(np.mean(h < 1e-3 * med)),
            "frac_below_1e-4": float(np.mean(h < 1e-4))}


def uniform_init(target: Mixture, key: jax.Array, n: int) -> jax.Array:
    """``n`` uniform draws in the box around the modes (:meth:`~benchmarks.mixtures.Mixture.box`)."""
    lo, hi = target.box()
    return random.uniform(key, (n, target.dim), minval=lo, maxval=hi)


def run_nuts(target: Mixture, key: jax.Array, *, num_chains: int, num_warmup: int,
             num_samples: int) -> dict:
    """NUTS from uniform draws in the box around the modes, ``num_warmup`` + ``num_samples``.

    Gradients per chain: ``1 + sum(num_steps)`` over warmup and sampling (the
    initial gradient, then one per leapfrog step), as ``benchmarks.common`` counts them.
    """
    from numpyro.infer import NUTS

    key_init, key_run = random.split(key)
    init = uniform_init(target, key_init, num_chains)
    mcmc = _mcmc(NUTS(potential_fn=target.potential), num_warmup, num_samples, num_chains)
    mcmc.warmup(key_run, init_params=init, extra_fields=("num_steps",), collect_warmup=True)
    warm_steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum(1)
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps", "diverging"))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    steps = 1 + warm_steps + np.asarray(extra["num_steps"]).sum(1)
    return {"draws": np.asarray(mcmc.get_samples(group_by_chain=True)),
            "grads_per_chain": float(steps.mean()), "grads_total": float(steps.sum()),
            "grads_warmup_per_chain": float(1 + warm_steps.mean()),
            "num_samples": num_samples, "divergences": int(np.asarray(extra["diverging"]).sum())}


def run_aies(target: Mixture, key: jax.Array, *, num_chains: int, budget: int) -> dict:
    """AIES (DE + stretch moves) from the box: ``budget`` density evaluations per walker.

    Half of them are warmup; the sampling half is thinned by 2.
    """
    from numpyro.infer import AIES

    key_init, key_run = random.split(key)
    kernel = AIES(potential_fn=target.potential,
                  moves={AIES.DEMove(): 0.5, AIES.StretchMove(): 0.5})
    mcmc = _mcmc(kernel, budget // 2, budget // 2, num_chains, thinning=2)
    mcmc.run(key_run, init_params=uniform_init(target, key_init, num_chains))
    return {"draws": np.asarray(mcmc.get_samples(group_by_chain=True)),
            "grads_per_chain": 0.0, "grads_total": 0.0,
            "density_evals_per_chain": float(budget), "density_evals_total": float(budget * num_chains)}


def run_smc(target: Mixture, key: jax.Array, *, num_particles: int, num_chains: int,
            budget: int, max_steps: int = 100) -> dict:
    """BlackJAX adaptive tempered SMC with a MALA inner kernel, filling ``budget``.

    Prior: independent Gaussians centred at the middle of the box around the
    modes, with the box's half-width as scale per coordinate (covering every
    mode); likelihood = target / prior; target ESS 0.5.  The MALA step size
    starts at ``0.5 d^{-1/3}`` times the smallest mode scale and is rescaled
    after every tempering step towards an acceptance of 0.574.  A pilot run
    (10 MALA steps per tempering step, not counted) gives the number of
    tempering steps; the counted run then takes as many MALA steps per
    tempering step as fill ``budget * num_chains`` gradients over
    ``num_particles`` particles.
    """
    import blackjax
    from blackjax.smc import extend_params, resampling
    from blackjax.smc.adaptive_tempered import build_kernel

    lo, hi = target.box()
    centre, scale = jnp.asarray(0.5 * (lo + hi)), jnp.asarray(0.5 * (hi - lo))
    mala = blackjax.mala.build_kernel()

    def logprior(x):
        return jnp.sum(jax.scipy.stats.norm.logpdf(x, centre, scale))

    def loglik(x):
        return -target.potential(x) - logprior(x)

    def mala_steps(rng_key, state, logdensity_fn, step_size, num_steps):
        # several MALA steps in one blackjax "step", so their number can be traced
        # (blackjax's own num_mcmc_steps is static and would recompile)
        def body(i, carry):
            st, acc = carry
            st, info = mala(random.fold_in(rng_key, i), st, logdensity_fn, step_size)
            return st, acc + info.acceptance_rate

        state, acc = jax.lax.fori_loop(0, num_steps, body, (state, 0.0))
        return state, acc / num_steps

    kernel = build_kernel(logprior, loglik, mala_steps, blackjax.mala.init,
                          resampling.systematic, target_ess=0.5)
    h_start = 0.5 * target.dim ** (-1.0 / 3.0) * float(target.scales.min())

    @jax.jit
    def smc(key, num_steps):
        key_init, key_loop = random.split(key)
        x0 = centre + scale * random.normal(key_init, (num_particles, target.dim))
        state = blackjax.adaptive_tempered_smc.init(x0)

        def cond(carry):
            state, _, n, _ = carry
            return (state.tempering_param < 1.0) & (n < max_steps)

        def body(carry):
            state, h, n, k = carry
            k, sub = random.split(k)
            params = extend_params({"step_size": h, "num_steps": num_steps})
            state, info = kernel(sub, state, 1, params)
            acc = jnp.mean(info.update_info)
            # multiplicative step-size update towards MALA's optimal acceptance
            return state, h * jnp.exp(2.0 * (acc - 0.574)), n + 1, k

        state, h, n, _ = jax.lax.while_loop(cond, body, (state, h_start, 0, key_loop))
        return state.particles, state.tempering_param, n, h

    key_pilot, key_run = random.split(key)
    pilot_steps = int(smc(key_pilot, 10)[2])
    per_particle = budget * num_chains / num_particles
    num_mcmc = int(max(1, per_particle // max(pilot_steps, 1)))
    particles, temp, n, h = smc(key_run, num_mcmc)
    n = int(n)
    total = float(num_particles * n * num_mcmc)
    return {"draws": np.asarray(particles)[None], "grads_per_chain": total / num_chains,
            "grads_total": total, "grads_per_particle": float(n * num_mcmc),
            "num_tempering_steps": n, "mala_steps_per_tempering_step": num_mcmc,
            "final_temperature": float(temp), "final_step_size": float(h),
            "num_particles": num_particles}
