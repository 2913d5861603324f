"""The ``numpyro-dilation`` command: DilationLangevin beside NUTS, as a report.

::

    numpyro-dilation demo                 # 2-D mixture and eight schools
    numpyro-dilation compare funnel       # one bundled example
    numpyro-dilation list                 # the bundled examples

Each run prints the tables and writes ``report.md``, PNG figures and one
netCDF InferenceData per sampler into ``--out`` (default ``./dilation-report``).
The report is written into a temporary folder beside ``--out`` and moved into
place at the end, so a run that fails leaves no half-written report; an
existing report at ``--out`` is replaced, any other non-empty folder is left
alone (an error).  Bad options end with a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata

from numpyro_dilation import __version__
from numpyro_dilation._jaxlib import release
from numpyro_dilation.workflow.comparison import compare_example
from numpyro_dilation.workflow.examples import (
    DEMO_EXAMPLES,
    EXAMPLES,
    MissingDependencyError,
    get_example,
)
from numpyro_dilation.workflow.plots import require_matplotlib
from numpyro_dilation.workflow.report import (
    check_output_folder,
    comparison_markdown,
    write_report,
)

DEFAULT_OUT = "dilation-report"

#: XLA flag that keeps jaxlib's CPU LAPACK calls off Eigen's thread pool: on jaxlib
#: before 0.12, batched Cholesky/triangular solves (as in many potentials) can
#: deadlock in that pool; see the troubleshooting page of the docs.
SINGLE_THREAD_EIGEN_FLAG = "--xla_cpu_multi_thread_eigen=false"
#: First jaxlib release run without :data:`SINGLE_THREAD_EIGEN_FLAG`.
FIXED_JAXLIB = (0, 12)

EPILOG = """\
examples:
  numpyro-dilation demo
  numpyro-dilation demo --num-samples 2000 --out my-report
  numpyro-dilation compare eight_schools --num-chains 8
  numpyro-dilation list
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int, kind: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, or an error naming ``kind``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be a {kind} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-chains",
        type=_positive_int,
        metavar="N",
        help="chains per sampler (default: each example's own, e.g. 64 for the mixture)",
    )
    parser.add_argument(
        "--num-warmup",
        type=_positive_int,
        metavar="N",
        help="warmup iterations per chain (default: each example's own, usually 1000)",
    )
    parser.add_argument(
        "--num-samples",
        type=_positive_int,
        metavar="N",
        help="sampling iterations per chain (default: each example's own)",
    )
    parser.add_argument(
        "--seed", type=_seed, default=0, metavar="N", help="random seed (default 0)"
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"report folder, replaced if it holds an earlier report (default ./{DEFAULT_OUT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no tables")
    parser.add_argument(
        "--no-plots", action="store_true", help="write no figures (no matplotlib needed)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = _Parser(
        prog="numpyro-dilation",
        description="Compare the DilationLangevin sampler with NUTS and write a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo",
        help="the 2-D mixture and eight schools, beside NUTS",
        description="Run DilationLangevin and NUTS on a 2-D mixture with unequal weights"
        " and on eight schools; print the tables and write the report.",
    )
    _add_run_options(demo)
    compare = commands.add_parser(
        "compare",
        help="one bundled example, beside NUTS",
        description="Run DilationLangevin and NUTS on a bundled example (see `list`).",
    )
    compare.add_argument(
        "example", choices=list(EXAMPLES), metavar="EXAMPLE", help=f"one of: {', '.join(EXAMPLES)}"
    )
    _add_run_options(compare)
    commands.add_parser(
        "list", help="list the bundled examples", description="List the bundled examples."
    )
    return parser


class _Progress:
    """A tqdm bar over the stages of the whole run, on stderr."""

    def __init__(self, total: int, enabled: bool):
        self._bar = None
        self._started = False
        self._t0 = time.perf_counter()
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, file=sys.stderr, unit="stage", dynamic_ncols=True)

    def __call__(self, message: str) -> None:
        if self._bar is None:
            return
        if self._started:
            self._bar.update(1)
        self._started = True
        self._bar.set_description(message[:60])

    def write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
        else:
            print(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.total - self._bar.n)
            self._bar.close()


def _stages(example, runs, plots: bool, num_chains: int | None) -> int:
    chains = num_chains or example.num_chains
    num_samplers = len(example.samplers(example.model, chains)) if example.samplers else 2
    per_run = num_samplers * 2 + (1 if example.annealing_chains else 0) + (1 if plots else 0) + 1
    return per_run * len(runs)


def _list_examples() -> int:
    width = max(map(len, EXAMPLES))
    for name, example in EXAMPLES.items():
        try:
            example.check_available()
            note = ""
        except MissingDependencyError as err:
            note = f"  (needs {err.package})"
        print(f"{name:<{width}}  {example.title}{note}")
    return 0


def xla_flags_for(flags: str | None, jaxlib_version: str) -> str | None:
    """``XLA_FLAGS`` for the command's own runs on ``jaxlib_version``.

    Parameters
    ----------
    flags : str or None
        The user's ``XLA_FLAGS`` (``None`` if unset).
    jaxlib_version : str
        The installed jaxlib's version.

    Returns
    -------
    str or None
        ``flags`` with :data:`SINGLE_THREAD_EIGEN_FLAG` appended on jaxlib before
        :data:`FIXED_JAXLIB`, unless the user already set
        ``--xla_cpu_multi_thread_eigen`` either way; ``flags`` unchanged otherwise.

    Examples
    --------
    >>> xla_flags_for("--xla_force_host_platform_device_count=2", "0.10.2")
    '--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false'
    >>> xla_flags_for(None, "0.12.0.1") is None
    True
    """
    if release(jaxlib_version) >= FIXED_JAXLIB:
        return flags
    if flags and "--xla_cpu_multi_thread_eigen" in flags:
        return flags  # the user's own choice
    return f"{flags} {SINGLE_THREAD_EIGEN_FLAG}" if flags else SINGLE_THREAD_EIGEN_FLAG


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (2 for bad options, via SystemExit).

    On jaxlib before 0.12, ``--xla_cpu_multi_thread_eigen=false`` is added to
    ``XLA_FLAGS`` for the run (see :func:`xla_flags_for`) and the variable is
    restored afterwards.  XLA reads the variable when JAX first computes, which
    importing this module does not do, so the flag holds for the whole run.
    """
    previous = os.environ.get("XLA_FLAGS")
    flags = xla_flags_for(previous, metadata.version("jaxlib"))
    if flags is not None:
        os.environ["XLA_FLAGS"] = flags
    try:
        return _main(argv)
    finally:
        if previous is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = previous


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list_examples()

    names = DEMO_EXAMPLES if args.command == "demo" else (args.example,)
    examples = [get_example(name) for name in names]
    try:
        out = check_output_folder(args.out)
    except ValueError as err:
        parser.error(str(err))
    if not args.no_plots:
        try:
            require_matplotlib()
        except ImportError as err:
            parser.error(f"{err} Or pass --no-plots.")
    try:
        planned = [(example, example.runs()) for example in examples]
    except MissingDependencyError as err:
        parser.error(str(err))

    total = sum(
        _stages(example, runs, not args.no_plots, args.num_chains) for example, runs in planned
    )
    progress = _Progress(total, enabled=not args.quiet)
    start = time.perf_counter()
    try:
        comparisons, notes = [], {}
        for example, runs in planned:
            for run in runs:
                (comparison,) = compare_example(
                    example,
                    num_chains=args.num_chains,
                    num_warmup=args.num_warmup,
                    num_samples=args.num_samples,
                    seed=args.seed,
                    progress=progress,
                    runs=[run],
                )
                comparisons.append(comparison)
                notes[run.label] = f"{example.title}. {example.description}"
                if not args.quiet:
                    progress.write(comparison_markdown(comparison, note=notes[run.label]))
        title = "DilationLangevin beside NUTS"
        report = write_report(
            comparisons,
            out,
            title=title,
            intro=f"`numpyro-dilation {' '.join(sys.argv[1:] if argv is None else argv)}`",
            notes=notes,
            plots=not args.no_plots,
            progress=progress,
        )
    except KeyboardInterrupt:
        progress.close()
        print(f"{parser.prog}: interrupted; no report written", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  (a failure midway: nothing written at --out)
        progress.close()
        print(
            f"{parser.prog}: failed: {type(err).__name__}: {err}; no report written",
            file=sys.stderr,
        )
        return 1
    progress.close()
    elapsed = time.perf_counter() - start
    print(f"report written to {report} ({elapsed:.0f} s)")
    return 0


__all__ = [
    "DEFAULT_OUT",
    "FIXED_JAXLIB",
    "SINGLE_THREAD_EIGEN_FLAG",
    "build_parser",
    "main",
    "xla_flags_for",
]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
