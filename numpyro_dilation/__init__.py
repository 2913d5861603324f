"""numpyro-dilation: the dilation-path annealed Langevin sampler as a NumPyro MCMC kernel."""

from numpyro_dilation.compare import Comparison, compare
from numpyro_dilation.health import SamplerHealthWarning
from numpyro_dilation.inference_data import (
    DILATION_EXTRA_FIELDS,
    HMC_EXTRA_FIELDS,
    WarmupDraws,
    extra_fields_for,
    to_inference_data,
)
from numpyro_dilation.kernel import DilationLangevin, DilationState

__version__ = "0.1.0.dev0"

__all__ = [
    "DILATION_EXTRA_FIELDS",
    "HMC_EXTRA_FIELDS",
    "Comparison",
    "DilationLangevin",
    "DilationState",
    "SamplerHealthWarning",
    "WarmupDraws",
    "__version__",
    "compare",
    "extra_fields_for",
    "to_inference_data",
]
