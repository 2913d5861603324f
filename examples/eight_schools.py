"""Eight schools, non-centred, judged against posteriordb's reference.

``forest.png`` puts each school's effect (mean and 94% HDI) from both samplers
beside the reference mean and sd of long Stan runs.

    python examples/eight_schools.py [--num-samples N] [--out DIR]
"""

from _common import main_for

from numpyro_dilation.workflow.plots import plot_forest


def forest(comparisons):
    (comparison,) = comparisons
    return [("forest", plot_forest(comparison, title=comparison.title))]


if __name__ == "__main__":
    main_for("eight_schools", forest)
