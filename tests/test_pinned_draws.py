"""Pinned draws: the same seed gives bitwise the same draws as the recorded runs.

``tests/data/pinned_draws.npz`` holds the draws and extra fields of three small
runs (vectorised chains with the defaults; a diagonal metric with the linear
schedule and ``center="init"``; ensemble mode), last recorded when adaptation
began to pool by mode and ensemble mode moved onto the mode map; the ensemble
run (started on a crest between its modes) again when the starting curvature
began to count crests.
A refactoring must reproduce them to the bit; a change that is meant to alter
the draws regenerates the file with :func:`record` and says so in the changelog.

XLA compiles for the host CPU, and different SIMD instruction sets (or another
jax/jaxlib) round differently, after which accept/reject decisions diverge.  The
bitwise comparison therefore runs where the recording's jax, jaxlib and SIMD
flags match the host's; elsewhere the test is skipped with the reason.  It
records in an interpreter with XLA's default code generation, as a user's runs:
the test run's own emitters (``conftest``) round differently.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.special import logsumexp
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin

from .conftest import NORMAL_Y, default_code_generation_flags, run_python

PINNED = Path(__file__).parent / "data" / "pinned_draws.npz"
Y = NORMAL_Y


def model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def mixture_potential(x):
    means = jnp.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    log_w = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    return -logsumexp(log_w - 0.5 * jnp.sum((x["x"] - means) ** 2, -1))


RUNS = {
    "vec": ({}, 3),
    "vec_diag_linear": ({"dense_mass": False, "schedule": "linear", "center": "init"}, 2),
}


def record() -> dict[str, np.ndarray]:
    """Run the pinned configurations; return their arrays keyed ``run/name``."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (options, num_chains) in RUNS.items():
            mcmc = MCMC(
                DilationLangevin(model, **options),
                num_warmup=120,
                num_samples=60,
                num_chains=num_chains,
                chain_method="vectorized",
                progress_bar=False,
            )
            mcmc.run(
                jax.random.PRNGKey(3),
                Y,
                extra_fields=("potential_energy", "accept_prob", "t", "step_size"),
            )
            for k, v in mcmc.get_samples(group_by_chain=True).items():
                out[f"{name}/{k}"] = np.asarray(v)
            for k, v in mcmc.get_extra_fields(group_by_chain=True).items():
                out[f"{name}/extra/{k}"] = np.asarray(v)
        mcmc = MCMC(
            DilationLangevin(potential_fn=mixture_potential, ensemble=True),
            num_warmup=150,
            num_samples=50,
            num_chains=16,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(
            jax.random.PRNGKey(5),
            init_params={"x": jnp.zeros((16, 2))},
            extra_fields=("ensemble.num_mode_jumps", "accept_prob"),
        )
        out["ens/x"] = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
        for k, v in mcmc.get_extra_fields(group_by_chain=True).items():
            out[f"ens/extra/{k}"] = np.asarray(v)
    return out


def host_fingerprint() -> dict:
    """jax, jaxlib and the CPU's SIMD flags: what XLA's rounding depends on."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    simd = sorted(f for f in flags if f.startswith(("avx", "fma", "sse", "f16c", "bmi")))
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "simd": simd}


def record_with_default_code_generation(folder: Path) -> dict[str, np.ndarray]:
    """:func:`record` as a user's interpreter runs it: with XLA's default CPU code generation.

    The test run may compile with other emitters (``conftest``), which round differently.
    """
    flags = default_code_generation_flags()
    if flags == os.environ.get("XLA_FLAGS", ""):
        return record()
    path = folder / "draws.npz"
    run_python(
        "import numpy as np\n"
        "from tests.test_pinned_draws import record\n"
        f"np.savez({str(path)!r}, **record())\n",
        env_extra={"XLA_FLAGS": flags},
    )
    with np.load(path) as draws:
        return {k: draws[k] for k in draws.files}


@pytest.mark.integration
def test_same_seed_gives_the_pinned_draws_bitwise(tmp_path):
    pinned = np.load(PINNED)
    meta = json.loads(str(pinned["__meta__"]))
    if meta != host_fingerprint():
        pytest.skip(
            f"draws pinned with {meta}; this host is {host_fingerprint()}: XLA rounds"
            " differently, so a bitwise comparison says nothing here"
        )
    got = record_with_default_code_generation(tmp_path)
    expected = {k: pinned[k] for k in pinned.files if k != "__meta__"}
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
