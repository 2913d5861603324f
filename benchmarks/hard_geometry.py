"""hard_geometry suite: accuracy and cost on posteriors with hard geometry.

Targets (NumPyro models, all of :data:`TARGETS`):

* ``eight_schools_centered`` (d = 10): eight schools, centred parametrisation;
* ``banana`` (d = 2): a twisted Gaussian, ``x1 ~ N(0, 10)``,
  ``x2 | x1 ~ N(0.05 (x1^2 - 100), 1)``;
* ``funnel`` (d = 10): Neal's funnel, ``v ~ N(0, 3)``, ``x_i ~ N(0, exp(v / 2))``;
* ``gaussian_100`` (d = 100): a zero-mean Gaussian whose standard deviations are
  log-spaced from 1e-2 to 1e2 along randomly rotated axes (fixed seed);
* ``brownian_bridge`` (d = 32): a Gaussian random walk of 30 positions with
  unknown innovation and observation noise scales, positions 11-20 unobserved;
* ``stochastic_volatility`` (d = 103): centred AR(1) log-volatilities of 100
  synthetic daily returns (fixed seed), with unknown mean, persistence and scale;
* ``item_response_2pl`` (d = 501): 2PL item response, 400 students x 50 items;
* ``lgcp`` (d = 102): log-Gaussian Cox process on a 10 x 10 grid, the latent
  field's multivariate normal density (with its own Cholesky factorisation
  and triangular solve) in the potential, unknown mean and scale;
* the nine posteriordb posteriors of :mod:`benchmarks.posteriors`.

References: exact moments where the truth is analytic (``banana``, ``funnel``,
``gaussian_100``); posteriordb's reference draws for the posteriordb models and
for ``eight_schools_centered`` (posteriordb's non-centred eight schools is the
same posterior); quadrature over the two noise scales for ``brownian_bridge``
(the walk is Gaussian given them); otherwise long float64 NUTS runs on a
non-centred parametrisation where it helps.  The computed ones are cached in
``benchmarks/references/*.npz`` (regenerate with ``python -m benchmarks.make_references``).

Samplers (:data:`SAMPLERS`, a table ``name -> factory``: a further sampler or
stationary option is one more line): DilationLangevin with its defaults (and its
MALA and NUTS stationary options), NumPyro NUTS with its defaults and with
``dense_mass=True`` (DilationLangevin's default metric is dense up to 100
dimensions), and BlackJAX ChEES-HMC (``blackjax.chees_adaptation``
with the ensemble-estimated diagonal metric, Adam at learning rate 0.025, then
``blackjax.dynamic_hmc`` with the Halton-jittered trajectory length it tuned).
Each runs vectorised chains, 4 and 64, 1000 warmup + 1000 draws, from NumPyro's
``init_to_uniform``; the float32 default is kept.

Figures per run: ``max_z`` (largest |mean - ref mean| / ref sd), ``sd_ratio_min``
and ``sd_ratio_max``, ``pass_accuracy`` (every ``z <= 0.1`` and every sd ratio in
[0.9, 1.1]), ``r_hat`` (largest split R-hat), ``pass_diagnostics`` (R-hat <= 1.01,
bulk and tail ESS >= 100 per chain, at most 1% divergent transitions: Stan's
guidance), ``pass`` (both), minimum bulk and tail ESS over the reference parameters,
``ess_per_s`` (min bulk ESS per second of warmup + sampling),
``ess_per_s_sampling`` (per second of sampling only), ``ess_per_s_with_compile``
(per second of compilation, warmup and sampling), ``ess_per_1k_grads``
(per 1000 gradient evaluations of warmup + sampling, all chains),
``divergences`` (sampling phase, all chains), times with compilation apart.

**LAPACK and threads.**  jaxlib 0.10.2 on CPU can deadlock on batched LAPACK
calls (a ``vmap`` of Cholesky factorisations or triangular solves, as the
``lgcp`` potential makes with vectorised chains) when Eigen's thread pool is on.
The suite therefore always runs with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``:
:func:`run` re-executes itself in a subprocess with that flag unless the current
process was started with it (the flag must be set before JAX creates its CPU
backend).  Every sampler runs under the same flag.

Run with ``python -m benchmarks.run hard_geometry`` or, writing the results
after every run so that a long run can be inspected while it goes, ``python -m
benchmarks.hard_geometry --out benchmarks/results/hard_geometry.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform
from numpyro.infer import NUTS
from numpyro.infer.util import initialize_model

from benchmarks import common
from benchmarks.posteriors import POSTERIORS, stan_names
from numpyro_dilation.workflow import examples

__all__ = [
    "REFERENCE_DIR",
    "SAMPLERS",
    "SAMPLER_LABELS",
    "TARGETS",
    "Target",
    "XLA_FLAG",
    "brownian_bridge_model",
    "eight_schools_centered_model",
    "gaussian_100_model",
    "item_response_2pl_model",
    "lgcp_model",
    "banana_model",
    "funnel_model",
    "measure",
    "report",
    "run",
    "stochastic_volatility_model",
]

#: Set before JAX starts (see the module docstring).
XLA_FLAG = "--xla_cpu_multi_thread_eigen=false"
REFERENCE_DIR = Path(__file__).resolve().parent / "references"
ROOT = Path(__file__).resolve().parent.parent
Z_TARGET = 0.1
SD_TARGET = (0.9, 1.1)
#: Stan's guidance for trusting a run (Vehtari et al. 2021): R-hat at most 1.01,
#: bulk and tail ESS at least 100 per chain; and at most 1% divergent transitions.
RHAT_TARGET = 1.01
ESS_PER_CHAIN_TARGET = 100
DIVERGENT_FRACTION_TARGET = 0.01

# ----------------------------------------------------------------------------- models

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_centered_model(sigma, y=None):
    """Eight schools, centred: ``theta_j ~ Normal(mu, tau)``, priors as posteriordb's."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", sigma.shape[0]):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


BANANA_SCALE, BANANA_BEND = 10.0, 0.05


def banana_model():
    """Twisted Gaussian: ``x1 ~ N(0, 10)``, ``x2 | x1 ~ N(0.05 (x1^2 - 100), 1)``."""
    x1 = numpyro.sample("x1", dist.Normal(0.0, BANANA_SCALE))
    numpyro.sample("x2", dist.Normal(BANANA_BEND * (x1**2 - BANANA_SCALE**2), 1.0))


def _banana_moments() -> dict[str, tuple[float, float]]:
    # E[x1^2] = s^2, Var[x1^2] = 2 s^4, so x2 has mean 0 and variance 1 + 2 b^2 s^4
    return {
        "x1": (0.0, BANANA_SCALE),
        "x2": (0.0, math.sqrt(1.0 + 2.0 * BANANA_BEND**2 * BANANA_SCALE**4)),
    }


FUNNEL_DIM, FUNNEL_SCALE = 9, 3.0


def funnel_model():
    """Neal's funnel (d = 10), centred: the bundled example's model
    (:func:`numpyro_dilation.workflow.examples.funnel_model`, ``v ~ N(0, 3)``)."""
    examples.funnel_model(FUNNEL_DIM)


def _funnel_moments() -> dict[str, tuple[float, float]]:
    # Var[x_i] = E[exp(v)] = exp(3^2 / 2)
    sd_x = math.exp(FUNNEL_SCALE**2 / 4)
    return {"v": (0.0, FUNNEL_SCALE), **{f"x[{i + 1}]": (0.0, sd_x) for i in range(FUNNEL_DIM)}}


GAUSSIAN_DIM = 100


@cache
def _gaussian_100_factor() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W, Q, s)``: the density is ``exp(-|W^T x|^2 / 2)`` with ``W = Q diag(1 / s)``, covariance ``Q diag(s^2) Q^T``."""
    rng = np.random.default_rng(100)
    q, r = np.linalg.qr(rng.normal(size=(GAUSSIAN_DIM, GAUSSIAN_DIM)))
    q = q * np.sign(np.diag(r))  # a Haar-distributed rotation
    s = np.logspace(-2, 2, GAUSSIAN_DIM)
    return q / s, q, s


def gaussian_100_model(w):
    """Zero-mean Gaussian with precision ``w w^T`` (no factorisation in the potential)."""
    x = numpyro.sample("x", dist.ImproperUniform(constraints.real_vector, (), (w.shape[0],)))
    numpyro.factor("gaussian", -0.5 * jnp.sum((x @ w) ** 2))


def _gaussian_100_args():
    return (jnp.asarray(_gaussian_100_factor()[0], jnp.float32),), {}


def _gaussian_100_moments() -> dict[str, tuple[float, float]]:
    _, q, s = _gaussian_100_factor()
    sd = np.sqrt((q**2) @ (s**2))  # diag(Q diag(s^2) Q^T)
    return {f"x[{i + 1}]": (0.0, float(sd[i])) for i in range(GAUSSIAN_DIM)}


BRIDGE_STEPS = 30
BRIDGE_MISSING = slice(10, 20)  # positions 11-20 (1-based) are not observed


def brownian_bridge_model(observed_index, y=None):
    """Gaussian random walk ``x`` (30 positions) seen with noise at ``observed_index``.

    ``innovation_scale, observation_scale ~ LogNormal(0, 2)``; ``x_1 ~ N(0, innovation)``,
    ``x_t ~ N(x_{t-1}, innovation)``; ``y ~ N(x[observed_index], observation)``.
    Centred: the walk's density is on ``x`` itself.
    """
    innovation = numpyro.sample("innovation_scale", dist.LogNormal(0.0, 2.0))
    observation = numpyro.sample("observation_scale", dist.LogNormal(0.0, 2.0))
    x = numpyro.sample("x", dist.GaussianRandomWalk(innovation, num_steps=BRIDGE_STEPS))
    numpyro.sample("y", dist.Normal(x[observed_index], observation).to_event(1), obs=y)


@cache
def _bridge_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(32)
    x = np.cumsum(0.1 * rng.normal(size=BRIDGE_STEPS))
    index = np.setdiff1d(np.arange(BRIDGE_STEPS), np.arange(BRIDGE_STEPS)[BRIDGE_MISSING])
    return index, x[index] + 0.15 * rng.normal(size=index.size)


def _bridge_args():
    index, y = _bridge_data()
    return (jnp.asarray(index),), {"y": jnp.asarray(y, jnp.float32)}


SV_T = 100


def _sv_globals():
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    # (phi + 1) / 2 ~ Beta(20, 1.5): persistence near 1, as for daily returns
    phi = numpyro.sample(
        "phi", dist.TransformedDistribution(dist.Beta(20.0, 1.5), AffineTransform(-1.0, 2.0))
    )
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    return mu, phi, sigma


def sv_stationary_sd(phi, sigma):
    """``sigma / sqrt(1 - phi^2)``, kept finite where a float32 draw of ``phi`` rounds to +-1."""
    return sigma / jnp.sqrt(jnp.maximum(1.0 - phi**2, jnp.finfo(jnp.result_type(phi)).tiny))


def stochastic_volatility_model(returns):
    """Stochastic volatility, centred: ``h`` is a stationary AR(1), ``returns_t ~ N(0, exp(h_t / 2))``.

    ``mu ~ N(0, 2)``, ``(phi + 1) / 2 ~ Beta(20, 1.5)``, ``sigma ~ HalfNormal(1)``;
    ``h_1 ~ N(mu, sigma / sqrt(1 - phi^2))``, ``h_t ~ N(mu + phi (h_{t-1} - mu), sigma)``.
    """
    mu, phi, sigma = _sv_globals()
    h = numpyro.sample("h", dist.ImproperUniform(constraints.real_vector, (), (returns.shape[0],)))
    log_p = dist.Normal(mu, sv_stationary_sd(phi, sigma)).log_prob(h[0])
    log_p += dist.Normal(mu + phi * (h[:-1] - mu), sigma).log_prob(h[1:]).sum()
    numpyro.factor("h_prior", log_p)
    # no argument check: the structural trace draws the globals from the prior, and an
    # extreme draw of phi can underflow the scale to zero there
    scale = jnp.exp(h / 2)
    numpyro.sample("returns", dist.Normal(0.0, scale, validate_args=False).to_event(1), obs=returns)


@cache
def _sv_data() -> np.ndarray:
    rng = np.random.default_rng(103)
    mu, phi, sigma = -9.0, 0.97, 0.2  # daily log-variance near exp(-9): 1.1% daily sd
    h = np.empty(SV_T)
    h[0] = mu + sigma / np.sqrt(1 - phi**2) * rng.normal()
    for t in range(1, SV_T):
        h[t] = mu + phi * (h[t - 1] - mu) + sigma * rng.normal()
    return np.exp(h / 2) * rng.normal(size=SV_T)


def _sv_args():
    return (jnp.asarray(_sv_data(), jnp.float32),), {}


IRT_STUDENTS, IRT_ITEMS = 400, 50


def item_response_2pl_model(y):
    """2PL item response: ``P(y_ji = 1) = sigmoid(alpha_i (theta_j + delta - beta_i))``.

    ``theta_j, beta_i ~ N(0, 1)``, ``alpha_i ~ LogNormal(0, 0.5)``,
    ``delta ~ N(0.75, 1)`` (the mean ability; it trades off against the
    difficulties); d = 400 + 2 x 50 + 1 = 501.  The sizes come from ``y``'s
    shape, which stays static when the model's arguments are traced.
    """
    num_students, num_items = y.shape
    delta = numpyro.sample("delta", dist.Normal(0.75, 1.0))
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([num_students]).to_event(1))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([num_items]).to_event(1))
    alpha = numpyro.sample("alpha", dist.LogNormal(0.0, 0.5).expand([num_items]).to_event(1))
    logits = alpha * (theta[:, None] + delta - beta)
    numpyro.sample("y", dist.Bernoulli(logits=logits).to_event(2), obs=y)


@cache
def _irt_data() -> np.ndarray:
    rng = np.random.default_rng(501)
    theta = rng.normal(size=IRT_STUDENTS)
    beta = rng.normal(size=IRT_ITEMS)
    alpha = np.exp(0.5 * rng.normal(size=IRT_ITEMS))
    logits = alpha * (theta[:, None] + 0.75 - beta)
    return (rng.uniform(size=logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.int32)


def _irt_args():
    return (jnp.asarray(_irt_data()),), {}


LGCP_SIDE, LGCP_LENGTHSCALE = 10, 0.25


@cache
def lgcp_correlation() -> np.ndarray:
    """Exponential (Matern-1/2) correlation of the 10 x 10 cell centres of the unit square."""
    g = (np.arange(LGCP_SIDE) + 0.5) / LGCP_SIDE
    xy = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    r = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    return np.exp(-r / LGCP_LENGTHSCALE) + 1e-6 * np.eye(len(xy))


def lgcp_model(correlation, counts=None):
    """Log-Gaussian Cox process on a 10 x 10 grid, centred.

    ``mu ~ N(0, 2)``, ``sigma ~ HalfNormal(1)``, the log intensity
    ``f ~ MVN(mu, sigma^2 C)`` with ``C`` the exponential correlation of length
    0.25, ``counts ~ Poisson(exp(f))``.  The multivariate normal is given its
    covariance matrix, so every potential evaluation factorises it (Cholesky)
    and solves a triangular system.
    """
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    n = correlation.shape[0]
    f = numpyro.sample(
        "f", dist.MultivariateNormal(mu * jnp.ones(n), covariance_matrix=sigma**2 * correlation)
    )
    numpyro.sample("counts", dist.Poisson(jnp.exp(f)).to_event(1), obs=counts)


@cache
def _lgcp_data() -> np.ndarray:
    rng = np.random.default_rng(102)
    chol = np.linalg.cholesky(lgcp_correlation())
    f = np.log(3.0) + chol @ rng.normal(size=chol.shape[0])
    return rng.poisson(np.exp(f)).astype(np.int32)


def _lgcp_args():
    return (jnp.asarray(lgcp_correlation(), jnp.float32),), {"counts": jnp.asarray(_lgcp_data())}


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """A benchmark target: the model, its arguments and the reference moments.

    Attributes
    ----------
    name : str
        Key in :data:`TARGETS` and in the results.
    dim : int
        Dimension of the unconstrained parameter space.
    model : callable
        NumPyro model.
    make_args : callable
        ``() -> (args, kwargs)`` of the model.
    moments : callable
        ``() -> {"param[i]": (mean, sd)}`` of the reference (Stan-style 1-based names).
    reference : str
        Where the reference comes from (``exact``, ``posteriordb``, ``NUTS float64``).
    """

    name: str
    dim: int
    model: Callable
    make_args: Callable[[], tuple[tuple, dict]]
    moments: Callable[[], dict[str, tuple[float, float]]]
    reference: str

    def args(self) -> tuple[tuple, dict]:
        """Positional and keyword arguments of the model."""
        return self.make_args()


def reference_file(name: str) -> Path:
    """Cached reference of target ``name``: ``benchmarks/references/NAME.npz``."""
    return REFERENCE_DIR / f"{name}.npz"


@cache
def cached_moments(name: str) -> dict[str, tuple[float, float]]:
    """Reference ``(mean, sd)`` per parameter from the cached float64 NUTS run of ``name``."""
    path = reference_file(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no reference for target {name!r} at {path}; run `python -m benchmarks.make_references {name}`"
        )
    with np.load(path) as f:
        return {str(k): (float(m), float(s)) for k, m, s in zip(f["names"], f["mean"], f["sd"])}


#: A NUTS reference is weak below this bulk ESS in some parameter (its own Monte
#: Carlo error in a mean, 1 / sqrt(ESS) sd, above a third of the pass bar
#: :data:`Z_TARGET`), above :data:`RHAT_TARGET`, or with any divergence.
REFERENCE_MIN_ESS = math.ceil((3 / Z_TARGET) ** 2)


def reference_quality(name: str) -> dict[str, Any] | None:
    """Diagnostics of the cached NUTS reference of ``name`` (``None`` if it has none).

    ``{"min_ess_bulk", "max_r_hat", "divergences", "weak"}``, from the full
    reference run (``benchmarks.make_references`` stores them); *weak* when the
    reference itself would fail the diagnostics asked of the samplers.
    """
    path = reference_file(name)
    if not path.exists():
        return None
    with np.load(path) as f:
        if "ess_bulk" not in f:  # quadrature, not a chain
            return None
        quality = {
            "min_ess_bulk": float(np.min(f["ess_bulk"])),
            "max_r_hat": float(np.max(f["rhat"])),
            "divergences": int(f["divergences"]),
        }
    quality["weak"] = bool(
        quality["min_ess_bulk"] < REFERENCE_MIN_ESS
        or quality["max_r_hat"] > RHAT_TARGET
        or quality["divergences"] > 0
    )
    return quality


def _posteriordb_target(name: str, dim: int) -> Target:
    posterior = POSTERIORS[name]
    return Target(
        name, dim, posterior.model, posterior.args, posterior.reference_moments, "posteriordb"
    )


def _eight_schools_args():
    return (jnp.asarray(EIGHT_SCHOOLS_SIGMA, jnp.float32),), {"y": jnp.asarray(EIGHT_SCHOOLS_Y)}


_EIGHT = POSTERIORS["eight_schools-eight_schools_noncentered"]

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        # posteriordb's non-centred eight schools is the same posterior
        Target(
            "eight_schools_centered",
            10,
            eight_schools_centered_model,
            _eight_schools_args,
            _EIGHT.reference_moments,
            "posteriordb",
        ),
        Target("banana", 2, banana_model, lambda: ((), {}), _banana_moments, "exact"),
        Target("funnel", 10, funnel_model, lambda: ((), {}), _funnel_moments, "exact"),
        Target(
            "gaussian_100",
            100,
            gaussian_100_model,
            _gaussian_100_args,
            _gaussian_100_moments,
            "exact",
        ),
        Target(
            "brownian_bridge",
            32,
            brownian_bridge_model,
            _bridge_args,
            lambda: cached_moments("brownian_bridge"),
            "quadrature",
        ),
        Target(
            "stochastic_volatility",
            103,
            stochastic_volatility_model,
            _sv_args,
            lambda: cached_moments("stochastic_volatility"),
            "NUTS float64",
        ),
        Target(
            "item_response_2pl",
            501,
            item_response_2pl_model,
            _irt_args,
            lambda: cached_moments("item_response_2pl"),
            "NUTS float64",
        ),
        Target("lgcp", 102, lgcp_model, _lgcp_args, lambda: cached_moments("lgcp"), "NUTS float64"),
        *(
            _posteriordb_target(name, dim)
            for name, dim in (
                ("eight_schools-eight_schools_noncentered", 10),
                ("kidiq-kidscore_momiq", 3),
                ("earnings-logearn_height", 3),
                ("sblrc-blr", 6),
                ("mesquite-logmesquite", 8),
                ("nes1972-nes", 10),
                ("kilpisjarvi_mod-kilpisjarvi", 3),
                ("arma-arma11", 4),
                ("hmm_example-hmm_example", 4),
            )
        ),
    )
}

#: Targets of the quick mode (tiny budgets; for the test suite).
QUICK_TARGETS = ("banana", "eight_schools_centered")

# ----------------------------------------------------------------------------- samplers


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

# ----------------------------------------------------------------------------- measuring


def accuracy(
    samples: dict[str, np.ndarray], moments: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """``{param: {"z_mean", "sd_ratio"}}`` of pooled draws against reference ``moments``."""
    draws = stan_names(samples, moments)
    out = {}
    for name, (ref_mean, ref_sd) in moments.items():
        x = np.asarray(draws[name], dtype=float).ravel()
        out[name] = {
            "z_mean": float(abs(x.mean() - ref_mean) / ref_sd),
            "sd_ratio": float(x.std(ddof=1) / ref_sd),
        }
    return out


def measure(
    target: Target,
    sampler: str,
    num_chains: int,
    settings: dict,
    seed: int,
    sample: Callable[..., Outcome] | None = None,
) -> dict:
    """One run's figures (see the module docstring and ``benchmarks/README.md``).

    ``sample`` runs the sampler (``SAMPLERS[sampler]`` by default; another suite
    may pass a variant, e.g. with other settings, labelled ``sampler``).
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), num_chains)
    sample = SAMPLERS[sampler] if sample is None else sample
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = sample(target, key, num_chains, settings["num_warmup"], settings["num_samples"])
    row = figures(target, r, sampler, num_chains)
    if sampler.startswith("DilationLangevin"):
        # did a run that fails say so?  (NumPyro's NUTS and BlackJAX give no such warnings)
        row["warnings"] = health_messages(caught)
    return row


def health_messages(caught: list[warnings.WarningMessage]) -> list[str]:
    """The distinct ``SamplerHealthWarning`` messages among ``caught``, each cut to 160 characters."""
    return sorted(
        {str(w.message)[:160] for w in caught if w.category.__name__ == "SamplerHealthWarning"}
    )


def figures(target: Target, r: Outcome, sampler: str, num_chains: int) -> dict:
    """The figures of one finished run ``r`` of ``sampler`` on ``target``."""
    moments = target.moments()
    acc = accuracy(r.samples, moments)
    ess = common.min_ess(stan_names(r.samples, moments))
    finite = {
        k: v for k, v in acc.items() if np.isfinite(v["z_mean"]) and np.isfinite(v["sd_ratio"])
    }
    if len(finite) < len(acc):  # non-finite draws: no figure can pass
        zp = sdp_lo = sdp_hi = next(k for k in acc if k not in finite)
        max_z, sd_lo, sd_hi = float("inf"), float("nan"), float("nan")
    else:
        zp = max(acc, key=lambda k: acc[k]["z_mean"])
        sdp_lo = min(acc, key=lambda k: acc[k]["sd_ratio"])
        sdp_hi = max(acc, key=lambda k: acc[k]["sd_ratio"])
        max_z, sd_lo, sd_hi = acc[zp]["z_mean"], acc[sdp_lo]["sd_ratio"], acc[sdp_hi]["sd_ratio"]
    accurate = bool(max_z <= Z_TARGET and SD_TARGET[0] <= sd_lo and sd_hi <= SD_TARGET[1])
    rhat = common.max_rhat(stan_names(r.samples, moments))
    num_draws = np.shape(next(iter(r.samples.values())))[1]
    trusted = bool(
        rhat["r_hat"] <= RHAT_TARGET
        and min(ess["ess_bulk"], ess["ess_tail"]) >= ESS_PER_CHAIN_TARGET * num_chains
        and r.divergences <= DIVERGENT_FRACTION_TARGET * num_chains * num_draws
    )
    passed = accurate and trusted
    grads = r.grad_evals_warmup + r.grad_evals_sample
    total = r.warmup_s + r.sample_s
    return {
        "target": target.name,
        "dim": target.dim,
        "sampler": sampler,
        "num_chains": num_chains,
        "pass": passed,
        "pass_accuracy": accurate,
        "pass_diagnostics": trusted,
        **rhat,
        "max_z": max_z,
        "max_z_param": zp,
        "sd_ratio_min": sd_lo,
        "sd_ratio_min_param": sdp_lo,
        "sd_ratio_max": sd_hi,
        "sd_ratio_max_param": sdp_hi,
        **ess,
        **common.efficiency(ess["ess_bulk"], total, grads),
        "ess_per_s_sampling": ess["ess_bulk"] / r.sample_s if r.sample_s > 0 else float("nan"),
        "ess_per_s_with_compile": ess["ess_bulk"] / (total + r.compile_s),
        "divergences": r.divergences,
        "mean_accept_prob": r.accept,
        "warmup_s": r.warmup_s,
        "sample_s": r.sample_s,
        "total_s": total,
        "compile_s": r.compile_s,
        "grad_evals": grads,
        "grad_evals_warmup": r.grad_evals_warmup,
        **r.extra,
        "accuracy": acc,
    }


def _settings(quick: bool, only: dict[str, list] | None = None) -> dict[str, Any]:
    settings = _default_settings(quick)
    for key, values in (only or {}).items():
        if values:
            unknown = sorted(set(values) - set(settings[key]))
            if unknown:
                raise ValueError(f"unknown {key}: {unknown}; choose from {settings[key]}")
            settings[key] = [v for v in settings[key] if v in values]
    return settings


def _default_settings(quick: bool) -> dict[str, Any]:
    return {
        "targets": list(QUICK_TARGETS) if quick else list(TARGETS),
        "dims": {name: TARGETS[name].dim for name in (QUICK_TARGETS if quick else TARGETS)},
        "references": {
            name: TARGETS[name].reference for name in (QUICK_TARGETS if quick else TARGETS)
        },
        "reference_quality": {
            name: reference_quality(name) for name in (QUICK_TARGETS if quick else TARGETS)
        },
        "samplers": list(SAMPLERS),
        "num_chains": [4] if quick else [4, 64],
        "num_warmup": 50 if quick else 1000,
        "num_samples": 50 if quick else 1000,
        "repeats": 1,
        "chain_method": "vectorized",
        "dtype": "float32",
        "seed": 0,
        "xla_flags": XLA_FLAG,
        "chees": {
            "learning_rate": CHEES_LEARNING_RATE,
            "initial_step_size": CHEES_INITIAL_STEP,
            "mass_matrix_estimation": "diagonal",
        },
        "pass_definition": (
            f"every |mean - ref| / ref sd <= {Z_TARGET} and sd ratio in {list(SD_TARGET)},"
            f" and R-hat <= {RHAT_TARGET}, bulk and tail ESS >= {ESS_PER_CHAIN_TARGET} per chain,"
            f" divergent transitions <= {DIVERGENT_FRACTION_TARGET:.0%} of the draws"
        ),
        "time_definition": "ess_per_s: warmup + sampling; ess_per_s_sampling: sampling only; compilation apart",
        "ess_definition": "min over reference parameters of ArviZ bulk (tail) ESS",
    }


def _run_here(
    quick: bool,
    on_row: Callable[[dict, list], None] | None = None,
    only: dict[str, list] | None = None,
) -> dict[str, Any]:
    """Run every chain count x target x sampler in this process (flag already set)."""
    settings = _settings(quick, only)
    runs: list[dict] = []
    for num_chains in settings["num_chains"]:
        for name in settings["targets"]:
            for sampler in settings["samplers"]:
                start = time.perf_counter()
                try:
                    row = measure(TARGETS[name], sampler, num_chains, settings, settings["seed"])
                except Exception as error:  # a failed run is a result too; keep going
                    traceback.print_exc()
                    row = {
                        "target": name,
                        "dim": TARGETS[name].dim,
                        "sampler": sampler,
                        "num_chains": num_chains,
                        "pass": False,
                        "error": f"{type(error).__name__}: {error}",
                    }
                row["wall_s"] = time.perf_counter() - start
                runs.append(row)
                print(_progress_line(row), flush=True)
                if on_row is not None:
                    on_row(settings, runs)
    return {"suite": "hard_geometry", "settings": settings, "runs": runs}


def _progress_line(row: dict) -> str:
    head = f"  {row['target']} {row['sampler']} x{row['num_chains']}:"
    if "error" in row:
        return f"{head} ERROR {row['error']}"
    return (
        f"{head} pass {row['pass']} z {row['max_z']:.3f} sd [{row['sd_ratio_min']:.2f},"
        f" {row['sd_ratio_max']:.2f}] ess {row['ess_bulk']:.0f}/{row['ess_tail']:.0f}"
        f" ess/s {row['ess_per_s']:.1f} ess/1k {row['ess_per_1k_grads']:.2f}"
        f" div {row['divergences']} ({row['wall_s']:.0f} s)"
    )


def flag_set() -> bool:
    return XLA_FLAG in os.environ.get("XLA_FLAGS", "").split()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = " ".join([*env.get("XLA_FLAGS", "").split(), XLA_FLAG])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run(quick: bool = False) -> dict[str, Any]:
    """Run the suite (see the module docstring); re-executes itself under :data:`XLA_FLAG` if needed."""
    if flag_set():
        return _run_here(quick)
    return run_under_flag("benchmarks.hard_geometry", quick)


def run_under_flag(module: str, quick: bool) -> dict[str, Any]:
    """Run ``python -m module --result FILE [--quick]`` under :data:`XLA_FLAG`; its result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", module, "--result", str(out)]
        subprocess.run(
            command + (["--quick"] if quick else []), cwd=ROOT, env=child_env(), check=True
        )
        return json.loads(out.read_text())


def flagged_main(module: str, run: Callable[[bool], dict], description: str, argv=None) -> None:
    """``python -m module [--quick]``: the command line that :func:`run_under_flag` calls."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny version (for tests)")
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # used by run_under_flag
    args = parser.parse_args(argv)
    result = run(args.quick)
    if args.result is not None:
        args.result.write_text(json.dumps(result, default=jsonable))


# ----------------------------------------------------------------------------- report


def _fmt(x: Any, spec: str) -> str:
    return common.fmt(x, spec, missing="-")


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: one table per chain count, pass counts and NUTS comparisons."""
    s = result["settings"]
    runs = result["runs"]
    samplers = s["samplers"]
    labels = [SAMPLER_LABELS.get(n, n) for n in samplers]
    lines = [
        "## hard_geometry: accuracy and cost on hard posteriors",
        "",
        (
            "Targets: " + ", ".join(f"`{t}` (d = {s['dims'][t]})" for t in s["targets"]) + "."
            " References: exact moments for the banana, the funnel and the ill-conditioned Gaussian;"
            " posteriordb's reference draws for the posteriordb models and the centred eight schools;"
            " quadrature over the two noise scales for the Brownian bridge; long float64 NUTS runs"
            " (non-centred; cached in `benchmarks/references/`) for the others."
        ),
        "",
        (
            f"Samplers: {', '.join(labels)}; {s['num_warmup']} warmup + {s['num_samples']} draws per"
            f" chain, {s['chain_method']} chains, {s['dtype']}, one timed run each, under"
            f" `XLA_FLAGS={s['xla_flags']}`. ChEES-HMC: `blackjax.chees_adaptation` (diagonal metric"
            f" estimated over the ensemble, Adam at {s['chees']['learning_rate']}) then"
            " `blackjax.dynamic_hmc` with the jittered trajectory length it tuned."
        ),
        "",
        (
            "Columns: *pass* = every |mean - ref| / ref sd <= 0.1 and every sd ratio in [0.9, 1.1],"
            " and, in runs that recorded them, the diagnostics Stan asks for: R-hat <= 1.01, bulk"
            " and tail ESS >= 100 per chain, at most 1% divergent transitions (*no (diagnostics)*:"
            " accurate but not to be trusted from its diagnostics; *R-hat* = the largest over"
            " parameters);"
            " *z* = largest standardised mean error; *sd ratio* = smallest and largest sd / ref sd;"
            " *ESS* = minimum bulk / tail ESS over parameters; *ESS/s* = min bulk ESS per second of"
            " warmup + sampling, and of sampling alone (compilation excluded, shown apart);"
            " *ESS/1k grad* = per 1000 gradient evaluations of warmup + sampling, all chains;"
            " *div* = divergent transitions while sampling.  For DilationLangevin, *(warned)*"
            " marks a run that gave a `SamplerHealthWarning` (convergence, divergences, acceptance"
            " or step size) and *(silent)* a failed run that gave none."
        ),
        "",
    ]
    quality = s.get("reference_quality") or {t: reference_quality(t) for t in s["targets"]}
    weak = {t for t, q in quality.items() if q and q["weak"]}
    if weak:
        lines += [
            "*(weak ref.)*: a float64 NUTS reference too noisy to judge the pass bar (bulk ESS"
            f" below {REFERENCE_MIN_ESS} in some parameter, so that its own Monte Carlo error in"
            f" a mean is above a third of the bar of {Z_TARGET} sd), or one that fails the"
            f" diagnostics asked of the samplers (R-hat above {RHAT_TARGET}, divergent"
            " transitions): "
            + "; ".join(
                f"`{t}`: min bulk ESS {quality[t]['min_ess_bulk']:.0f}, max R-hat"
                f" {quality[t]['max_r_hat']:.3f}, {quality[t]['divergences']} divergent"
                for t in sorted(weak)
            )
            + ".  Its moments carry that run's Monte Carlo error (1 / sqrt(ESS) reference sd"
            " in a mean), so a miss or a pass near the bar says little there.",
            "",
        ]
    for num_chains in s["num_chains"]:
        sub = [r for r in runs if r["num_chains"] == num_chains]
        if not sub:
            continue
        lines += [
            f"### {num_chains} chains",
            "",
            "| target | sampler | pass | z | sd ratio | R-hat | ESS bulk / tail | ESS/s (sampling) | ESS/1k grad | div | time s | compile s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sub:
            label = SAMPLER_LABELS.get(r["sampler"], r["sampler"])
            target = r["target"] + (" (weak ref.)" if r["target"] in weak else "")
            if "error" in r:
                lines.append(f"| {target} | {label} | error | {r['error']} |||||||")
                continue
            verdict = "yes" if r["pass"] else "**no**"
            if not r["pass"] and r.get("pass_accuracy"):
                verdict = "**no** (diagnostics)"
            if "warnings" in r:  # DilationLangevin: did it warn?
                verdict += " (warned)" if r["warnings"] else ("" if r["pass"] else " (silent)")
            lines.append(
                f"| {target} | {label} | {verdict}"
                f" | {_fmt(r['max_z'], '.3f')} | {_fmt(r['sd_ratio_min'], '.2f')}-{_fmt(r['sd_ratio_max'], '.2f')}"
                f" | {_fmt(r.get('r_hat'), '.3f')} | {r['ess_bulk']:.0f} / {r['ess_tail']:.0f}"
                f" | {_fmt(r['ess_per_s'], '.1f')} ({_fmt(r['ess_per_s_sampling'], '.1f')})"
                f" | {_fmt(r['ess_per_1k_grads'], '.2f')} | {r['divergences']}"
                f" | {r['total_s']:.1f} | {r['compile_s']:.1f} |"
            )
        lines.append("")
    commands = [c for c in result.get("command", "").split("; ") if c]
    if len(commands) > 1:
        lines += [
            f"These tables merge {len(commands)} runs (`python -m benchmarks.hard_geometry"
            " --merge`; the record's `command` lists them, a later run's rows replacing an"
            " earlier one's).  Samplers measured in the same run are side by side; a ratio"
            " between rows of different runs also carries the machine's load at each time.",
            "",
        ]
    lines += ["### Summary", ""] + _summary(result)
    return "\n".join(lines)


def _summary(result: dict[str, Any]) -> list[str]:
    """Pass counts per sampler, and where NUTS still wins on ESS/s."""
    s, runs = result["settings"], result["runs"]
    out = []
    for num_chains in s["num_chains"]:
        for sampler in s["samplers"]:
            rows = [r for r in runs if r["num_chains"] == num_chains and r["sampler"] == sampler]
            if rows:
                passed = [r["target"] for r in rows if r["pass"]]
                out.append(
                    f"- {num_chains} chains, {SAMPLER_LABELS.get(sampler, sampler)}: passes"
                    f" {len(passed)}/{len(rows)} targets."
                )
    for num_chains in s["num_chains"]:
        pick = {
            (r["target"], r["sampler"]): r
            for r in runs
            if r["num_chains"] == num_chains and "error" not in r
        }
        only_nuts = [
            t
            for t in s["targets"]
            if (t, "NUTS") in pick
            and (t, "DilationLangevin") in pick
            and pick[(t, "NUTS")]["pass"]
            and not pick[(t, "DilationLangevin")]["pass"]
        ]
        if only_nuts:
            out.append(
                f"- {num_chains} chains: NUTS passes and DilationLangevin (defaults) does not on "
                + ", ".join(only_nuts)
                + "."
            )
        # a ratio against a sampler that failed measures nothing
        for peer in ("NUTS", "NUTS (dense)"):
            for field, what in (
                ("ess_per_s", "compilation excluded"),
                ("ess_per_s_with_compile", "compilation included"),
            ):
                ratios = [
                    (t, pick[(t, "DilationLangevin")][field] / pick[(t, peer)][field])
                    for t in s["targets"]
                    if (t, "DilationLangevin") in pick
                    and (t, peer) in pick
                    and pick[(t, "DilationLangevin")]["pass"]
                    and pick[(t, peer)]["pass"]
                    and field in pick[(t, peer)]
                ]
                if not ratios:
                    continue
                wins = [f"{t} ({q:.2f}x)" for t, q in ratios if not q >= 1]
                values = [q for _, q in ratios]
                out.append(
                    f"- {num_chains} chains, ESS/s of DilationLangevin / {SAMPLER_LABELS[peer]}"
                    f" ({what}) where both passed: {min(values):.2f}x-{max(values):.2f}x on"
                    f" {len(ratios)} targets; {SAMPLER_LABELS[peer]} wins on {len(wins)}"
                    + (": " + ", ".join(wins) if wins else "")
                    + "."
                )
        for peer in ("NUTS", "NUTS (dense)", "ChEES-HMC"):
            for field, what in (("ess_per_1k_grads", "ESS per gradient"), ("ess_per_s", "ESS/s")):
                if peer.startswith("NUTS") and field == "ess_per_s":
                    continue  # the lines above
                wins = [
                    t
                    for t in s["targets"]
                    if (t, "DilationLangevin") in pick
                    and (t, peer) in pick
                    and pick[(t, peer)][field] > pick[(t, "DilationLangevin")][field]
                ]
                if wins:
                    out.append(
                        f"- {num_chains} chains: {SAMPLER_LABELS[peer]} has the higher {what} on "
                        + ", ".join(wins)
                        + "."
                    )
        dilation = [
            pick[(t, "DilationLangevin")] for t in s["targets"] if (t, "DilationLangevin") in pick
        ]
        failed = [r for r in dilation if not r["pass"] and "warnings" in r]
        if failed:
            silent = [r["target"] for r in failed if not r["warnings"]]
            out.append(
                f"- {num_chains} chains, DilationLangevin (defaults): {len(failed) - len(silent)} of"
                f" {len(failed)} failed runs gave a `SamplerHealthWarning`"
                + (f"; silent: {', '.join(silent)}" if silent else "")
                + "."
            )
    return out


# ----------------------------------------------------------------------------- command line


def merge_records(records: list[dict]) -> dict:
    """One record from several partial runs (``--chains``/``--targets``/``--samplers``).

    Runs are keyed by (chain count, target, sampler); a later record's run
    replaces an earlier one's.  Settings list the union, in the suite's order.
    """
    runs: dict[tuple, dict] = {}
    for record in records:
        for r in record["runs"]:
            runs[(r["num_chains"], r["target"], r["sampler"])] = r
    full = _default_settings(quick=False)
    settings = dict(records[-1]["settings"])
    for key in ("targets", "samplers", "num_chains"):
        present = {v for record in records for v in record["settings"][key]}
        settings[key] = [v for v in full[key] if v in present]
    settings["dims"] = {t: TARGETS[t].dim for t in settings["targets"]}
    settings["references"] = {t: TARGETS[t].reference for t in settings["targets"]}
    settings["reference_quality"] = {t: reference_quality(t) for t in settings["targets"]}
    merged = dict(records[-1])
    merged.update(
        settings=settings,
        runs=sorted(
            runs.values(),
            key=lambda r: (
                full["num_chains"].index(r["num_chains"]),
                full["targets"].index(r["target"]),
                full["samplers"].index(r["sampler"]),
            ),
        ),
        wall_time_s=sum(record["wall_time_s"] for record in records),
        command="; ".join(record["command"] for record in records),
        complete=all(record.get("complete", False) for record in records),
    )
    return merged


def _record(settings: dict, runs: list, start: float, quick: bool, complete: bool) -> dict:
    from benchmarks.run import machine, package_versions

    return {
        "schema_version": common.SCHEMA_VERSION,
        "suite": "hard_geometry",
        "quick": quick,
        "complete": complete,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "versions": package_versions(),
        "machine": machine(),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.hard_geometry", *sys.argv[1:]]
        ),
        "wall_time_s": time.perf_counter() - start,
        "settings": settings,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.hard_geometry [--quick] [--out PATH]``: run, writing after every run."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hard_geometry", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny version (for tests)")
    parser.add_argument("--out", type=Path, help="write the full JSON record here after every run")
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # used by run()
    parser.add_argument("--chains", type=int, nargs="+", help="only these chain counts (4, 64)")
    parser.add_argument("--targets", nargs="+", help="only these targets")
    parser.add_argument("--samplers", nargs="+", help="only these samplers")
    parser.add_argument(
        "--merge", type=Path, nargs="+", help="merge these partial results into --out, run nothing"
    )
    args = parser.parse_args(argv)
    if args.merge:
        merged = merge_records([json.loads(p.read_text()) for p in args.merge])
        args.out.write_text(json.dumps(merged, indent=1, default=jsonable) + "\n")
        return
    if not flag_set():
        # re-execute with the flag before JAX creates its backend
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "benchmarks.hard_geometry", *sys.argv[1:]],
            child_env(),
        )
    start = time.perf_counter()

    def write(settings, runs, complete=False):
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            record = _record(settings, runs, start, args.quick, complete)
            args.out.write_text(json.dumps(record, indent=1, default=jsonable) + "\n")

    only = {"num_chains": args.chains, "targets": args.targets, "samplers": args.samplers}
    result = _run_here(args.quick, on_row=write, only=only)
    write(result["settings"], result["runs"], complete=True)
    if args.result is not None:
        args.result.write_text(json.dumps(result, default=jsonable))


def jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


if __name__ == "__main__":
    main()
