"""numpyro-dilation: the dilation-path annealed Langevin sampler as a NumPyro MCMC kernel.

The kernel and its warnings import eagerly.  The workflow tools
(:mod:`numpyro_dilation.workflow`: ArviZ conversion, comparisons with NUTS,
reports) need pandas, xarray and ArviZ, so their names here are imported on
first use: ``import numpyro_dilation`` stays as light as the sampler.
"""

from numpyro_dilation.health import SamplerHealthWarning
from numpyro_dilation.kernel import DilationLangevin, DilationState

__version__ = "0.1.0.dev0"

#: Names re-exported from :mod:`numpyro_dilation.workflow`, imported on first use.
_WORKFLOW_NAMES = frozenset(
    {
        "DILATION_EXTRA_FIELDS",
        "HMC_EXTRA_FIELDS",
        "Comparison",
        "ConvergenceCheck",
        "WarmupDraws",
        "check_convergence",
        "compare",
        "extra_fields_for",
        "to_inference_data",
    }
)


def __getattr__(name: str):
    # PEP 562: called only for names not found in the module, i.e. before the
    # first use of a workflow name (the result is cached below).
    if name in _WORKFLOW_NAMES:
        from numpyro_dilation import workflow

        value = getattr(workflow, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _WORKFLOW_NAMES)


__all__ = [
    "DILATION_EXTRA_FIELDS",
    "HMC_EXTRA_FIELDS",
    "Comparison",
    "ConvergenceCheck",
    "DilationLangevin",
    "DilationState",
    "SamplerHealthWarning",
    "WarmupDraws",
    "__version__",
    "check_convergence",
    "compare",
    "extra_fields_for",
    "to_inference_data",
]
