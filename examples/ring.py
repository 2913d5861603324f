"""A 2-D ring: a broad prior seen through a noisy squared radius.

``x ~ Normal(0, 5)`` in 2-D and ``|x|^2`` observed as 9 with unit noise: the
posterior is a thin circle of radius 3.  One connected but strongly curved
mode; ``density.png`` shows both samplers' draws on its contours and
``annealing.png`` DilationLangevin's 256 particles growing from the centre
onto the ring.

    python examples/ring.py [--num-samples N] [--out DIR]
"""

from _common import main_for

if __name__ == "__main__":
    main_for("ring")
