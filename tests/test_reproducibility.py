"""Reproducibility: seeds, chain methods, pickling, continuing from ``post_warmup_state``.

What is guaranteed, and tested here bitwise:

* the same seed, chain method and settings give identical draws, here and in
  a fresh interpreter;
* ``mcmc.warmup(key)`` then ``mcmc.run(mcmc.post_warmup_state.rng_key)`` gives
  the draws of an uninterrupted ``mcmc.run(key)``, and continuing from
  ``mcmc.last_state`` with its own key extends a run exactly -- NumPyro's NUTS
  behaves the same way (the slow-marked reference case, with sequential chains).  ``MCMC.run`` puts
  the key it is given into the state, so continuing with any *other* key gives
  other (equally valid) draws;
* an MCMC object pickled before running, after warmup or after a run, and
  unpickled in another interpreter, carries on with the same draws.

Sequential and vectorised chains are *not* bitwise identical (``vmap`` rounds
differently from a loop and accept/reject decisions amplify the difference);
they are tested to agree in law, and the size of the difference is measured by
``benchmarks/reproducibility.py`` (see docs/reliability.md).

Every ``MCMC.run`` compiles the sampler anew, so runs are computed once
(cached) and shared between the tests.
"""

import functools
import hashlib
import pickle

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS

from numpyro_dilation import DilationLangevin

from .conftest import NORMAL_Y, ess, run_python

Y = NORMAL_Y
FIELDS = ("potential_energy", "accept_prob", "diverging", "step_size")
HALF = 1000  # draws per chain in each half of a continued run
SEED = 7


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def make(kernel=DilationLangevin, chain_method="vectorized", num_samples=2 * HALF):
    return MCMC(
        kernel(model),
        num_warmup=200,
        num_samples=num_samples,
        num_chains=2,
        chain_method=chain_method,
        progress_bar=False,
    )


def draws(mcmc, fields=()):
    """Samples (and the extra fields named), chains first, as numpy arrays."""
    out = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    out.update({k: np.asarray(extra[k]) for k in fields})
    return out


def digest(d):
    h = hashlib.sha256()
    for k in sorted(d):
        h.update(k.encode() + np.ascontiguousarray(d[k]).tobytes())
    return h.hexdigest()


def assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def half(d, which):
    part = slice(0, HALF) if which == 0 else slice(HALF, None)
    return {k: d[k][:, part] for k in ("mu", "sigma")}


# ------------------------------------------------------------------ shared runs


@functools.cache
def long_run(kernel, method):
    """``2 * HALF`` draws per chain, seed ``SEED``, uninterrupted."""
    fields = FIELDS if kernel is DilationLangevin else ()
    mcmc = make(kernel, method)
    mcmc.run(jax.random.PRNGKey(SEED), Y, extra_fields=fields)
    return draws(mcmc, fields)


@functools.cache
def continued_run(kernel, method):
    """The same seed as warmup, run, and continuation from ``last_state``.

    Also continues the warm state with another key, and keeps pickles of the
    MCMC object (unrun, after warmup, after the first run).
    """
    split = make(kernel, method, num_samples=HALF)
    pickles = {"unrun": pickle.dumps(make(kernel, method))}
    split.warmup(jax.random.PRNGKey(SEED), Y)
    warm_state = split.post_warmup_state
    pickles["warm"] = pickle.dumps(split)
    split.run(split.post_warmup_state.rng_key, Y)
    first = draws(split)
    pickles["done"] = pickle.dumps(split)
    split.post_warmup_state = split.last_state
    split.run(split.post_warmup_state.rng_key, Y)
    second = draws(split)
    split.post_warmup_state = warm_state
    split.run(jax.random.PRNGKey(SEED), Y)  # the warm state, another key
    return {"first": first, "second": second, "other_key": draws(split), "pickles": pickles}


CONFIGS = [
    # Sequential chains compile once per chain: slow-marked to keep the default run short.
    pytest.param(
        (DilationLangevin, "sequential"), id="DilationLangevin-sequential", marks=pytest.mark.slow
    ),
    # Five compiled runs (about 30 s): the integration tier, beside the fresh-interpreter
    # test that shares them.
    pytest.param(
        (DilationLangevin, "vectorized"),
        id="DilationLangevin-vectorized",
        marks=pytest.mark.integration,
    ),
    # the reference: NumPyro's own semantics
    pytest.param((NUTS, "vectorized"), id="NUTS-vectorized", marks=pytest.mark.slow),
]


# ------------------------------------------------------------------ tests


@pytest.mark.integration  # the default run checks each of the two ways for exactness alone
def test_sequential_and_vectorized_chains_agree_in_law():
    runs = {m: long_run(DilationLangevin, m) for m in ("sequential", "vectorized")}
    for site in ("mu", "sigma"):
        a, b = (runs[m][site].astype(float) for m in ("sequential", "vectorized"))
        se = np.sqrt(a.var() / ess(a) + b.var() / ess(b))
        assert abs(a.mean() - b.mean()) <= 4.5 * se, (site, a.mean(), b.mean(), se)
        # var(s^2) / s^4 ~ 2 / ESS for each run (near-Gaussian marginals)
        tol = 4.5 * 0.5 * np.sqrt(2 / ess(a) + 2 / ess(b))
        assert abs(a.std() / b.std() - 1) <= tol, (site, a.std(), b.std())


@pytest.mark.parametrize("config", CONFIGS)
def test_warmup_then_run_with_the_state_key_is_the_uninterrupted_run(config):
    assert_identical(continued_run(*config)["first"], half(long_run(*config), 0))


@pytest.mark.parametrize("config", CONFIGS)
def test_continuing_from_last_state_extends_the_run_exactly(config):
    assert_identical(continued_run(*config)["second"], half(long_run(*config), 1))


@pytest.mark.parametrize("config", CONFIGS)
def test_continuing_with_another_key_gives_other_draws(config):
    runs = continued_run(*config)
    assert not np.array_equal(runs["other_key"]["mu"], runs["first"]["mu"])
    assert np.all(np.isfinite(runs["other_key"]["mu"]))


@pytest.mark.integration
def test_same_draws_and_pickled_runs_in_a_fresh_interpreter(tmp_path):
    """A fresh interpreter reruns the seeded run and carries on from the pickles.

    The vectorised rerun starts from the MCMC object pickled before it ran.
    """
    continued = continued_run(DilationLangevin, "vectorized")
    for name, blob in continued["pickles"].items():
        (tmp_path / f"{name}.pkl").write_bytes(blob)
    out = run_python(
        f"""
import pickle, jax
from pathlib import Path
from tests.test_reproducibility import FIELDS, SEED, Y, digest, draws, make
mcmc = make(chain_method="sequential")
mcmc.run(jax.random.PRNGKey(SEED), Y, extra_fields=FIELDS)
print("sequential", digest(draws(mcmc, FIELDS)))
load = lambda name: pickle.loads(Path({str(tmp_path)!r}, name + ".pkl").read_bytes())
unrun, warm, done = load("unrun"), load("warm"), load("done")
unrun.run(jax.random.PRNGKey(SEED), Y, extra_fields=FIELDS)
print("vectorized", digest(draws(unrun, FIELDS)))
warm.run(warm.post_warmup_state.rng_key, Y)
print("warm", digest(draws(warm)))
print("done", digest(draws(done)))
done.post_warmup_state = done.last_state
done.run(done.post_warmup_state.rng_key, Y)
print("continued", digest(draws(done)))
"""
    )
    got = dict(line.split() for line in out.strip().splitlines())
    vectorized = long_run(DilationLangevin, "vectorized")
    assert got == {
        "sequential": digest(long_run(DilationLangevin, "sequential")),
        "vectorized": digest(vectorized),
        "warm": digest(half(vectorized, 0)),
        "done": digest(half(vectorized, 0)),
        "continued": digest(half(vectorized, 1)),
    }
