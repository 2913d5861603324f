"""The benchmark suites run end to end (quick versions) and the report builds.

Benchmarks measure, tests assert: nothing here checks a figure's value, only
that every suite runs, writes the documented JSON and reports every sampler,
so that the suites cannot rot.  The quick suites run in one subprocess (as a
user runs them): the three cheapest in the default run, all six in the slow
tier (``-m slow``).  hard_geometry's quick mode starts its own subprocess with
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (see its docstring).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.run import SUITES

ROOT = Path(__file__).resolve().parent.parent
METADATA = (
    "schema_version",
    "suite",
    "quick",
    "date",
    "versions",
    "machine",
    "command",
    "wall_time_s",
    "settings",
    "runs",
)


#: Quick suites of the default test run (about 2 minutes together on a busy 2-core machine);
#: the other three (hard_geometry, ensemble_cost, multimodal: about 6 minutes) run in the
#: slow tier, where every suite runs and the whole report is checked.
DEFAULT_SUITES = ("posteriordb", "overhead", "scaling")


def _python(*args: str, timeout: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, timeout=timeout)


def _run_and_report(tmp_path, suites):
    """Run ``suites`` in their quick versions in one process, build the report, check both."""
    results, docs = tmp_path / "results", tmp_path / "docs"
    _python("-m", "benchmarks.run", *suites, "--quick", "--out", str(results), timeout=600)
    _python("-m", "benchmarks.report", "--results", str(results), "--docs", str(docs), timeout=300)

    page = (docs / "benchmarks.md").read_text()
    for suite in SUITES:
        if suite not in suites:
            assert f"## {suite}\n\nThis suite has not been run yet" in page, suite
            continue
        result = json.loads((results / f"{suite}.json").read_text())
        assert set(METADATA) <= set(result), suite
        assert result["suite"] == suite and result["quick"] is True
        assert {"numpyro", "jax", "blackjax", "python"} <= set(result["versions"])
        assert result["runs"], suite
        # every sampler a suite ran is named on the page (by its key or its label)
        labels = getattr(importlib.import_module(f"benchmarks.{suite}"), "SAMPLER_LABELS", {})
        for run in result["runs"]:
            if "sampler" in run:
                name = run["sampler"]
                assert name in page or labels.get(name, name) in page, (suite, name)
    assert page.count("has not been run") == len(SUITES) - len(suites)
    for name in ("DilationLangevin", "NUTS", "BlackJAX MALA", "floor", "MCMC.run"):
        assert name in page
    # every figure the page links to exists
    for line in page.splitlines():
        if line.startswith("!["):
            assert (docs / line.split("](")[1].rstrip(")")).exists(), line


@pytest.mark.integration
def test_quick_suites_and_report(tmp_path):
    _run_and_report(tmp_path, DEFAULT_SUITES)


@pytest.mark.slow
def test_all_quick_suites_and_report(tmp_path):
    _run_and_report(tmp_path, SUITES)
