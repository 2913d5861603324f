"""A Bayesian Gaussian mixture with label switching: three components, 120 points.

The priors are exchangeable, so the posterior has 3! = 6 labellings of equal
mass.  ``label-switching.png`` plots the component means of the first chains
of each sampler along the draws: a chain that switches labels shows the lines
swapping; the modes table counts the labellings each sampler visited.

    python examples/gaussian_mixture.py [--num-samples N] [--out DIR]
"""

from _common import main_for, new_figure, posterior


def label_switching(comparisons, n_chains=4):
    (comparison,) = comparisons
    samplers = list(comparison.runs)
    shown = min(n_chains, comparison.settings["num_chains"])
    fig = new_figure(figsize=(2.8 * shown, 2.2 * len(samplers)))
    axes = fig.subplots(len(samplers), shown, sharey=True, squeeze=False)
    for row, name in enumerate(samplers):
        mu = posterior(comparison, name)["mu"]
        for chain in range(shown):
            ax = axes[row, chain]
            for k in range(mu.shape[-1]):
                ax.plot(mu[chain, :, k], lw=0.6, color=f"C{k}", label=f"mu[{k}]")
            ax.set_title(f"{name}, chain {chain}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    return [("label-switching", fig)]


if __name__ == "__main__":
    main_for("gaussian_mixture", label_switching)
