"""The six posteriordb posteriors of ``benchmarks/posteriordb`` as NumPyro models.

Each entry of :data:`POSTERIORS` gives the model, a function building its
arguments from ``data.json``, and the reference draws (10 chains x 1000 Stan
NUTS draws) to judge a run against.  Flat priors are NumPyro's
``ImproperUniform``, as in the Stan programs.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from numpyro_dilation.models import eight_schools_model

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
    )
}


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
