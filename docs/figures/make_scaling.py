"""Time DilationLangevin per iteration against the number of chains (docs/scaling-out.md).

Not part of the package; run from the repository root:

    python docs/figures/make_scaling.py            # writes docs/figures/scaling.md

The kernel is driven directly (``kernel.init``, then a jitted ``lax.fori_loop``
over ``kernel.sample``), as ``numpyro.infer.MCMC`` drives it, so that one
compilation serves every timed call.  The loop is compiled once, then called
``REPEATS`` times on the initial state (warmup iterations: annealing and the
start of the adaptation) and ``REPEATS`` times on a post-warmup state (sampling
iterations); the fastest call, divided by its ``STEPS`` iterations, is
reported.  Targets: a Gaussian with scales from 0.5 to 2 in d dimensions.

1. d = 10 (dense mass matrix, the default up to 100 dimensions) with 1, 16,
   64 and 256 vectorised chains;
2. d = 100 with 16 vectorised chains, dense against diagonal mass matrix.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import random  # noqa: E402

from numpyro_dilation import DilationLangevin  # noqa: E402

NUM_WARMUP = 1000
STEPS = 200
REPEATS = 5
OUT = Path(__file__).resolve().parent / "scaling.md"


def gaussian(d):
    scales = jnp.linspace(0.5, 2.0, d)
    return lambda x: 0.5 * jnp.sum((x / scales) ** 2)


def time_kernel(d, num_chains, dense_mass=None):
    """Fastest seconds per iteration over REPEATS calls, warmup and sampling, and the
    mean gradient evaluations per chain and sampling iteration (HMC's leapfrog steps)."""
    kernel = DilationLangevin(potential_fn=gaussian(d), dense_mass=dense_mass)
    if num_chains == 1:
        keys, init = random.PRNGKey(0), jnp.zeros(d)
    else:
        keys, init = random.split(random.PRNGKey(0), num_chains), jnp.zeros((num_chains, d))
    state = kernel.init(keys, NUM_WARMUP, init, (), {})

    @jax.jit
    def loop(s):
        return jax.lax.fori_loop(0, STEPS, lambda _, s: kernel.sample(s, (), {}), s)

    def fastest(s):
        jax.block_until_ready(loop(s))  # compile (first call only) and warm up
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            jax.block_until_ready(loop(s))
            best = min(best, time.perf_counter() - start)
        return best / STEPS

    warmup = fastest(state)
    post = state
    for _ in range(NUM_WARMUP // STEPS):
        post = loop(post)  # run the whole warmup: post is a sampling-phase state
    grads = float(jnp.mean(loop(post).num_grad_evals - post.num_grad_evals)) / STEPS
    return warmup, fastest(post), grads


def us(seconds):
    return f"{1e6 * seconds:.0f}"


def main():
    machine = (
        f"{platform.machine()} CPU, {os.cpu_count()} cores (load average"
        f" {os.getloadavg()[0]:.1f} at the start), no GPU;"
        f" Python {platform.python_version()}, jax {jax.__version__}, float32"
    )
    lines = [
        f"Machine: {machine}.  Fastest of {REPEATS} calls of {STEPS} iterations each,"
        " compilation excluded.  Warmup: the first iterations of a"
        f" {NUM_WARMUP}-iteration warmup (annealing); sampling: after the warmup.",
        "",
        "**Vectorised chains, d = 10 Gaussian (dense mass matrix)**",
        "",
        "| chains | warmup µs / iteration | sampling µs / iteration"
        " | sampling µs / (chain · iteration) | gradients / sampling iteration"
        " | sampling µs / (chain · gradient) |",
        "|---|---|---|---|---|---|",
    ]
    for n in (1, 16, 64, 256):
        w, s, g = time_kernel(10, n)
        lines.append(
            f"| {n} | {us(w)} | {us(s)} | {1e6 * s / n:.1f} | {g:.1f} | {1e6 * s / n / g:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "**Mass matrix, d = 100 Gaussian, 16 vectorised chains**",
        "",
        "| mass matrix | warmup µs / iteration | sampling µs / iteration"
        " | gradients / sampling iteration | sampling µs / gradient |",
        "|---|---|---|---|---|",
    ]
    for label, dense in (("dense", True), ("diagonal", False)):
        w, s, g = time_kernel(100, 16, dense_mass=dense)
        lines.append(f"| {label} | {us(w)} | {us(s)} | {g:.1f} | {us(s / g)} |")
        print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
