"""Regenerate the cached reference draws of the hard_geometry suite.

Usage::

    python -m benchmarks.make_references [TARGET ...]   # default: every cached target

For the targets of :mod:`benchmarks.geometry_targets` whose truth is not
analytic and that posteriordb does not cover, this computes a reference and
writes ``benchmarks/references/TARGET.npz`` (compressed).  The Brownian
bridge is integrated by quadrature (:func:`bridge_quadrature`: the walk is
Gaussian given the two noise scales; a non-centred NUTS run diverged hundreds
of times there).  The others (:data:`REFERENCE_MODELS`) get long float64
NumPyro NUTS chains on a reference parametrisation of the same posterior
(non-centred where that helps: the stochastic volatility's log-variances, the
Cox process's field), one chain after another.  Each file holds

* ``names``: Stan-style parameter names (``"x[3]"``, 1-based), the ones the
  suite judges a run by;
* ``mean``, ``sd``: float64 moments over **all** draws of the run;
* ``draws``: float32 draws, evenly thinned to at most :data:`MAX_STORED_FLOATS`
  numbers (draws x parameters), to look at the reference's shape;
* NUTS runs: ``num_chains``, ``num_warmup``, ``num_samples``, ``seed``,
  ``ess_bulk``, ``rhat`` (per parameter, of the full run), ``draws_thin``,
  ``divergences``; quadrature: ``grid``, ``max_edge_weight``, ``seed``.

The runs are CPU-heavy: run one at a time, under ``nice``.  Everything is
seeded, so a rerun on the same versions reproduces the files.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax

jax.config.update("jax_enable_x64", True)  # before any array is made

import arviz as az  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

from benchmarks import geometry_targets as gt  # noqa: E402
from benchmarks.common import scalar_draws  # noqa: E402

__all__ = ["MAX_STORED_FLOATS", "REFERENCE_MODELS", "Reference", "make_reference", "main"]

#: Cap on the stored draws (draws x parameters), to keep each file near a megabyte.
MAX_STORED_FLOATS = 250_000


def bridge_noncentred(observed_index, y=None):
    """:func:`~benchmarks.geometry_targets.brownian_bridge_model` with the walk's increments standardised."""
    innovation = numpyro.sample("innovation_scale", dist.LogNormal(0.0, 2.0))
    observation = numpyro.sample("observation_scale", dist.LogNormal(0.0, 2.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([gt.BRIDGE_STEPS]).to_event(1))
    x = numpyro.deterministic("x", innovation * jnp.cumsum(z))
    numpyro.sample("y", dist.Normal(x[observed_index], observation).to_event(1), obs=y)


def sv_noncentred(returns):
    """:func:`~benchmarks.geometry_targets.stochastic_volatility_model` with standardised innovations."""
    mu, phi, sigma = gt._sv_globals()
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([returns.shape[0]]).to_event(1))

    def step(h_prev, z_t):
        h_t = mu + phi * (h_prev - mu) + sigma * z_t
        return h_t, h_t

    h1 = mu + gt.sv_stationary_sd(phi, sigma) * z[0]
    _, rest = jax.lax.scan(step, h1, z[1:])
    h = numpyro.deterministic("h", jnp.concatenate([h1[None], rest]))
    # no argument check: the structural trace draws the globals from the prior, and an
    # extreme draw of phi can underflow the scale to zero there
    scale = jnp.exp(h / 2)
    numpyro.sample("returns", dist.Normal(0.0, scale, validate_args=False).to_event(1), obs=returns)


def lgcp_noncentred(chol, counts=None):
    """:func:`~benchmarks.geometry_targets.lgcp_model` as ``f = mu + sigma L z`` (``L`` factorised once)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([chol.shape[0]]).to_event(1))
    f = numpyro.deterministic("f", mu + sigma * (chol @ z))
    numpyro.sample("counts", dist.Poisson(jnp.exp(f)).to_event(1), obs=counts)


@dataclass(frozen=True)
class Reference:
    """How to make one target's reference: a model, its float64 arguments and the run's size."""

    model: Callable
    make_args: Callable[[], tuple[tuple, dict]]
    sites: tuple[str, ...]  # the sites the suite judges (those of the benchmark model)
    num_samples: int  # per chain
    num_chains: int = 4
    num_warmup: int = 1000
    target_accept_prob: float = 0.9


def _bridge_args():
    index, y = gt._bridge_data()
    return (jnp.asarray(index),), {"y": jnp.asarray(y)}


def _lgcp_args():
    chol = np.linalg.cholesky(gt.lgcp_correlation())
    return (jnp.asarray(chol),), {"counts": jnp.asarray(gt._lgcp_data())}


REFERENCE_MODELS: dict[str, Reference] = {
    # not the default (quadrature is exact); kept to cross-check with `--nuts brownian_bridge`
    "brownian_bridge": Reference(
        bridge_noncentred, _bridge_args, ("innovation_scale", "observation_scale", "x"), 2500
    ),
    "stochastic_volatility": Reference(
        sv_noncentred,
        lambda: ((jnp.asarray(gt._sv_data()),), {}),
        ("mu", "phi", "sigma", "h"),
        2500,
    ),
    "item_response_2pl": Reference(
        gt.item_response_2pl_model,
        gt._irt_args,
        ("delta", "theta", "beta", "alpha"),
        # 4 x 1500 draws gave ESS 424 in delta, below the 900 a 0.1-sd bar needs
        5000,
        target_accept_prob=0.8,
    ),
    "lgcp": Reference(lgcp_noncentred, _lgcp_args, ("mu", "sigma", "f"), 2500),
}


def bridge_quadrature(grid: int = 1000, num_draws: int = 4000, seed: int = 0) -> dict[str, np.ndarray]:
    """Brownian bridge reference by quadrature: the walk is Gaussian given the two scales.

    Given ``(innovation, observation)`` the positions ``x`` have prior covariance
    ``innovation^2 K`` (``K_ij = min(i, j)``, 1-based) and the observations covariance
    ``S = innovation^2 A + observation^2 I`` with ``A = K[obs, obs]``; one
    eigendecomposition ``A = U diag(lam) U^T`` turns the marginal likelihood and
    the conditional mean and variance of ``x`` into sums over ``lam``.  The two
    log-scales are integrated on a ``grid x grid`` lattice over [-9, 5]^2
    (spacing 0.014, against posterior sds of tenths), where their prior is
    ``Normal(0, 2)``; moments of ``x`` follow by the laws of total expectation
    and variance.  ``num_draws`` draws are made by picking lattice points by
    weight and ``x`` from its conditional Gaussian.
    """
    index, y = gt._bridge_data()
    n = gt.BRIDGE_STEPS
    k = np.minimum.outer(np.arange(1, n + 1), np.arange(1, n + 1)).astype(float)
    lam, u = np.linalg.eigh(k[np.ix_(index, index)])
    b = k[:, index] @ u  # (n, m)
    c = u.T @ y  # (m,)
    log_s = np.linspace(-9.0, 5.0, grid)
    li, lo = np.meshgrid(log_s, log_s, indexing="ij")
    vi, vo = np.exp(2 * li).ravel(), np.exp(2 * lo).ravel()  # variances on the lattice
    denom = vi[:, None] * lam + vo[:, None]  # (G, m): eigenvalues of S
    log_lik = -0.5 * (np.log(denom).sum(1) + (c**2 / denom).sum(1))
    log_prior = -0.5 * ((li.ravel() / 2.0) ** 2 + (lo.ravel() / 2.0) ** 2)
    log_w = log_lik + log_prior
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean_x = vi[:, None] * ((c / denom) @ b.T)  # (G, n): E[x | scales, y]
    var_x = vi[:, None] * np.diag(k) - vi[:, None] ** 2 * ((1.0 / denom) @ (b**2).T)
    moments = {}
    for site, v in (("innovation_scale", np.sqrt(vi)), ("observation_scale", np.sqrt(vo))):
        m1 = w @ v
        moments[site] = (m1, np.sqrt(w @ v**2 - m1**2))
    ex = w @ mean_x
    sd_x = np.sqrt(w @ (var_x + mean_x**2) - ex**2)
    names = ["innovation_scale", "observation_scale"] + [f"x[{i + 1}]" for i in range(n)]
    mean = np.array([moments["innovation_scale"][0], moments["observation_scale"][0], *ex])
    sd = np.array([moments["innovation_scale"][1], moments["observation_scale"][1], *sd_x])
    # draws: lattice points by weight, then x from its conditional Gaussian
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(w), size=num_draws, p=w)
    draws = np.empty((num_draws, len(names)))
    for row, g in enumerate(picks):
        s_inv = (u / denom[g]) @ u.T
        kx = vi[g] * k[:, index]
        cov = vi[g] * k - kx @ s_inv @ kx.T
        x = rng.multivariate_normal(mean_x[g], cov, method="eigh")
        draws[row] = [np.sqrt(vi[g]), np.sqrt(vo[g]), *x]
    edge = max(w.reshape(grid, grid)[[0, -1]].max(), w.reshape(grid, grid)[:, [0, -1]].max())
    return {
        "names": np.array(names),
        "mean": mean,
        "sd": sd,
        "draws": draws.astype(np.float32),
        "method": np.array("quadrature over the two log-scales, Gaussian conditionals for x"),
        "grid": np.array(grid),
        "max_edge_weight": np.array(edge),  # mass at the lattice's border: should be ~0
        "seed": np.array(seed),
    }


def make_reference(name: str, seed: int = 0, nuts: bool = False) -> dict[str, np.ndarray]:
    """Compute the reference of target ``name`` and write its ``.npz``; return the arrays."""
    if name == "brownian_bridge" and not nuts:
        out = bridge_quadrature(seed=seed)
        gt.REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(gt.reference_file(name), **out)
        print(f"{name}: quadrature, border weight {float(out['max_edge_weight']):.1e}"
              f" -> {gt.reference_file(name)}", flush=True)
        return out
    ref = REFERENCE_MODELS[name]
    args, kwargs = ref.make_args()
    mcmc = MCMC(
        NUTS(ref.model, target_accept_prob=ref.target_accept_prob),
        num_warmup=ref.num_warmup,
        num_samples=ref.num_samples,
        num_chains=ref.num_chains,
        chain_method="sequential",  # no batched LAPACK, no idle chains waiting on long trees
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed), *args, **kwargs)
    wall = time.perf_counter() - start
    samples = mcmc.get_samples(group_by_chain=True)
    draws = _stan_names(scalar_draws({site: np.asarray(samples[site]) for site in ref.sites}))
    names = list(draws)
    stacked = np.stack([draws[k] for k in names], axis=-1)  # (chains, draws, params)
    flat = stacked.reshape(-1, stacked.shape[-1])
    ess = np.array([float(az.ess(draws[k], method="bulk")) for k in names])
    rhat = np.array([float(az.rhat(draws[k])) for k in names])
    keep = max(1, min(len(flat), MAX_STORED_FLOATS // len(names)))
    thin = int(np.ceil(len(flat) / keep))
    # interleave chains before thinning so every chain contributes
    interleaved = np.swapaxes(stacked, 0, 1).reshape(-1, stacked.shape[-1])
    out = {
        "names": np.array(names),
        "mean": flat.mean(axis=0),
        "sd": flat.std(axis=0, ddof=1),
        "draws": interleaved[::thin].astype(np.float32),
        "draws_thin": np.array(thin),
        "ess_bulk": ess,
        "rhat": rhat,
        "num_chains": np.array(ref.num_chains),
        "num_warmup": np.array(ref.num_warmup),
        "num_samples": np.array(ref.num_samples),
        "seed": np.array(seed),
        "divergences": np.array(int(np.sum(mcmc.get_extra_fields()["diverging"]))),
    }
    gt.REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    # the bridge's NUTS run is a cross-check: it never replaces the quadrature
    path = gt.REFERENCE_DIR / f"{name}_nuts.npz" if name == "brownian_bridge" else gt.reference_file(name)
    np.savez_compressed(path, **out)
    print(
        f"{name}: {len(names)} parameters, {flat.shape[0]} draws in {wall:.0f} s;"
        f" min bulk ESS {ess.min():.0f} ({names[int(ess.argmin())]}), max R-hat {rhat.max():.4f},"
        f" divergences {int(out['divergences'])} -> {path}",
        flush=True,
    )
    return out


def _stan_names(draws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``"x[0]"`` (``scalar_draws``'s 0-based names) -> ``"x[1]"`` (Stan's 1-based)."""
    out = {}
    for key, value in draws.items():
        site, _, index = key.partition("[")
        out[f"{site}[{int(index[:-1]) + 1}]" if index else site] = value
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.make_references", description=__doc__)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(REFERENCE_MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nuts", action="store_true", help="NUTS for the bridge too (a cross-check)")
    args = parser.parse_args(argv)
    unknown = [t for t in args.targets if t not in REFERENCE_MODELS]
    if unknown:
        parser.error(f"unknown TARGET {unknown}; choose from {', '.join(REFERENCE_MODELS)}")
    for name in args.targets or REFERENCE_MODELS:
        make_reference(name, args.seed, args.nuts)


if __name__ == "__main__":
    main()
