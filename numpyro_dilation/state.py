"""The sampler's state and its fixed settings: what the functional core passes around.

Types only (and :func:`phases`, which reads the state), so that the modules of
the moves (:mod:`.moves`), of one iteration (:mod:`.iteration`) and of the
kernel's composition (:mod:`.dilation`) can all import them without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.hmc import HMCState

from numpyro_dilation.adaptation import AdaptState
from numpyro_dilation.convergence import ConvergenceState
from numpyro_dilation.pooling import ModeState


class EnsembleSettings(NamedTuple):
    """Tuned mode-move settings, one value for the whole ensemble.

    Attributes
    ----------
    move_probs : array, shape (2,)
        Probability of each move of :data:`numpyro_dilation.ensemble.MOVES` when a chain
        makes a mode move.
    mode_move_prob : float
        Probability that a sampling iteration runs mode moves.
    accept : array, shape (2,)
        Warmup running average of each move's acceptance probability.
    """

    move_probs: jax.Array
    mode_move_prob: jax.Array
    accept: jax.Array


class EnsembleStats(NamedTuple):
    """Per-chain mode-move statistics (leading axis: chains).

    Attributes
    ----------
    accept_prob : array, shape (n, 2)
        Acceptance probability of each move type this iteration (0 if not proposed).
    num_proposals, num_accepted : array, shape (n, 2)
        Cumulative proposals and acceptances of each move type.
    num_mode_jumps : array, shape (n,)
        Cumulative accepted mode moves that changed the chain's mode.
    """

    accept_prob: jax.Array
    num_proposals: jax.Array
    num_accepted: jax.Array
    num_mode_jumps: jax.Array


class EnsembleState(NamedTuple):
    """Ensemble-mode part of the sampler's state: shared settings and per-chain statistics.

    The attributes below the two fields read per chain, so that NumPyro's
    ``extra_fields`` (``"ensemble.move_probs"``, ``"ensemble.num_mode_jumps"``,
    ...) collect one row per chain like every other field.
    """

    settings: EnsembleSettings
    stats: EnsembleStats

    def _per_chain(self, value):
        n = self.stats.num_mode_jumps.shape[0]
        return jnp.broadcast_to(value, (n,) + jnp.shape(value))

    @property
    def move_probs(self) -> jax.Array:
        """Tuned move probabilities, shape (n, 2)."""
        return self._per_chain(self.settings.move_probs)

    @property
    def mode_move_prob(self) -> jax.Array:
        """Tuned probability that a sampling iteration runs mode moves, shape (n,)."""
        return self._per_chain(self.settings.mode_move_prob)

    @property
    def accept_prob(self) -> jax.Array:
        """Acceptance probability of each move type this iteration, shape (n, 2)."""
        return self.stats.accept_prob

    @property
    def num_proposals(self) -> jax.Array:
        """Cumulative proposals of each move type, shape (n, 2)."""
        return self.stats.num_proposals

    @property
    def num_accepted(self) -> jax.Array:
        """Cumulative acceptances of each move type, shape (n, 2)."""
        return self.stats.num_accepted

    @property
    def num_mode_jumps(self) -> jax.Array:
        """Cumulative accepted moves to another mode, shape (n,)."""
        return self.stats.num_mode_jumps

    @property
    def mean_accept_prob(self) -> jax.Array:
        """Fraction of accepted proposals of each move type so far (NaN if none)."""
        proposals = self.stats.num_proposals
        return self.stats.num_accepted / jnp.where(proposals > 0, proposals, jnp.nan)


class DilationState(NamedTuple):
    """State of one :class:`~numpyro_dilation.DilationLangevin` chain.

    Attributes
    ----------
    i : int
        Iteration (counts warmup and sampling iterations alike).
    z : pytree
        Current particle on the dilation path, in unconstrained space.  During
        the annealing it is a draw from (approximately) the level-``t``
        distribution; from ``t = 1`` on it is a draw from the posterior.
    potential_energy : float
        ``-log p_t(z)`` up to the model's normalising constant (the model's
        potential energy once ``t = 1``).
    y : array
        Flat rescaled coordinates ``c + (z - c) / sqrt(t)`` (equal to the
        flattened ``z`` at ``t = 1``); the sampler computes in these.
    y_grad : array
        Gradient of the model's potential energy at ``y``.
    center : array
        Flat centre ``c`` of the dilation.
    t : float
        Current level of the dilation path, in ``(0, 1]``.
    step_size : float
        Langevin step ``h`` of the transition that produced this state, in the
        coordinates of ``z`` (``t`` times the rescaled-coordinate step while
        annealing).
    accept_prob : float
        Acceptance probability of that transition (1 for an unadjusted step, 0
        for a divergent one).
    mean_accept_prob : float
        Mean of ``accept_prob`` since the start of the current phase (annealing,
        adaptation, sampling).
    recent_accept_prob : float
        Exponential moving average of ``accept_prob`` over about the last 100
        iterations (the health checks use it to spot a chain that stops moving).
    diverging : bool
        Whether that transition's proposal was rejected as divergent (non-finite
        potential or gradient, or an energy error above 1000).
    num_grad_evals : int
        Cumulative number of potential-and-gradient evaluations of this chain.
    num_steps : int
        Leapfrog steps of the transition that produced this state (1 for a
        Langevin step).
    adapt_state : numpyro_dilation.adaptation.AdaptState
        Step size, metric and curvature adaptation state.
    rng_key : jax.Array
        Random key for the next transition.
    num_anneal_steps, num_warmup : int
        Phase boundaries of the run that made this state, so that a state
        carried over with ``mcmc.post_warmup_state`` keeps its own schedule.
    ensemble : EnsembleState or None
        Population-move settings and statistics (``ensemble=True`` only).  In
        ensemble mode ``rng_key`` is one key for the whole ensemble.
    nuts : numpyro.infer.hmc.HMCState or None
        NumPyro's NUTS state (``stationary="nuts"`` only), which takes over at
        ``t = 1`` (:mod:`numpyro_dilation.nuts`).
    convergence : numpyro_dilation.convergence.ConvergenceState or None
        Running sums for the online convergence checks, kept up to date by the
        kernel (:mod:`numpyro_dilation.convergence`); ``None`` turns them off.
    modes : numpyro_dilation.pooling.ModeState or None
        Vectorised chains only: the posterior's modes as the chains found them,
        each chain's mode label and each mode's shared adaptation
        (:mod:`numpyro_dilation.pooling`).
    """

    i: jax.Array
    z: Any
    potential_energy: jax.Array
    y: jax.Array
    y_grad: jax.Array
    center: jax.Array
    t: jax.Array
    step_size: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    recent_accept_prob: jax.Array
    diverging: jax.Array
    num_grad_evals: jax.Array
    num_steps: jax.Array
    adapt_state: AdaptState
    rng_key: jax.Array
    num_anneal_steps: jax.Array
    num_warmup: jax.Array
    ensemble: EnsembleState | None = None
    nuts: HMCState | None = None
    convergence: ConvergenceState | None = None
    modes: ModeState | None = None


class DilationSettings(NamedTuple):
    """Fixed settings of the transition (Python values, static when tracing).

    Attributes
    ----------
    eps, alpha : float
        The annealing step ``eps * t**(alpha - 1)`` in units of the inverse curvature.
    levels : callable
        The schedule ``u -> t`` (:func:`numpyro_dilation.path.make_schedule`).
    adjust : bool
        Metropolis-adjust the sampling phase (the warmup at ``t = 1`` always is).
    step_from_curvature : bool
        Start the stationary kernel's step size from the curvature the annealing
        measured (``1 / sqrt(L)``, or ``1 / L`` for MALA) and restart dual
        averaging there; off when the user fixes the step size.
    forward_mode_differentiation : bool
        Differentiate the potential in forward mode.
    stationary : {"hmc", "mala"}
        Kernel at ``t = 1``: HMC with a ChEES-tuned jittered trajectory length
        (:mod:`.trajectory`) or single-step MALA (:mod:`.langevin`).
    adapt_trajectory_length : bool
        Tune the HMC trajectory length by ChEES during the warmup at ``t = 1``.
    """

    eps: float
    alpha: float
    levels: Callable
    adjust: bool = True
    step_from_curvature: bool = True
    forward_mode_differentiation: bool = False
    stationary: str = "mala"
    adapt_trajectory_length: bool = True


def phases(state: DilationState, batched: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(i, num_anneal_steps, num_warmup)``, unbatched (vectorised chains share them)."""
    if batched:
        return state.i[0], state.num_anneal_steps[0], state.num_warmup[0]
    return state.i, state.num_anneal_steps, state.num_warmup


__all__ = [
    "DilationSettings",
    "DilationState",
    "EnsembleSettings",
    "EnsembleState",
    "EnsembleStats",
    "phases",
]
