"""Generate docs/figures/path.png: DilationLangevin's particles along the dilation path.

Not part of the package; run once from the repository root and commit the PNG:

    python docs/figures/make_path_figure.py

256 vectorised chains anneal on the 2-D mixture of four unit Gaussians with
weights 0.1, 0.2, 0.3, 0.4 and means (9, 0), (1, 8), (-7, 0), (1, -8), centre at
the origin, default ``eps``, ``alpha``, ``t_min`` and geometric schedule.  The
warmup is collected with the level ``t`` of every iteration; the panels show the
particles at the iterations whose level is closest to t = 0.03, 0.1, 0.3 and 1
(end of the annealing), over the contours of the level-t density
``p_t(x) = t^(-d/2) p(c + (x - c) / sqrt(t))``, and at the end of the warmup.
Each panel's axes span 16 sqrt(t) either side of the centre: the level-t
distribution is the target shrunk by sqrt(t), so its contours look the same in
every panel while the particles spread out.
The fraction of particles nearest each (shrunk) mean is printed in each panel's title.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import logsumexp  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402

from numpyro_dilation import DilationLangevin  # noqa: E402

WEIGHTS = np.array([0.1, 0.2, 0.3, 0.4])
MEANS = np.array([[9.0, 0.0], [1.0, 8.0], [-7.0, 0.0], [1.0, -8.0]])
NUM_CHAINS = 256
NUM_ANNEAL = 500
NUM_WARMUP = 1000
LEVELS = (0.03, 0.1, 0.3, 1.0)
OUT = Path(__file__).resolve().parent / "path.png"


def log_density(x):
    """Log density of the mixture (normalised), for x of shape (..., 2)."""
    sq = jnp.sum((x[..., None, :] - MEANS) ** 2, axis=-1)
    return logsumexp(jnp.log(WEIGHTS) - 0.5 * sq - jnp.log(2 * jnp.pi), axis=-1)


def potential(x):
    return -log_density(x)


def fractions(x, level):
    """Fraction of particles nearest each mean of the level-t distribution, sqrt(t) * mean."""
    nearest = np.argmin(((x[:, None, :] - np.sqrt(level) * MEANS) ** 2).sum(-1), axis=1)
    return np.bincount(nearest, minlength=len(WEIGHTS)) / len(x)


def main() -> None:
    kernel = DilationLangevin(potential_fn=potential, num_anneal_steps=NUM_ANNEAL)
    mcmc = MCMC(
        kernel,
        num_warmup=NUM_WARMUP,
        num_samples=1,
        num_chains=NUM_CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.warmup(
        jax.random.PRNGKey(0),
        init_params=jnp.zeros((NUM_CHAINS, 2)),
        collect_warmup=True,
        extra_fields=("t",),
    )
    z = np.asarray(mcmc.get_samples(group_by_chain=True))  # (chains, iterations, 2)
    t = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["t"])[0]  # same for all chains
    picks = [int(np.argmin(np.abs(np.log(t[: NUM_ANNEAL]) - np.log(level)))) for level in LEVELS]
    picks.append(NUM_WARMUP - 1)

    fig, axes = plt.subplots(1, len(picks), figsize=(3.0 * len(picks), 3.4), layout="constrained")
    for ax, i in zip(axes, picks, strict=True):
        level = float(t[i])
        # Level t is the target shrunk by sqrt(t) towards the centre (the origin):
        # each panel is zoomed by the same factor, so the contours keep their shape.
        lim = 16.0 * np.sqrt(level)
        grid = np.linspace(-lim, lim, 300)
        gx, gy = np.meshgrid(grid, grid)
        points = np.stack([gx, gy], axis=-1)
        # log p_t(x) = -(d/2) log t + log p(c + (x - c) / sqrt(t)), with d = 2, c = 0
        logp = np.asarray(log_density(points / np.sqrt(level))) - np.log(level)
        levels = np.max(logp) - np.array([8.0, 5.0, 3.0, 1.5, 0.5])
        ax.contour(gx, gy, logp, levels=levels, colors="0.6", linewidths=0.7)
        ax.scatter(z[:, i, 0], z[:, i, 1], s=5, alpha=0.6, color="C0", rasterized=True)
        ax.plot(*(np.sqrt(level) * MEANS.T), "x", color="C3", ms=6)
        frac = fractions(z[:, i], level)
        what = "end of warmup" if i == NUM_WARMUP - 1 else f"t = {level:.2g}"
        ax.set_title(
            f"{what} (iteration {i + 1})\nfractions {' '.join(f'{f:.2f}' for f in frac)}",
            fontsize=8.5,
        )
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        print(what, i, level, frac)
    fig.suptitle(
        f"{NUM_CHAINS} chains from the origin along the dilation path; weights"
        f" {' '.join(f'{w:g}' for w in WEIGHTS)} (means x: (9,0) (1,8) (-7,0) (1,-8))",
        fontsize=10,
    )
    fig.savefig(OUT, dpi=90)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
