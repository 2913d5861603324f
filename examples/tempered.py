"""A tempered posterior ``p(theta) p(y | theta)**w``, swept over ``w`` with ``numpyro.handlers.scale``.

Only ``theta_1 theta_2`` is identified by the data, so at ``w = 1`` the
posterior lies on the two branches of a hyperbola, with equal mass; at small
``w`` it is close to the prior.  One comparison per ``w``;
``sweep.png`` shows the marginal of ``theta[0]`` at each ``w`` for both
samplers and the grid-exact reference.

    python examples/tempered.py [--num-samples N] [--out DIR]
"""

import numpy as np
from _common import main_for, new_figure, posterior


def sweep(comparisons):
    fig = new_figure(figsize=(3.4 * len(comparisons), 2.8))
    axes = fig.subplots(1, len(comparisons), squeeze=False)[0]
    for ax, comparison in zip(axes, comparisons):
        ref = comparison.reference_draws["theta"][:, 0]
        bins = np.linspace(*np.percentile(ref, [0.2, 99.8]), 50)
        for i, name in enumerate(comparison.runs):
            theta0 = posterior(comparison, name)["theta"][..., 0].ravel()
            ax.hist(theta0, bins=bins, density=True, histtype="step", color=f"C{i}", label=name)
        ax.hist(
            ref, bins=bins, density=True, histtype="step", ls="--", color="k", label="reference"
        )
        ax.set_title(comparison.title, fontsize=10)
        ax.set_xlabel("theta[0]")
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    return [("sweep", fig)]


if __name__ == "__main__":
    main_for("tempered", sweep)
