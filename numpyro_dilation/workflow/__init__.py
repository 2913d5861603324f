"""The workflow around the sampler: ArviZ conversion, comparisons, reports, examples.

Nothing here is needed to sample: ``import numpyro_dilation`` does not import
this package (nor pandas, xarray, matplotlib or ArviZ) until one of its names
is used.  The modules, from the leaf up (each imports only those above it):

===================  ===================================================================
``results``          result types, column names, :func:`measure_compile` (compile time),
                     :func:`grad_evals_per_draw` / :func:`count_grad_evals` (gradients)
``diagnostics``      :func:`check_convergence`: rank-normalised split R-hat and bulk ESS
``inference_data``   :func:`to_inference_data`, :class:`WarmupDraws`, extra fields to collect
``tables``           the parameter, sampler and mode tables of a comparison
``plots``            its figures (matplotlib, optional)
``report``           its Markdown, and report folders
``examples``         the bundled example models, data and references (a registry only)
``comparison``       :func:`compare`, :class:`Comparison`, :func:`compare_example`
``cli``              the ``numpyro-dilation`` command
===================  ===================================================================
"""

from numpyro_dilation.workflow.comparison import Comparison, compare, compare_example
from numpyro_dilation.workflow.diagnostics import ConvergenceCheck, check_convergence
from numpyro_dilation.workflow.examples import EXAMPLES, Example, get_example
from numpyro_dilation.workflow.inference_data import (
    DILATION_EXTRA_FIELDS,
    HMC_EXTRA_FIELDS,
    WarmupDraws,
    extra_fields_for,
    grad_eval_field,
    to_inference_data,
)
from numpyro_dilation.workflow.report import write_report
from numpyro_dilation.workflow.results import (
    Timing,
    count_grad_evals,
    grad_evals_per_draw,
    measure_compile,
)

__all__ = [
    "DILATION_EXTRA_FIELDS",
    "EXAMPLES",
    "HMC_EXTRA_FIELDS",
    "Comparison",
    "ConvergenceCheck",
    "Example",
    "Timing",
    "WarmupDraws",
    "check_convergence",
    "compare",
    "compare_example",
    "count_grad_evals",
    "extra_fields_for",
    "get_example",
    "grad_eval_field",
    "grad_evals_per_draw",
    "measure_compile",
    "to_inference_data",
    "write_report",
]
