"""Bayesian logistic regression on scikit-learn's breast-cancer data (569 patients, 30 features).

The data ship inside scikit-learn (``pip install "numpyro-dilation[examples]"``);
nothing is downloaded.  ``coefficients.png`` shows every coefficient's mean
and 94% HDI from both samplers side by side.

    python examples/logistic_regression.py [--num-samples N] [--out DIR]
"""

from _common import main_for

from numpyro_dilation.workflow.plots import plot_forest


def coefficients(comparisons):
    (comparison,) = comparisons
    return [("coefficients", plot_forest(comparison, title=comparison.title))]


if __name__ == "__main__":
    main_for("logistic_regression", coefficients)
