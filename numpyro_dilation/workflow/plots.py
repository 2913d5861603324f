"""Figures of a :class:`~numpyro_dilation.Comparison`, written as PNG files.

Each figure is drawn on a :class:`matplotlib.figure.Figure` (no pyplot state,
any backend) with plain matplotlib, so that the same code serves ArviZ 0.x and
1.x, whose plotting interfaces differ.  Marginals are histograms rather than
kernel density estimates, which neither smooth over separated modes nor
invent mass beyond a boundary.  The rank plots follow Vehtari et al. (2021), as
``arviz.plot_rank`` does: draws of all chains are ranked together and each
chain's ranks are histogrammed; a chain that explores the same distribution as
the others gives a flat histogram.

matplotlib is an optional dependency: ``pip install "numpyro-dilation[examples]"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
from numpyro.distributions import constraints
from numpyro.infer.util import log_density

from numpyro_dilation.path import to_rescaled
from numpyro_dilation.workflow.inference_data import posterior_arrays
from numpyro_dilation.workflow.results import ComparisonData, model_sites

#: Most parameters shown in the marginal figure, and in the pair and rank figures.
MAX_MARGINALS = 12
MAX_PAIR = 4
#: Most chains shown in a rank plot (ranks still pool all chains).
MAX_RANK_CHAINS = 8
#: Most draws per sampler in a scatter plot.
MAX_SCATTER = 2000
DPI = 90


def require_matplotlib():
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "The figures need matplotlib, an optional dependency: "
            'pip install "numpyro-dilation[examples]" (or pip install matplotlib).'
        ) from err
    return Figure


def flat_draws(posterior: Mapping[str, np.ndarray], var_names, lead: int = 2) -> dict:
    """Scalar components of ``var_names``, labelled like ArviZ (``theta[0]``).

    ``posterior`` maps variables to arrays whose first ``lead`` axes index the
    draws; returns label -> array of those axes.
    """
    out = {}
    for var in var_names:
        if var not in posterior:
            continue
        value = np.asarray(posterior[var])
        event = value.shape[lead:]
        if not event:
            out[var] = value
            continue
        for index in np.ndindex(*event):
            out[f"{var}[{','.join(map(str, index))}]"] = value[(Ellipsis, *index)]
    return out


def _color(i: int) -> str:
    return f"C{i % 10}"


def _range(arrays, lo=0.5, hi=99.5, margin=0.05):
    pooled = np.concatenate([np.ravel(a) for a in arrays])
    pooled = pooled[np.isfinite(pooled)]
    a, b = np.percentile(pooled, [lo, hi])
    if a == b:
        a, b = a - 0.5, b + 0.5
    pad = margin * (b - a)
    return a - pad, b + pad


def _subsample(x: np.ndarray, n: int, rng) -> np.ndarray:
    x = np.ravel(x)
    return x if x.size <= n else x[rng.choice(x.size, n, replace=False)]


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


# ---------------------------------------------------------------- figures


def plot_marginals(flat: Mapping[str, Mapping[str, np.ndarray]], reference=None, title=""):
    """Overlaid marginal histograms: ``flat`` maps sampler -> label -> draws."""
    Figure = require_matplotlib()
    labels = list(next(iter(flat.values())))[:MAX_MARGINALS]
    ncols = min(4, len(labels))
    nrows = -(-len(labels) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.4 * nrows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, label in zip(axes, labels, strict=False):
        series = [draws[label] for draws in flat.values()]
        if reference is not None and label in reference:
            series.append(reference[label])
        bins = np.linspace(*_range(series), 61)
        for i, (name, draws) in enumerate(flat.items()):
            ax.hist(
                np.ravel(draws[label]),
                bins=bins,
                density=True,
                histtype="step",
                lw=1.4,
                color=_color(i),
                label=name,
            )
        if reference is not None and label in reference:
            ax.hist(
                np.ravel(reference[label]),
                bins=bins,
                density=True,
                histtype="step",
                lw=1.2,
                ls="--",
                color="k",
                label="reference",
            )
        ax.set_title(label, fontsize=10)
        ax.set_yticks([])
    for ax in axes[len(labels) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper right", ncols=len(names), fontsize=9)
    fig.suptitle(f"{title}: marginals" if title else "Marginals", x=0.01, ha="left", fontsize=11)
    return fig


def plot_pair(flat, title=""):
    """Pair plot of the first parameters, draws coloured by sampler."""
    Figure = require_matplotlib()
    labels = list(next(iter(flat.values())))[:MAX_PAIR]
    n = len(labels)
    fig = Figure(figsize=(2.4 * n + 0.6, 2.4 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, n, squeeze=False)
    rng = np.random.default_rng(0)
    limits = {lab: _range([d[lab] for d in flat.values()]) for lab in labels}
    for row in range(n):
        for col in range(n):
            ax = axes[row, col]
            if col > row:
                ax.set_visible(False)
                continue
            for i, (name, draws) in enumerate(flat.items()):
                if row == col:
                    bins = np.linspace(*limits[labels[row]], 41)
                    ax.hist(
                        np.ravel(draws[labels[row]]),
                        bins=bins,
                        density=True,
                        histtype="step",
                        color=_color(i),
                        label=name,
                    )
                    ax.set_yticks([])
                else:
                    size = draws[labels[col]].size
                    keep = rng.choice(size, min(size, MAX_SCATTER), replace=False)
                    ax.scatter(
                        np.ravel(draws[labels[col]])[keep],
                        np.ravel(draws[labels[row]])[keep],
                        s=3,
                        alpha=0.35,
                        color=_color(i),
                        label=name,
                        rasterized=True,
                    )
                    ax.set_ylim(*limits[labels[row]])
            ax.set_xlim(*limits[labels[col]])
            if row == n - 1:
                ax.set_xlabel(labels[col])
            if col == 0 and row > 0:
                ax.set_ylabel(labels[row])
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside upper right", fontsize=9)
    fig.suptitle(f"{title}: pair plot" if title else "Pair plot", x=0.01, ha="left", fontsize=11)
    return fig


def plot_rank(flat, title=""):
    """Rank plots: one column per sampler, one row per parameter (first chains shown)."""
    Figure = require_matplotlib()
    labels = list(next(iter(flat.values())))[:MAX_PAIR]
    samplers = list(flat)
    fig = Figure(figsize=(3.6 * len(samplers), 1.9 * len(labels) + 0.6), layout="constrained")
    axes = fig.subplots(len(labels), len(samplers), squeeze=False)
    for col, name in enumerate(samplers):
        for row, label in enumerate(labels):
            ax = axes[row, col]
            draws = np.asarray(flat[name][label])  # (chain, draw)
            n_chains, n_draws = draws.shape
            ranks = np.argsort(np.argsort(draws.ravel(), kind="stable"), kind="stable")
            ranks = ranks.reshape(n_chains, n_draws)
            shown = min(n_chains, MAX_RANK_CHAINS)
            bins = np.linspace(0, draws.size, min(20, max(n_draws // 5, 2)) + 1)
            uniform = n_draws / (len(bins) - 1)
            heights = np.array(
                [np.histogram(ranks[c], bins=bins)[0] / uniform for c in range(shown)]
            )
            scale = 0.9 / max(float(heights.max()), 2.0)  # rows never overlap
            for c in range(shown):
                ax.bar(
                    bins[:-1],
                    scale * heights[c],
                    width=np.diff(bins),
                    bottom=c,
                    align="edge",
                    color=_color(c),
                    alpha=0.8,
                )
                ax.axhline(c + scale, color="k", lw=0.6, ls="--")
            ax.set_yticks([])
            ax.set_xticks([])
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                more = f" (first {shown} of {n_chains} chains)" if shown < n_chains else ""
                ax.set_title(f"{name}{more}", fontsize=9)
    fig.suptitle(
        (f"{title}: " if title else "") + "rank plots (dashed: uniform; flat bars = chains agree)",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def plot_modes(modes, title=""):
    """Bar chart of the fraction of draws in each mode, per sampler and reference."""
    Figure = require_matplotlib()
    cols = [c for c in modes.columns if c.startswith("p[")]
    rows = list(modes.index)
    fig = Figure(figsize=(max(4.0, 0.9 * len(cols) * len(rows) / 2 + 2), 3.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(rows)
    x = np.arange(len(cols))
    for i, row in enumerate(rows):
        color = "k" if row == "reference" else _color(i)
        ax.bar(
            x + i * width,
            modes.loc[row, cols].astype(float),
            width=width,
            color=color,
            alpha=0.5 if row == "reference" else 0.85,
            label=row,
        )
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels([c[2:-1] for c in cols], rotation=30 if len(cols) > 4 else 0, fontsize=8)
    ax.set_ylabel("fraction of draws")
    ax.legend(fontsize=8)
    ax.set_title(f"{title}: modes" if title else "Modes", loc="left", fontsize=11)
    return fig


def plot_forest(comparison: ComparisonData, var_names=None, title=""):
    """Mean and 94% HDI of each parameter, samplers side by side (reference: mean +- sd)."""
    Figure = require_matplotlib()
    table = comparison.parameters
    params = list(dict.fromkeys(table.index.get_level_values("parameter")))
    if var_names is not None:
        params = [p for p in params if p.split("[")[0] in var_names]
    samplers = list(comparison.runs)
    ref = {}
    if comparison.reference_moments:
        ref = flat_draws(
            {k: np.stack(v) for k, v in comparison.reference_moments.items()},
            list(comparison.reference_moments),
            lead=1,
        )
    fig = Figure(
        figsize=(6.0, max(3.0, 0.16 * len(params) * (len(samplers) + bool(ref)) + 1.2)),
        layout="constrained",
    )
    ax = fig.subplots()
    step = 1.0 / (len(samplers) + 1 + bool(ref))
    for i, name in enumerate(samplers):
        rows = table.xs(name, level="sampler").loc[params]
        y = np.arange(len(params)) + i * step
        ax.errorbar(
            rows["mean"],
            y,
            xerr=[rows["mean"] - rows["hdi_3%"], rows["hdi_97%"] - rows["mean"]],
            fmt="o",
            ms=3,
            lw=1.2,
            color=_color(i),
            label=f"{name} (94% HDI)",
        )
    if ref:
        y = np.arange(len(params)) + len(samplers) * step
        present = [j for j, p in enumerate(params) if p in ref]
        means = [ref[params[j]][0] for j in present]
        sds = [ref[params[j]][1] for j in present]
        ax.errorbar(
            means,
            y[present],
            xerr=sds,
            fmt="s",
            ms=3,
            lw=1.0,
            color="k",
            label="reference (mean +- sd)",
        )
    ax.set_yticks(np.arange(len(params)) + 0.5 * step * (len(samplers) - 1 + bool(ref)))
    ax.set_yticklabels(params, fontsize=8)
    ax.invert_yaxis()
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    ax.set_title(f"{title}: forest plot" if title else "Forest plot", loc="left", fontsize=11)
    return fig


GRID = 100


def log_density_on_grid(comparison: ComparisonData):
    """A function ``(limits, level, center) -> (xs, ys, log density)`` for a 2-D target.

    It evaluates the model's log joint density (in constrained coordinates) on a
    ``GRID x GRID`` grid over ``limits``; for a level ``t < 1`` of the dilation
    path it evaluates ``log p`` at the rescaled point
    (:func:`numpyro_dilation.path.to_rescaled`), the level's density up to a
    constant (valid when the latent space is unconstrained, which the callers
    check).  One compilation serves every call.
    """
    shapes = _latent_shapes(comparison)

    def logp(point):
        params, k = {}, 0
        for name, shape in shapes.items():
            size = int(np.prod(shape))
            params[name] = point[k : k + size].reshape(shape)
            k += size
        return log_density(
            comparison.model, comparison.model_args, comparison.model_kwargs, params
        )[0]

    @jax.jit
    def on_points(points, level, center):
        return jax.vmap(logp)(to_rescaled(points, level, center))

    def evaluate(limits, level=1.0, center=(0.0, 0.0)):
        xs = np.linspace(*limits[0], GRID)
        ys = np.linspace(*limits[1], GRID)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        points = np.stack([gx.ravel(), gy.ravel()], axis=1)
        values = np.asarray(on_points(points, float(level), np.asarray(center, float)))
        values = np.where(np.isfinite(values), values, np.nan)
        return xs, ys, values.reshape(gx.shape)

    return evaluate


def _latent_shapes(comparison: ComparisonData) -> dict[str, tuple]:
    latent, _ = model_sites(comparison.model, comparison.model_args, comparison.model_kwargs)
    return {name: site.shape for name, site in latent.items()}


def _two_dimensional(comparison: ComparisonData) -> tuple[list[str], bool] | None:
    """Labels of the two latent coordinates of a 2-D target, and whether both are real."""
    latent, _ = model_sites(comparison.model, comparison.model_args, comparison.model_kwargs)
    shapes = {name: site.shape for name, site in latent.items()}
    if sum(int(np.prod(s)) for s in shapes.values()) != 2:
        return None
    labels = list(flat_draws({k: np.zeros((1, 1, *s)) for k, s in shapes.items()}, list(shapes)))
    real = all(
        site.support in (constraints.real, constraints.real_vector) for site in latent.values()
    )
    return labels, real


def _contour(ax, xs, ys, logp):
    if not np.isfinite(logp).any():
        return
    top = np.nanmax(logp)
    levels = top - np.array([12.5, 8.0, 4.5, 2.0, 0.5])
    ax.contour(xs, ys, logp, levels=levels, colors="0.35", linewidths=0.7)


def plot_density(flat, labels, log_density, title=""):
    """For a 2-D target: the posterior's contours with each sampler's draws.

    ``log_density`` is :func:`log_density_on_grid` of the comparison.
    """
    Figure = require_matplotlib()
    samplers = list(flat)
    limits = [_range([d[lab] for d in flat.values()], 0.1, 99.9, 0.1) for lab in labels]
    xs, ys, logp = log_density(limits)
    fig = Figure(figsize=(3.6 * len(samplers), 3.6), layout="constrained")
    axes = fig.subplots(1, len(samplers), squeeze=False)[0]
    rng = np.random.default_rng(0)
    for i, (ax, name) in enumerate(zip(axes, samplers, strict=True)):
        _contour(ax, xs, ys, logp)
        size = flat[name][labels[0]].size
        keep = rng.choice(size, min(size, MAX_SCATTER), replace=False)
        ax.scatter(
            np.ravel(flat[name][labels[0]])[keep],
            np.ravel(flat[name][labels[1]])[keep],
            s=3,
            alpha=0.4,
            color=_color(i),
            rasterized=True,
        )
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_xlabel(labels[0])
        ax.set_title(name, fontsize=10)
    axes[0].set_ylabel(labels[1])
    fig.suptitle(
        f"{title}: target density and draws" if title else "Target density and draws",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def plot_annealing(comparison: ComparisonData, flat_posterior, labels, log_density=None, title=""):
    """DilationLangevin's particles at several levels ``t`` of the dilation path.

    With ``log_density`` (:func:`log_density_on_grid`, for a 2-D target with an
    unconstrained latent space) each panel also shows the level's contours.
    """
    Figure = require_matplotlib()
    annealing = comparison.annealing
    snapshots = flat_draws(annealing.samples, comparison.var_names, lead=2)
    labels = [lab for lab in labels if lab in snapshots][:2]
    if len(labels) < 2:
        labels = list(snapshots)[:2]
    if len(labels) < 2:
        return None
    two_d = _two_dimensional(comparison)
    contours = log_density is not None and two_d is not None and two_d[1] and two_d[0] == labels
    pooled = [flat_posterior[lab] for lab in labels]
    limits = [_range([pooled[j], snapshots[labels[j]]], 0.1, 99.9, 0.1) for j in range(2)]
    k = len(annealing.levels)
    fig = Figure(figsize=(2.9 * k, 3.1), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    for j, ax in enumerate(axes):
        t = float(annealing.levels[j])
        if contours:
            xs, ys, logp = log_density(limits, level=t, center=annealing.center)
            _contour(ax, xs, ys, logp)
        ax.scatter(
            snapshots[labels[0]][j],
            snapshots[labels[1]][j],
            s=4,
            alpha=0.6,
            color="C0",
            rasterized=True,
        )
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        last = j == k - 1 and t >= 1.0
        what = "end of warmup" if last else f"t = {t:.3g}"
        ax.set_title(f"{what}\n(iteration {int(annealing.iterations[j])})", fontsize=9)
        ax.set_xlabel(labels[0])
    axes[0].set_ylabel(labels[1])
    n = snapshots[labels[0]].shape[1]
    fig.suptitle(
        f"{title}: annealing along the dilation path ({n} chains"
        f"{', contours of the level-t density' if contours else ''})",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    return fig


def plot_comparison(comparison: ComparisonData, out_dir, prefix: str = "") -> dict[str, Path]:
    """Write every figure of ``comparison`` into ``out_dir``; return name -> path."""
    require_matplotlib()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = comparison.title
    posteriors = {name: posterior_arrays(run.idata) for name, run in comparison.runs.items()}
    flat = {name: flat_draws(p, comparison.var_names) for name, p in posteriors.items()}
    reference = None
    if comparison.reference_draws:
        reference = flat_draws(comparison.reference_draws, comparison.var_names, lead=1)
    written = {}

    def save(name, fig):
        if fig is not None:
            written[name] = _save(fig, out_dir / f"{prefix}{name}.png")

    save("marginals", plot_marginals(flat, reference, title))
    if len(next(iter(flat.values()))) >= 2:
        save("pair", plot_pair(flat, title))
    save("rank", plot_rank(flat, title))
    two_d = _two_dimensional(comparison)
    log_density = log_density_on_grid(comparison) if two_d is not None else None
    if two_d is not None:
        all_vars = {name: flat_draws(p, list(p)) for name, p in posteriors.items()}
        if all(set(two_d[0]) <= set(d) for d in all_vars.values()):
            save("density", plot_density(all_vars, two_d[0], log_density, title))
    if comparison.modes is not None:
        save("modes", plot_modes(comparison.modes, title))
    if comparison.annealing is not None:
        first = next(iter(flat.values()))
        pooled = {lab: np.concatenate([np.ravel(f[lab]) for f in flat.values()]) for lab in first}
        save("annealing", plot_annealing(comparison, pooled, list(first), log_density, title))
    return written


__all__ = [
    "flat_draws",
    "log_density_on_grid",
    "plot_annealing",
    "plot_comparison",
    "plot_density",
    "plot_forest",
    "plot_marginals",
    "plot_modes",
    "plot_pair",
    "plot_rank",
    "require_matplotlib",
]
