"""Generate docs/comparison/: a full ``compare`` report on two models.

Not part of the package; run once from the repository root and commit the output:

    python docs/figures/make_comparison.py

It runs :func:`numpyro_dilation.compare` (DilationLangevin beside NUTS, defaults
for both) on the bundled 2-D mixture with unequal weights (64 vectorised chains)
and on non-centred eight schools (4 chains, judged against posteriordb's
reference), 1000 warmup and 1000 sampling iterations per chain, seed 0, and
writes for each ``docs/comparison/NAME.md`` (the tables, from
``Comparison.to_markdown``) and ``docs/comparison/NAME/*.png`` (``Comparison.plot``).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

from numpyro_dilation.workflow.comparison import compare_example  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "comparison"
RUNS = {"mixture": 64, "eight_schools": 4}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, chains in RUNS.items():
        start = time.perf_counter()
        (comparison,) = compare_example(
            name, num_chains=chains, num_warmup=1000, num_samples=1000, seed=0
        )
        figures = comparison.plot(OUT / name)
        links = {k: f"comparison/{name}/{p.name}" for k, p in figures.items()}
        text = comparison.to_markdown(figures=links, level=3)
        (OUT / f"{name}.md").write_text(text)
        print(text)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()},"
        f" jax {jax.__version__} ({jax.default_backend()})"
    )
    (OUT / "machine.txt").write_text(machine + "\n")
    print(machine, file=sys.stderr)


if __name__ == "__main__":
    main()
