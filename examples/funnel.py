"""Neal's funnel, centred parameterisation: ``v ~ N(0, 3)``, ``x_i ~ N(0, exp(v / 2))``.

No single step size fits both the neck (negative ``v``) and the mouth.  Besides
the comparison's figures, ``funnel-divergences.png`` plots ``v`` against
``x[0]`` with the divergent transitions of each sampler marked: they gather in
the neck, the region a sampler fails to explore.

    python examples/funnel.py [--num-samples N] [--out DIR]
"""

from _common import main_for, new_figure, posterior


def divergences(comparisons):
    (comparison,) = comparisons
    samplers = list(comparison.runs)
    fig = new_figure(figsize=(3.8 * len(samplers), 3.6))
    axes = fig.subplots(1, len(samplers), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, samplers):
        draws = posterior(comparison, name)
        diverging = comparison.runs[name].idata.sample_stats["diverging"].values.ravel()
        v, x0 = draws["v"].ravel(), draws["x"][..., 0].ravel()
        ax.scatter(x0, v, s=2, alpha=0.3, color="0.5", rasterized=True)
        ax.scatter(x0[diverging], v[diverging], s=6, color="C3", label="divergent")
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_title(f"{name}: {int(diverging.sum())} divergent", fontsize=10)
        ax.set_xlabel("x[0] (symlog)")
    axes[0].set_ylabel("v")
    axes[0].legend(fontsize=8, loc="lower right")
    return [("funnel-divergences", fig)]


if __name__ == "__main__":
    main_for("funnel", divergences)
