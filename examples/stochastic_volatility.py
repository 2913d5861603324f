"""Stochastic volatility of 80 simulated daily returns (AR(1) log-variance, non-centred).

``volatility.png`` shows each sampler's posterior median and 90% band of the
volatility ``exp(h_t / 2)`` over the absolute returns.

    python examples/stochastic_volatility.py [--num-samples N] [--out DIR]
"""

import numpy as np
from _common import main_for, new_figure, posterior


def volatility(comparisons):
    (comparison,) = comparisons
    returns = np.asarray(comparison.model_args[0])
    fig = new_figure(figsize=(7.5, 3.2))
    ax = fig.subplots()
    ax.plot(np.abs(returns), color="0.6", lw=0.8, label="|return|")
    for i, name in enumerate(comparison.runs):
        h = posterior(comparison, name)["h"].reshape(-1, returns.size)
        vol = np.exp(h / 2)
        lo, mid, hi = np.percentile(vol, [5, 50, 95], axis=0)
        ax.fill_between(np.arange(returns.size), lo, hi, color=f"C{i}", alpha=0.2)
        ax.plot(mid, color=f"C{i}", lw=1.2, label=f"{name} (median, 90%)")
    ax.set_xlabel("day")
    ax.legend(fontsize=8)
    return [("volatility", fig)]


if __name__ == "__main__":
    main_for("stochastic_volatility", volatility)
