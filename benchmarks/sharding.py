"""sharding suite: vectorised chains split over 1, 2, 4 ... devices (``mesh=``).

For each number of devices ``k`` and each number of chains, DilationLangevin
(defaults, and ``ensemble=True``) runs on a mesh of the first ``k`` devices, on
a 10-dimensional Gaussian with sds 0.5-2.  Reported per run: compilation time,
the median time per warmup and per sampling iteration, ESS per second (with and
without compilation), the largest difference of the draws from the one-device
run with the same seed, and the collectives in the compiled iteration (how many
and how many bytes, in all and outside every branch).

On a CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``),
which share the machine's cores: more devices add no compute there, only
another spread of the work over the cores (and collectives through memory).  The
same module is the script to run on GPUs::

    python -m benchmarks.sharding --chains 1024 16384 131072 --devices 1 2 4 8 \\
        --out sharding_gpu.json

(``--devices`` counts the accelerators to use; the chains must split evenly.)
The suite run by ``python -m benchmarks.run sharding`` starts this module in a
fresh interpreter with 4 host devices and reads its JSON back.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: Total chains, split over every device count, and chains per device, grown with it.
FIXED_TOTAL = (256, 4096)
PER_DEVICE = 256
DEVICES = (1, 2, 4)
KERNELS = ("default", "ensemble")
SAMPLER_LABELS = {
    "default": "DilationLangevin (defaults)",
    "ensemble": "DilationLangevin ensemble=True",
}
DIM = 10
DTYPE_BYTES = {"f32": 4, "f64": 8, "s32": 4, "u32": 4, "s64": 8, "u64": 8, "pred": 1}


def collectives(hlo: str) -> dict[str, Any]:
    """Collectives of a compiled HLO module: count and bytes, all and unconditional.

    An instruction is unconditional when its computation is reached from the
    entry without passing through a ``conditional``: it runs at every
    iteration.  The rest sit in branches (the phase of the iteration, window
    ends, searches, mode moves, health checks), each run only when taken, so
    the total is an upper bound on what one iteration exchanges.
    """
    comps: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo.splitlines():
        head = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head and not line.startswith(" "):
            current = head.group(2)
            comps[current] = []
            entry = current if head.group(1) else entry
        elif current is not None:
            comps[current].append(line)
    calls: dict[str, list[tuple[str, bool]]] = {name: [] for name in comps}
    for name, lines in comps.items():
        for line in lines:
            branches = re.search(r"branch_computations=\{([^}]*)\}", line)
            if branches:
                calls[name] += [(c.strip().lstrip("%"), True) for c in branches.group(1).split(",")]
            pair = re.search(r"true_computation=%?([\w.\-]+), false_computation=%?([\w.\-]+)", line)
            if pair:
                calls[name] += [(pair.group(1), True), (pair.group(2), True)]
            for key in ("calls", "body", "condition", "to_apply"):
                calls[name] += [(c, False) for c in re.findall(key + r"=%?([\w.\-]+)", line)]
    always, stack = set(), [entry]
    while stack:
        name = stack.pop()
        if name in always or name not in comps:
            continue
        always.add(name)
        stack += [callee for callee, conditional in calls[name] if not conditional]
    out = Counter()
    pattern = r"= (\w+)\[([\d,]*)\]\S* (all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter)(?:-start)?\("
    for name, lines in comps.items():
        for line in lines:
            m = re.search(pattern, line)
            if not m:
                continue
            dims = [int(x) for x in m.group(2).split(",") if x]
            size = DTYPE_BYTES.get(m.group(1), 4) * math.prod(dims)
            out["count"] += 1
            out["bytes"] += size
            if name in always:
                out["count_unconditional"] += 1
                out["bytes_unconditional"] += size
    return {
        k: int(out[k]) for k in ("count", "bytes", "count_unconditional", "bytes_unconditional")
    }


def configurations(devices: tuple[int, ...], totals: tuple[int, ...], per_device: int):
    """``(devices, chains, scalings)`` of every run: fixed totals and fixed chains per
    device, a run shared by both listed once."""
    runs: dict[tuple[int, int], list[str]] = {}
    for total in totals:
        for k in devices:
            runs.setdefault((k, total), []).append("fixed total")
    for k in devices:
        runs.setdefault((k, per_device * k), []).append("fixed per device")
    return [(k, chains, ", ".join(scalings)) for (k, chains), scalings in runs.items()]


def measure(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every configuration x kernel, in this process (which must see the devices)."""
    import jax
    import numpy as np
    import numpyro
    import numpyro.distributions as dist
    from jax.sharding import Mesh

    from benchmarks import common
    from numpyro_dilation import DilationLangevin

    loc = np.zeros(DIM, np.float32)
    scale = np.linspace(0.5, 2.0, DIM).astype(np.float32)

    def model():
        numpyro.sample("x", dist.Normal(loc, scale).to_event(1))

    runs, first_draws = [], {}
    for k, chains, scaling in configurations(
        tuple(settings["devices"]), tuple(settings["fixed_total"]), settings["per_device"]
    ):
        if k > len(jax.devices()) or chains % k:
            continue
        mesh = Mesh(np.array(jax.devices()[:k]), ("chain",))
        for name in settings["kernels"]:
            kernel = DilationLangevin(model, mesh=mesh, ensemble=name == "ensemble")
            r = common.run_mcmc(
                kernel,
                jax.random.PRNGKey(settings["seed"]),
                num_warmup=settings["num_warmup"],
                num_samples=settings["num_samples"],
                num_chains=chains,
                repeats=settings["repeats"],
            )
            x = np.asarray(r.samples["x"])
            ess = common.min_ess({f"x[{i}]": x[..., i] for i in range(DIM)})
            key = (name, chains)
            first_draws.setdefault(key, (k, x))
            base_k, base = first_draws[key]
            exchanged = {"count": 0, "bytes": 0, "count_unconditional": 0, "bytes_unconditional": 0}
            if k > 1:  # the collectives of one compiled iteration
                state = kernel.init(
                    jax.random.split(jax.random.PRNGKey(settings["seed"]), chains),
                    settings["num_warmup"],
                    None,
                    (),
                    {},
                )
                program = common.kernel_loop(kernel, 1, (), False)
                exchanged = collectives(program.lower(state, (), {}).compile().as_text())
            total_s = r.total_s + r.compile_s
            runs.append(
                {
                    "sampler": name,
                    "devices": k,
                    "chains": chains,
                    "chains_per_device": chains // k,
                    "scaling": scaling,
                    "compile_s": r.compile_s,
                    "warmup_ms_per_iteration": 1e3 * r.warmup_s / settings["num_warmup"],
                    "sample_ms_per_iteration": 1e3 * r.sample_s / settings["num_samples"],
                    "ess_bulk": ess["ess_bulk"],
                    "ess_per_s": ess["ess_bulk"] / max(total_s, 1e-9),
                    "ess_per_s_sampling": ess["ess_bulk"] / max(r.sample_s, 1e-9),
                    "grads_per_chain": r.grad_evals / chains,
                    "max_abs_diff_vs_devices": base_k,
                    "max_abs_diff": float(np.max(np.abs(x - base))),
                    # chains whose path split from the one-device run's (a near-tie
                    # accept or label decision flipped by the order of sums)
                    "chains_diverged": int(
                        np.sum(np.max(np.abs(x - base), axis=tuple(range(1, x.ndim))) > 1e-3)
                    ),
                    "max_z": float(np.max(np.abs(x.mean(axis=(0, 1)) - loc) / scale)),
                    "collectives": exchanged,
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def run(quick: bool = False) -> dict[str, Any]:
    """The suite in a fresh interpreter with 4 host devices (on a CPU-only JAX)."""
    settings = {
        "devices": [1, 2] if quick else list(DEVICES),
        "fixed_total": [64] if quick else list(FIXED_TOTAL),
        "per_device": 32 if quick else PER_DEVICE,
        "kernels": list(KERNELS),
        "num_warmup": 100 if quick else 400,
        "num_samples": 100 if quick else 400,
        "repeats": 1,
        "seed": 0,
        "dim": DIM,
        "model": f"Normal(0, linspace(0.5, 2, {DIM})), independent",
        "host_devices": max(DEVICES),
    }
    from importlib import metadata

    from numpyro_dilation.workflow.cli import xla_flags_for

    env = dict(os.environ)
    devices = f"--xla_force_host_platform_device_count={max(DEVICES)}"
    # jaxlib before 0.12: host devices waiting in a collective for one whose thread
    # is stuck in multi-threaded LAPACK hang (docs/troubleshooting.md)
    env["XLA_FLAGS"] = xla_flags_for(
        (env.get("XLA_FLAGS", "") + " " + devices).strip(), metadata.version("jaxlib")
    )
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sharding", "--settings", json.dumps(settings)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sharding worker failed:\n{done.stderr[-5000:]}")
    return {"suite": "sharding", "settings": settings, "runs": json.loads(done.stdout)}


def report(result: dict[str, Any], figure_dir: Path) -> str:
    """Markdown section: time per iteration, ESS/s and collectives against devices."""
    from benchmarks.common import fmt

    s = result["settings"]
    lines = [
        "## sharding: vectorised chains over several devices",
        "",
        (
            f"{s['model']} (d = {s['dim']}); DilationLangevin with `mesh=` a mesh of the first"
            f" k of {s['host_devices']} XLA host devices, {s['num_warmup']} warmup +"
            f" {s['num_samples']} draws, medians of {s['repeats']} timed runs. The host devices"
            " share this machine's 2 cores: more devices add no compute here, only another spread"
            " of the work over the cores (see docs/scaling-out.md for what changes on GPUs)."
            " *diff* is the largest difference of any draw from the run"
            " with the same seed and chains on one device (the order of floating-point sums), and"
            " in brackets the chains whose path split from it (differences above 1e-3: an"
            " accept or label decision within float32 rounding of its threshold went the other"
            " way, after which the chain draws other, equally valid values)."
            " Collectives: in the compiled iteration, all of them (an upper bound on one"
            " iteration's exchange: most sit in branches taken only in one phase, at window"
            " ends, searches or health checks) and those outside every branch."
        ),
        "",
        (
            "| kernel | scaling | chains | devices | compile s | ms / warmup it."
            " | ms / sampling it. | ESS/s (with compile) | ESS/s sampling | diff"
            " | collectives (KiB) | unconditional |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        c = r["collectives"]
        # a run is compared with the first of its chain count, on the fewest devices
        compared = r.get("max_abs_diff_vs_devices", 1) != r["devices"]
        diff = (
            f"{fmt(r['max_abs_diff'], '.1e')} ({r.get('chains_diverged', '-')})"
            if compared
            else "-"
        )
        lines.append(
            f"| {SAMPLER_LABELS.get(r['sampler'], r['sampler'])} | {r['scaling']} | {r['chains']}"
            f" | {r['devices']} | {fmt(r['compile_s'], '.1f')}"
            f" | {fmt(r['warmup_ms_per_iteration'], '.2f')}"
            f" | {fmt(r['sample_ms_per_iteration'], '.2f')} | {fmt(r['ess_per_s'], '.0f')}"
            f" | {fmt(r['ess_per_s_sampling'], '.0f')} | {diff}"
            f" | {c['count']} ({fmt(c['bytes'] / 1024, '.1f')})"
            f" | {c['count_unconditional']} ({fmt(c['bytes_unconditional'], '.0f')} B) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sharding",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--settings", help="JSON settings (as the suite passes them)")
    parser.add_argument("--devices", type=int, nargs="+", help="device counts to run")
    parser.add_argument("--chains", type=int, nargs="+", help="total chains (fixed over devices)")
    parser.add_argument("--per-device", type=int, default=None, help="chains per device")
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    if args.settings:
        settings = json.loads(args.settings)
    else:
        import jax

        settings = {
            "devices": args.devices or [len(jax.devices())],
            "fixed_total": args.chains or list(FIXED_TOTAL),
            "per_device": args.per_device or PER_DEVICE,
            "kernels": args.kernels,
            "num_warmup": 500,
            "num_samples": 500,
            "repeats": 2,
            "seed": 0,
            "dim": DIM,
            "model": f"Normal(0, linspace(0.5, 2, {DIM})), independent",
            "host_devices": len(jax.devices()),
            "platform": jax.default_backend(),
        }
    runs = measure(settings)
    text = json.dumps(runs if args.settings else {"settings": settings, "runs": runs}, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
