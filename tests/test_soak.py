"""Soak test: many vectorised chains on potentials that do their own Cholesky and
triangular solves must never hang.

jaxlib's CPU LAPACK custom calls (``potrf``, ``trsm``), batched by ``vmap`` over
chains, can deadlock in Eigen's thread pool on jaxlib before 0.12 (the process
sits idle forever).  Each repetition runs in its own interpreter under a
timeout, so a hang fails the test with a clear message instead of stalling CI.
On affected jaxlib the interpreter gets ``--xla_cpu_multi_thread_eigen=false``
(the documented workaround, which the command-line tool also sets); on newer
jaxlib it runs without it.

Slow tier, and run by both CI legs explicitly (``-m slow -k soak``).  The cheap checks
of the command-line tool's flag handling run in the default tier.
"""

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from numpyro_dilation.workflow.cli import SINGLE_THREAD_EIGEN_FLAG, xla_flags_for

ROOT = Path(__file__).resolve().parents[1]

#: Seconds one repetition may take before it counts as a hang (a run takes ~10-20 s).
TIMEOUT_S = 120
NUM_WARMUP = 100
NUM_SAMPLES = 40

# One repetition: sample with DilationLangevin (defaults), vectorised chains, and
# print a JSON summary of the draws.  Both potentials factor a covariance matrix
# and solve triangular systems at every gradient evaluation.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    import numpyro, numpyro.distributions as dist
    from jax.scipy.linalg import solve_triangular
    from numpyro.infer import MCMC
    from numpyro_dilation import DilationLangevin

    target, num_chains, seed, num_warmup, num_samples = sys.argv[1:]
    num_chains, seed = int(num_chains), int(seed)
    rng = np.random.default_rng(0)

    def sq_exp(x, amplitude, lengthscale, jitter):
        d2 = jnp.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
        k = amplitude**2 * jnp.exp(-0.5 * d2 / lengthscale**2)
        return k + jitter * jnp.eye(x.shape[0])

    if target == "gp_regression":
        # GP regression, 24 points, learned amplitude, lengthscale and noise:
        # the marginal likelihood through a Cholesky factor and two solves.
        x = np.sort(rng.uniform(0, 10, 24))[:, None]
        y = np.sin(x[:, 0]) + 0.3 * rng.normal(size=24)

        def model():
            amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 1.0))
            lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.0, 1.0))
            noise = numpyro.sample("noise", dist.LogNormal(-1.0, 1.0))
            chol = jnp.linalg.cholesky(sq_exp(x, amplitude, lengthscale, noise**2 + 1e-6))
            white = solve_triangular(chol, y, lower=True)
            log_lik = -0.5 * jnp.sum(white**2) - jnp.sum(jnp.log(jnp.diag(chol)))
            numpyro.factor("y", log_lik)
    elif target == "latent_field":
        # Latent Gaussian field on a 5 x 5 grid with Poisson counts (a small
        # log-Gaussian Cox process, d = 27), centred: the field's prior density
        # needs the Cholesky factor of K(theta) and a triangular solve.
        g = np.arange(5.0)
        x = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        counts = rng.poisson(np.exp(0.5 + np.sin(x[:, 0] / 2)))

        def model():
            amplitude = numpyro.sample("amplitude", dist.LogNormal(0.0, 0.5))
            lengthscale = numpyro.sample("lengthscale", dist.LogNormal(0.5, 0.5))
            field = numpyro.sample("field", dist.Normal(0.0, 3.0).expand([25]).to_event(1))
            chol = jnp.linalg.cholesky(sq_exp(x, amplitude, lengthscale, 1e-4))
            white = solve_triangular(chol, field, lower=True)
            # replace the placeholder Normal(0, 3) prior by N(0, K)
            numpyro.factor(
                "prior",
                -0.5 * jnp.sum(white**2)
                - jnp.sum(jnp.log(jnp.diag(chol)))
                + 0.5 * jnp.sum((field / 3.0) ** 2),
            )
            numpyro.sample("counts", dist.Poisson(jnp.exp(field)), obs=counts)
    else:
        raise ValueError(f"unknown target {target!r}")

    mcmc = MCMC(
        DilationLangevin(model),
        num_warmup=int(num_warmup),
        num_samples=int(num_samples),
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed))
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    print(json.dumps({
        "finite": bool(all(np.isfinite(v).all() for v in draws.values())),
        "shape": list(draws["amplitude"].shape),
        "moved": float(np.mean(np.ptp(draws["amplitude"], axis=1) > 0)),
    }))
    """
)


def soak_env() -> dict[str, str]:
    """The environment of one repetition: the deadlock workaround where jaxlib needs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    flags = xla_flags_for(env.get("XLA_FLAGS"), metadata.version("jaxlib"))
    if flags is not None:
        env["XLA_FLAGS"] = flags
    return env


@pytest.mark.slow
@pytest.mark.parametrize("repetition", [0, 1])
@pytest.mark.parametrize("num_chains", [64, 256])
@pytest.mark.parametrize("target", ["gp_regression", "latent_field"])
def test_vectorised_chains_on_linear_algebra_potentials_finish(target, num_chains, repetition):
    env = soak_env()
    argv = [target, str(num_chains), str(repetition), str(NUM_WARMUP), str(NUM_SAMPLES)]
    try:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, *argv],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:  # the child is killed by subprocess.run
        pytest.fail(
            f"HANG: {num_chains} vectorised DilationLangevin chains on {target} (repetition"
            f" {repetition}) did not finish in {TIMEOUT_S} s with jaxlib"
            f" {metadata.version('jaxlib')} and XLA_FLAGS={env.get('XLA_FLAGS')!r}; jaxlib's CPU"
            " LAPACK deadlock (see docs/troubleshooting.md).\nSTDERR so far:\n"
            f"{err.stderr.decode() if isinstance(err.stderr, bytes) else err.stderr}"
        )
    if result.returncode != 0:
        pytest.fail(f"the run failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["shape"] == [num_chains, NUM_SAMPLES]
    assert summary["finite"], summary
    assert summary["moved"] > 0.5, summary  # most chains moved during sampling


@pytest.mark.parametrize(
    ("flags", "version", "expected"),
    [
        (None, "0.10.2", SINGLE_THREAD_EIGEN_FLAG),
        ("--a=1", "0.11.0", f"--a=1 {SINGLE_THREAD_EIGEN_FLAG}"),
        ("--xla_cpu_multi_thread_eigen=true", "0.10.2", "--xla_cpu_multi_thread_eigen=true"),
        (None, "0.12.0.1", None),
        ("--a=1", "0.13.0rc1", "--a=1"),
    ],
)
def test_cli_flag_only_on_affected_jaxlib_and_never_clobbers(flags, version, expected):
    assert xla_flags_for(flags, version) == expected


def test_cli_sets_the_flag_for_its_run_and_restores_the_environment(monkeypatch):
    from numpyro_dilation.workflow import cli

    seen = {}

    def fake_main(argv):
        seen["flags"] = os.environ.get("XLA_FLAGS")
        return 0

    monkeypatch.setattr(cli, "_main", fake_main)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    assert cli.main(["list"]) == 0
    assert seen["flags"] == xla_flags_for(
        "--xla_force_host_platform_device_count=2", metadata.version("jaxlib")
    )
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"


def test_importing_the_cli_leaves_xla_unstarted():
    # The flag works only if XLA reads XLA_FLAGS after main() sets it: importing
    # the command (as its console script and ``python -m`` do) must not start JAX.
    code = (
        "import os\n"
        "import numpyro_dilation.workflow.cli\n"
        "os.environ['XLA_FLAGS'] = '--not_an_xla_flag'\n"
        "import jax.numpy as jnp\n"
        "jnp.ones(1).block_until_ready()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=soak_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # XLA rejects the unknown flag when it starts: proof that it started after the import
    assert result.returncode != 0 and "not_an_xla_flag" in result.stderr, result.stderr[-2000:]
