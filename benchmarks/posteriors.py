"""The nine posteriordb posteriors of ``benchmarks/posteriordb`` as NumPyro models.

Each entry of :data:`POSTERIORS` gives the model, a function building its
arguments from ``data.json``, and the reference draws (10 chains x 1000 Stan
NUTS draws) to judge a run against.  Flat priors are NumPyro's
``ImproperUniform``, as in the Stan programs.  :data:`ORIGINAL_SIX` names the
six that the posteriordb suite has always run; the other three (kilpisjarvi,
arma11, hmm_example) are translations of the ``model.stan`` shipped beside
their data.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from numpyro_dilation.workflow.examples import eight_schools_model

DATA_DIR = Path(__file__).resolve().parent / "posteriordb"


def _flat(shape=()):
    return dist.ImproperUniform(constraints.real, (), shape)


def kidscore_momiq(mom_iq, kid_score=None):
    beta = numpyro.sample("beta", _flat((2,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    numpyro.sample("kid_score", dist.Normal(beta[0] + beta[1] * mom_iq, sigma), obs=kid_score)


def logearn_height(height, log_earn=None):
    beta = numpyro.sample("beta", _flat((2,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.sample("log_earn", dist.Normal(beta[0] + beta[1] * height, sigma), obs=log_earn)


def blr(X, y=None):
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


def linear_regression_flat(X, y=None):
    """``y ~ Normal(X @ beta, sigma)`` with flat priors on ``beta`` and ``sigma > 0``."""
    beta = numpyro.sample("beta", _flat((X.shape[1],)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.sample("y", dist.Normal(X @ beta, sigma), obs=y)


def kilpisjarvi(x, pmualpha, psalpha, pmubeta, psbeta, y=None):
    """Linear trend over years; ``sigma > 0`` flat (posteriordb ``kilpisjarvi``).

    ``x`` is left uncentred, as in the Stan program, so that ``alpha`` and
    ``beta`` keep their posterior correlation of about -0.99999.
    """
    alpha = numpyro.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = numpyro.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(constraints.positive, (), ()))
    numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def arma11(y):
    """ARMA(1, 1) with the recursive error term of posteriordb's ``arma11`` (``err[0] = 0``)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Normal(0.0, 2.0))
    theta = numpyro.sample("theta", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))

    def step(err_prev, obs):
        y_prev, y_t = obs
        err = y_t - (mu + phi * y_prev + theta * err_prev)
        return err, err

    err_1 = y[0] - (mu + phi * mu)
    _, err_rest = jax.lax.scan(step, err_1, (y[:-1], y[1:]))
    err = jnp.concatenate([err_1[None], err_rest])
    # the errors are functions of the parameters, so this is a factor, not an observed site
    numpyro.factor("err", dist.Normal(0.0, sigma).log_prob(err).sum())


def hmm_example(y):
    """Two-state Gaussian HMM, marginalised by the forward algorithm (posteriordb ``hmm_example``).

    ``theta1``, ``theta2`` are the transition rows (uniform on the simplex, as
    Stan's unconstrained ``simplex``); ``mu`` is positive and ordered, with
    ``mu[1] ~ Normal(3, 1)`` and ``mu[2] ~ Normal(10, 1)`` added to the target.
    """
    theta1 = numpyro.sample("theta1", dist.Dirichlet(jnp.ones(2)))
    theta2 = numpyro.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = numpyro.sample(
        "mu", dist.ImproperUniform(constraints.positive_ordered_vector, (), (2,))
    )
    numpyro.factor(
        "mu_prior", dist.Normal(3.0, 1.0).log_prob(mu[0]) + dist.Normal(10.0, 1.0).log_prob(mu[1])
    )
    log_theta = jnp.log(jnp.stack([theta1, theta2]))  # [from state j, to state k]
    emission = dist.Normal(mu, 1.0).log_prob(y[:, None])  # (N, K)

    def forward(gamma, emission_t):
        gamma = logsumexp(gamma[:, None] + log_theta, axis=0) + emission_t
        return gamma, None

    gamma, _ = jax.lax.scan(forward, emission[0], emission[1:])
    numpyro.factor("y", logsumexp(gamma))


def _kilpisjarvi_args(d):
    priors = {k: float(d[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta")}
    return (jnp.asarray(d["x"], float),), {**priors, "y": jnp.asarray(d["y"], float)}


def _series_args(d):
    return (jnp.asarray(d["y"], float),), {}


def _eight_schools_args(d):
    return (jnp.asarray(d["sigma"], float),), {"y": jnp.asarray(d["y"], float)}


def _kidiq_args(d):
    return (jnp.asarray(d["mom_iq"], float),), {"kid_score": jnp.asarray(d["kid_score"], float)}


def _earnings_args(d):
    return (jnp.asarray(d["height"], float),), {"log_earn": jnp.log(jnp.asarray(d["earn"], float))}


def _blr_args(d):
    return (jnp.asarray(d["X"], float),), {"y": jnp.asarray(d["y"], float)}


def _mesquite_args(d):
    cols = [np.ones(d["N"])] + [
        np.log(np.asarray(d[k], float))
        for k in ("diam1", "diam2", "canopy_height", "total_height", "density")
    ]
    cols.append(np.asarray(d["group"], float))
    X = np.stack(cols, axis=1)
    return (jnp.asarray(X),), {"y": jnp.log(jnp.asarray(d["weight"], float))}


def _nes_args(d):
    age = np.asarray(d["age_discrete"])
    cols = [
        np.ones(d["N"]),
        np.asarray(d["real_ideo"], float),
        np.asarray(d["race_adj"], float),
        (age == 2).astype(float),
        (age == 3).astype(float),
        (age == 4).astype(float),
        np.asarray(d["educ1"], float),
        np.asarray(d["gender"], float),
        np.asarray(d["income"], float),
    ]
    X = np.stack(cols, axis=1)
    return (jnp.asarray(X),), {"y": jnp.asarray(d["partyid7"], float)}


@dataclass(frozen=True)
class Posterior:
    """A reference posterior: the model, its data and Stan's reference draws."""

    name: str
    model: Callable
    make_args: Callable

    @property
    def folder(self) -> Path:
        return DATA_DIR / self.name

    def data(self) -> dict:
        return json.loads((self.folder / "data.json").read_text())

    def args(self) -> tuple[tuple, dict]:
        """Positional and keyword arguments of the model for this data set."""
        return self.make_args(self.data())

    def reference_draws(self) -> dict[str, np.ndarray]:
        """Reference draws, ``{"param[i]": array (chains, draws)}`` with Stan's names."""
        return _reference_draws(self.name)

    def reference_moments(self) -> dict[str, tuple[float, float]]:
        """Reference ``(mean, sd)`` of every parameter."""
        return {
            k: (float(v.mean()), float(v.std(ddof=1))) for k, v in self.reference_draws().items()
        }


@cache
def _reference_draws(name: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(DATA_DIR / name / "reference_draws.json.zip") as archive:
        chains = json.loads(archive.read("reference_draws.json"))
    return {k: np.asarray([chain[k] for chain in chains]) for k in chains[0]}


POSTERIORS = {
    p.name: p
    for p in (
        Posterior(
            "eight_schools-eight_schools_noncentered",
            eight_schools_model,  # the package's own copy of posteriordb's model
            _eight_schools_args,
        ),
        Posterior("kidiq-kidscore_momiq", kidscore_momiq, _kidiq_args),
        Posterior("earnings-logearn_height", logearn_height, _earnings_args),
        Posterior("sblrc-blr", blr, _blr_args),
        Posterior("mesquite-logmesquite", linear_regression_flat, _mesquite_args),
        Posterior("nes1972-nes", linear_regression_flat, _nes_args),
        Posterior("kilpisjarvi_mod-kilpisjarvi", kilpisjarvi, _kilpisjarvi_args),
        Posterior("arma-arma11", arma11, _series_args),
        Posterior("hmm_example-hmm_example", hmm_example, _series_args),
    )
}

#: The six posteriors of the original posteriordb suite (its results and page name these).
ORIGINAL_SIX = tuple(list(POSTERIORS)[:6])


def stan_names(samples: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    """Pick Stan-named parameters (``"beta[2]"``) out of NumPyro samples.

    ``samples`` maps site names to arrays whose leading axes are draws (and
    possibly chains); vector sites are indexed along their last axis, 1-based.
    """
    out = {}
    for name in names:
        site, _, index = name.partition("[")
        value = np.asarray(samples[site])
        out[name] = value[..., int(index[:-1]) - 1] if index else value
    return out


def accuracy(samples: dict[str, np.ndarray], posterior: Posterior) -> dict[str, dict[str, float]]:
    """Standardised mean error and sd ratio of every reference parameter.

    Returns ``{"param": {"z_mean": |mean - ref_mean| / ref_sd, "sd_ratio": sd / ref_sd}}``.
    """
    moments = posterior.reference_moments()
    draws = stan_names(samples, moments)
    out = {}
    for name, (ref_mean, ref_sd) in moments.items():
        x = draws[name].ravel()
        out[name] = {
            "z_mean": float(abs(x.mean() - ref_mean) / ref_sd),
            "sd_ratio": float(x.std(ddof=1) / ref_sd),
        }
    return out
