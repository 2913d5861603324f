"""How far apart do sequential and vectorised chains of the same seed drift?

``chain_method="sequential"`` and ``"vectorized"`` start every chain from the
same key and the same state, but ``vmap`` rounds differently from a loop, so
the draws are not bitwise identical; an accept/reject decision that flips on a
rounding difference then sends the two chains down different (equally valid)
paths.  For each seed and chain this script records

* ``first_difference``: the first iteration (counting warmup, 0-based) whose
  draw differs at all between the two methods;
* ``max_rounding_difference``: the largest difference before the chains
  separate, in posterior standard deviations;
* ``separation``: the first iteration where they differ by more than 1% of a
  posterior standard deviation (``None`` if they never do within the run);

and, per site, the difference of the two posterior means over the sampling
phase in units of its Monte Carlo standard error (ESS-based).  NumPyro's NUTS
is measured the same way for reference.  Run with::

    python -m benchmarks.reproducibility --out benchmarks/results/reproducibility.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from numpyro_dilation import DilationLangevin

Y = np.random.default_rng(0).normal(3.0, 2.0, size=20).astype(np.float32)
SEPARATION = 0.01  # in posterior standard deviations


def normal_model(y):
    """Normal with unknown mean and scale (the model of tests/test_reproducibility.py)."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def chains(kernel, method: str, seed: int, num_warmup: int, num_samples: int, num_chains: int):
    """Unconstrained-space draws of warmup and sampling, ``{site: (chains, iterations)}``."""
    mcmc = MCMC(
        kernel(normal_model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=method,
        progress_bar=False,
    )
    mcmc.warmup(jax.random.PRNGKey(seed), jnp.asarray(Y), collect_warmup=True)
    warm = mcmc.get_samples(group_by_chain=True)
    mcmc.run(mcmc.post_warmup_state.rng_key, jnp.asarray(Y))
    draws = mcmc.get_samples(group_by_chain=True)
    return {k: np.concatenate([np.asarray(warm[k]), np.asarray(draws[k])], axis=1) for k in draws}


def compare(seq: dict, vec: dict, num_warmup: int) -> dict[str, Any]:
    """Per-chain drift and per-site mean differences of two runs of the same seed."""
    sd = {k: float(np.std(seq[k][:, num_warmup:])) for k in seq}
    diff = np.max([np.abs(seq[k] - vec[k]) / sd[k] for k in seq], axis=0)  # (chains, iterations)
    per_chain = []
    for c in range(diff.shape[0]):
        differs = np.flatnonzero(diff[c] > 0)
        apart = np.flatnonzero(diff[c] > SEPARATION)
        separation = int(apart[0]) if apart.size else None
        before = diff[c, : separation if separation is not None else diff.shape[1]]
        per_chain.append(
            {
                "first_difference": int(differs[0]) if differs.size else None,
                "separation": separation,
                "max_rounding_difference": float(before.max()),
            }
        )
    means = {}
    for k in seq:
        a, b = seq[k][:, num_warmup:].astype(float), vec[k][:, num_warmup:].astype(float)
        se = np.sqrt(a.var() / az.ess(a) + b.var() / az.ess(b))
        means[k] = {
            "sequential": float(a.mean()),
            "vectorized": float(b.mean()),
            "difference_in_mcse": float((a.mean() - b.mean()) / se),
        }
    return {"chains": per_chain, "means": means}


def summarize(results: list[dict[str, Any]], num_iterations: int) -> dict[str, Any]:
    """Ranges over seeds and chains."""
    chains_ = [c for r in results for c in r["chains"]]
    first = [c["first_difference"] for c in chains_ if c["first_difference"] is not None]
    apart = [c["separation"] for c in chains_ if c["separation"] is not None]
    z = [abs(m["difference_in_mcse"]) for r in results for m in r["means"].values()]
    return {
        "chains": len(chains_),
        "identical_throughout": sum(c["first_difference"] is None for c in chains_),
        "first_difference_range": [min(first), max(first)] if first else None,
        "max_rounding_difference_sd": max(c["max_rounding_difference"] for c in chains_),
        "separated_within_run": len(apart),
        "separation_range": [min(apart), max(apart)] if apart else None,
        "iterations_per_chain": num_iterations,
        "max_abs_mean_difference_in_mcse": max(z),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure both samplers over the seeds and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reproducibility.json"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--num-chains", type=int, default=4)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "config": {
            "model": "normal_model (mu, sigma; 20 observations)",
            "seeds": list(range(args.seeds)),
            "num_warmup": args.num_warmup,
            "num_samples": args.num_samples,
            "num_chains": args.num_chains,
            "separation_threshold_sd": SEPARATION,
            "numpyro": numpyro.__version__,
            "jax": jax.__version__,
        }
    }
    for name, kernel in (("DilationLangevin", DilationLangevin), ("NUTS", NUTS)):
        results = []
        for seed in range(args.seeds):
            runs = {
                m: chains(kernel, m, seed, args.num_warmup, args.num_samples, args.num_chains)
                for m in ("sequential", "vectorized")
            }
            results.append({"seed": seed, **compare(runs["sequential"], runs["vectorized"], args.num_warmup)})
        report[name] = {
            "summary": summarize(results, args.num_warmup + args.num_samples),
            "per_seed": results,
        }
        print(name, json.dumps(report[name]["summary"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
