"""Shared command line of the example scripts: run the comparison, print it, write figures.

Every script accepts ``--num-chains``, ``--num-warmup``, ``--num-samples``,
``--seed`` and ``--out`` (the figures' folder, default ``./NAME-figures``), so
that it can also run with tiny settings.  The models and data live in
:mod:`numpyro_dilation.workflow.examples`; ``numpyro-dilation compare NAME`` runs the same
comparison and writes a full report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from numpyro_dilation.workflow.comparison import compare_example
from numpyro_dilation.workflow.examples import MissingDependencyError, get_example
from numpyro_dilation.workflow.plots import require_matplotlib
from numpyro_dilation.workflow.report import slug


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def main_for(name, extra_figures=None, argv=None):
    """Run example ``name``: tables on stdout, figures (generic and ``extra_figures``) in --out."""
    example = get_example(name)
    parser = argparse.ArgumentParser(
        prog=f"python examples/{name}.py",
        description=f"{example.title}. {example.description}",
    )
    parser.add_argument("--num-chains", type=_positive_int, help=f"default {example.num_chains}")
    parser.add_argument("--num-warmup", type=_positive_int, help=f"default {example.num_warmup}")
    parser.add_argument("--num-samples", type=_positive_int, help=f"default {example.num_samples}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"{name}-figures", help="folder for the figures")
    args = parser.parse_args(argv)
    try:
        example.check_available()
    except MissingDependencyError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")

    comparisons = compare_example(
        example,
        num_chains=args.num_chains,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for comparison in comparisons:
        print(comparison.to_markdown())
        prefix = f"{slug(comparison.title)}-" if len(comparisons) > 1 else ""
        written += list(comparison.plot(out, prefix=prefix).values())
    if extra_figures is not None:
        for figure_name, fig in extra_figures(comparisons):
            path = out / f"{figure_name}.png"
            fig.savefig(path, dpi=90)
            written.append(path)
    print("figures:", *sorted(str(p) for p in written), sep="\n  ")
    return comparisons


def posterior(comparison, sampler):
    """``{variable: array (chain, draw, ...)}`` of one sampler's posterior."""
    ds = comparison.runs[sampler].idata.posterior
    return {k: v.values for k, v in ds.data_vars.items()}


def new_figure(**kwargs):
    Figure = require_matplotlib()
    return Figure(layout="constrained", **kwargs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run one of the example scripts, e.g. python examples/mixture.py")
