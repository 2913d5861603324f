"""Why ChEES-HMC fails regressions that NUTS passes: where its chains start.

The hard_geometry suite runs BlackJAX's ChEES-HMC by its documented recipe
(``blackjax.chees_adaptation`` with its diagonal metric estimate and trajectory
length floor, Adam at the paper's learning rate, Halton jitter) from NumPyro's
initial points, as every sampler there starts.  On four regressions it fails
with a split R-hat of 4-6.  This suite reruns those four (and one it passes, as a
control) from three kinds of start:

- ``numpyro_inits``: NumPyro's ``init_to_uniform`` points, initial step 0.1
  (the hard_geometry row);
- ``found_step``: the same points, the initial step found by BlackJAX's
  ``find_reasonable_step_size`` (Hoffman & Gelman's doubling and halving) at
  the first chain's point;
- ``located``: each chain started where 200 warmup iterations of NumPyro's NUTS
  from the same points left it (their gradients counted in the warmup's).

For each run it records the hard_geometry figures and how many chains barely
moved during sampling (:func:`barely_moved`).  The finding it measures: ChEES adapts one step size for all
chains, and a chain started where the gradient is many orders of magnitude
larger than in the posterior diverges at every trajectory with the step that the
chains already in the posterior set.  BlackJAX's docstring scopes dispersed
starts out ("a separate warmup-robustness limitation").

Run: ``python -m benchmarks.run chees_starts``.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import geometry_samplers, geometry_targets, hard_geometry
from benchmarks.posteriors import stan_names

#: The regressions ChEES fails in the hard_geometry run, and one it passes (a control).
TARGETS = (
    "kidiq-kidscore_momiq",
    "sblrc-blr",
    "kilpisjarvi_mod-kilpisjarvi",
    "arma-arma11",
    "earnings-logearn_height",
)
STARTS = ("numpyro_inits", "found_step", "located")
#: NUTS warmup iterations that locate the chains for the ``located`` start.
LOCATE_WARMUP = 200


def found_step(logdensity, positions) -> float:
    """BlackJAX's doubling/halving search for a first step size, at the first chain's point."""
    import blackjax

    first = jax.tree.map(lambda x: x[0], positions)
    state = blackjax.hmc.init(first, logdensity)
    dim = sum(np.size(x) for x in jax.tree.leaves(first))

    def kernel_generator(step_size):
        return blackjax.hmc(logdensity, step_size, jnp.ones(dim), 1).step

    return float(
        blackjax.adaptation.step_size.find_reasonable_step_size(
            jax.random.PRNGKey(0), kernel_generator, state, geometry_samplers.CHEES_INITIAL_STEP
        )
    )


def located_by_nuts(target: geometry_targets.Target, num_warmup: int):
    """A ``start`` for :func:`geometry_samplers.chees_hmc`: where NUTS's warmup leaves each chain."""
    from numpyro.infer import MCMC, NUTS

    def start(key, info):
        num_chains = jax.tree.leaves(info.param_info.z)[0].shape[0]
        args, kwargs = target.args()
        mcmc = MCMC(
            NUTS(target.model),
            num_warmup=num_warmup,
            num_samples=1,
            num_chains=num_chains,
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.warmup(
            key,
            *args,
            init_params=info.param_info.z,
            extra_fields=("num_steps",),
            collect_warmup=True,
            **kwargs,
        )
        grads = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
        return mcmc.post_warmup_state.z, grads

    return start


#: A chain whose sd is below this fraction of the reference sd in every parameter barely moved.
STILL_FRACTION = 0.01


def barely_moved(samples: dict[str, np.ndarray], moments: dict[str, tuple[float, float]]) -> int:
    """Chains whose sd is below :data:`STILL_FRACTION` of the reference sd in every parameter."""
    draws = stan_names(samples, moments)
    still = None
    for name, (_, ref_sd) in moments.items():
        x = np.asarray(draws[name], dtype=float)
        small = np.std(x.reshape(x.shape[0], -1), axis=1) < STILL_FRACTION * ref_sd
        still = small if still is None else still & small
    return int(np.sum(still))


def _settings(quick: bool) -> dict[str, Any]:
    return {
        "targets": list(TARGETS[:1]) if quick else list(TARGETS),
        "starts": list(STARTS),
        "num_chains": 4,
        "num_warmup": 50 if quick else 1000,
        "num_samples": 50 if quick else 1000,
        "locate_warmup": 20 if quick else LOCATE_WARMUP,
        "seed": 0,
        "chees": {
            "learning_rate": geometry_samplers.CHEES_LEARNING_RATE,
            "initial_step_size": geometry_samplers.CHEES_INITIAL_STEP,
            "mass_matrix_estimation": "diagonal",
        },
        "pass_definition": hard_geometry._default_settings(False)["pass_definition"],
    }


def one_run(name: str, start_kind: str, s: dict[str, Any]) -> dict[str, Any]:
    target = geometry_targets.TARGETS[name]
    num_chains = s["num_chains"]
    key = jax.random.fold_in(jax.random.PRNGKey(s["seed"]), num_chains)
    options: dict[str, Any] = {}
    if start_kind == "found_step":
        options["initial_step_size"] = found_step
    elif start_kind == "located":
        options["start"] = located_by_nuts(target, s["locate_warmup"])
    t0 = time.perf_counter()
    outcome = geometry_samplers.chees_hmc(
        target, key, num_chains, s["num_warmup"], s["num_samples"], **options
    )
    row = hard_geometry.figures(target, outcome, "ChEES-HMC", num_chains)
    row.pop("accuracy")
    row["start"] = start_kind
    row["chains_barely_moved"] = barely_moved(outcome.samples, target.moments())
    row["wall_s"] = time.perf_counter() - t0
    return row


def run(quick: bool = False) -> dict[str, Any]:
    """Run every target from every start (see the module docstring)."""
    if not hard_geometry.flag_set():
        return hard_geometry.run_under_flag("benchmarks.chees_starts", quick)
    s = _settings(quick)
    runs = []
    for name in s["targets"]:
        for start_kind in s["starts"]:
            row = one_run(name, start_kind, s)
            runs.append(row)
            print(
                f"{name:30s} {start_kind:14s} pass={row['pass']} r_hat={row['r_hat']:.3f}"
                f" ess={row['ess_bulk']:.0f} divergent={row['divergences']}"
                f" barely_moved={row['chains_barely_moved']}",
                flush=True,
            )
    return {"suite": "chees_starts", "settings": s, "runs": runs}


def report(result: dict[str, Any], figure_dir=None) -> str:
    """Markdown: one row per target and start."""
    s = result["settings"]
    lines = [
        "## chees_starts: why ChEES-HMC fails regressions NUTS passes",
        "",
        (
            f"BlackJAX's ChEES-HMC as in hard_geometry ({s['num_chains']} vectorised chains,"
            f" {s['num_warmup']} + {s['num_samples']}, `chees_adaptation` with its diagonal"
            f" metric and length floor, Adam at {s['chees']['learning_rate']}), from three"
            " starts: NumPyro's `init_to_uniform` points with an initial step of"
            f" {s['chees']['initial_step_size']} (the hard_geometry row); the same points with the"
            " step found by BlackJAX's `find_reasonable_step_size`; and each chain where"
            f" {s['locate_warmup']} NUTS warmup iterations from those points left it (their"
            " gradients counted).  *still* = chains whose sd stayed below"
            f" {STILL_FRACTION:.0%} of the reference sd in every parameter.  Pass as in"
            f" hard_geometry: {s['pass_definition']}."
        ),
        "",
        (
            "| target | start | pass | R-hat | bulk ESS | divergent | still | step"
            " | leapfrog steps | grads/chain |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| `{r['target']}` | {r['start']} | {'yes' if r['pass'] else 'no'}"
            f" | {r['r_hat']:.3f} | {r['ess_bulk']:.0f} | {r['divergences']}"
            f" | {r['chains_barely_moved']} of {r['num_chains']} | {r['step_size']:.3g}"
            f" | {r['num_leapfrog_steps']:.0f} | {r['grad_evals'] / r['num_chains']:.0f} |"
        )
    by = {(r["target"], r["start"]): r for r in result["runs"]}
    failed_inits = [t for t in s["targets"] if not by[(t, "numpyro_inits")]["pass"]]
    located_pass = [t for t in failed_inits if by[(t, "located")]["pass"]]
    stuck = [t for t in failed_inits if by[(t, "numpyro_inits")]["chains_barely_moved"] > 0]
    lines += [
        "",
        (
            f"From NumPyro's points ChEES fails {len(failed_inits)} of {len(s['targets'])};"
            f" in {len(stuck)} of those some chains barely moved.  A found initial step passes"
            f" {sum(by[(t, 'found_step')]['pass'] for t in failed_inits)} of them; started"
            f" where NUTS's warmup left the chains it passes {len(located_pass)}."
            "  ChEES adapts one step size for all chains: a chain that starts where the"
            " gradient is orders of magnitude larger than in the posterior diverges at every"
            " trajectory with the step the other chains set, and never arrives.  BlackJAX's"
            " docstring scopes dispersed starts out; the hard_geometry table keeps NumPyro's"
            " points, where every sampler starts."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.chees_starts [--quick]`` (``benchmarks.run`` writes the JSON)."""
    hard_geometry.flagged_main("benchmarks.chees_starts", run, __doc__, argv)


if __name__ == "__main__":
    main()
