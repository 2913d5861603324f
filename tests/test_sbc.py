"""Simulation-based calibration (Talts et al. 2018); the machinery is benchmarks/sbc.py.

The fast version (default run) calibrates DilationLangevin on the logistic
regression with 200 replications and shows that the same check fails for a
deliberately biased sampler (unadjusted Langevin with a large fixed step).
The full version (``-m slow``) runs 200 replications of each of the three
models; ``python -m benchmarks.sbc`` writes the results shown in the docs.

A quantity is calibrated when its chi-square test of rank uniformity has
p > 0.01 / k, for k quantities of a model (Bonferroni: a calibrated sampler
fails a model's check with probability below 1%).  Seeds are fixed, so each
outcome is reproducible.
"""

import functools

import numpy as np
import pytest

from benchmarks.sbc import (
    MODELS,
    SamplerConfig,
    rank,
    rank_uniformity,
    run_sbc,
    thin,
    unadjusted_langevin,
)
from numpyro_dilation import DilationLangevin

FAMILY_ALPHA = 0.01
FAST = SamplerConfig(num_warmup=300, num_samples=500, num_chains=2)
FAST_REPLICATIONS = 200
FAST_BINS = 10
NUM_RANKS = 99


def p_values(result, num_bins):
    return {k: v["p_value"] for k, v in result.test(num_bins).items()}


def calibrated(result, num_bins):
    p = p_values(result, num_bins)
    return min(p.values()) > FAMILY_ALPHA / len(p)


@functools.cache
def fast_sbc(biased):
    factory = unadjusted_langevin(1.0) if biased else DilationLangevin
    return run_sbc(
        MODELS["logistic_regression"],
        factory,
        num_replications=FAST_REPLICATIONS,
        num_ranks=NUM_RANKS,
        config=FAST,
        seed=1,
    )


# ------------------------------------------------------------------ the statistics


def test_rank_uniformity_accepts_uniform_and_rejects_concentrated_ranks():
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, NUM_RANKS + 1, size=400)
    assert rank_uniformity(uniform, NUM_RANKS, 10)["p_value"] > 0.01
    # ranks of a sampler whose posterior is twice too wide: they pile up in the middle
    too_wide = np.clip(np.round(50 + 12 * rng.normal(size=400)), 0, NUM_RANKS).astype(int)
    result = rank_uniformity(too_wide, NUM_RANKS, 10)
    assert result["p_value"] < 1e-6 and sum(result["counts"]) == 400
    with pytest.raises(ValueError, match="must divide num_ranks"):
        rank_uniformity(uniform, NUM_RANKS, 7)


def test_thinning_by_ess():
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(4, 500))
    kept = thin(independent, NUM_RANKS)
    assert kept.shape == (NUM_RANKS,) and np.all(np.isin(kept, independent))
    # an AR(1) chain with ESS ~ 30 per 2000 draws cannot give 99 independent draws ...
    ar = np.zeros((4, 500))
    for t in range(1, 500):
        ar[:, t] = 0.97 * ar[:, t - 1] + rng.normal(size=4)
    assert thin(ar, NUM_RANKS) is None
    # ... but can give 20
    assert thin(ar, 20).shape == (20,)
    assert rank(0.5, np.array([0.1, 0.7, 0.2])) == 2


# ------------------------------------------------------------------ fast SBC (default run)


def test_fast_sbc_calibrates_dilation_langevin():
    result = fast_sbc(biased=False)
    assert result.not_ranked == 0
    assert len(result.ranks["a"]) == FAST_REPLICATIONS
    assert calibrated(result, FAST_BINS), p_values(result, FAST_BINS)


def test_fast_sbc_fails_for_biased_unadjusted_langevin():
    """Unadjusted Langevin with step 1 (in the adapted metric) doubles a Gaussian's variance."""
    result = fast_sbc(biased=True)
    assert result.not_ranked == 0  # it ran: the failure is calibration, not a crash
    assert not calibrated(result, FAST_BINS), p_values(result, FAST_BINS)
    # the signature of a too-wide posterior: the outer rank bins are under-filled
    counts = np.sum([v["counts"] for v in result.test(FAST_BINS).values()], axis=0)
    expected = counts.sum() / FAST_BINS
    assert counts[0] + counts[-1] < 2 * expected


# ------------------------------------------------------------------ full SBC (slow)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_full_sbc(name):
    result = run_sbc(MODELS[name], num_replications=200, num_ranks=NUM_RANKS, seed=0)
    assert result.not_ranked == 0
    assert calibrated(result, 20), p_values(result, 20)


@pytest.mark.slow
def test_full_sbc_fails_for_biased_unadjusted_langevin():
    result = run_sbc(
        MODELS["logistic_regression"],
        unadjusted_langevin(1.0),
        num_replications=200,
        num_ranks=NUM_RANKS,
        seed=0,
    )
    assert not calibrated(result, 20), p_values(result, 20)
