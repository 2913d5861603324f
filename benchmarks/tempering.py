"""Parallel tempering baseline: TensorFlow Probability's ``ReplicaExchangeMC``, ladder tuned as Syed et al.

:func:`run_pt` runs ``num_chains`` independent parallel-tempering (PT) chains
in one vectorised program, each with its own ladder of replicas, using
``tfp.mcmc.ReplicaExchangeMC`` (JAX substrate, ``tfp-nightly``) with
``tfp.mcmc.HamiltonianMonteCarlo`` in every replica and the deterministic
even-odd (non-reversible) swap scheme, ``tfp.mcmc.even_odd_swap_proposal_fn(1.)``.

**Path.**  Replica ``k`` targets ``rho(x)^(1 - beta_k) pi(x)^beta_k`` from a
Gaussian reference ``rho`` (centre: the middle of the box around the modes;
per-coordinate sd: the box's half-width) at ``beta = 0`` to the target ``pi``
at ``beta = 1`` (``tempered_log_prob_fn = log pi - log rho``,
``untempered_log_prob_fn = log rho``).  A reference rather than ``pi^beta``
with a fixed smallest ``beta``: ``pi^beta`` is not a probability distribution
for the Student-t mixtures of the suite below ``beta = d / (df + d)`` (0.77 for
``d = 10``, df = 3; 0.91 for ``d = 32``, df = 3), where a hot replica would
drift off to infinity, and Syed et al. (2021) use a reference (the prior) at
``beta_0 = 0`` too.  ``beta_min = 0`` is then fixed and the ladder is tuned
between 0 and 1.  The reference moves with the target (translated or scaled
targets get a translated or scaled reference).

**Ladder tuning** (Syed, Bouchard-Côté, Deligiannidis and Doucet 2021,
"Non-reversible parallel tempering: a scalable highly parallel MCMC scheme",
JRSSB 84, Algorithm 4).  The first half of the gradient budget is a tuning
phase of :data:`PT_ROUNDS` rounds whose lengths double.  After each round the
swap rejection rate ``r_i = 1 - alpha_i`` of each neighbouring pair is
estimated from the swap acceptance probability ``alpha_i`` of *every* pair at
every iteration (whether or not the even-odd scheme proposed it), averaged
over iterations and over the vectorised chains; the cumulative barrier
``Lambda(beta)`` is the piecewise-linear interpolation of the cumulative sum of
the ``r_i`` against ``beta`` (Syed et al. use a monotone spline; linear is
also monotone), and the new inverse temperatures sit at equal increments of
``Lambda`` (:func:`ladder_from_rejections`).

**Number of replicas.**  The first round (the pilot) runs
:data:`PT_PILOT_REPLICAS` replicas on a geometric ladder; its barrier estimate
sets the number used from then on, ``N = ceil(2 Lambda) + 1`` clipped to
[:data:`PT_MIN_REPLICAS`, :data:`PT_MAX_REPLICAS`]
(:func:`num_replicas_for_barrier`).  Syed et al. show that non-reversible PT
completes ``tau = 1 / (2 + 2 sum_i r_i / (1 - r_i))`` round trips per
iteration; with equal rejections ``r = Lambda / (N - 1)`` and a cost of ``N``
replicas per iteration, round trips per *gradient* are highest near
``N - 1 = 2 Lambda`` (exactly so for large ``Lambda``; their guideline of
about ``2 Lambda`` chains), which is what fixes ``N`` here at a given budget.

**Step sizes.**  One HMC step size per replica (shared by the chains), adapted
during every tuning round by a Robbins-Monro update of its logarithm towards a
mean HMC acceptance probability (over the chains) of :data:`PT_TARGET_ACCEPT`
(gain :data:`PT_STEP_GAIN` in the pilot, divided by ``k + 1`` in round ``k``);
each round starts from the previous round's average over its second half,
interpolated in ``beta`` onto the new ladder; the step sizes are fixed after
tuning.  The number of leapfrog steps is fixed (:data:`PT_LEAPFROG`).

**Gradient count.**  Every gradient is counted, tuning included.  Per PT chain
and iteration, each of the ``N`` replicas takes ``L`` leapfrog steps (``L``
gradients), and TFP then re-evaluates the log density *and its gradient* of
every replica at its post-swap state (``_swap_log_prob_and_maybe_grads`` calls
the inner kernel's ``bootstrap_results``): ``N (L + 1)`` gradients per
iteration, plus ``N`` at the start of each round.  The swap acceptance itself
re-uses the stored log densities for ``pi^beta`` paths, but with a reference it
evaluates ``log pi - log rho`` once more per replica (a density, no gradient):
``N`` density evaluations per iteration, reported apart.  These counts were
checked by counting the calls of the log density and of its gradient
(``tests/test_benchmarks.py``).

The draws are the ``beta = 1`` replica's over the sampling phase (the second
half of the budget), one per iteration, thinned to at most
:data:`PT_MAX_DRAWS` per chain.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from benchmarks.mixtures import Mixture

__all__ = [
    "PT_LEAPFROG",
    "PT_MAX_REPLICAS",
    "PT_MIN_REPLICAS",
    "PT_PILOT_REPLICAS",
    "PT_ROUNDS",
    "PT_TARGET_ACCEPT",
    "barrier",
    "grads_per_round",
    "ladder_from_rejections",
    "num_replicas_for_barrier",
    "run_pt",
]

#: Leapfrog steps per HMC transition of every replica.
PT_LEAPFROG = 4
#: Replicas of the pilot round (geometric ladder down to PT_PILOT_BETA, then 0).
PT_PILOT_REPLICAS = 12
PT_PILOT_BETA = 1e-3
#: Bounds on the number of replicas set from the pilot's barrier estimate.
PT_MIN_REPLICAS = 4
PT_MAX_REPLICAS = 32
#: Tuning rounds (the pilot included); their lengths double.
PT_ROUNDS = 4
#: Fewest iterations of any round.
PT_MIN_ROUND = 4
#: Most draws kept per chain (the sampling phase is thinned beyond that).
PT_MAX_DRAWS = 2000
#: Mean HMC acceptance probability the step sizes are adapted towards.
PT_TARGET_ACCEPT = 0.7
#: Gain of the Robbins-Monro update of log(step size) per iteration in the pilot round
#: (divided by k + 1 in round k, so that the step sizes settle).
PT_STEP_GAIN = 1.5
#: Smallest rejection rate of a pair entering the barrier (keeps Lambda strictly increasing).
MIN_REJECTION = 1e-4


# ----------------------------------------------------------------------------- ladder


def barrier(betas: np.ndarray, rejection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative communication barrier at the ladder's inverse temperatures.

    Parameters
    ----------
    betas : array, shape (N,)
        Inverse temperatures, in any monotone order.
    rejection : array, shape (N - 1,)
        Swap rejection rate of each neighbouring pair, in the order of ``betas``.

    Returns
    -------
    (beta, Lambda) : arrays of shape (N,)
        ``beta`` increasing and ``Lambda(beta)``, the cumulative sum of the
        rejection rates from the smallest ``beta`` (``Lambda = 0`` there); each
        rate is floored at :data:`MIN_REJECTION` so that ``Lambda`` increases.
    """
    betas = np.asarray(betas, dtype=float)
    rejection = np.clip(np.asarray(rejection, dtype=float), MIN_REJECTION, 1.0)
    if betas.shape != (len(rejection) + 1,):
        raise ValueError(f"{len(betas)} betas need {len(betas) - 1} rejection rates, got {len(rejection)}")
    if betas[0] > betas[-1]:
        betas, rejection = betas[::-1], rejection[::-1]
    return betas, np.concatenate([[0.0], np.cumsum(rejection)])


def ladder_from_rejections(betas: np.ndarray, rejection: np.ndarray,
                           num_replicas: int) -> tuple[np.ndarray, float]:
    """New inverse temperatures at equal increments of the estimated barrier (Syed et al. 2021).

    ``Lambda(beta)`` is interpolated linearly between the ladder's points
    (:func:`barrier`) and inverted at ``Lambda_total * j / (num_replicas - 1)``.
    The end points (the smallest ``beta`` and 1) are kept.

    Returns
    -------
    (betas, Lambda_total) : the new ladder, *decreasing* from 1 (the order of
    the replicas in :func:`run_pt`), and the estimated total barrier.
    """
    if num_replicas < 2:
        raise ValueError("a ladder needs at least 2 replicas")
    b, lam = barrier(betas, rejection)
    levels = np.linspace(0.0, lam[-1], num_replicas)
    new = np.interp(levels, lam, b)
    new[0], new[-1] = b[0], b[-1]
    return np.sort(new)[::-1], float(lam[-1])


def num_replicas_for_barrier(lam: float, lo: int = PT_MIN_REPLICAS, hi: int = PT_MAX_REPLICAS) -> int:
    """``ceil(2 Lambda) + 1`` replicas, clipped to ``[lo, hi]`` (see the module docstring)."""
    if not math.isfinite(lam):
        return hi
    return int(min(max(math.ceil(2.0 * lam) + 1, lo), hi))


def grads_per_round(num_replicas: int, num_iterations: int, num_leapfrog: int = PT_LEAPFROG) -> int:
    """Gradients per PT chain of one round: ``N (1 + n (L + 1))`` (see the module docstring)."""
    return num_replicas * (1 + num_iterations * (num_leapfrog + 1))


# ----------------------------------------------------------------------------- sampler


def _reference(target: Mixture) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = target.box()
    return 0.5 * (lo + hi), 0.5 * (hi - lo)


def _programs(target: Mixture, num_leapfrog: int, target_accept: float):
    """The jitted tuning round and sampling phase (compiled once per number of replicas)."""
    from tensorflow_probability.substrates import jax as tfp

    d = target.dim
    centre, sd = (jnp.asarray(a, jnp.float32) for a in _reference(target))
    potential = jax.vmap(target.potential)

    def log_ref(x):  # log rho up to a constant, x: (..., d)
        return -0.5 * jnp.sum(((x - centre) / sd) ** 2, axis=-1)

    def tempered(x):  # log pi - log rho
        return -potential(x.reshape(-1, d)).reshape(x.shape[:-1]) - log_ref(x)

    def kernel(betas, step):
        def make(tlp):
            return tfp.mcmc.HamiltonianMonteCarlo(tlp, step_size=step[:, None, None],
                                                  num_leapfrog_steps=num_leapfrog)

        return tfp.mcmc.ReplicaExchangeMC(
            target_log_prob_fn=None, inverse_temperatures=betas, make_kernel_fn=make,
            swap_proposal_fn=tfp.mcmc.even_odd_swap_proposal_fn(1.0),
            state_includes_replicas=True, tempered_log_prob_fn=tempered,
            untempered_log_prob_fn=log_ref)

    def stats(betas, results):
        # HMC acceptance probability of every replica and chain
        lar = results.pre_swap_replica_results.log_accept_ratio
        acc = jnp.where(jnp.isfinite(lar), jnp.exp(jnp.minimum(lar, 0.0)), 0.0)
        # swap acceptance probability of every neighbouring pair, proposed or not, from the
        # stored tempered log densities at the pre-swap states (potential_energy = -ell)
        ell = -results.potential_energy
        log_alpha = (betas[:-1] - betas[1:])[:, None] * (ell[1:] - ell[:-1])
        alpha = jnp.where(jnp.isnan(log_alpha), 0.0, jnp.exp(jnp.minimum(log_alpha, 0.0)))
        return acc.mean(-1), 1.0 - alpha.mean(-1)

    @jax.jit
    def tune(state, betas, log_step, num_iter, key, gain):
        results = kernel(betas, jnp.exp(log_step)).bootstrap_results(state)

        def body(i, carry):
            state, results, log_step, key, rej, acc_sum, logh_sum, n_half = carry
            key, sub = random.split(key)
            state, results = kernel(betas, jnp.exp(log_step)).one_step(state, results, seed=sub)
            acc, r = stats(betas, results)
            log_step = log_step + gain * (acc - target_accept)
            second_half = i >= num_iter // 2
            return (state, results, log_step, key, rej + r, acc_sum + acc,
                    logh_sum + jnp.where(second_half, log_step, 0.0), n_half + second_half)

        zeros = jnp.zeros_like(betas)
        init = (state, results, log_step, key, zeros[1:], zeros, zeros, jnp.zeros((), jnp.int32))
        state, _, log_step, _, rej, acc, logh, n_half = jax.lax.fori_loop(0, num_iter, body, init)
        return state, logh / jnp.maximum(n_half, 1), rej / num_iter, acc / num_iter

    def sample(state, betas, step, key, num_draws, thin):
        kern = kernel(betas, step)
        results = kern.bootstrap_results(state)

        def step_once(carry, sub):
            state, results, rej, acc_sum = carry
            state, results = kern.one_step(state, results, seed=sub)
            acc, r = stats(betas, results)
            return (state, results, rej + r, acc_sum + acc), None

        def body(carry, sub):
            carry, _ = jax.lax.scan(step_once, carry, random.split(sub, thin))
            return carry, carry[0][0]  # the beta = 1 replica

        zeros = jnp.zeros_like(betas)
        (state, _, rej, acc), draws = jax.lax.scan(body, (state, results, zeros[1:], zeros),
                                                   random.split(key, num_draws))
        n = num_draws * thin
        return jnp.swapaxes(draws, 0, 1), rej / n, acc / n

    return tune, jax.jit(sample, static_argnums=(4, 5))


def _move(state: jax.Array, old: np.ndarray, new: np.ndarray) -> jax.Array:
    """States for a new ladder: each new replica takes the state of the nearest old ``beta``."""
    idx = np.abs(np.asarray(old)[None, :] - np.asarray(new)[:, None]).argmin(1)
    return state[jnp.asarray(idx)]


def _interp_log_step(log_step: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    order = np.argsort(old)
    return np.interp(new, np.asarray(old)[order], np.asarray(log_step)[order])


def run_pt(target: Mixture, key: jax.Array, *, num_chains: int, budget: float,
           num_leapfrog: int = PT_LEAPFROG, pilot_replicas: int = PT_PILOT_REPLICAS,
           num_rounds: int = PT_ROUNDS, min_replicas: int = PT_MIN_REPLICAS,
           max_replicas: int = PT_MAX_REPLICAS, target_accept: float = PT_TARGET_ACCEPT,
           init: np.ndarray | None = None) -> dict[str, Any]:
    """Non-reversible parallel tempering with a tuned ladder, at ``budget`` gradients per PT chain.

    See the module docstring for the path, the tuning and the gradient count.
    Half of ``budget`` goes to the tuning rounds (lengths in proportion 1, 2,
    4, ..., at least :data:`PT_MIN_ROUND` iterations each), the rest to the
    sampling phase; the total may exceed a tiny ``budget`` by those minimum
    lengths (``grads_per_chain`` is the count actually spent).

    Parameters
    ----------
    init : array, shape (pilot_replicas, num_chains, d), optional
        Initial replica states; by default uniform draws in the box around the
        modes (:meth:`~benchmarks.mixtures.Mixture.box`), one per replica and chain.

    Returns
    -------
    dict
        ``draws`` ``(num_chains, num_samples, d)`` of the ``beta = 1`` replica,
        ``grads_per_chain``, ``grads_total``, ``density_evals_per_chain`` and
        ``pt``: ``num_replicas``, ``num_leapfrog``, ``pilot_replicas``,
        ``barrier_by_round``, ``rounds`` (iterations of each tuning round),
        ``num_samples`` (draws kept per chain), ``thinning``, ``betas`` (final ladder, decreasing), ``step_size_by_replica``,
        ``swap_rejection_by_pair`` and ``hmc_accept_by_replica`` (sampling phase),
        ``grads_tuning``.
    """
    with warnings.catch_warnings():
        # TFP's JAX backend asks for int64 under float32 JAX, and uses deprecated JAX names
        warnings.filterwarnings("ignore", message="Explicitly requested dtype int64")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return _run_pt(target, key, num_chains=num_chains, budget=budget, num_leapfrog=num_leapfrog,
                       pilot_replicas=pilot_replicas, num_rounds=num_rounds,
                       min_replicas=min_replicas, max_replicas=max_replicas,
                       target_accept=target_accept, init=init)


def _run_pt(target, key, *, num_chains, budget, num_leapfrog, pilot_replicas, num_rounds,
            min_replicas, max_replicas, target_accept, init):
    L = num_leapfrog
    tune, sample = _programs(target, L, target_accept)
    lo, hi = target.box()
    key_init, key = random.split(key)
    if init is None:
        init = random.uniform(key_init, (pilot_replicas, num_chains, target.dim),
                              minval=jnp.asarray(lo, jnp.float32), maxval=jnp.asarray(hi, jnp.float32))
    state = jnp.asarray(init, jnp.float32)
    betas = np.concatenate([np.geomspace(1.0, PT_PILOT_BETA, pilot_replicas - 1), [0.0]])
    # initial step sizes: a quarter of the reference's smallest sd at beta = 0, shrinking
    # towards beta = 1 (the Robbins-Monro update corrects them within the pilot round)
    ref_sd = float(np.min(_reference(target)[1]))
    log_step = np.log(0.25 * ref_sd / np.sqrt(1.0 + 100.0 * betas))

    tune_budget = 0.5 * budget
    shares = 2.0 ** np.arange(num_rounds) / (2.0**num_rounds - 1.0)
    spent = 0
    rounds, barriers = [], []
    num_replicas = pilot_replicas
    for k in range(num_rounds):
        per_iter = num_replicas * (L + 1)
        n = max(PT_MIN_ROUND, int((shares[k] * tune_budget - num_replicas) // per_iter))
        key, sub = random.split(key)
        state, logh, rej, acc = tune(state, jnp.asarray(betas, jnp.float32),
                                     jnp.asarray(log_step, jnp.float32), n, sub,
                                     PT_STEP_GAIN / (k + 1))
        spent += grads_per_round(num_replicas, n, L)
        rounds.append({"num_replicas": num_replicas, "iterations": n,
                       "hmc_accept": np.asarray(acc, float).round(3).tolist(),
                       "swap_rejection": np.asarray(rej, float).round(3).tolist()})
        if k == 0:
            _, lam = ladder_from_rejections(betas, np.asarray(rej), 2)
            num_replicas = num_replicas_for_barrier(lam, min_replicas, max_replicas)
        new, lam = ladder_from_rejections(betas, np.asarray(rej), num_replicas)
        barriers.append(lam)
        log_step = _interp_log_step(np.asarray(logh), betas, new)
        state = _move(state, betas, new)
        betas = new
    per_iter = num_replicas * (L + 1)
    num_iter = max(PT_MIN_ROUND, int((budget - spent - num_replicas) // per_iter))
    # keep at most PT_MAX_DRAWS draws per chain (thinned), so that memory stays bounded
    thin = -(-num_iter // PT_MAX_DRAWS)
    num_samples = num_iter // thin
    num_iter = num_samples * thin
    key, sub = random.split(key)
    draws, rej, acc = sample(state, jnp.asarray(betas, jnp.float32),
                             jnp.asarray(np.exp(log_step), jnp.float32), sub, num_samples, thin)
    jax.block_until_ready(draws)
    grads = spent + grads_per_round(num_replicas, num_iter, L)
    iters = sum(r["iterations"] * r["num_replicas"] for r in rounds) + num_iter * num_replicas
    return {
        "draws": np.asarray(draws), "grads_per_chain": float(grads),
        "grads_total": float(grads * num_chains), "density_evals_per_chain": float(iters),
        "pt": {"num_replicas": num_replicas, "num_leapfrog": L, "pilot_replicas": pilot_replicas,
               "barrier_by_round": [round(b, 4) for b in barriers], "rounds": rounds,
               "num_samples": num_samples, "thinning": thin, "grads_tuning": float(spent),
               "betas": np.round(betas, 5).tolist(),
               "step_size_by_replica": np.exp(log_step).round(5).tolist(),
               "swap_rejection_by_pair": np.asarray(rej, float).round(4).tolist(),
               "hmc_accept_by_replica": np.asarray(acc, float).round(4).tolist()},
    }
