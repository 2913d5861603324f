"""Helpers shared by the benchmark suites: timing, gradient counts, ESS, BlackJAX MALA.

Conventions used by every suite (and documented in ``benchmarks/README.md``):

* **Times exclude compilation.**  Warmup and sampling are compiled ahead of
  time (``jax.jit(...).lower(...).compile()``, timed by the package's
  :func:`~numpyro_dilation.workflow.results.measure_compile`, which gives
  ``compile_s``), then run ``repeats`` times from fresh keys; medians are reported.
* **Gradient evaluations** are counted over warmup and sampling, summed over
  chains, by the package's
  :func:`~numpyro_dilation.workflow.results.count_grad_evals`: ``num_grad_evals``
  for :class:`~numpyro_dilation.DilationLangevin`, ``num_steps`` (leapfrog
  steps) plus one initial gradient per chain for NUTS; one per iteration (plus
  one initial) for MALA.
* **ESS** is ArviZ's rank-normalised bulk and tail ESS, per scalar parameter;
  suites report the minimum over parameters.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from numpyro_dilation.workflow.inference_data import grad_eval_field
from numpyro_dilation.workflow.results import count_grad_evals, measure_compile

#: Version of the JSON layout written by ``benchmarks/run.py``; bump on breaking changes.
SCHEMA_VERSION = 1

#: Stan's guidance for trusting a run (Vehtari et al. 2021): R-hat at most 1.01, bulk
#: and tail ESS at least 100 per chain; and at most 1% divergent transitions.
RHAT_TARGET = 1.01
ESS_PER_CHAIN_TARGET = 100
DIVERGENT_FRACTION_TARGET = 0.01


def diagnostics_pass(
    r_hat: float, ess_bulk: float, ess_tail: float, divergences: int, num_chains: int, num_draws: int
) -> bool:
    """Whether a run meets :data:`RHAT_TARGET`, :data:`ESS_PER_CHAIN_TARGET` (bulk and
    tail) and :data:`DIVERGENT_FRACTION_TARGET` of its ``num_chains * num_draws`` draws."""
    return bool(
        r_hat <= RHAT_TARGET
        and min(ess_bulk, ess_tail) >= ESS_PER_CHAIN_TARGET * num_chains
        and divergences <= DIVERGENT_FRACTION_TARGET * num_chains * num_draws
    )


def block(tree: Any) -> Any:
    """Wait for every array of ``tree`` (JAX dispatches asynchronously)."""
    return jax.block_until_ready(tree)


def median(values: Sequence[float]) -> float:
    """Median of ``values`` as a float (``nan`` if empty)."""
    values = [float(v) for v in values]
    return float(statistics.median(values)) if values else float("nan")


def fmt(x: Any, spec: str, missing: str = "-") -> str:
    """``format(x, spec)``, or ``missing`` for ``None`` and non-finite floats (a table cell)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    return format(x, spec)


def timed(fn: Callable, *args: Any) -> tuple[Any, float]:
    """Call ``fn(*args)``, wait for its arrays, return ``(result, seconds)``."""
    start = time.perf_counter()
    out = block(fn(*args))
    return out, time.perf_counter() - start


@dataclass
class MCMCRun:
    """Outcome of :func:`run_mcmc`.

    Attributes
    ----------
    samples : dict
        Post-warmup samples of the last timed repeat, ``{site: (chains, draws, ...)}``.
    warmup_s, sample_s : float
        Median wall time of the warmup and sampling phases over the timed repeats.
    compile_s : float
        Ahead-of-time compilation of the warmup and sampling programs.
    grad_evals_warmup, grad_evals_sample : int
        Gradient evaluations of the last repeat, summed over chains (see module docstring).
    extra : dict
        Post-warmup extra fields of the last repeat, ``{name: (chains, draws, ...)}``.
    times : list
        ``(warmup_s, sample_s)`` of every timed repeat.
    """

    samples: dict[str, np.ndarray]
    warmup_s: float
    sample_s: float
    compile_s: float
    grad_evals_warmup: int
    grad_evals_sample: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    times: list[tuple[float, float]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        """Warmup plus sampling time, compilation excluded."""
        return self.warmup_s + self.sample_s

    @property
    def grad_evals(self) -> int:
        """Gradient evaluations of warmup and sampling."""
        return self.grad_evals_warmup + self.grad_evals_sample


def kernel_loop(kernel: Any, length: int, fields: tuple[str, ...], collect_z: bool) -> Callable:
    """A jitted ``lax.scan`` of ``kernel.sample`` over vectorised chains.

    This is what ``MCMC.run(chain_method="vectorized")`` compiles (NumPyro's
    ``fori_collect`` over ``sampler.sample``, collecting fields and
    postprocessed draws), written out so that it is compiled once and timed
    separately: ``MCMC.run`` builds a fresh ``jax.jit`` wrapper on every call and
    so recompiles each time.
    """

    def loop(state, model_args, model_kwargs):
        postprocess = jax.vmap(kernel.postprocess_fn(model_args, model_kwargs))

        def body(state, _):
            state = kernel.sample(state, model_args, model_kwargs)
            out = {f: getattr(state, f) for f in fields}
            if collect_z:
                out["z"] = postprocess(getattr(state, kernel.sample_field))
            return state, out

        return jax.lax.scan(body, state, None, length=length)

    return jax.jit(loop)


def run_mcmc(
    kernel: Any,
    rng_key: jax.Array,
    *,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    init_params: Any = None,
    extra_fields: tuple[str, ...] = (),
    repeats: int = 1,
) -> MCMCRun:
    """Run ``num_chains`` vectorised chains of a NumPyro kernel, timed without compilation.

    The kernel is initialised as ``MCMC`` does for ``chain_method="vectorized"``
    (``kernel.init`` with one key per chain, once) and stepped by ahead-of-time
    compiled scans of ``kernel.sample`` (one program serves warmup and sampling
    when they have the same length), collecting postprocessed draws, the
    gradient counter and ``extra_fields``.  ``compile_s`` is measured directly; warmup and
    sampling are timed ``repeats`` times from the same initial points with fresh
    keys (``fold_in(rng_key, r)``) and the medians reported; the draws of the last repeat are returned.
    """
    model_kwargs = model_kwargs or {}
    grad_field = grad_eval_field(kernel)
    if grad_field is None:
        raise ValueError(
            "run_mcmc counts the gradients of DilationLangevin, HMC and NUTS only;"
            f" got {type(kernel).__name__}."
        )
    fields = tuple(dict.fromkeys((grad_field, *extra_fields)))

    state = block(
        kernel.init(
            jax.random.split(rng_key, num_chains), num_warmup, init_params, model_args, model_kwargs
        )
    )
    programs = {}  # one compiled program per loop length (warmup and sampling often share)
    with measure_compile() as compiling:
        for length in (num_warmup, num_samples):
            if length not in programs:
                programs[length] = (
                    kernel_loop(kernel, length, fields, True)
                    .lower(state, model_args, model_kwargs)
                    .compile()
                )
    times = []
    for repeat in range(1, repeats + 1):
        # same initial points, fresh keys (re-initialising is slow, eager code)
        key = jax.random.fold_in(rng_key, repeat)
        # one key per chain, or the ensemble's one key; placed as the state's keys are
        keys = jax.random.split(key, num_chains) if state.rng_key.ndim > 1 else key
        start_state = state._replace(rng_key=jax.device_put(keys, state.rng_key.sharding))
        (warm_state, warm), warmup_s = timed(
            programs[num_warmup], start_state, model_args, model_kwargs
        )
        (_, out), sample_s = timed(programs[num_samples], warm_state, model_args, model_kwargs)
        times.append((warmup_s, sample_s))
    # scan stacks iterations first: (iterations, chains, ...) -> (chains, iterations, ...)
    out = jax.tree.map(lambda x: np.swapaxes(np.asarray(x), 0, 1), out)
    warm = np.swapaxes(np.asarray(warm[grad_field]), 0, 1)
    samples = out.pop("z")
    gw, gs = count_grad_evals({grad_field: warm}, {grad_field: out[grad_field]})
    return MCMCRun(
        samples=samples,
        warmup_s=median([w for w, _ in times]),
        sample_s=median([s for _, s in times]),
        compile_s=compiling.compile_s,
        grad_evals_warmup=int(gw),
        grad_evals_sample=int(gs),
        extra=out,
        times=times,
    )


def ess(draws: np.ndarray, method: str = "bulk") -> float:
    """ArviZ ESS of one scalar quantity, ``draws`` of shape ``(chains, draws)``."""
    draws = np.asarray(draws, dtype=float)
    if draws.ndim == 1:
        draws = draws[None]
    return float(az.ess(draws, method=method))


def scalar_draws(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Split ``{site: (chains, draws, *shape)}`` into scalar ``{"site[i]": (chains, draws)}``."""
    out = {}
    for name, value in samples.items():
        value = np.asarray(value)
        flat = value.reshape(value.shape[:2] + (-1,))
        if value.ndim == 2:
            out[name] = flat[..., 0]
            continue
        for i in range(flat.shape[-1]):
            out[f"{name}[{i}]"] = flat[..., i]
    return out


def min_ess(draws: dict[str, np.ndarray]) -> dict[str, float]:
    """Minimum bulk and tail ESS over scalar quantities ``{name: (chains, draws)}``.

    Returns ``{"ess_bulk": ..., "ess_tail": ..., "ess_bulk_param": ..., "ess_tail_param": ...}``.
    """
    bulk = {k: ess(v, "bulk") for k, v in draws.items()}
    tail = {k: ess(v, "tail") for k, v in draws.items()}
    # nan ESS (a constant chain) counts as 0: the sampler did not move.
    bulk = {k: (0.0 if not np.isfinite(v) else v) for k, v in bulk.items()}
    tail = {k: (0.0 if not np.isfinite(v) else v) for k, v in tail.items()}
    kb, kt = min(bulk, key=bulk.get), min(tail, key=tail.get)
    return {"ess_bulk": bulk[kb], "ess_tail": tail[kt], "ess_bulk_param": kb, "ess_tail_param": kt}


def max_rhat(draws: dict[str, np.ndarray]) -> dict[str, Any]:
    """Largest rank-normalised split R-hat (ArviZ) over scalar quantities ``{name: (chains, draws)}``.

    Returns ``{"r_hat": ..., "r_hat_param": ...}``; a constant quantity (nan) counts as infinite.
    """
    values = {}
    for name, value in draws.items():
        value = np.asarray(value, dtype=float)
        r = float(az.rhat(value if value.ndim == 2 else value[None]))
        values[name] = r if np.isfinite(r) else float("inf")
    worst = max(values, key=values.get)
    return {"r_hat": values[worst], "r_hat_param": worst}


def efficiency(ess_value: float, seconds: float, grad_evals: int) -> dict[str, float]:
    """``ess_per_s`` and ``ess_per_1k_grads`` (``nan`` where undefined)."""
    return {
        "ess_per_s": ess_value / seconds if seconds > 0 else float("nan"),
        "ess_per_1k_grads": 1000.0 * ess_value / grad_evals if grad_evals > 0 else float("nan"),
    }


# --------------------------------------------------------------------------- BlackJAX MALA


@dataclass
class MALARun:
    """Outcome of :func:`run_blackjax_mala` (fields as in :class:`MCMCRun`)."""

    positions: Any  # pytree of (chains, draws, ...) unconstrained draws
    step_size: np.ndarray  # tuned step size per chain
    accept_rate: float  # mean acceptance over sampling
    warmup_s: float
    sample_s: float
    compile_s: float
    grad_evals_warmup: int
    grad_evals_sample: int

    @property
    def total_s(self) -> float:
        return self.warmup_s + self.sample_s

    @property
    def grad_evals(self) -> int:
        return self.grad_evals_warmup + self.grad_evals_sample


def _mala_programs(logdensity_fn: Callable, num_warmup: int, num_samples: int, target: float):
    """Jittable warmup and sampling of vectorised BlackJAX MALA chains.

    Warmup tunes one step size per chain by dual averaging towards ``target``
    (NumPyro/Stan's constants), restarted after the first quarter of warmup
    from the step size reached then, so that a bad initial guess is forgotten.
    ``blackjax.mala`` takes no mass matrix, so there is no preconditioning.
    """
    import blackjax
    from blackjax.optimizers.dual_averaging import dual_averaging

    kernel = blackjax.mala.build_kernel()
    da_init, da_update, da_final = dual_averaging()
    first = max(num_warmup // 4, 1)

    def one_chain_warmup(key, position):
        state = blackjax.mala.init(position, logdensity_fn)

        def body(carry, xs):
            state, da = carry
            key, i = xs
            state, info = kernel(key, state, logdensity_fn, jnp.exp(da.log_x))
            da = da_update(da, target - info.acceptance_rate)
            # restart: centre the new run on the averaged step size so far
            da = jax.lax.cond(i == first, lambda d: da_init(da_final(d)), lambda d: d, da)
            return (state, da), None

        keys = jax.random.split(key, num_warmup)
        (state, da), _ = jax.lax.scan(body, (state, da_init(0.1)), (keys, jnp.arange(num_warmup)))
        return state, da_final(da)

    def one_chain_sample(key, state, step_size):
        def body(state, key):
            state, info = kernel(key, state, logdensity_fn, step_size)
            return state, (state.position, info.acceptance_rate)

        _, (positions, acc) = jax.lax.scan(body, state, jax.random.split(key, num_samples))
        return positions, acc

    return jax.jit(jax.vmap(one_chain_warmup)), jax.jit(jax.vmap(one_chain_sample))


def run_blackjax_mala(
    potential_fn: Callable,
    init_positions: Any,
    rng_key: jax.Array,
    *,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float = 0.574,
    repeats: int = 1,
) -> MALARun:
    """BlackJAX MALA on a NumPyro potential, vectorised over chains.

    Parameters
    ----------
    potential_fn : callable
        Negative log density of one unconstrained pytree (e.g. from
        :func:`numpyro.infer.util.initialize_model`).
    init_positions : pytree
        Initial unconstrained positions with a leading chain axis.
    rng_key : jax.Array
        Random key; repeat ``r`` uses ``fold_in(rng_key, r)``.
    num_warmup, num_samples : int
        Warmup (step-size tuning) and sampling iterations.
    target_accept_prob : float, default 0.574
        Acceptance rate targeted by dual averaging.
    repeats : int, default 1
        Timed repeats after the compiling call (ahead-of-time compiled, so
        ``compile_s`` is measured directly).
    """
    num_chains = jax.tree.leaves(init_positions)[0].shape[0]
    warmup, sample = _mala_programs(
        lambda x: -potential_fn(x), num_warmup, num_samples, target_accept_prob
    )
    keys = jax.random.split(rng_key, num_chains)
    with measure_compile() as compiling_warmup:
        warmup_c = warmup.lower(keys, init_positions).compile()
    state, step = block(warmup_c(keys, init_positions))
    with measure_compile() as compiling_sample:
        sample_c = sample.lower(keys, state, step).compile()
    compile_s = compiling_warmup.compile_s + compiling_sample.compile_s
    times = []
    for repeat in range(repeats):
        k_warm, k_sample = jax.random.split(jax.random.fold_in(rng_key, repeat + 1))
        keys = jax.random.split(k_warm, num_chains)
        (state, step), w = timed(warmup_c, keys, init_positions)
        keys = jax.random.split(k_sample, num_chains)
        (positions, acc), s = timed(sample_c, keys, state, step)
        times.append((w, s))
    return MALARun(
        positions=jax.tree.map(np.asarray, positions),
        step_size=np.asarray(step),
        accept_rate=float(np.mean(acc)),
        warmup_s=median([w for w, _ in times]),
        sample_s=median([s for _, s in times]),
        compile_s=compile_s,
        # one gradient per iteration, plus the initial one
        grad_evals_warmup=num_chains * (num_warmup + 1),
        grad_evals_sample=num_chains * num_samples,
    )


def release_compiled_code() -> None:
    """Free the compiled XLA programs of the runs done so far.

    Every program keeps its machine code mapped in memory, and a suite of a few
    hundred runs in one process reaches Linux's default limit of 65530 memory
    mappings, where LLVM fails with "Cannot allocate memory" however much RAM is
    free.  Each run compiles its own sampler anyway, so nothing is lost.
    """
    jax.clear_caches()
    gc.collect()
