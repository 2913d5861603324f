"""A 2-D mixture of four Gaussians with weights 0.1, 0.2, 0.3, 0.4.

Four well-separated modes: every NUTS chain stays in the mode it starts in,
while DilationLangevin's annealing (figure ``annealing.png``) spreads its 64
chains over the modes before sampling.  ``modes.png`` compares the fraction of
draws per mode with the weights; ``density.png`` shows the draws on the density.

    python examples/mixture.py [--num-samples N] [--out DIR]
"""

from _common import main_for

if __name__ == "__main__":
    main_for("mixture")
