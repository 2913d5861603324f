"""Settings of the multimodal suite: sizes, budgets, the seed, the plan's samplers and labels.

The full configuration (:data:`NUM_CHAINS` chains, :data:`NUM_WARMUP` +
:data:`NUM_SAMPLES`, :data:`BUDGET` for AIES and SMC), the quick one
(:data:`QUICK`, :data:`QUICK_PLAN`, :data:`QUICK_LABEL`), which samplers run on
the base targets, the copies and the label-switching models, their labels on
the page (:data:`SAMPLER_LABELS`) and the ablation.  The suite is
:mod:`benchmarks.multimodal`, its report :mod:`benchmarks.multimodal_report`.
"""

from __future__ import annotations

__all__ = [
    "ABLATION",
    "ABLATION_ADAPT",
    "ABLATION_TARGETS",
    "BUDGET",
    "COPY_SAMPLERS",
    "CORE_SAMPLERS",
    "LABEL_SAMPLERS",
    "NUM_CHAINS",
    "NUM_SAMPLES",
    "NUM_WARMUP",
    "OTHER_SAMPLERS",
    "QUICK",
    "QUICK_LABEL",
    "QUICK_PLAN",
    "SAMPLER_LABELS",
    "SEED",
    "SMC_PARTICLES",
]

NUM_CHAINS = 256
NUM_WARMUP = 1000
NUM_SAMPLES = 1000
#: Evaluations per chain allowed to AIES and SMC (densities for AIES, gradients for SMC).
BUDGET = 4000
#: SMC particles: 16 per chain of the other samplers.
SMC_PARTICLES = 4096
SEED = 2024

QUICK = {"num_chains": 16, "num_warmup": 40, "num_samples": 40, "budget": 160,
         "smc_particles": 128}
#: The quick run (a smoke test, a couple of minutes on a busy 2-core machine):
#: target -> samplers, and label-switching models -> samplers.
QUICK_PLAN = {"gauss2d_4": ["dilation_ensemble", "nuts", "pt_matched"],
              "gauss2d_4@shift100": ["dilation_ensemble"]}
QUICK_LABEL = {"galaxies_k3": ["dilation"]}

#: Samplers on the base targets, in the order they run (PT after the ensemble,
#: whose gradients per chain it is given).
CORE_SAMPLERS = ("dilation_ensemble", "dilation", "nuts", "pt_matched")
OTHER_SAMPLERS = ("aies", "smc", "mala_no_path")
#: Samplers on the transformed copies.
COPY_SAMPLERS = ("dilation_ensemble", "dilation")
#: Samplers of the label-switching models (NUTS on the real data only).
LABEL_SAMPLERS = {"galaxies_k3": ("dilation_ensemble", "dilation", "nuts"),
                  "gmm_label_switching": ("dilation_ensemble", "dilation")}

SAMPLER_LABELS = {
    "dilation": "DilationLangevin (defaults)",
    "dilation_ensemble": "DilationLangevin ensemble=True",
    "nuts": "NUTS (random inits)",
    "pt_matched": "parallel tempering (TFP, Syed ladder), the ensemble's gradients",
    "aies": "AIES (DE + stretch)",
    "smc": "BlackJAX tempered SMC (MALA)",
    "mala_no_path": "no path: the stationary kernel from the origin (ablation)",
    # rows of results recorded before the suite was split (hand-written PT at the suite's budget)
    "pt": "parallel tempering (HMC per temperature, suite budget; older results)",
    "exact": "exact draws (floor)",
}

#: (alpha, annealing steps) of the ablation: a star around the defaults (0.75, 500),
#: which are the main run.
ABLATION = ((0.5, 500), (1.0, 500), (0.75, 100), (0.75, 2000))
ABLATION_TARGETS = ("gauss2d_4", "gauss8d_4")
#: MALA iterations after the annealing in the ablation (warmup = annealing + this).
ABLATION_ADAPT = 500
