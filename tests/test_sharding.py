"""Vectorised chains split over devices (``DilationLangevin(mesh=...)``).

The checks that need several devices run in fresh interpreters with
``--xla_force_host_platform_device_count`` (the flag must be set before JAX
starts); the two-process check starts two interpreters joined by
``jax.distributed.initialize`` over CPU collectives (gloo).
"""

import json
import os
import socket
import subprocess
import sys
from importlib import metadata

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.sharding import Mesh
from numpyro.infer import MCMC

from numpyro_dilation import DilationLangevin, sharding
from numpyro_dilation._jaxlib import installed_release
from numpyro_dilation.workflow.cli import xla_flags_for
from tests.conftest import ROOT, run_python

#: The model every check here samples: independent normals whose means and sds are known.
MODEL_CODE = """
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

LOC = jnp.arange(5.0)
SCALE = jnp.linspace(0.5, 2.0, 5)


def model():
    numpyro.sample("x", dist.Normal(LOC, SCALE).to_event(1))
"""


def model():
    numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))


def host_devices(count: int) -> dict[str, str]:
    """``XLA_FLAGS`` for ``count`` host devices; on jaxlib before 0.12 also single-threaded
    Eigen, without which a device stuck in multi-threaded LAPACK (the dense metric's
    factorisations) can leave the others waiting in a collective for ever."""
    flags = f"--xla_force_host_platform_device_count={count}"
    return {"XLA_FLAGS": xla_flags_for(flags, metadata.version("jaxlib"))}


def test_mesh_must_be_a_mesh():
    with pytest.raises(TypeError, match="`mesh` must be a jax.sharding.Mesh"):
        DilationLangevin(model, mesh=jax.devices())


def test_mesh_needs_vectorized_chains():
    mesh = Mesh(np.array(jax.devices()[:1]), ("chain",))
    mcmc = MCMC(
        DilationLangevin(model, mesh=mesh), num_warmup=10, num_samples=10, progress_bar=False
    )
    with pytest.raises(ValueError, match='chain_method="vectorized"'):
        mcmc.run(jax.random.PRNGKey(0))


def test_chains_must_split_evenly():
    class TwoDevices:  # only the mesh's size is read
        size = 2

    with pytest.raises(ValueError, match="multiple of 2 chains"):
        sharding.check_chains_fit(TwoDevices(), True, 7)
    sharding.check_chains_fit(TwoDevices(), True, 8)


def test_host_checks_need_jaxlib_0_12_with_several_devices():
    class TwoDevices:
        size = 2

    one = Mesh(np.array(jax.devices()[:1]), ("chain",))
    assert sharding.host_checks_work(one)
    assert sharding.host_checks_work(TwoDevices()) == (installed_release() >= (0, 12))


def test_place_splits_chain_arrays_and_replicates_the_rest():
    mesh = Mesh(np.array(jax.devices()[:1]), ("chain",))
    tree = {"per_chain": np.zeros((6, 3)), "shared": np.zeros((3, 3)), "scalar": np.float32(1)}
    placed = sharding.place(tree, mesh, 6)
    assert placed["per_chain"].sharding.spec == sharding.chain_sharding(mesh).spec
    assert placed["shared"].sharding.spec == sharding.replicated(mesh).spec
    assert placed["scalar"].shape == ()


DEVICES_CODE = (
    MODEL_CODE
    + """
import json
import jax
import numpy as np
from jax.sharding import Mesh
from numpyro.infer import MCMC
from numpyro_dilation import DilationLangevin
from tests.conftest import assert_mean_close, assert_sd_close

assert jax.local_device_count() == 4, jax.devices()
out = {}
for ensemble in (False, True):
    draws = {}
    for k in (1, 2, 4):
        mesh = Mesh(np.array(jax.devices()[:k]), ("chain",))
        mcmc = MCMC(DilationLangevin(model, mesh=mesh, ensemble=ensemble), num_warmup=300,
                    num_samples=300, num_chains=64, chain_method="vectorized",
                    progress_bar=False)
        mcmc.run(jax.random.PRNGKey(1))
        x = mcmc.get_samples(group_by_chain=True)["x"]
        if k > 1:
            assert x.sharding.spec == jax.sharding.PartitionSpec(("chain",)), x.sharding
            assert len(x.addressable_shards) == k
            assert x.addressable_shards[0].data.shape[0] == 64 // k
        draws[k] = np.asarray(x)
    # the statistical check on the draws of the most devices
    assert_mean_close(draws[4], np.asarray(LOC), np.asarray(SCALE))
    assert_sd_close(draws[4], np.asarray(SCALE))
    out[str(ensemble)] = {
        str(k): float(np.max(np.abs(draws[k] - draws[1]))) for k in (2, 4)
    }
print("RESULT", json.dumps(out))
"""
)


@pytest.mark.integration
def test_same_draws_on_one_two_and_four_devices():
    """Same seed, same draws on 1, 2 and 4 devices up to the order of sums, default
    kernel and ensemble mode, and the draws pass the exactness checks sharded."""
    stdout = run_python(DEVICES_CODE, env_extra=host_devices(4))
    result = json.loads(stdout.split("RESULT", 1)[1])
    for ensemble, diffs in result.items():
        for k, diff in diffs.items():
            # float32 sums in another order: differences of a few ulps, grown
            # over 600 iterations, far below the posterior's scale (0.5 to 2)
            assert diff < 1e-3, (ensemble, k, diff)


PROCESS_CODE = (
    """
import sys
import jax

process_id, num_processes, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if num_processes > 1:  # before anything starts JAX's backend
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                               num_processes=num_processes, process_id=process_id)
"""
    + MODEL_CODE
    + """
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from numpyro.infer import MCMC
from numpyro_dilation import DilationLangevin

assert len(jax.devices()) == 2, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("chain",))
mcmc = MCMC(DilationLangevin(model, mesh=mesh, ensemble=True), num_warmup=200,
            num_samples=200, num_chains=32, chain_method="vectorized", progress_bar=False)
mcmc.run(jax.random.PRNGKey(3))
x = mcmc.get_samples(group_by_chain=True)["x"]
# each process holds its own half of the chains
assert len(x.addressable_shards) == 2 // num_processes
x = multihost_utils.process_allgather(x, tiled=True) if num_processes > 1 else np.asarray(x)
if process_id == 0:
    np.save(out, x)
"""
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_two_processes_match_one(tmp_path):
    """Two processes joined by ``jax.distributed``, one device and half the chains
    each, give the draws of one process with two devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    port = str(free_port())

    def start(process_id, num_processes, out, devices):
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                PROCESS_CODE,
                str(process_id),
                str(num_processes),
                port,
                str(out),
            ],
            env={**env, **host_devices(devices)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(procs):
        try:
            outputs = [p.communicate(timeout=600) for p in procs]
        finally:
            for p in procs:
                p.kill()
        for p, (stdout, stderr) in zip(procs, outputs):
            assert p.returncode == 0, f"STDOUT:\n{stdout}\nSTDERR:\n{stderr[-5000:]}"

    finish([start(i, 2, tmp_path / "two.npy", 1) for i in range(2)])
    finish([start(0, 1, tmp_path / "one.npy", 2)])
    two, one = np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy")
    assert two.shape == one.shape == (32, 200, 5)
    np.testing.assert_allclose(two, one, atol=1e-3)
