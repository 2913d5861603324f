"""DilationLangevin inside numpyro.infer.MCMC: interface, phases, chains, bad input."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC, init_to_value

from numpyro_dilation import DilationLangevin, DilationState, SamplerHealthWarning
from numpyro_dilation.modes import chain_search_cost

from .conftest import NORMAL_Y, run_mcmc, run_python


def normal_model(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    numpyro.deterministic("precision", 1.0 / sigma**2)
    with numpyro.plate("data", 20):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


Y = NORMAL_Y


def run(kernel, num_warmup=100, num_samples=50, **kwargs):
    return run_mcmc(kernel, num_warmup=num_warmup, num_samples=num_samples, **kwargs)


EXTRA = (
    "potential_energy",
    "accept_prob",
    "mean_accept_prob",
    "step_size",
    "diverging",
    "t",
    "num_grad_evals",
    "num_steps",
)


@pytest.mark.integration
def test_draws_are_constrained_with_deterministic_sites_and_extra_fields():
    mcmc = run(DilationLangevin(normal_model), y=Y, extra_fields=EXTRA)
    samples = mcmc.get_samples()
    assert set(samples) == {"mu", "sigma", "precision"}
    assert samples["mu"].shape == (50,)
    assert np.all(samples["sigma"] > 0)
    np.testing.assert_allclose(samples["precision"], 1 / samples["sigma"] ** 2, rtol=1e-5)
    fields = mcmc.get_extra_fields()
    assert set(EXTRA) <= set(fields)
    for name in EXTRA:
        assert fields[name].shape == (50,), name
    np.testing.assert_array_equal(fields["t"], 1.0)
    # one gradient per leapfrog step (one per annealing step), three at initialisation
    # (the potential's, the check of how far from the posterior the centre is, the
    # curvature probe's), and the lone chain's search for other basins
    assert np.all(fields["num_steps"] >= 1)
    np.testing.assert_array_equal(np.diff(fields["num_grad_evals"]), fields["num_steps"][1:])
    assert fields["num_grad_evals"][0] > 50 + 3 + chain_search_cost(2)  # then HMC
    mala = run(DilationLangevin(normal_model, stationary="mala"), y=Y, extra_fields=EXTRA)
    np.testing.assert_array_equal(
        mala.get_extra_fields()["num_grad_evals"], 100 + 3 + chain_search_cost(2) + np.arange(1, 51)
    )
    assert np.all((fields["accept_prob"] >= 0) & (fields["accept_prob"] <= 1))
    assert isinstance(mcmc.last_state, DilationState)
    mcmc.print_summary()


def test_warmup_anneals_from_t_min_to_one_then_adapts():
    kernel = DilationLangevin(normal_model, t_min=0.05, num_anneal_steps=40)
    mcmc = MCMC(kernel, num_warmup=100, num_samples=10, progress_bar=False)
    mcmc.warmup(jax.random.PRNGKey(1), y=Y, collect_warmup=True, extra_fields=("t", "step_size"))
    t = np.asarray(mcmc.get_extra_fields()["t"])
    assert t.shape == (100,)
    assert 0.05 < t[0] < 0.06 and np.all(np.diff(t[:40]) > 0)
    np.testing.assert_array_equal(t[39:], 1.0)
    # geometric by default: equal ratios between consecutive levels
    ratios = t[1:39] / t[:38]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-4)
    # all chains start at the centre (origin of unconstrained space): z near 0 early on
    assert abs(float(mcmc.get_samples()["mu"][0])) < 2.0


@pytest.mark.parametrize("schedule", ["linear", lambda u: 0.02 + 0.98 * u**3])
@pytest.mark.integration
def test_other_schedules(schedule):
    kernel = DilationLangevin(normal_model, schedule=schedule, num_anneal_steps=30)
    mcmc = MCMC(kernel, num_warmup=60, num_samples=5, progress_bar=False)
    mcmc.warmup(jax.random.PRNGKey(1), y=Y, collect_warmup=True, extra_fields=("t",))
    t = np.asarray(mcmc.get_extra_fields()["t"])
    expected = (lambda u: 0.03 + 0.97 * u) if schedule == "linear" else schedule
    np.testing.assert_allclose(
        t[:29], [float(expected((k + 1) / 30)) for k in range(29)], rtol=1e-5
    )


@pytest.mark.parametrize("center", ["init", np.array([3.0, 0.5]), {"mu": 3.0, "sigma": 0.5}])
def test_centers(center):
    kernel = DilationLangevin(
        normal_model,
        center=center,
        init_strategy=init_to_value(values={"mu": 3.0, "sigma": np.exp(0.5)}),
    )
    # the centre is fixed when the state is made: the kernel's init, no sampling loop
    state = kernel.init(jax.random.PRNGKey(2), 60, None, (), {"y": Y})
    np.testing.assert_allclose(state.center, [3.0, 0.5], rtol=1e-5)


@pytest.mark.integration
def test_progress_bar_text_shows_level_then_acceptance():
    kernel = DilationLangevin(normal_model)
    mcmc = run(kernel, y=Y)
    state = mcmc.last_state
    assert kernel.get_diagnostics_str(state).startswith("step size ")
    assert "acc. prob=" in kernel.get_diagnostics_str(state)
    annealing = state._replace(t=jnp.asarray(0.1))
    assert kernel.get_diagnostics_str(annealing).startswith("t=1.00e-01")


@pytest.mark.integration
def test_continuing_from_post_warmup_state_does_not_re_anneal():
    kernel = DilationLangevin(normal_model)
    mcmc = MCMC(kernel, num_warmup=100, num_samples=30, progress_bar=False)
    mcmc.warmup(jax.random.PRNGKey(3), y=Y)
    warm = mcmc.post_warmup_state
    assert int(warm.i) == 100 and float(warm.t) == 1.0
    mcmc.run(
        jax.random.PRNGKey(4), y=Y, extra_fields=("t", "step_size", "num_grad_evals", "num_steps")
    )
    fields = mcmc.get_extra_fields()
    np.testing.assert_array_equal(fields["t"], 1.0)
    # frozen adaptation: the step size stays the warmup's
    np.testing.assert_allclose(fields["step_size"], float(warm.adapt_state.step_size))
    np.testing.assert_array_equal(
        fields["num_grad_evals"], int(warm.num_grad_evals) + np.cumsum(fields["num_steps"])
    )
    # a fresh MCMC with a fresh kernel carries on from the same state
    mcmc2 = MCMC(DilationLangevin(normal_model), num_warmup=50, num_samples=20, progress_bar=False)
    mcmc2.post_warmup_state = mcmc.last_state
    mcmc2.run(mcmc.last_state.rng_key, y=Y, extra_fields=("t",))
    np.testing.assert_array_equal(mcmc2.get_extra_fields()["t"], 1.0)


@pytest.mark.integration
def test_same_seed_same_draws_and_chain_methods_agree():
    a = run(DilationLangevin(normal_model), num_chains=2, num_samples=300, y=Y)
    b = run(DilationLangevin(normal_model), num_chains=2, num_samples=300, y=Y)
    np.testing.assert_array_equal(a.get_samples()["mu"], b.get_samples()["mu"])
    # vmap rounds differently from a loop, and accept/reject decisions amplify the
    # differences: the chains agree in law, not draw by draw
    v = run(
        DilationLangevin(normal_model),
        num_chains=2,
        num_samples=300,
        chain_method="vectorized",
        y=Y,
    )
    assert abs(float(v.get_samples()["mu"].mean() - a.get_samples()["mu"].mean())) < 0.5


@pytest.mark.integration
def test_parallel_chains_on_two_cpu_devices():
    out = run_python(
        """
import jax, numpy as np, numpyro, numpyro.distributions as dist
from numpyro.infer import MCMC
from numpyro_dilation import DilationLangevin
assert jax.local_device_count() == 2
def model():
    numpyro.sample("x", dist.Normal(1.0, 2.0))
mcmc = MCMC(DilationLangevin(model), num_warmup=100, num_samples=200, num_chains=2,
            chain_method="parallel", progress_bar=False)
mcmc.run(jax.random.PRNGKey(0), extra_fields=("t",))
x = mcmc.get_samples(group_by_chain=True)["x"]
assert x.shape == (2, 200) and np.all(np.isfinite(x))
assert np.all(mcmc.get_extra_fields()["t"] == 1.0)
seq = MCMC(DilationLangevin(model), num_warmup=100, num_samples=200, num_chains=2,
           chain_method="sequential", progress_bar=False)
seq.run(jax.random.PRNGKey(0))
assert abs(float(seq.get_samples()["x"].mean() - x.mean())) < 0.6
print("ok")
""",
        env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    assert "ok" in out


@pytest.mark.integration
def test_jit_model_args_reuses_the_compiled_sampler():
    kernel = DilationLangevin(normal_model)
    mcmc = MCMC(kernel, num_warmup=60, num_samples=20, progress_bar=False, jit_model_args=True)
    mcmc.run(jax.random.PRNGKey(0), y=Y)
    first = mcmc.get_samples()["mu"].mean()
    mcmc.run(jax.random.PRNGKey(0), y=Y + 10.0)
    second = mcmc.get_samples()["mu"].mean()
    assert second - first > 5.0  # the new data were used


@pytest.mark.integration
def test_pickled_mcmc_continues():
    mcmc = MCMC(DilationLangevin(normal_model), num_warmup=60, num_samples=20, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), y=Y)
    restored = pickle.loads(pickle.dumps(mcmc))
    np.testing.assert_array_equal(restored.get_samples()["mu"], mcmc.get_samples()["mu"])
    restored.post_warmup_state = restored.last_state
    restored.run(restored.last_state.rng_key, y=Y)
    assert restored.get_samples()["mu"].shape == (20,)


@pytest.mark.integration
def test_potential_fn_with_init_params():
    U = lambda x: 0.5 * jnp.sum((x - 2.0) ** 2)
    mcmc = run(
        DilationLangevin(potential_fn=U),
        num_chains=2,
        init_params=jnp.zeros((2, 3)),
        num_samples=300,
    )
    x = mcmc.get_samples()
    assert x.shape == (600, 3)
    assert abs(float(x.mean()) - 2.0) < 0.3


# ---------------------------------------------------------------- model features


def constrained_model():
    numpyro.sample("rate", dist.Gamma(2.0, 1.0))
    numpyro.sample("p", dist.Beta(2.0, 3.0))
    numpyro.sample("u", dist.Uniform(-1.0, 4.0))
    numpyro.sample("w", dist.Dirichlet(jnp.ones(3)))
    numpyro.sample(
        "cuts",
        dist.TransformedDistribution(
            dist.Normal(0, 1).expand([3]), dist.transforms.OrderedTransform()
        ),
    )
    numpyro.sample("L", dist.LKJCholesky(3, 2.0))
    with numpyro.plate("groups", 4):
        numpyro.sample("scale", dist.LogNormal(0.0, 0.5))


@pytest.mark.integration
def test_constrained_supports_come_back_in_their_support():
    mcmc = run(DilationLangevin(constrained_model), num_samples=100)
    s = mcmc.get_samples()
    assert np.all(s["rate"] > 0) and np.all((s["p"] > 0) & (s["p"] < 1))
    assert np.all((s["u"] > -1) & (s["u"] < 4))
    np.testing.assert_allclose(s["w"].sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.diff(s["cuts"], axis=-1) > 0)
    L = s["L"]
    np.testing.assert_allclose(np.einsum("nij,nij->ni", L, L), 1.0, rtol=1e-4)  # unit-norm rows
    assert s["scale"].shape == (100, 4)


def factor_mask_scale_model(y, mask):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    numpyro.factor("soft_constraint", -0.5 * (mu - 1.0) ** 2)
    with handlers.scale(scale=0.5), handlers.mask(mask=mask):
        numpyro.sample("y", dist.Normal(mu, 1.0).expand([y.shape[0]]), obs=y)


@pytest.mark.integration
def test_factor_mask_and_scale():
    y = jnp.array([2.0, 2.0, 100.0])
    mask = jnp.array([True, True, False])
    mcmc = run(
        DilationLangevin(factor_mask_scale_model), num_warmup=200, num_samples=1000, y=y, mask=mask
    )
    # exact posterior: N(0, 25) prior x N(1, 1) factor x two halved N(2, 1) terms
    precision = 1 / 25 + 1 + 0.5 * 2
    mean = (1.0 + 0.5 * 2 * 2.0) / precision
    assert abs(float(mcmc.get_samples()["mu"].mean()) - mean) < 0.15


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(), ValueError, "exactly one of `model`.*neither"),
        (
            dict(model=normal_model, potential_fn=lambda x: x),
            ValueError,
            "exactly one of `model`.*both",
        ),
        (dict(model=3), TypeError, "`model` must be callable"),
        (dict(model=normal_model, t_min=0.0), ValueError, "`t_min` must be in the open interval"),
        (dict(model=normal_model, t_min=1.0), ValueError, "`t_min`"),
        (dict(model=normal_model, t_min="small"), TypeError, "`t_min`"),
        (dict(model=normal_model, step_size=0.0), ValueError, "`step_size` must be a positive"),
        (dict(model=normal_model, step_size=-1.0), ValueError, "`step_size`"),
        (dict(model=normal_model, step_size=float("nan")), ValueError, "`step_size`"),
        (dict(model=normal_model, eps=0), ValueError, "`eps`"),
        (dict(model=normal_model, alpha=-0.5), ValueError, "`alpha` must be a positive"),
        (
            dict(model=normal_model, num_anneal_steps=-1),
            ValueError,
            "`num_anneal_steps` must be a non-negative",
        ),
        (dict(model=normal_model, num_anneal_steps=2.5), TypeError, "`num_anneal_steps`"),
        (dict(model=normal_model, schedule="cosine"), ValueError, "`schedule` must be one of"),
        (dict(model=normal_model, center="mode"), ValueError, "`center` must be 'origin', 'init'"),
        (dict(model=normal_model, target_accept_prob=1.5), ValueError, "`target_accept_prob`"),
        (dict(model=normal_model, dense_mass="yes"), TypeError, "`dense_mass`"),
        (dict(model=normal_model, dense_mass=[("mu",)]), TypeError, "block structures"),
        (dict(model=normal_model, adjust=1), TypeError, "`adjust` must be True or False"),
        (
            dict(model=normal_model, inverse_mass_matrix=np.array([1.0, -1.0])),
            ValueError,
            "`inverse_mass_matrix`",
        ),
        (dict(model=normal_model, init_strategy="median"), TypeError, "`init_strategy`"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DilationLangevin(**kwargs)


@pytest.mark.parametrize("num_warmup", [0, 5, 19])
@pytest.mark.integration
def test_short_warmup_runs_and_warns_naming_what_is_needed(num_warmup):
    mcmc = MCMC(
        DilationLangevin(normal_model), num_warmup=num_warmup, num_samples=10, progress_bar=False
    )
    with pytest.warns(SamplerHealthWarning, match=r"num_warmup=\d+ is short.*num_warmup >= 20"):
        mcmc.run(jax.random.PRNGKey(0), y=Y)
    assert mcmc.get_samples()["mu"].shape == (10,)


@pytest.mark.integration
def test_anneal_steps_longer_than_warmup_are_cut_to_it():
    mcmc = MCMC(
        DilationLangevin(normal_model, num_anneal_steps=500),
        num_warmup=100,
        num_samples=10,
        progress_bar=False,
    )
    with pytest.warns(
        SamplerHealthWarning, match="cut to 100 of num_anneal_steps=500.*num_warmup >= 510"
    ):
        mcmc.run(jax.random.PRNGKey(0), y=Y, extra_fields=("t",))
    # the annealing fills the whole warmup and ends at the target
    assert float(mcmc.get_extra_fields()["t"][0]) == 1.0


def discrete_model():
    k = numpyro.sample("k", dist.Poisson(3.0))
    numpyro.sample("x", dist.Normal(k, 1.0), obs=2.0)


def test_discrete_latent_site_is_named():
    mcmc = MCMC(
        DilationLangevin(discrete_model), num_warmup=100, num_samples=10, progress_bar=False
    )
    with pytest.raises(ValueError, match=r"\['k'\] is discrete.*enumerate"):
        mcmc.run(jax.random.PRNGKey(0))


def test_potential_fn_needs_init_params():
    mcmc = MCMC(
        DilationLangevin(potential_fn=lambda x: jnp.sum(x**2)),
        num_warmup=100,
        num_samples=10,
        progress_bar=False,
    )
    with pytest.raises(ValueError, match="`init_params` must be given"):
        mcmc.run(jax.random.PRNGKey(0))


def test_center_of_wrong_size():
    mcmc = MCMC(
        DilationLangevin(normal_model, center=np.zeros(3)),
        num_warmup=100,
        num_samples=10,
        progress_bar=False,
    )
    with pytest.raises(ValueError, match="`center` must have 2 entries"):
        mcmc.run(jax.random.PRNGKey(0), y=Y)


def test_nonfinite_centre_is_refused_at_init():
    U = lambda x: jnp.where(jnp.all(x > 0.5), jnp.sum(x**2), jnp.inf)
    mcmc = MCMC(
        DilationLangevin(potential_fn=U), num_warmup=100, num_samples=10, progress_bar=False
    )
    with pytest.raises(ValueError, match="not finite at the dilation centre"):
        mcmc.run(jax.random.PRNGKey(0), init_params=jnp.ones(2))
