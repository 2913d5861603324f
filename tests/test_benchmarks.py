"""The benchmark suites run end to end (quick versions) and the report builds.

Benchmarks measure, tests assert: nothing here checks a figure's value, only
that every suite runs, writes the documented JSON and reports every sampler,
so that the suites cannot rot; and that the multimodal suite's pieces (mixture
copies, the parallel-tempering ladder and its gradient count, the galaxy data
and model, the checkpoint) do what they say.  The quick suites run in one subprocess (as a
user runs them): the three cheapest in the integration tier, every suite in the
slow tier (``-m slow``), where the multimodal suite's quick run is also checked
field by field.  hard_geometry's quick mode starts its own subprocess with
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (see its docstring).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmarks.run import SUITES

ROOT = Path(__file__).resolve().parent.parent
METADATA = (
    "schema_version",
    "suite",
    "quick",
    "date",
    "git",
    "load_average",
    "versions",
    "machine",
    "command",
    "wall_time_s",
    "settings",
    "runs",
)


#: Quick suites of the default test run (about 2 minutes together on a busy 2-core machine);
#: the other three (hard_geometry, ensemble_cost, multimodal: about 6 minutes) run in the
#: slow tier, where every suite runs and the whole report is checked.
DEFAULT_SUITES = ("posteriordb", "overhead", "scaling")
#: Where a suite's ``SAMPLER_LABELS`` live when not in the suite's own module.
LABELS_MODULE = {"hard_geometry": "geometry_samplers", "multimodal": "multimodal_settings"}


def _python(*args: str, timeout: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, timeout=timeout)


def _run_and_report(tmp_path, suites):
    """Run ``suites`` in their quick versions in one process, build the report, check both."""
    results, docs = tmp_path / "results", tmp_path / "docs"
    _python("-m", "benchmarks.run", *suites, "--quick", "--out", str(results), timeout=600)
    _python("-m", "benchmarks.report", "--results", str(results), "--docs", str(docs), timeout=300)

    page = (docs / "benchmarks.md").read_text()
    for suite in SUITES:
        if suite not in suites:
            assert f"## {suite}\n\nThis suite has not been run yet" in page, suite
            continue
        result = json.loads((results / f"{suite}.json").read_text())
        assert set(METADATA) <= set(result), suite
        assert result["suite"] == suite and result["quick"] is True
        assert {"numpyro", "jax", "blackjax", "python"} <= set(result["versions"])
        assert result["runs"], suite
        # every sampler a suite ran is named on the page (by its key or its label)
        module = importlib.import_module(f"benchmarks.{LABELS_MODULE.get(suite, suite)}")
        labels = getattr(module, "SAMPLER_LABELS", {})
        for run in result["runs"]:
            if "sampler" in run:
                name = run["sampler"]
                assert name in page or labels.get(name, name) in page, (suite, name)
    assert page.count("has not been run") == len(SUITES) - len(suites)
    for name in ("DilationLangevin", "NUTS", "BlackJAX MALA", "floor", "MCMC.run"):
        assert name in page
    # every figure the page links to exists
    for line in page.splitlines():
        if line.startswith("!["):
            assert (docs / line.split("](")[1].rstrip(")")).exists(), line


@pytest.mark.integration
def test_quick_suites_and_report(tmp_path):
    _run_and_report(tmp_path, DEFAULT_SUITES)


@pytest.mark.slow
def test_all_quick_suites_and_report(tmp_path):
    _run_and_report(tmp_path, SUITES)


# ----------------------------------------------------------------------------- multimodal pieces


def test_provenance_helpers():
    from benchmarks.run import git_state, load_average

    git = git_state()
    assert set(git) == {"commit", "dirty"}
    if git["commit"] is not None:  # a git checkout
        assert len(git["commit"]) == 40 and isinstance(git["dirty"], bool)
    load = load_average()
    assert load is None or len(load) == 3


def test_mixture_copies_keep_masses_and_floors():
    """Translated and scaled copies: same mode masses, floors and far radius (same random numbers)."""
    from benchmarks.mixtures import SCALE_FACTORS, SHIFT_MULTIPLES, copies, shift_direction, targets
    from benchmarks.mode_metrics import reference

    base = targets()
    for name in ("gauss2d_4", "widths2d_3", "student10d_3_df3"):
        t = base[name]
        ref = reference(t, 1000, mass_draws=100_000)
        made = copies(t)
        assert [c.name for c in made] == [f"{name}@shift{m:g}" for m in SHIFT_MULTIPLES] + [
            f"{name}@scale{f:g}" for f in SCALE_FACTORS]
        sd = t.mode_sd().max()
        for c in made:
            assert c.base == name and np.array_equal(c.weights, t.weights)
            if c.transform["kind"] == "shift":
                shift = c.means - t.means
                np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape))
                np.testing.assert_allclose(np.linalg.norm(shift[0]), c.transform["multiple"] * sd)
                np.testing.assert_allclose(shift[0] / np.linalg.norm(shift[0]), shift_direction(t.dim))
                np.testing.assert_array_equal(c.scales, t.scales)
            else:
                f = c.transform["factor"]
                np.testing.assert_allclose(c.means, f * t.means)
                np.testing.assert_allclose(c.scales, f * t.scales)
            r = reference(c, 1000, mass_draws=100_000)
            np.testing.assert_allclose(r.region_mass, ref.region_mass, atol=1e-4)
            assert abs(r.tv_floor - ref.tv_floor) < 1e-4
            np.testing.assert_allclose(r.far_radius, ref.far_radius, rtol=1e-6)


def test_unequal_widths_assignment_uses_normalised_density():
    """The heaviest, narrowest mode gets its mass; a point between modes goes to the wide one."""
    from benchmarks.mixtures import WIDTHS_SCALES, WIDTHS_WEIGHTS, targets
    from benchmarks.mode_metrics import mode_fractions

    t = targets()["widths8d_3"]
    np.testing.assert_array_equal(t.scales, WIDTHS_SCALES)
    draws = t.exact_draws(np.random.default_rng(0), 200_000)
    np.testing.assert_allclose(mode_fractions(t, draws), WIDTHS_WEIGHTS, atol=0.005)
    # 3 from the narrow mode (30 of its sds), 13 from the wide one (13 sds): the wide one,
    # though the narrow mean is nearer; 1 from the narrow mode (10 sds): the narrow one
    x = t.means[0].copy()
    x[0] -= 3.0
    assert t.assign(x[None])[0] == 2
    x[0] += 2.0
    assert t.assign(x[None])[0] == 0
    # the narrow mode is at +e_0, the widest at -e_0, as in the other three-mode targets
    assert t.means[0, 0] > 0 > t.means[2, 0]


def test_syed_ladder_places_betas_at_equal_barrier():
    """Made-up rejection rates: the new ladder splits the interpolated barrier evenly."""
    from benchmarks.tempering import barrier, ladder_from_rejections, num_replicas_for_barrier

    betas = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])  # decreasing, as in run_pt
    rej = np.array([0.1, 0.1, 0.6, 0.1, 0.1])  # a bottleneck between 0.6 and 0.4
    new, lam = ladder_from_rejections(betas, rej, 6)
    assert lam == pytest.approx(1.0)
    assert new[0] == 1.0 and new[-1] == 0.0 and np.all(np.diff(new) < 0)
    b, cum = barrier(betas, rej)
    levels = np.interp(new[::-1], b, cum)
    np.testing.assert_allclose(np.diff(levels), lam / 5, atol=1e-12)
    # more inverse temperatures where the rejection is high: two inside (0.4, 0.6)
    assert np.sum((new > 0.4) & (new < 0.6)) == 2
    # equal rejections on an even ladder give the ladder back
    same, _ = ladder_from_rejections(betas, np.full(5, 0.3), 6)
    np.testing.assert_allclose(same, betas, atol=1e-12)
    # increasing order in, decreasing ladder out; any number of replicas
    up, _ = ladder_from_rejections(betas[::-1], rej[::-1], 4)
    np.testing.assert_allclose(up, ladder_from_rejections(betas, rej, 4)[0])
    # zero rejections are floored so that the barrier still increases
    flat, small = ladder_from_rejections(betas, np.zeros(5), 3)
    assert small > 0 and np.all(np.diff(flat) < 0)
    assert [num_replicas_for_barrier(x) for x in (0.0, 1.0, 3.2, 100.0)] == [4, 4, 8, 32]


def test_galaxy_data_and_model():
    """The committed galaxy velocities match MASS's documentation; the model's density is finite."""
    import jax.numpy as jnp
    from numpyro.infer.util import log_density, potential_energy

    from benchmarks.label_switching import GALAXIES_PATH, galaxy_mixture_model, load_galaxies

    y = load_galaxies()
    assert len(y) == 82  # "velocities in km/sec of 82 galaxies"
    assert y[0] == 9172 and y[-1] == 34279 and y[77] == 26690  # the 78th, MASS's documented typo
    assert np.all(np.diff(y) >= 0) and 20_000 < y.mean() < 21_000  # in km/s, not centred
    assert "GPL" in GALAXIES_PATH.read_text() and "Roeder" in GALAXIES_PATH.read_text()
    params = {"w": jnp.array([0.09, 0.87, 0.04]), "mu": jnp.array([9700.0, 21400.0, 33000.0]),
              "sigma": jnp.array([450.0, 2200.0, 900.0])}
    lp, _ = log_density(galaxy_mixture_model, (jnp.asarray(y),), {}, params)
    assert np.isfinite(float(lp))
    # far from the posterior, at the unconstrained origin (where DilationLangevin starts): finite
    origin = {"w": jnp.zeros(2), "mu": jnp.zeros(3), "sigma": jnp.zeros(3)}
    pe = potential_energy(galaxy_mixture_model, (jnp.asarray(y),), {}, origin)
    assert np.isfinite(float(pe)) and float(pe) > -lp


def test_posterior_bulk_reference():
    """EM finds the usual three-group fit of the galaxies; the origin is far outside the bulk."""
    from benchmarks.label_switching import (
        BULK_DROP,
        load_galaxies,
        mixture_loglik,
        reference_loglik,
    )

    y = load_galaxies()
    ref = reference_loglik(y, 3)
    # about 7 values near 9,700 km/s, most near 21,400, 3 near 33,000
    fit = mixture_loglik(y, np.array([[0.085, 0.878, 0.037]]), np.array([[9710.0, 21400.0, 33040.0]]),
                         np.array([[423.0, 2190.0, 920.0]]))[0]
    assert abs(ref - fit) < 1.0
    at_origin = mixture_loglik(y, np.full((1, 3), 1 / 3), np.zeros((1, 3)), np.ones((1, 3)))[0]
    assert at_origin < ref - BULK_DROP


def test_labelling_fractions():
    from benchmarks.mode_metrics import labelling_fractions

    mu = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 1.0, 3.0], [1.0, 2.0, 3.0]])
    frac = labelling_fractions(mu)
    assert len(frac) == 6 and sum(frac.values()) == pytest.approx(1.0)
    assert frac["mu0<mu1<mu2"] == 0.5 and frac["mu2<mu1<mu0"] == 0.25 and frac["mu1<mu0<mu2"] == 0.25


def test_multimodal_plan_and_resume(tmp_path, monkeypatch):
    """The full plan covers every target once per sampler; a cut run resumes from its checkpoint."""
    from benchmarks import multimodal
    from benchmarks.mixtures import all_targets, targets

    plan = multimodal.full_plan()
    assert len(plan) == len(set(plan))
    copies = {t for g, t, _ in plan if g == "equivariance"}
    assert copies == {n for n, t in all_targets().items() if t.base is not None}
    for t in targets():
        names = [s for g, n, s in plan if g == "main" and n == t]
        assert names.index("dilation_ensemble") < names.index("pt_matched")
        assert "nuts" in names

    calls = []

    def fake(t, key):
        calls.append(t.name)
        draws = t.exact_draws(np.random.default_rng(len(calls)), 4 * 8).reshape(4, 8, t.dim)
        return {"draws": draws, "grads_per_chain": 10.0, "grads_total": 40.0}

    monkeypatch.setattr(multimodal, "PARTIAL", tmp_path / "multimodal.partial.json")
    monkeypatch.setattr(multimodal, "_samplers", lambda s: {"aies": fake, "smc": fake})
    kwargs = {"only_targets": ["gauss2d_4", "gauss2d_4@scale0.01"], "only_samplers": ["aies", "smc"],
              "sizes": {"num_chains": 4, "num_warmup": 8, "num_samples": 8}}
    first = multimodal.run(**kwargs)
    assert calls == ["gauss2d_4", "gauss2d_4"]  # copies run only DilationLangevin
    assert (tmp_path / "multimodal.subset.partial.json").exists()
    assert first["subset"] and {"git", "date_start", "date_end", "load_average"} <= set(first["provenance"])
    again = multimodal.run(**kwargs)
    assert calls == ["gauss2d_4", "gauss2d_4"]  # nothing rerun
    assert again["runs"] == first["runs"] and len(again["provenance"]["resumed_from"]) == 1


@pytest.mark.integration
def test_parallel_tempering_counts_every_gradient(monkeypatch):
    """Count the log density's and gradient's evaluations inside TFP: they match run_pt's count."""
    import jax

    from benchmarks import tempering
    from benchmarks.mixtures import Mixture, targets
    from benchmarks.tempering import run_pt

    monkeypatch.setattr(tempering, "PT_MAX_DRAWS", 7)  # the thinned sampling phase counts too

    counts = {"value": 0, "grad": 0}
    base = targets()["gauss2d_4"]
    # XLA runs host callbacks on its own threads, several at once: an unguarded
    # `+=` lost updates on a loaded machine (6889 values counted for 6900)
    lock = threading.Lock()

    def add(key):
        def callback(x):
            with lock:
                counts[key] += int(np.prod(np.shape(x)[:-1], dtype=int))
        return callback

    @jax.custom_vjp
    def potential(x):
        jax.debug.callback(add("value"), x)
        return base.potential(x)

    def fwd(x):
        jax.debug.callback(add("value"), x)
        value, vjp = jax.vjp(base.potential, x)
        return value, (x, vjp)

    def bwd(res, g):
        x, vjp = res
        jax.debug.callback(add("grad"), x)
        return vjp(g)

    potential.defvjp(fwd, bwd)

    class Counted(Mixture):
        def potential(self, x):
            return potential(x)

    target = Counted(base.name, base.label, base.means, base.weights)
    out = run_pt(target, jax.random.PRNGKey(0), num_chains=3, budget=2000)
    jax.effects_barrier()
    assert out["draws"].shape == (3, out["pt"]["num_samples"], 2) and out["pt"]["num_samples"] <= 7
    assert out["pt"]["thinning"] > 1
    assert counts["grad"] == out["grads_total"]
    # every gradient comes with a value; the swaps evaluate the density once more per replica
    assert counts["value"] == counts["grad"] + 3 * out["density_evals_per_chain"]
    assert out["grads_per_chain"] <= 2000 + out["pt"]["num_replicas"] * 5 * 4


@pytest.mark.slow
def test_multimodal_quick_suite_and_report(tmp_path):
    """The quick multimodal suite (a couple of minutes) writes the documented JSON and report.

    Slow tier: the integration tier's longest test after the demo; the slow tier's
    ``test_all_quick_suites_and_report`` runs the same quick suite as well.
    """
    results, docs = tmp_path / "results", tmp_path / "docs"
    _python("-m", "benchmarks.run", "multimodal", "--quick", "--out",
            str(results / "multimodal.json"), timeout=600)
    _python("-m", "benchmarks.report", "--results", str(results), "--docs", str(docs), timeout=300)
    result = json.loads((results / "multimodal.json").read_text())
    assert set(METADATA) <= set(result) and result["quick"] is True
    assert result["git"]["commit"] is None or len(result["git"]["commit"]) == 40
    assert len(result["load_average"]["start"]) == 3
    groups = {(r["group"], r["sampler"]) for r in result["runs"]}
    assert {("main", "dilation_ensemble"), ("main", "nuts"), ("main", "pt_matched"),
            ("equivariance", "dilation_ensemble"), ("label_switching", "dilation")} <= groups
    pt = next(r for r in result["runs"] if r["sampler"] == "pt_matched")
    assert {"num_replicas", "barrier_by_round", "betas", "swap_rejection_by_pair"} <= set(pt["pt"])
    assert all("ess_per_1k_grads" in r for r in result["runs"] if r["sampler"] != "exact")
    assert "shift_directions" in result["settings"]
    page = (docs / "benchmarks.md").read_text()
    for heading in ("### Headline", "### Equivariance", "### Cost", "### Label switching",
                    "### Parallel tempering", "### Where a peer wins"):
        assert heading in page, heading


def test_committed_benchmark_page_is_what_the_results_generate(tmp_path):
    """docs/benchmarks.md is exactly what ``benchmarks.report`` makes of the committed JSON.

    A table edited by hand, or results committed without regenerating the page
    (``python -m benchmarks.report``), fail here.
    """
    from benchmarks.report import build
    from benchmarks.run import RESULTS_DIR

    generated = build(RESULTS_DIR, tmp_path)
    committed = (ROOT / "docs" / "benchmarks.md").read_text()
    assert generated == committed, (
        "docs/benchmarks.md differs from what benchmarks/results/*.json generate: run"
        " `python -m benchmarks.report`"
    )


def test_a_followup_subset_run_is_shown_beside_the_full_run(tmp_path):
    """A ``SUITE_followup.json`` beside a suite's JSON adds a section that pairs each of
    its runs whose figures changed with the full run's row (the full run's commit, then
    the later one's) and counts the runs that gave the same figures."""
    from benchmarks.report import build

    settings = {"num_chains": 256, "num_warmup": 1000, "num_samples": 1000}
    row = {"target": "gmm40_2d@shift100", "sampler": "dilation_ensemble", "group": "equivariance"}
    full = json.loads((ROOT / "benchmarks" / "results" / "multimodal.json").read_text())
    later = {
        "git": {"commit": "f" * 40},
        "settings": settings,
        "runs": [{**row, "tv": 0.0123, "modes_found": 1.0, "grads_per_chain": 6000.0}],
        "subset": True,
    }
    unchanged = next(
        r for r in full["runs"] if (r["target"], r["sampler"]) == ("gmm40_2d", "dilation_ensemble")
    )
    later["runs"].append(dict(unchanged))
    results = tmp_path / "results"
    results.mkdir()
    (results / "multimodal.json").write_text(json.dumps(full))
    (results / "multimodal_followup.json").write_text(json.dumps(later))
    page = build(results, tmp_path / "docs")
    old = next(r for r in full["runs"] if (r["target"], r["sampler"]) == (row["target"], row["sampler"]))
    assert "### Follow-up: a later commit on some targets" in page
    assert f"at commit fffffff (the full run above is {full['git']['commit'][:7]})" in page
    assert f"| `gmm40_2d@shift100` | DilationLangevin ensemble=True | {old['tv']:.3f} → 0.012 |" in page
    assert "Of its 2 runs, 1 gave the full run's figures exactly" in page
    assert "| `gmm40_2d` | DilationLangevin ensemble=True | " + f"{unchanged['tv']:.3f} →" not in page
