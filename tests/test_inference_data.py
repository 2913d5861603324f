"""to_inference_data: ArviZ groups, sample_stats names and values, warmup groups."""

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_dilation import (
    DilationLangevin,
    WarmupDraws,
    extra_fields_for,
    to_inference_data,
)
from numpyro_dilation.workflow.inference_data import get_group, group_names

Y = np.array([1.2, 2.3, 0.7, 1.9, 2.8])


def model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0))
    with numpyro.plate("obs", 5):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def run(kernel, num_warmup=60, num_samples=40, warmup=True):
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    fields = extra_fields_for(kernel)
    if isinstance(kernel, DilationLangevin):
        fields += ("num_steps",)  # to check the gradient counts against
    record = None
    if warmup:
        mcmc.warmup(jax.random.PRNGKey(0), y=Y, collect_warmup=True, extra_fields=fields)
        record = WarmupDraws.from_mcmc(mcmc)
    mcmc.run(jax.random.PRNGKey(1), y=Y, extra_fields=fields)
    return mcmc, record


@pytest.fixture(scope="module")
def dilation_run():
    return run(DilationLangevin(model))


@pytest.fixture(scope="module")
def nuts_run():
    return run(NUTS(model))


def test_dilation_groups_and_sample_stats(dilation_run):
    mcmc, record = dilation_run
    idata = to_inference_data(mcmc, warmup=record)
    assert {
        "posterior",
        "sample_stats",
        "observed_data",
        "log_likelihood",
        "warmup_posterior",
        "warmup_sample_stats",
    } <= set(group_names(idata))
    stats = idata.sample_stats
    for name in (
        "lp",
        "acceptance_rate",
        "step_size",
        "diverging",
        "dilation_level",
        "n_grad_evals",
    ):
        assert name in stats, name
        assert stats[name].dims == ("chain", "draw"), name
    assert "t" not in stats and "num_grad_evals" not in stats  # renamed, not duplicated
    extra = mcmc.get_extra_fields(group_by_chain=True)
    np.testing.assert_allclose(stats["lp"], -np.asarray(extra["potential_energy"]))
    np.testing.assert_allclose(stats["acceptance_rate"], extra["accept_prob"])
    np.testing.assert_array_equal(stats["dilation_level"], 1.0)
    assert stats["diverging"].dtype == bool
    # three gradients at initialisation (potential, check of the start, curvature probe),
    # one per leapfrog step
    steps = np.asarray(extra["num_steps"])
    warm_steps = np.asarray(record.extra_fields["num_steps"])
    assert np.all(steps >= 1) and np.all(warm_steps >= 1)
    np.testing.assert_array_equal(
        stats["n_grad_evals"][:, 0], 3 + warm_steps.sum(axis=1) + steps[:, 0]
    )
    np.testing.assert_array_equal(np.diff(stats["n_grad_evals"], axis=1), steps[:, 1:])
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))


def test_dilation_warmup_groups_hold_the_annealing(dilation_run):
    mcmc, record = dilation_run
    idata = to_inference_data(mcmc, warmup=record)
    warm = idata.warmup_sample_stats
    level = warm["dilation_level"].values
    assert level.shape == (2, 60)
    assert 0.0 < level[0, 0] < 0.1 and np.all(np.diff(level, axis=1) >= 0)
    np.testing.assert_array_equal(level[:, -1], 1.0)
    first_steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])[:, 0]
    np.testing.assert_array_equal(
        warm["n_grad_evals"][:, -1] + first_steps, idata.sample_stats["n_grad_evals"][:, 0]
    )
    post = idata.warmup_posterior
    assert set(post.data_vars) == {"mu", "sigma"}
    assert post["mu"].shape == (2, 60) and np.all(post["sigma"].values > 0)


@pytest.mark.integration
def test_nuts_sample_stats_and_gradient_counts(nuts_run):
    mcmc, record = nuts_run
    idata = to_inference_data(mcmc, warmup=record)
    stats = idata.sample_stats
    for name in ("lp", "acceptance_rate", "step_size", "diverging", "n_grad_evals", "n_steps"):
        assert name in stats, name
    assert "dilation_level" not in stats
    steps = stats["n_steps"].values.astype(int)
    warm_steps = record.extra_fields["num_steps"].sum(axis=1)
    np.testing.assert_array_equal(stats["n_grad_evals"], warm_steps[:, None] + np.cumsum(steps, 1))
    assert "warmup" in stats["n_grad_evals"].attrs["description"]
    np.testing.assert_allclose(
        stats["lp"], -np.asarray(mcmc.get_extra_fields(group_by_chain=True)["potential_energy"])
    )
    # without the warmup record the count starts at sampling, and says so
    plain = to_inference_data(mcmc)
    np.testing.assert_array_equal(plain.sample_stats["n_grad_evals"], np.cumsum(steps, 1))
    assert "not recorded" in plain.sample_stats["n_grad_evals"].attrs["description"]
    assert "warmup_posterior" not in group_names(plain)


def test_kwargs_reach_arviz(dilation_run):
    mcmc, _ = dilation_run
    idata = to_inference_data(mcmc, coords={"obs": list("abcde")}, dims={"y": ["obs"]})
    assert list(idata.observed_data["y"].coords["obs"].values) == list("abcde")


def test_netcdf_round_trip_keeps_names(dilation_run, tmp_path):
    mcmc, record = dilation_run
    idata = to_inference_data(mcmc, warmup=record)
    idata.to_netcdf(str(tmp_path / "run.nc"))
    back = az.from_netcdf(str(tmp_path / "run.nc"))
    assert set(back.sample_stats.data_vars) == set(idata.sample_stats.data_vars)
    np.testing.assert_array_equal(
        back.warmup_sample_stats["dilation_level"], idata.warmup_sample_stats["dilation_level"]
    )


@pytest.fixture(scope="module")
def plain_run():
    """A DilationLangevin run with the kernel's default fields only (no extra_fields)."""
    mcmc = MCMC(
        DilationLangevin(model),
        num_warmup=60,
        num_samples=40,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(2), y=Y)
    return mcmc


@pytest.mark.integration
def test_run_without_extra_fields_converts_and_warns(plain_run, tmp_path):
    with pytest.warns(UserWarning, match=r"extra_fields=\('potential_energy'") as record:
        idata = to_inference_data(plain_run)
    message = " ".join(str(w.message) for w in record)
    for name in ("lp", "acceptance_rate", "step_size", "dilation_level", "n_grad_evals"):
        assert name in message, name
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(
        group_names(idata)
    )
    # what the run has is converted as ArviZ converts it
    reference = az.from_numpyro(plain_run)
    for name in ("mu", "sigma"):
        np.testing.assert_array_equal(
            idata.posterior[name].values, get_group(reference, "posterior")[name].values
        )
    stats = idata.sample_stats
    assert "diverging" in stats and stats["diverging"].dims == ("chain", "draw")
    assert stats["diverging"].shape == (2, 40) and stats["diverging"].dtype == bool
    assert "lp" not in stats and "dilation_level" not in stats
    np.testing.assert_array_equal(idata.observed_data["y"].values, Y)
    idata.to_netcdf(str(tmp_path / "plain.nc"))
    back = az.from_netcdf(str(tmp_path / "plain.nc"))
    np.testing.assert_array_equal(back.posterior["mu"].values, idata.posterior["mu"].values)
    np.testing.assert_array_equal(back.sample_stats["diverging"], stats["diverging"])


@pytest.mark.integration
def test_nuts_run_without_extra_fields_converts_and_warns():
    mcmc = MCMC(NUTS(model), num_warmup=30, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(3), y=Y)
    with pytest.warns(UserWarning, match="n_grad_evals"):
        idata = to_inference_data(mcmc)
    assert idata.posterior["mu"].shape == (1, 20)
    assert "diverging" in idata.sample_stats and "lp" not in idata.sample_stats


def test_partial_extra_fields_keep_what_was_collected(dilation_run, monkeypatch):
    mcmc, record = dilation_run
    collected = mcmc.get_extra_fields

    def some_fields(group_by_chain=False):
        fields = collected(group_by_chain=group_by_chain)
        return {k: fields[k] for k in ("diverging", "potential_energy")}

    monkeypatch.setattr(mcmc, "get_extra_fields", some_fields)
    bare_warmup = WarmupDraws(samples=record.samples, extra_fields={})
    with pytest.warns(UserWarning) as warned:
        idata = to_inference_data(mcmc, warmup=bare_warmup)
    messages = [str(w.message) for w in warned]
    assert any("of the run" in m and "'acceptance_rate'" in m for m in messages), messages
    assert any("warmup record" in m for m in messages), messages
    assert not any("'lp'" in m and "of the run" in m for m in messages), messages
    np.testing.assert_allclose(
        idata.sample_stats["lp"], -np.asarray(collected(group_by_chain=True)["potential_energy"])
    )
    assert set(idata.warmup_posterior.data_vars) == {"mu", "sigma"}


def test_bad_calls(dilation_run):
    fresh = MCMC(DilationLangevin(model), num_warmup=30, num_samples=10, progress_bar=False)
    with pytest.raises(ValueError, match="no draws"):
        to_inference_data(fresh)
    with pytest.raises(ValueError, match="collect_warmup=True"):
        WarmupDraws.from_mcmc(fresh)
    mcmc, _ = dilation_run  # its latest call was run(), not warmup()
    with pytest.raises(ValueError, match="collect_warmup=True"):
        WarmupDraws.from_mcmc(mcmc)
    with pytest.raises(TypeError, match="WarmupDraws"):
        to_inference_data(mcmc, warmup={"mu": 1})


def test_extra_fields_for_other_kernels():
    from numpyro.infer import SA

    assert extra_fields_for(SA(model)) == ()
    assert "t" in extra_fields_for(DilationLangevin(model))


def test_get_group_accepts_a_dataset(dilation_run):
    mcmc, _ = dilation_run
    idata = to_inference_data(mcmc)
    posterior = get_group(idata, "posterior")
    assert get_group(posterior, "anything") is posterior
    assert get_group(idata, "prior") is None
