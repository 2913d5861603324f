"""Label switching: mixture posteriors with exchangeable components, scored per labelling.

Two posteriors, each with ``K!`` symmetric modes (one per labelling of the
components, the order of the component means) that hold exactly ``1/K!`` of
the mass each:

- ``galaxies_k3``: a three-component Gaussian mixture of the 82 galaxy
  velocities of Roeder (1990) (``tests/data/galaxies.csv``, from R's MASS),
  **in km/s, neither centred nor rescaled**, with priors in the data's units
  centred at round numbers (:func:`galaxy_mixture_model`).  The posterior sits
  near means of 10,000-33,000 km/s and standard deviations of a few hundred to
  a few thousand km/s, so in unconstrained space it is far from the origin
  (the dilation centre).
- ``gmm_label_switching``: the package's synthetic example
  (``numpyro_dilation.workflow.examples``, ``gaussian_mixture``: K = 3, 120
  points, exchangeable priors).

:func:`run_model` runs DilationLangevin (from its default centre, the origin
of unconstrained space) or NUTS (from a draw of the prior) on one of them and
returns the fraction of draws per labelling, its largest error against
``1/K!``, and gradients per chain.  The labelling fractions alone cannot tell a
sampler that never reached the posterior (chains left near the origin order
their near-zero means at random, which looks uniform), so each run also
reports the fraction of draws **outside the posterior bulk**: draws whose
log-likelihood is more than :data:`BULK_DROP` below the best local maximum EM
finds from a few deterministic starts (:func:`reference_loglik`).  A draw from
the posterior lies that far below the maximum with negligible probability
(the log-likelihood drop is about a chi-square with 3K - 1 degrees of freedom
over 2, below 10 in all but a fraction 1e-6 of draws, and the priors are weak).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.mode_metrics import labelling_fractions, min_bulk_ess

__all__ = [
    "BULK_DROP",
    "GALAXIES_PATH",
    "MODELS",
    "galaxy_mixture_model",
    "load_galaxies",
    "mixture_loglik",
    "model_data",
    "reference_loglik",
    "run_model",
]

GALAXIES_PATH = Path(__file__).resolve().parent.parent / "tests" / "data" / "galaxies.csv"
#: Components of the galaxy mixture (the three groups seen in the data: about
#: 7 values near 10,000 km/s, most near 20,000-25,000, 3 above 32,000).
GALAXY_K = 3
#: Priors, in km/s: means ~ Normal(20000, 10000), sds ~ HalfNormal(5000).
GALAXY_MEAN_LOC = 20_000.0
GALAXY_MEAN_SCALE = 10_000.0
GALAXY_SD_SCALE = 5_000.0
#: A draw whose log-likelihood is more than this below the reference maximum is
#: outside the posterior bulk.
BULK_DROP = 50.0


def load_galaxies(path: Path = GALAXIES_PATH) -> np.ndarray:
    """The 82 galaxy velocities in km/s (comment lines start with ``#``; one header line)."""
    lines = [ln.strip() for ln in Path(path).read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    return np.array([float(v) for v in lines[1:]])


def galaxy_mixture_model(y, K: int = GALAXY_K):
    """K-component Gaussian mixture of the galaxy velocities (km/s), exchangeable priors.

    ``w ~ Dirichlet(1, ..., 1)``, ``mu_k ~ Normal(20000, 10000)``,
    ``sigma_k ~ HalfNormal(5000)``, ``y_i ~ sum_k w_k Normal(mu_k, sigma_k)``.
    The priors are weakly informative in the data's own units and centred at
    a round number, not at the data's mean: the posterior is not moved to the
    origin.  Permuting the components leaves the posterior unchanged.
    """
    import numpyro
    import numpyro.distributions as dist

    w = numpyro.sample("w", dist.Dirichlet(jnp.ones(K)))
    mu = numpyro.sample("mu", dist.Normal(GALAXY_MEAN_LOC, GALAXY_MEAN_SCALE).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(GALAXY_SD_SCALE).expand([K]).to_event(1))
    with numpyro.plate("obs", y.shape[0]):
        numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, sigma)),
                       obs=y)


#: Label-switching posteriors: name -> (description, number of components).
MODELS = {
    "galaxies_k3": (("galaxy velocities of Roeder (1990), 82 values in km/s (not centred),"
                     " K = 3 Gaussian mixture, mu ~ Normal(20000, 10000), sigma ~ HalfNormal(5000),"
                     " w ~ Dirichlet(1, 1, 1)"), GALAXY_K),
    "gmm_label_switching": (("synthetic K = 3 Gaussian mixture (`numpyro_dilation.workflow.examples`,"
                             " `gaussian_mixture`, 120 points)"), 3),
}


def model_data(name: str) -> tuple[Any, tuple, dict]:
    """``(model, args, kwargs)`` of one of :data:`MODELS`."""
    if name == "galaxies_k3":
        return galaxy_mixture_model, (jnp.asarray(load_galaxies()),), {}
    if name == "gmm_label_switching":
        from numpyro_dilation.workflow.examples import get_example

        example = get_example("gaussian_mixture")
        args, kwargs = example.data()
        return example.model, args, kwargs
    raise ValueError(f"unknown label-switching model {name!r}; valid: {sorted(MODELS)}")


def mixture_loglik(y: np.ndarray, w: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                   chunk: int = 20_000) -> np.ndarray:
    """Log-likelihood of 1-D Gaussian-mixture parameters (``(n, K)`` each) for data ``y``, float64."""
    y = np.asarray(y, dtype=float)
    w, mu, sigma = (np.asarray(a, dtype=float).reshape(-1, np.shape(a)[-1]) for a in (w, mu, sigma))
    out = []
    for i in range(0, len(w), chunk):
        sl = slice(i, i + chunk)
        z = (y[None, :, None] - mu[sl, None, :]) / sigma[sl, None, :]
        comp = (np.log(w[sl, None, :]) - np.log(sigma[sl, None, :]) - 0.5 * z**2
                - 0.5 * np.log(2 * np.pi))
        top = comp.max(-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            ll = (top[..., 0] + np.log(np.exp(comp - top).sum(-1))).sum(-1)
        out.append(np.where(np.isfinite(ll), ll, -np.inf))
    return np.concatenate(out) if out else np.zeros(0)


def reference_loglik(y: np.ndarray, k: int, iterations: int = 500) -> float:
    """Largest log-likelihood EM reaches from a few deterministic starts (float64).

    Starts: means at the data's quantiles (0.5 .. k - 0.5) / k, at evenly
    spread quantiles from 0.05 to 0.95, and at the minimum, median and maximum
    (k = 3); equal weights, the data's sd.  Standard deviations are floored at
    1e-3 of the data's sd, so that no component collapses onto one point.
    """
    y = np.asarray(y, dtype=float)
    sd = y.std()
    starts = [np.quantile(y, (np.arange(k) + 0.5) / k), np.quantile(y, np.linspace(0.05, 0.95, k))]
    if k == 3:
        starts.append(np.array([y.min(), np.median(y), y.max()]))
    best = -np.inf
    for mu in starts:
        w, sigma = np.full(k, 1.0 / k), np.full(k, sd)
        for _ in range(iterations):
            z = (y[:, None] - mu) / sigma
            logp = np.log(w) - np.log(sigma) - 0.5 * z**2
            r = np.exp(logp - logp.max(1, keepdims=True))
            r /= r.sum(1, keepdims=True)
            n = r.sum(0) + 1e-12
            w, mu = n / len(y), (r * y[:, None]).sum(0) / n
            sigma = np.maximum(np.sqrt((r * (y[:, None] - mu) ** 2).sum(0) / n), 1e-3 * sd)
        best = max(best, float(mixture_loglik(y, w[None], mu[None], sigma[None])[0]))
    return best


def run_model(name: str, sampler: str, key: jax.Array, *, num_chains: int, num_warmup: int,
              num_samples: int) -> dict[str, Any]:
    """Run ``sampler`` (``dilation``, ``dilation_ensemble`` or ``nuts``) on model ``name``.

    Returns ``fractions`` (per labelling), ``max_abs_error`` (largest
    ``|fraction - 1/K!|``), ``grads_per_chain``, ``grads_total``, the
    unconstrained draws' minimum bulk ESS (``ess_bulk``, over all sites and
    coordinates), ``outside_fraction`` (draws outside the posterior bulk, see
    the module docstring), ``loglik_median`` and ``loglik_reference``,
    ``sorted_mu_median`` (median over draws of the sorted component means)
    and, for NUTS, ``divergences``; untimed (see
    :func:`benchmarks.mixture_samplers.timed_with_compile`).
    """
    from numpyro.infer import MCMC, NUTS, init_to_sample

    from numpyro_dilation import DilationLangevin

    model, args, kwargs = model_data(name)
    k = MODELS[name][1]
    if sampler == "nuts":
        kernel, fields = NUTS(model, init_strategy=init_to_sample), ("num_steps", "diverging")
    elif sampler in ("dilation", "dilation_ensemble"):
        kernel = DilationLangevin(model, ensemble=sampler == "dilation_ensemble")
        fields = ("num_grad_evals",)
    else:
        raise ValueError(f"unknown sampler {sampler!r}")
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)
    if sampler == "nuts":
        mcmc.warmup(key, *args, extra_fields=("num_steps",), collect_warmup=True, **kwargs)
        warm = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum(1)
        mcmc.run(mcmc.post_warmup_state.rng_key, *args, extra_fields=fields, **kwargs)
    else:
        mcmc.run(key, *args, extra_fields=fields, **kwargs)
    jax.block_until_ready((mcmc.get_samples(), mcmc.get_extra_fields()))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    if sampler == "nuts":
        grads = 1 + warm + np.asarray(extra["num_steps"]).sum(1)
    else:
        grads = np.asarray(extra["num_grad_evals"])[:, -1]
    samples = mcmc.get_samples(group_by_chain=True)
    frac = labelling_fractions(np.asarray(samples["mu"]))
    exact = 1.0 / len(frac)
    out = {"fractions": frac, "max_abs_error": max(abs(v - exact) for v in frac.values()),
           "num_components": k, "grads_per_chain": float(grads.mean()),
           "grads_total": float(grads.sum()),
           "ess_bulk": min_bulk_ess(np.concatenate(
               [np.asarray(v, float).reshape(num_chains, num_samples, -1)
                for v in _unconstrained(mcmc, model, args, kwargs, samples).values()], -1))}
    y = np.asarray(args[0])
    ll = mixture_loglik(y, *(np.asarray(samples[k]) for k in ("w", "mu", "sigma")))
    ref = reference_loglik(y, k)
    out.update(outside_fraction=float(np.mean(ll < ref - BULK_DROP)),
               loglik_median=float(np.median(ll)), loglik_reference=ref,
               sorted_mu_median=np.median(np.sort(np.asarray(samples["mu"]).reshape(-1, k), -1),
                                          0).round(1).tolist())
    if sampler == "nuts":
        out["divergences"] = int(np.asarray(extra["diverging"]).sum())
    return out


def _unconstrained(mcmc, model, args, kwargs, samples) -> dict[str, np.ndarray]:
    """Draws in unconstrained space (where the samplers move), ``{site: (chains, draws, ...)}``."""
    from numpyro.infer.util import unconstrain_fn

    flat = {k: np.asarray(v).reshape((-1,) + np.shape(v)[2:]) for k, v in samples.items()}
    u = jax.vmap(lambda p: unconstrain_fn(model, args, kwargs, p))(
        {k: jnp.asarray(v) for k, v in flat.items()})
    shape = next(iter(samples.values())).shape[:2]
    return {k: np.asarray(v).reshape(shape + np.shape(v)[1:]) for k, v in u.items()}
