"""The numpyro-dilation command: every promised file, one-line errors with status 2, no half reports."""

import importlib.util
import os
import subprocess
import sys

import arviz as az
import pytest

from numpyro_dilation.workflow.inference_data import group_names

from numpyro_dilation.workflow import cli
from numpyro_dilation.workflow.examples import EXAMPLES
from numpyro_dilation.workflow.report import MARKER, check_output_folder, write_report

from .conftest import ROOT

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = ["--num-chains", "16", "--num-warmup", "60", "--num-samples", "30", "--seed", "1"]


def run_main(argv):
    """``cli.main(argv)``'s exit status, also when it exits through SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.integration
def test_demo_writes_every_promised_file(tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["demo", *TINY, "--out", str(out)] + ([] if HAVE_MATPLOTLIB else ["--no-plots"])
    assert run_main(argv) == 0
    stdout = capsys.readouterr().out
    assert "### Samplers: cost" in stdout and f"report written to {out / 'report.md'}" in stdout
    report = (out / "report.md").read_text()
    assert (out / MARKER).exists()
    figures = {
        "mixture": {"marginals", "pair", "rank", "density", "modes", "annealing"},
        "eight_schools": {"marginals", "pair", "rank", "annealing"},
    }
    samplers = {
        "mixture": ("DilationLangevin", "DilationLangevin_ensemble", "NUTS"),
        "eight_schools": ("DilationLangevin", "NUTS"),
    }
    for section, names in figures.items():
        assert f"## {section}" in report
        assert sorted(p.stem for p in (out / section).glob("*.nc")) == sorted(samplers[section])
        for sampler in samplers[section]:
            idata = az.from_netcdf(str(out / section / f"{sampler}.nc"))
            assert {"lp", "acceptance_rate", "step_size", "diverging", "n_grad_evals"} <= set(
                idata.sample_stats.data_vars
            )
            assert "warmup_posterior" in group_names(idata)
        if HAVE_MATPLOTLIB:
            written = {p.stem for p in (out / section).glob("*.png")}
            assert written == names
            for name in names:
                assert f"({section}/{name}.png)" in report
    assert "| mixture" not in report  # tables are keyed by sampler, sections by example
    assert "p[w=0.1]" in report and "z_mean" in report
    # nothing is left beside the report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--num-chains", "-1"], "--num-chains: must be a positive integer"),
        (["demo", "--num-samples", "0"], "--num-samples: must be a positive integer"),
        (["demo", "--num-warmup", "many"], "--num-warmup: must be a positive integer"),
        (["demo", "--seed", "-2"], "--seed: must be a non-negative integer"),
        (["compare", "nope"], "invalid choice: 'nope'"),
        (["compare"], "required: EXAMPLE"),
        ([], "required: COMMAND"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_exit_2_with_one_line(argv, needle, capsys):
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and needle in err, err


def test_bad_out_exits_2_before_any_work(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    cases = [
        (a_file, "is a file"),
        (a_file / "sub", "does not exist"),
        (tmp_path / "missing" / "report", "does not exist"),
        (busy, "not a numpyro-dilation report"),
    ]
    for out, needle in cases:
        assert run_main(["demo", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert (busy / "notes.txt").read_text() == "mine"


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert run_main(["demo", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "numpyro-dilation[examples]"' in err and "--no-plots" in err
    assert not (tmp_path / "r").exists()


def test_missing_optional_dataset_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    assert run_main(["compare", "logistic_regression", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "scikit-learn" in err and "numpyro-dilation[examples]" in err
    assert run_main(["list"]) == 0
    assert "logistic_regression" in capsys.readouterr().out


def test_a_run_failing_midway_writes_nothing(tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise RuntimeError("sampler exploded")

    monkeypatch.setattr(cli, "compare_example", fail)
    out = tmp_path / "report"
    assert run_main(["compare", "banana", "--out", str(out), "--quiet"]) == 1
    assert "sampler exploded" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_failure_while_writing_leaves_no_half_report_and_keeps_the_old_one(tmp_path):
    class Broken:
        title = "broken"
        idata = None

        def plot(self, folder):
            (folder / "half.png").write_bytes(b"partial")
            raise OSError("disk full")

    out = tmp_path / "report"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "report.md").write_text("old report")
    with pytest.raises(OSError, match="disk full"):
        write_report([Broken()], out)
    assert (out / "report.md").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_an_earlier_report_is_replaced(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "stale.png").write_bytes(b"old")
    assert check_output_folder(out) == out
    write_report([], out, title="empty")
    assert not (out / "stale.png").exists()
    assert (out / "report.md").read_text().startswith("# empty")
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_list_names_every_example(capsys):
    assert run_main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EXAMPLES:
        assert name in out


@pytest.mark.integration
def test_module_entry_point_exit_codes():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "numpyro_dilation", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert ok.returncode == 0 and "eight_schools" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "numpyro_dilation", "demo", "--num-chains", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--num-chains" in bad.stderr
