"""The bundled examples: every model, its data and reference check out; every script runs.

The scripts run with tiny settings in a fresh interpreter, as a user runs them;
they are marked slow (each compiles two samplers; the mixture and eight schools
run through the same pipeline in tests/test_cli.py's demo test).
"""

import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import potential_energy

from numpyro_dilation.workflow.comparison import _check_var_names, _reference
from numpyro_dilation.workflow.examples import (
    DEMO_EXAMPLES,
    EXAMPLES,
    MIXTURE_WEIGHTS,
    _grid_reference,
    get_example,
)
from numpyro_dilation.workflow.results import model_sites

from .conftest import ROOT

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
EXTRA_FIGURES = {
    "funnel": {"funnel-divergences"},
    "eight_schools": {"forest"},
    "logistic_regression": {"coefficients"},
    "gaussian_mixture": {"label-switching"},
    "stochastic_volatility": {"volatility"},
    "tempered": {"sweep"},
}


def available(name):
    if name == "logistic_regression" and not HAVE_SKLEARN:
        pytest.skip("scikit-learn (the examples extra) is not installed")
    return get_example(name)


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.integration
def test_example_models_data_and_references(name):
    example = available(name)
    runs = example.runs()
    assert runs and len({run.label for run in runs}) == len(runs)
    for run in runs:
        latent, reported = model_sites(example.model, run.args, run.kwargs)
        assert latent
        _check_var_names(example.var_names, reported)
        _reference(run.reference, reported)  # validates names and shapes
        # DilationLangevin starts every chain at the origin of unconstrained space:
        # the potential and its gradient must be finite there
        origin = {
            name: jnp.zeros(biject_to(site.support).inverse_shape(site.shape))
            for name, site in latent.items()
        }
        value, grad = jax.jit(
            jax.value_and_grad(
                lambda z, run=run: potential_energy(example.model, run.args, run.kwargs, z)
            )
        )(origin)
        assert np.isfinite(float(value))
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
        if example.mode_fn is not None:
            draw = {
                k: np.asarray(biject_to(site.support)(v))
                for (k, site), v in zip(latent.items(), origin.values(), strict=True)
            }
            assert isinstance(str(example.mode_fn(draw)), str)


def test_demo_examples_exist_and_unknown_names_fail():
    assert set(DEMO_EXAMPLES) <= set(EXAMPLES)
    with pytest.raises(ValueError, match="choose one of: mixture"):
        get_example("mixtures")


def test_exact_references():
    ref = get_example("mixture").reference()["x"]
    nearest = np.argmin(
        ((ref[:, None, :] - np.array([[9, 0], [1, 8], [-7, 0], [1, -8]])) ** 2).sum(-1), 1
    )
    fractions = np.bincount(nearest, minlength=4) / len(nearest)
    # multinomial sd of a fraction near 0.4 with 20000 draws is 0.0035
    np.testing.assert_allclose(fractions, MIXTURE_WEIGHTS, atol=0.015)
    funnel = get_example("funnel").reference()
    assert abs(funnel["v"].std() - 3.0) < 0.1


def test_grid_reference_reproduces_a_gaussian():
    draws = _grid_reference(lambda a, b: -0.5 * ((a - 1.0) ** 2 + (b / 2.0) ** 2), lim=9.0)
    # 20000 draws: standard errors 0.007 and 0.014 for the means
    np.testing.assert_allclose(draws.mean(0), [1.0, 0.0], atol=0.06)
    np.testing.assert_allclose(draws.std(0), [1.0, 2.0], rtol=0.04)


def _run_script(name, tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "figures"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / f"{name}.py"),
            "--num-chains",
            "2",
            "--num-warmup",
            "60",
            "--num-samples",
            "30",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "### Samplers: cost" in result.stdout
    written = {p.stem for p in out.glob("*.png")}
    assert any(w.endswith("marginals") for w in written) and any(
        w.endswith("rank") for w in written
    )
    assert EXTRA_FIGURES.get(name, set()) <= written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]  # nothing else written


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_script_runs(name, tmp_path):
    available(name)
    _run_script(name, tmp_path)
