"""Shared test helpers: Monte Carlo tolerances and small models.

Importing it (pytest does, before any test module) switches XLA's CPU code
generation to its classic emitters where the installed jaxlib has them
(:func:`use_fast_compiling_emitters`).
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

from benchmarks.common import release_compiled_code

#: The XLA flag that chooses the CPU emitters, either way.
EMITTERS_FLAG = "--xla_cpu_use_fusion_emitters"

#: XLA's classic CPU emitters.  jaxlib 0.10 compiles with its newer fusion emitters
#: by default and still has these, which compile a sampler's program about twice
#: as fast; jaxlib 0.12 has only the newer ones, and rejects the flag.
FAST_COMPILE_FLAG = f"{EMITTERS_FLAG}=false"

#: Set once the choice is made, so that pytest-xdist's workers (which inherit the
#: environment) do not probe again.
FAST_COMPILE_DECIDED = "NUMPYRO_DILATION_TESTS_XLA_EMITTERS_DECIDED"


def with_fast_compile_flag(flags: str) -> str:
    """``flags`` with :data:`FAST_COMPILE_FLAG` added, unless they choose the emitters either way."""
    if EMITTERS_FLAG in flags:
        return flags  # the user's own choice
    return f"{flags} {FAST_COMPILE_FLAG}".strip()


def fast_compile_in_effect() -> bool:
    """Whether this process compiles with :data:`FAST_COMPILE_FLAG`."""
    return FAST_COMPILE_FLAG in os.environ.get("XLA_FLAGS", "").split()


def use_fast_compiling_emitters() -> None:
    """Add :data:`FAST_COMPILE_FLAG` to ``XLA_FLAGS`` where this jaxlib accepts it.

    Most of a test's time is XLA compiling the sampler, not running it.  What the
    tests check (the kernel's draws and warnings) does not depend on how XLA
    emits machine code, but bitwise draws do: the pinned-draws test runs in an
    interpreter with XLA's defaults, as a user's would
    (:func:`default_code_generation_flags`).  An ``XLA_FLAGS`` that already
    names ``xla_cpu_use_fusion_emitters`` is left as it is.  An unknown flag aborts
    the process, so a child interpreter tries it first (about a second, once).
    """
    if os.environ.get(FAST_COMPILE_DECIDED):
        return
    os.environ[FAST_COMPILE_DECIDED] = "1"
    flags = os.environ.get("XLA_FLAGS", "")
    candidate = with_fast_compile_flag(flags)
    if candidate == flags:
        return
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**os.environ, "XLA_FLAGS": candidate},
        capture_output=True,
        timeout=300,
        check=False,
    )
    if probe.returncode == 0:
        os.environ["XLA_FLAGS"] = candidate


def default_code_generation_flags() -> str:
    """This process's ``XLA_FLAGS`` with XLA's default CPU emitters, for a child interpreter.

    Where :data:`FAST_COMPILE_FLAG` is in effect, it is replaced by its opposite, which
    also tells :func:`run_python` not to add it back.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if not fast_compile_in_effect():
        return flags
    kept = [f for f in flags.split() if f != FAST_COMPILE_FLAG]
    return " ".join([*kept, f"{EMITTERS_FLAG}=true"])


ROOT = Path(__file__).resolve().parents[1]


def ess(draws):
    """Bulk ESS of ``draws`` shaped (chains, draws) or (chains, draws, k), per component."""
    draws = np.asarray(draws, dtype=float)
    if draws.ndim == 2:
        return float(effective_sample_size(draws))
    return np.array([effective_sample_size(draws[..., j]) for j in range(draws.shape[-1])])


def divergence_counts(messages):
    """The counts of the kernel's divergence reports among warning ``messages``."""
    return [
        int(m.split("DilationLangevin: ")[1].split(" of ")[0])
        for m in messages
        if "were divergent" in m
    ]


def assert_mean_close(draws, true_mean, true_sd, z=4.5):
    """Mean within ``z`` Monte Carlo standard errors (ESS-based) of the exact value."""
    draws = np.asarray(draws, dtype=float)
    n_eff = ess(draws)
    err = np.abs(draws.reshape(-1, *draws.shape[2:]).mean(0) - true_mean)
    tol = z * np.asarray(true_sd) / np.sqrt(n_eff)
    assert np.all(err <= tol), f"mean error {err} exceeds {tol} (ESS {n_eff})"


def assert_sd_close(draws, true_sd, z=4.5, kurtosis=3.0):
    """Standard deviation within ``z`` Monte Carlo errors: var(s^2)/s^4 ~ (kurtosis - 1)/ESS.

    The ESS is that of the squared deviations, which is what ``s^2`` averages: HMC's
    draws can be antithetic (ESS of ``x`` above the number of draws) while their
    squares are not, and the ESS of ``x`` would then claim too tight a tolerance.
    """
    draws = np.asarray(draws, dtype=float)
    centred = draws - draws.reshape(-1, *draws.shape[2:]).mean(0)
    n_eff = np.minimum(ess(draws), ess(centred**2))
    sd = draws.reshape(-1, *draws.shape[2:]).std(0, ddof=1)
    rel_tol = z * 0.5 * np.sqrt((kurtosis - 1.0) / n_eff)
    ratio = sd / np.asarray(true_sd)
    assert np.all(np.abs(ratio - 1) <= rel_tol), f"sd ratio {ratio} off by more than {rel_tol}"


# before JAX starts its CPU backend (NORMAL_Y below is its first array)
use_fast_compiling_emitters()

#: The data set of the normal model that several test files run on (20 draws of N(3, 2)).
NORMAL_Y = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, size=20))


def run_mcmc(
    kernel,
    *,
    num_warmup,
    num_samples,
    num_chains=1,
    chain_method="sequential",
    seed=0,
    **run_kwargs,
):
    """``MCMC(kernel, ...)`` without a progress bar, run from ``PRNGKey(seed)`` with
    ``run_kwargs`` (model arguments, ``init_params``, ``extra_fields``); the one way
    the test files run a sampler."""
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), **run_kwargs)
    return mcmc


def run_python(code, env_extra=None, timeout=600):
    """Run ``code`` in a fresh interpreter (for XLA flags and x64, set before JAX starts)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    if fast_compile_in_effect():
        # the child's own flags, compiled as this process compiles
        env["XLA_FLAGS"] = with_fast_compile_flag(env.get("XLA_FLAGS", ""))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"subprocess failed:\nSTDOUT:\n{result.stdout}\nSTDERR:\n{result.stderr}")
    return result.stdout


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Free each module's compiled XLA programs when it is done.

    Every program keeps its machine code mapped in memory; a whole test run
    compiles thousands of them, and one process ran out of memory mappings
    (the kernel's default limit of 65530) and crashed inside LLVM.
    """
    yield
    release_compiled_code()


def memory_mappings() -> tuple[int, int] | None:
    """``(mappings in use, the kernel's limit)`` for this process; ``None`` off Linux."""
    try:
        with open("/proc/self/maps") as maps:
            used = sum(1 for _ in maps)
        with open("/proc/sys/vm/max_map_count") as limit:
            return used, int(limit.read())
    except (OSError, ValueError):
        return None


@pytest.fixture(autouse=True)
def _release_compiled_code_when_mappings_run_high():
    """Free the compiled programs after any test that leaves over half the mappings in use.

    A module of many end-to-end runs (NumPyro's own MCMC tests) can reach the
    limit before it ends; checking the count costs a millisecond, and clearing
    only when it is high keeps the small programs that most tests share.
    """
    yield
    mappings = memory_mappings()
    if mappings is not None and mappings[0] > mappings[1] // 2:
        release_compiled_code()
