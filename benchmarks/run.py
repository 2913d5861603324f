"""Run benchmark suites and write their JSON results.

Usage::

    python -m benchmarks.run SUITE [SUITE ...] [--quick] [--out PATH]

``SUITE`` is one of :data:`SUITES` or ``all``.  A single suite writes
``benchmarks/results/SUITE.json`` by default (``benchmarks/results/quick/SUITE.json``
with ``--quick``, so quick runs never overwrite full results); with ``all`` or several
suites, ``--out`` names a directory that receives one ``SUITE.json`` per suite.  The
layout of the JSON is documented in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SCHEMA_VERSION

SUITES = (
    "posteriordb",
    "hard_geometry",
    "warmup_split",
    "multimodal",
    "ensemble_cost",
    "ensemble_iteration",
    "overhead",
    "scaling",
    "sharding",
    "chees_starts",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("numpyro_dilation", "numpyro", "jax", "jaxlib", "blackjax", "arviz", "numpy",
            "tfp-nightly")


def package_versions() -> dict[str, str | None]:
    """Versions of the packages the figures depend on (``None`` if missing)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def machine() -> dict[str, Any]:
    """Platform, CPU and JAX backend of this machine."""
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }


def git_state() -> dict[str, Any]:
    """Commit of the checkout the benchmarks run from, and whether its tree was dirty.

    ``{"commit": sha or None, "dirty": bool or None}`` (``None`` outside a git
    checkout or without git); untracked files count as dirty.
    """
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                 timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain")
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5 and 15 minutes), ``None`` where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def utc_now() -> str:
    """The current UTC time, ISO format, seconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_suite(name: str, quick: bool, out: Path) -> dict[str, Any]:
    """Run suite ``name``, wrap its result with metadata and write it to ``out``."""
    module = importlib.import_module(f"benchmarks.{name}")
    date, git, load_start = utc_now(), git_state(), load_average()
    start = time.perf_counter()
    result = module.run(quick=quick)
    wall = time.perf_counter() - start
    record = {
        "schema_version": SCHEMA_VERSION,
        "suite": name,
        "quick": quick,
        "date": date,
        "git": git,
        "load_average": {"start": load_start, "end": load_average()},
        "versions": package_versions(),
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *sys.argv[1:]]),
        "wall_time_s": wall,
        **result,
    }
    record["suite"] = name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
    print(f"{name}: {wall:.0f} s -> {out}", flush=True)
    return record


def _jsonable(x: Any) -> Any:
    # numpy scalars and arrays that slipped into a suite's figures
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def default_out(name: str, quick: bool) -> Path:
    """``benchmarks/results[/quick]/NAME.json``."""
    return (RESULTS_DIR / "quick" if quick else RESULTS_DIR) / f"{name}.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("suite", nargs="+", choices=(*SUITES, "all"), help="one or more suites")
    parser.add_argument("--quick", action="store_true", help="tiny version (for tests)")
    parser.add_argument(
        "--out", type=Path, help="JSON file (one suite) or directory (several suites, or all)"
    )
    args = parser.parse_args(argv)
    several = "all" in args.suite or len(args.suite) > 1
    names = SUITES if "all" in args.suite else tuple(dict.fromkeys(args.suite))
    for name in names:
        if args.out is None:
            out = default_out(name, args.quick)
        elif several:
            out = args.out / f"{name}.json"
        else:
            out = args.out
        run_suite(name, args.quick, out)


if __name__ == "__main__":
    main()
