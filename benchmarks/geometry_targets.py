"""Targets of the hard_geometry suite: the models, their data and their reference moments.

Each :class:`Target` holds a NumPyro model, its arguments and the ``(mean, sd)``
of every judged parameter from its reference: exact moments where the truth is
analytic, posteriordb's reference draws, or the cached references of
``benchmarks/references/*.npz`` (:func:`cached_moments`, written by
``python -m benchmarks.make_references``; :func:`reference_quality` says whether
a float64 NUTS reference is good enough to judge the pass bar).  :data:`TARGETS`
lists them all, :data:`QUICK_TARGETS` those of the quick mode.  The suite is
:mod:`benchmarks.hard_geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform

from benchmarks import common
from benchmarks.posteriors import POSTERIORS
from numpyro_dilation.workflow import examples

__all__ = [
    "BRIDGE_STEPS",
    "QUICK_TARGETS",
    "REFERENCE_DIR",
    "REFERENCE_MIN_ESS",
    "RHAT_TARGET",
    "TARGETS",
    "Z_TARGET",
    "Target",
    "banana_model",
    "brownian_bridge_model",
    "cached_moments",
    "eight_schools_centered_model",
    "funnel_model",
    "gaussian_100_model",
    "item_response_2pl_model",
    "lgcp_correlation",
    "lgcp_model",
    "reference_file",
    "reference_quality",
    "stochastic_volatility_model",
    "sv_stationary_sd",
]

REFERENCE_DIR = Path(__file__).resolve().parent / "references"
#: The pass bar on a mean: |mean - ref mean| / ref sd at most this.
Z_TARGET = 0.1
#: Stan's guidance for trusting a run: R-hat at most this (shared with the other suites).
RHAT_TARGET = common.RHAT_TARGET

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
