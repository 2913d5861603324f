"""A 2-D banana (twisted Gaussian): ``x1 ~ N(0, 2)``, ``x2 | x1 ~ N(0.75 (x1^2 - 4), 1)``.

A curved ridge whose width changes along it; the reference is 20000 exact
draws.  ``density.png`` shows both samplers' draws on the density,
``annealing.png`` the dilation path.

    python examples/banana.py [--num-samples N] [--out DIR]
"""

from _common import main_for

if __name__ == "__main__":
    main_for("banana")
