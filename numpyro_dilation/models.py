"""Moved to :mod:`numpyro_dilation.workflow.examples`.

A re-export kept only while ``benchmarks/posteriors.py`` still imports
``eight_schools_model`` from here; remove it once that import is updated.
"""

from numpyro_dilation.workflow import examples as _examples
from numpyro_dilation.workflow.examples import *

__all__ = list(_examples.__all__)
