"""Markdown tables of a :class:`~numpyro_dilation.Comparison`, and report folders.

:func:`write_report` writes ``report.md``, the PNG figures and one netCDF
InferenceData per sampler and comparison into a temporary folder next to the
destination, and moves it into place only once everything is written: a run
that fails midway leaves no half-written report.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from numpyro_dilation.workflow.results import SAMPLER_COLUMNS, ComparisonData

#: File that marks a folder as a numpyro-dilation report (one that may be replaced).
MARKER = ".numpyro-dilation-report"

#: Sampler-table columns of the cost section: settings, times, gradients and efficiency.
COST_COLUMNS = (
    *SAMPLER_COLUMNS[: SAMPLER_COLUMNS.index("min_ess_bulk") + 1],
    "ess_per_s",
    "ess_per_1000_grads",
)
DIAGNOSTIC_COLUMNS = (
    "min_ess_bulk",
    "min_ess_tail",
    "max_r_hat",
    "divergences",
    "mean_accept",
    "max_abs_z_mean",
    "min_sd_ratio",
    "max_sd_ratio",
    "flags",
)
PARAMETER_SHOWN = (
    "mean",
    "sd",
    "hdi_3%",
    "hdi_97%",
    "ess_bulk",
    "ess_tail",
    "r_hat",
    "z_mean",
    "sd_ratio",
)

HOW_TO_READ = """\
How to read the tables: a sampler deserves trust when r_hat is at most 1.01 and the
bulk and tail ESS are at least 400 for every parameter (Vehtari et al., 2021), when it
reports no divergences, and, where a reference is known, when its means lie within a few
Monte Carlo standard errors of the reference (`z_mean` is the error in reference sds;
`sd_ratio` should be near 1).  For multimodal posteriors, r_hat and ESS only see the
modes the chains found: look at the fraction of draws per mode and at how many modes
each chain visited.  `flags` lists what failed.  Times exclude JAX compilation
(`compile_s`); ESS per second and per 1000 gradient evaluations charge warmup and
sampling alike."""


def format_value(value) -> str:
    """A table cell: integers as such, floats to 4 significant digits, NaN as a dash."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "–"
    if value.is_integer() and abs(value) >= 1:
        return f"{value:.0f}"
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


def markdown_table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A DataFrame as a GitHub-flavoured Markdown table, index levels first."""
    columns = [c for c in (columns or df.columns) if c in df.columns]
    index_names = [n or "" for n in df.index.names]
    header = index_names + list(columns)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for key, row in df.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        cells = [str(k) for k in keys] + [format_value(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(
    comparison: ComparisonData,
    figures: Mapping[str, str] | None = None,
    level: int = 2,
    note: str = "",
) -> str:
    """A Markdown section with the settings, tables and figures of ``comparison``."""
    h = "#" * level
    s = comparison.settings
    settings = (
        f"{s['num_chains']} chains ({s['chain_method']}), {s['num_warmup']} warmup and"
        f" {s['num_samples']} sampling iterations per chain, seed {s['seed']}."
    )
    parts = (
        [f"{h} {comparison.title}"]
        + ([note] if note else [])
        + [
            settings,
            f"{h}# Samplers: cost",
            markdown_table(comparison.samplers, COST_COLUMNS),
            f"{h}# Samplers: diagnostics",
            markdown_table(comparison.samplers, DIAGNOSTIC_COLUMNS),
        ]
    )
    if comparison.modes is not None:
        parts += [f"{h}# Modes", markdown_table(comparison.modes)]
    parts += [f"{h}# Parameters", markdown_table(comparison.parameters, PARAMETER_SHOWN)]
    if figures:
        parts.append(f"{h}# Figures")
        parts += [f"![{name}]({path})" for name, path in figures.items()]
    return "\n\n".join(parts) + "\n"


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "comparison"


def check_output_folder(out: str | Path) -> Path:
    """Check that ``out`` can receive a report, before any work is done.

    Raises
    ------
    ValueError
        If ``out`` is a file, a non-empty folder that is not a previous report,
        or its parent folder cannot be written.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ValueError(
            f"--out {out} is a non-empty folder that is not a numpyro-dilation report;"
            " choose a new or empty folder"
        )
    parent = out.parent
    if not parent.is_dir():
        raise ValueError(f"--out {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {parent} is not writable")
    return out


def write_report(
    comparisons: Sequence[ComparisonData],
    out: str | Path,
    *,
    title: str = "numpyro-dilation report",
    intro: str = "",
    notes: Mapping[str, str] | None = None,
    plots: bool = True,
    netcdf: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write ``report.md``, figures and netCDF files for ``comparisons`` into ``out``.

    Everything is written into a temporary folder beside ``out`` first and moved
    into place at the end; a previous report at ``out`` is replaced only then.

    Parameters
    ----------
    comparisons : list of Comparison
        The comparisons (:class:`~numpyro_dilation.Comparison`: the tables of
        :class:`~numpyro_dilation.workflow.results.ComparisonData` and a ``plot``
        method, called only with ``plots=True``), one section each.
    out : str or pathlib.Path
        Destination folder (see :func:`check_output_folder`).
    title, intro : str
        Heading and opening paragraph of ``report.md``.
    notes : mapping of str to str, optional
        A paragraph per comparison title, printed below its heading.
    plots : bool, default True
        Write the figures (needs matplotlib).
    netcdf : bool, default True
        Write ``<comparison>/<sampler>.nc`` with each sampler's InferenceData.
    progress : callable, optional
        Called with a short message before each stage.

    Returns
    -------
    pathlib.Path
        The path of ``report.md``.
    """
    out = check_output_folder(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report is an ordinary folder
    try:
        sections = []
        for comparison in comparisons:
            folder = slug(comparison.title)
            (tmp / folder).mkdir()
            figures = {}
            if plots:
                if progress:
                    progress(f"{comparison.title}: figures")
                written = comparison.plot(tmp / folder)
                figures = {name: f"{folder}/{path.name}" for name, path in written.items()}
            if netcdf:
                if progress:
                    progress(f"{comparison.title}: netCDF")
                for name, idata in comparison.idata.items():
                    idata.to_netcdf(str(tmp / folder / f"{slug(name)}.nc"))
            note = (notes or {}).get(comparison.title, "")
            sections.append(comparison_markdown(comparison, figures=figures, level=2, note=note))
        text = f"# {title}\n\n" + (f"{intro}\n\n" if intro else "") + HOW_TO_READ + "\n\n"
        text += "\n".join(sections)
        (tmp / "report.md").write_text(text)
        (tmp / MARKER).write_text("written by numpyro-dilation; this folder may be replaced\n")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "report.md"


def _move_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "HOW_TO_READ",
    "MARKER",
    "check_output_folder",
    "comparison_markdown",
    "format_value",
    "markdown_table",
    "slug",
    "write_report",
]
