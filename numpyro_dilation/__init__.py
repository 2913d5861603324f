"""numpyro-dilation: the dilation-path annealed Langevin sampler as a NumPyro MCMC kernel."""

from numpyro_dilation.health import SamplerHealthWarning
from numpyro_dilation.kernel import DilationLangevin, DilationState

__version__ = "0.1.0.dev0"

__all__ = ["DilationLangevin", "DilationState", "SamplerHealthWarning", "__version__"]
