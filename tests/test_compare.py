"""compare(): tables with every column and sensible values on a tiny model; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import NUTS

from numpyro_dilation import Comparison, DilationLangevin, compare
from numpyro_dilation.workflow.comparison import _check_samplers, _reference
from numpyro_dilation.workflow.inference_data import group_names
from numpyro_dilation.workflow.results import (
    PARAMETER_COLUMNS,
    SAMPLER_COLUMNS,
    measure_compile,
    model_sites,
)

from .conftest import ess

MEAN = np.array([1.0, -2.0])
SD = np.array([1.0, 0.5])


def gaussian():
    x = numpyro.sample("x", dist.Normal(jnp.asarray(MEAN), jnp.asarray(SD)).to_event(1))
    numpyro.deterministic("total", x.sum())


def sign_of_x0(draw):
    return "x0>1" if draw["x"][0] > 1.0 else "x0<=1"


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    reference = {
        "x": MEAN + SD * rng.normal(size=(4000, 2)),
        "total": (MEAN.sum(), np.sqrt((SD**2).sum())),
    }
    samplers = {"dilation": DilationLangevin(gaussian), "nuts": NUTS(gaussian)}
    return compare(
        gaussian,
        samplers=samplers,
        num_warmup=200,
        num_samples=300,
        num_chains=16,
        seed=3,
        mode_fn=sign_of_x0,
        reference=reference,
        title="gaussian",
    )


@pytest.mark.integration
def test_tables_have_every_column(result):
    assert isinstance(result, Comparison)
    assert list(result.samplers.index) == ["dilation", "nuts"]
    for column in SAMPLER_COLUMNS + ("max_abs_z_mean", "min_sd_ratio", "max_sd_ratio", "flags"):
        assert column in result.samplers.columns, column
    for column in PARAMETER_COLUMNS + ("z_mean", "sd_ratio"):
        assert column in result.parameters.columns, column
    assert result.parameters.index.names == ["parameter", "sampler"]
    # samplers side by side under each parameter, parameters in model order
    assert list(result.parameters.index) == [
        (p, s) for p in ("x[0]", "x[1]", "total") for s in ("dilation", "nuts")
    ]
    assert set(result.idata) == {"dilation", "nuts"}
    for idata in result.idata.values():
        assert {"posterior", "sample_stats", "warmup_posterior", "warmup_sample_stats"} <= set(
            group_names(idata)
        )


@pytest.mark.integration
def test_values_are_sensible(result):
    table = result.samplers
    assert np.all(table["chains"] == 16) and np.all(table["draws"] == 300)
    assert np.all(table["compile_s"] > 0)
    assert np.all(table[["warmup_s", "sampling_s"]] >= 0)
    # DilationLangevin: one gradient per annealing step (100) and per leapfrog step
    # after (at least one per iteration), plus two at initialisation, per chain
    assert table.at["dilation", "grad_evals"] >= 16 * (200 + 300 + 2)
    assert table.at["dilation", "grad_evals"] <= 16 * (100 + 400 * 1000 + 2)
    # NUTS: at least one leapfrog step per iteration
    assert table.at["nuts", "grad_evals"] >= 16 * (200 + 300)
    assert np.all(table["min_ess_bulk"] > 20) and np.all(table["max_r_hat"] < 1.1)
    assert np.all((table["mean_accept"] > 0.2) & (table["mean_accept"] <= 1))
    np.testing.assert_allclose(
        table["ess_per_1000_grads"], 1000 * table["min_ess_bulk"] / table["grad_evals"]
    )
    np.testing.assert_allclose(
        table["ess_per_s"], table["min_ess_bulk"] / (table["warmup_s"] + table["sampling_s"])
    )
    assert table.at["nuts", "divergences"] == 0
    params = result.parameters
    # the table's means are the draws' means, within Monte Carlo error of the truth
    for sampler, run in result.runs.items():
        x = run.idata.posterior["x"].values
        np.testing.assert_allclose(
            params.xs(sampler, level="sampler").loc[["x[0]", "x[1]"], "mean"],
            x.reshape(-1, 2).mean(0),
            rtol=1e-5,
        )
        n_eff = ess(x)
        assert np.all(np.abs(x.reshape(-1, 2).mean(0) - MEAN) < 5 * SD / np.sqrt(n_eff))
    assert np.all(params["hdi_3%"] < params["mean"]) and np.all(params["mean"] < params["hdi_97%"])
    assert np.all(params["sd"] > 0) and np.all(params["ess_tail"] > 0)


@pytest.mark.integration
def test_reference_columns(result):
    params = result.parameters
    ref_x = result.reference_draws["x"]
    for sampler, run in result.runs.items():
        x = run.idata.posterior["x"].values.reshape(-1, 2)
        expected_z = (x.mean(0) - ref_x.mean(0)) / ref_x.std(0, ddof=1)
        rows = params.xs(sampler, level="sampler")
        np.testing.assert_allclose(rows.loc[["x[0]", "x[1]"], "z_mean"], expected_z, rtol=1e-4)
        np.testing.assert_allclose(
            rows.loc[["x[0]", "x[1]"], "sd_ratio"],
            x.std(0, ddof=1) / ref_x.std(0, ddof=1),
            rtol=1e-4,
        )
        assert rows.loc["total", "sd_ratio"] == pytest.approx(
            run.idata.posterior["total"].values.std(ddof=1) / np.sqrt(1.25), rel=1e-4
        )
    assert np.all(result.samplers["max_abs_z_mean"] < 0.3)
    assert np.all(abs(result.samplers[["min_sd_ratio", "max_sd_ratio"]] - 1) < 0.3)


@pytest.mark.integration
def test_modes_table(result):
    modes = result.modes
    assert list(modes.index) == ["dilation", "nuts", "reference"]
    fractions = modes[["p[x0<=1]", "p[x0>1]"]]
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0)
    # both samplers put about half their draws above the mean of x0
    assert np.all(abs(fractions.loc[["dilation", "nuts"], "p[x0>1]"] - 0.5) < 0.2)
    assert np.all(modes.loc[["dilation", "nuts"], "modes_per_chain_min"] == 2)
    np.testing.assert_array_equal(result.modes_per_chain["nuts"], np.full(16, 2))
    assert modes.loc["nuts", "tv_to_reference"] == pytest.approx(
        abs(fractions.loc["nuts", "p[x0>1]"] - fractions.loc["reference", "p[x0>1]"])
    )


@pytest.mark.integration
def test_markdown_and_dataframe(result):
    text = result.to_markdown()
    for heading in (
        "## gaussian",
        "### Samplers: cost",
        "### Samplers: diagnostics",
        "### Modes",
        "### Parameters",
    ):
        assert heading in text
    assert "| x[0] | dilation |" in text
    df = result.to_dataframe("samplers")
    df.loc["nuts", "chains"] = 99  # a copy
    assert result.samplers.loc["nuts", "chains"] == 16
    with pytest.raises(ValueError, match="table"):
        result.to_dataframe("nope")


@pytest.mark.integration
def test_plot_writes_every_figure(result, tmp_path):
    pytest.importorskip("matplotlib")
    written = result.plot(tmp_path / "figs")
    # a 2-D target gets the density figure; 16 chains keep an annealing record
    assert set(written) == {"marginals", "pair", "rank", "density", "modes", "annealing"}
    for path in written.values():
        assert path.exists() and path.stat().st_size > 5000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_annealing_record(result):
    annealing = result.annealing
    assert annealing is not None and annealing.samples["x"].shape[1:] == (16, 2)
    t = result.runs["dilation"].idata.warmup_sample_stats["dilation_level"].values[0]
    np.testing.assert_array_equal(annealing.levels, t[annealing.iterations])
    assert annealing.levels[0] < 0.1 and annealing.levels[-1] == 1.0
    assert np.all(np.diff(annealing.levels) >= 0) and len(annealing.levels) >= 4
    np.testing.assert_array_equal(annealing.center, [0.0, 0.0])
    warm_x = result.runs["dilation"].idata.warmup_posterior["x"].values
    np.testing.assert_allclose(annealing.samples["x"][0], warm_x[:, annealing.iterations[0]])


@pytest.mark.integration
def test_default_samplers_and_reference_from_inference_data(result):
    samplers = _check_samplers(None, gaussian)
    assert list(samplers) == ["DilationLangevin", "NUTS"]
    assert isinstance(samplers["NUTS"], NUTS)
    _, reported = model_sites(gaussian, (), {})
    moments, draws = _reference(result.idata["nuts"], reported)
    x = result.idata["nuts"].posterior["x"].values.reshape(-1, 2)
    np.testing.assert_allclose(moments["x"][0], x.mean(0), rtol=1e-5)
    assert draws["x"].shape == (16 * 300, 2) and draws["total"].shape == (16 * 300,)


def test_measure_compile_separates_compilation():
    @jax.jit
    def f(x):
        return jnp.sin(x) @ jnp.cos(x).T

    x = jnp.ones((50, 50)) * 0.123
    with measure_compile() as first:
        jax.block_until_ready(f(x))
    with measure_compile() as second:
        jax.block_until_ready(f(x))
    assert first.compile_s > 0 and first.compile_s <= first.wall_s
    assert second.compile_s == 0
    assert first.run_s >= 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_chains": -1}, ValueError, "num_chains"),
        ({"num_warmup": 1.5}, TypeError, "num_warmup"),
        ({"samplers": {}}, TypeError, "samplers"),
        ({"samplers": {"a": "nuts"}}, TypeError, r"samplers\['a'\]"),
        ({"chain_method": "threads"}, ValueError, "chain_method"),
        ({"seed": -3}, ValueError, "seed"),
        ({"mode_fn": 3}, TypeError, "mode_fn"),
        ({"var_names": ["nope"]}, ValueError, "var_names"),
        ({"reference": {"nope": (0, 1)}}, ValueError, "nope"),
        ({"reference": {"x": np.zeros((10, 3))}}, ValueError, r"reference\['x'\]"),
        ({"reference": {"x": (0.0, 0.0)}}, ValueError, "positive"),
        ({"annealing_chains": -1}, ValueError, "annealing_chains"),
        ({"keep_warmup": "yes"}, TypeError, "keep_warmup"),
        ({"title": 3}, TypeError, "title"),
    ],
)
def test_bad_input_fails_before_sampling(kwargs, error, match):
    with pytest.raises(error, match=match):
        compare(gaussian, **kwargs)
