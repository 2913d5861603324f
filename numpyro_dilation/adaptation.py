"""Warmup: how the warmup iterations split, and what is adapted in each part.

Warmup runs in two phases, keyed on the iteration counter ``i``:

1. ``0 <= i < num_anneal_steps``: annealing along the dilation path with
   unadjusted Langevin steps.  The paper's step is ``h = eps * t**alpha``; here
   ``eps`` is measured in units of ``1 / L``, with ``L`` a running estimate of
   the potential's curvature taken from consecutive gradients (a secant along
   each move, free of extra gradient evaluations).  The annealing is therefore
   equally hot on a posterior of scale ``1e-3`` and one of scale ``1e3``.  A
   divergent step is rejected: the chain keeps its rescaled position (in the
   original coordinates it is dilated to the next level, an exact transport
   between levels), so every chain reaches ``t = 1`` when the annealing ends.
2. ``num_anneal_steps <= i < num_warmup``: the stationary kernel (HMC by
   default, MALA as an option) at ``t = 1``; the step size is adapted by
   NumPyro's dual averaging towards ``target_accept_prob``.

The mass matrix is adapted in Stan's doubling windows, once over the annealing
and again over the rest of the warmup, from NumPyro's Welford estimates of the
positions *and* of the gradients.  The gradient-informed estimate (the geometric
mean of ``Cov(y)`` and ``Cov(grad U)^{-1}``, as in nutpie) is exact for a
Gaussian posterior even from a window in which the chain has barely moved,
which is what makes the short stationary warmup usable on badly conditioned
posteriors.

After warmup the step size and mass matrix are frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.infer.hmc_util import build_adaptation_schedule, dual_averaging, welford_covariance

from numpyro_dilation.metric import (
    Metric,
    gradient_informed_covariance,
    make_metric,
    metric_norm_sq,
    regularize_covariance,
    variances,
)
from numpyro_dilation.trajectory import TrajectoryState, init_trajectory

#: Fewest annealing iterations accepted: fewer cannot follow any path.
MIN_ANNEAL_STEPS = 10
#: Fewest post-annealing warmup iterations accepted when adapting step size or mass.
MIN_ADAPT_STEPS = 10


class AdaptState(NamedTuple):
    """Adaptation state of one chain.

    Attributes
    ----------
    step_size : float
        Step size of the stationary kernel at ``t = 1`` (leapfrog step for HMC,
        ``h`` for MALA; in the warmup, the current iterate of dual averaging).
    metric : numpyro_dilation.metric.Metric
        Preconditioner ``P`` with its square root and whitening map.
    curvature : float
        Running estimate ``L`` of the potential's curvature in the metric of ``P``,
        which sets the annealing step ``eps * t**(alpha - 1) / L`` (rescaled coordinates).
    ss_state : tuple
        NumPyro dual-averaging state.
    position_state, gradient_state : tuple
        NumPyro Welford states of positions and of gradients in the current window.
    trajectory : numpyro_dilation.trajectory.TrajectoryState
        ChEES adaptation of the HMC trajectory length (unused by MALA).
    """

    step_size: jax.Array
    metric: Metric
    curvature: jax.Array
    ss_state: tuple
    position_state: tuple
    gradient_state: tuple
    trajectory: TrajectoryState

    @property
    def inverse_mass_matrix(self) -> jax.Array:
        """``P`` (diagonal as 1-D, dense as 2-D)."""
        return self.metric.inverse_mass_matrix

    @property
    def inverse_mass_matrix_sqrt(self) -> jax.Array:
        """``A`` with ``A A^T = P``."""
        return self.metric.inverse_mass_matrix_sqrt

    @property
    def whitening(self) -> jax.Array:
        """``A^{-1}``."""
        return self.metric.whitening


#: A window estimates a dense mass matrix only from more than this many draws per
#: dimension (plus 10); with fewer it estimates the diagonal.
MIN_DRAWS_PER_DIM = 2


def warmup_phases(num_warmup: int, num_anneal_steps: int | None) -> tuple[int, int]:
    """Split ``num_warmup`` into annealing and adaptation iterations.

    Any ``num_warmup >= 0`` is accepted, as by NumPyro's own kernels: the
    annealing takes half of it by default, or ``num_anneal_steps`` (at most the
    whole warmup); the rest adapts the step size and mass matrix.  A split too
    short to rely on is reported by :func:`short_warmup_message`, not refused.

    Parameters
    ----------
    num_warmup : int
        Warmup iterations given to :class:`numpyro.infer.MCMC`.
    num_anneal_steps : int or None
        Annealing iterations asked for; ``None`` means half of the warmup.

    Returns
    -------
    (int, int)
        Number of annealing and of adaptation iterations.
    """
    if num_anneal_steps is None:
        num_anneal = num_warmup // 2
    else:
        num_anneal = min(num_anneal_steps, num_warmup)
    return num_anneal, num_warmup - num_anneal


def short_warmup_message(
    num_warmup: int, num_anneal_steps: int | None, adapting: bool
) -> str | None:
    """Why a warmup of ``num_warmup`` iterations makes the run unreliable, or ``None``.

    The annealing needs :data:`MIN_ANNEAL_STEPS` iterations to follow the path
    (fewer jump between distant levels), and the adaptation, when on,
    :data:`MIN_ADAPT_STEPS` iterations at ``t = 1``.  No warmup at all is a
    deliberate choice (fixed settings, or a continued run) and is not reported
    unless adaptation was asked for.
    """
    num_anneal, num_adapt = warmup_phases(num_warmup, num_anneal_steps)
    min_adapt = MIN_ADAPT_STEPS if adapting else 0
    if num_anneal_steps is None:
        needed = 2 * max(MIN_ANNEAL_STEPS, min_adapt)
    else:
        needed = num_anneal_steps + min_adapt
    if num_warmup >= needed or (num_warmup == 0 and not adapting):
        return None
    parts = []
    if num_anneal_steps is not None and num_anneal < num_anneal_steps:
        parts.append(f"the annealing is cut to {num_anneal} of num_anneal_steps={num_anneal_steps}")
    elif num_anneal < MIN_ANNEAL_STEPS:
        parts.append(
            "no annealing (the chains start at the dilation centre, at the posterior)"
            if num_anneal == 0
            else f"only {num_anneal} annealing iterations"
        )
    if num_adapt < min_adapt:
        parts.append(f"only {num_adapt} iterations to adapt the step size and mass matrix")
    return (
        f"num_warmup={num_warmup} is short: {'; '.join(parts)}. The draws may not be from the"
        f" posterior; num_warmup >= {needed} is the least that DilationLangevin relies on"
        " (about 1000 for a new model). To continue a run, set mcmc.post_warmup_state instead."
    )


def adaptation_windows(num_anneal_steps: int, num_warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan's window schedule laid out twice: over the annealing, then over the rest.

    Returns the last iteration of each window and whether the window estimates the
    mass matrix (Stan's first and last windows are buffers that do not).  Starting
    afresh after the annealing keeps the transport from the centre out of the
    estimate that the sampling phase will use.
    """
    ends, estimates = [], []
    for offset, length, stationary in (
        (0, num_anneal_steps, False),
        (num_anneal_steps, num_warmup - num_anneal_steps, True),
    ):
        if length <= 0:
            continue
        windows = [(w.start, w.end) for w in build_adaptation_schedule(length)]
        if stationary:
            windows = _with_terminal_buffer(windows, length)
        for k, (_, end) in enumerate(windows):
            ends.append(offset + end)
            estimates.append(0 < k < len(windows) - 1)
    return np.asarray(ends), np.asarray(estimates)


#: Iterations of step-size adaptation alone that end the warmup, at least.  Dual
#: averaging restarts at every new metric and its first iterates overshoot (10x
#: and more); Stan's 10% of a short warmup (2 iterations of 25) would end the
#: warmup on an overshoot, with every later HMC proposal rejected.
MIN_TERMINAL_BUFFER = 20

#: The shortest metric window worth estimating from; below it the stationary
#: phase keeps the metric the annealing estimated.
MIN_METRIC_WINDOW = 20


def _with_terminal_buffer(windows: list, length: int) -> list:
    # Stan's schedule is (buffer, window, buffer) below 150 iterations, with a
    # 50-iteration final buffer from there on
    if len(windows) != 3 or length - windows[-1][0] >= MIN_TERMINAL_BUFFER:
        return windows
    start = length - MIN_TERMINAL_BUFFER
    if start - windows[1][0] < MIN_METRIC_WINDOW:
        return [(0, length - 1)]
    return [windows[0], (windows[1][0], start - 1), (start, length - 1)]


class WindowAdapter(NamedTuple):
    """Step-size and mass-matrix adaptation, as pure functions (see :func:`window_adapter`).

    Attributes
    ----------
    init : callable
        ``(size, step_size, inverse_mass_matrix, dtype) -> AdaptState``.
    update : callable
        ``(i, accept_prob, y, grad, state, adapt_step) -> AdaptState``: the cheap
        per-iteration part (dual averaging when ``adapt_step``, Welford sums).
    end_window : callable
        ``state -> AdaptState``: the new mass matrix from the window's sums.
    end_window_pooled : callable
        ``(states, labels, slot_metrics, slot_steps) -> (states, slot_metrics, ok)``:
        the same for a batch of vectorised chains grouped into mode slots
        (``labels``, one per chain; ``slot_metrics`` and ``slot_steps`` hold each
        slot's current metric and step size): each slot's new metric comes from
        the mean of its chains' *within-chain* covariances (chains in other
        modes do not inflate it), computed once per slot and given to each of
        its chains; ``ok`` says, per slot, whether the window could estimate it.
    update_step_size : callable
        ``(i, accept_prob, state) -> AdaptState``: one dual-averaging step (on
        :func:`pooled_acceptance` of the chains when they adapt together).
    step_size_update : callable
        ``(i, accept_prob, ss_state) -> (ss_state, step_size)``: the same step on
        a bare dual-averaging state (one per mode slot of vectorised chains).
    is_window_end : callable
        ``i -> bool``: whether iteration ``i`` closes an estimating window.  It
        depends on ``i`` alone, so vectorised chains can branch on it once for
        all chains instead of computing ``end_window`` at every iteration.
    adapt_step_size : bool
        Whether dual averaging runs at all.
    last_window_end : int
        The last iteration of the last estimating window (-1 if none): the
        warmup after it adapts the step size alone.
    """

    init: Callable
    update: Callable
    end_window: Callable
    end_window_pooled: Callable
    update_step_size: Callable
    step_size_update: Callable
    is_window_end: Callable
    adapt_step_size: bool
    last_window_end: int


def window_adapter(
    num_anneal_steps: int,
    num_warmup: int,
    *,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    dense_mass: bool = False,
    target_accept_prob: float = 0.574,
    regularize_mass_matrix: bool = True,
) -> WindowAdapter:
    """Step-size and mass-matrix adaptation over the warmup (Stan's windows).

    The mass matrix is estimated in Stan's doubling windows during the annealing
    (in rescaled coordinates every gradient is a gradient of the target's own
    potential, so the annealing can be preconditioned too) and again, from
    scratch, in the stationary part of the warmup (see :func:`adaptation_windows`).
    Dual averaging of the step size runs only when ``update`` is told to (the
    stationary part).  Reuses NumPyro's dual averaging, Welford estimator and window
    schedule.
    """
    ss_init, ss_update = dual_averaging()
    mm_init, mm_update, _ = welford_covariance(diagonal=not dense_mass)
    ends, estimates = adaptation_windows(num_anneal_steps, num_warmup)
    if len(ends) == 0:
        # no warmup: one sentinel window that never closes and never estimates
        ends, estimates = np.array([-1]), np.array([False])
    # Plain numpy: the adapter may be built while a caller traces (under pmap), and
    # nothing it keeps may be a tracer.
    window_ends, window_estimates = np.asarray(ends), np.asarray(estimates)

    def window_of(i):
        return jnp.minimum(jnp.searchsorted(jnp.asarray(window_ends), i), len(ends) - 1)

    def init(size, step_size, inverse_mass_matrix=None, dtype=jnp.float32):
        if inverse_mass_matrix is None:
            inverse_mass_matrix = jnp.identity(size, dtype) if dense_mass else jnp.ones(size, dtype)
        else:
            inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, dtype)
            if dense_mass and inverse_mass_matrix.ndim == 1:
                inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
        step_size = jnp.asarray(step_size, dtype)
        return AdaptState(
            step_size=step_size,
            metric=make_metric(inverse_mass_matrix),
            curvature=1.0 / step_size,
            ss_state=ss_init(jnp.log(10.0) + jnp.log(step_size)),
            position_state=mm_init(size),
            gradient_state=mm_init(size),
            trajectory=init_trajectory(size, dtype),
        )

    def window_covariances(state):
        # Welford's (mean, m2, n): the covariance without the factorisation that
        # NumPyro's final_fn adds (batched LAPACK calls are what jaxlib can deadlock on)
        (_, position_m2, n), (_, gradient_m2, _) = state.position_state, state.gradient_state
        return position_m2 / (n - 1), gradient_m2 / (n - 1), n

    def new_metric(position_cov, gradient_cov, n, old):
        cov = gradient_informed_covariance(position_cov, gradient_cov)
        if dense_mass:
            # A dense matrix needs well over d draws: with n ~ d (autocorrelated) draws
            # Cov(y) is nearly singular, its square roots lose all precision in float32,
            # and the estimate was seen to have eigenvalues up to 40 on an isotropic
            # Gaussian in d = 100 (ESS 18 instead of 280).  Fewer draws: the diagonal.
            diagonal = gradient_informed_covariance(
                jnp.diagonal(position_cov), jnp.diagonal(gradient_cov)
            )
            cov = jnp.where(n > MIN_DRAWS_PER_DIM * cov.shape[0] + 10, cov, jnp.diag(diagonal))
        if regularize_mass_matrix:
            cov = regularize_covariance(cov, n)
        metric = make_metric(cov)
        # A degenerate window (a stuck chain) keeps the previous matrix.
        finite = [jnp.all(jnp.isfinite(m)) for m in metric]
        ok = finite[0] & finite[1] & finite[2] & (n > 2)
        metric = jax.tree.map(lambda new, kept: jnp.where(ok, new, kept), metric, old)
        return metric, ok

    def carried_curvature(curvature, old, new, ok):
        # In the new metric a well-estimated posterior has curvature about 1, but
        # the window may have been spent where the posterior is flatter than in its
        # bulk (a heavy tail): there its estimate is as wide as the tail, and
        # resetting L to 1 would widen the annealing step with it.  So L is never
        # lowered below the running estimate, carried over into the new units
        # (by the least growth of any coordinate's scale).
        ratio = variances(new.inverse_mass_matrix) / variances(old.inverse_mass_matrix)
        # initial: a model with no latent sites has nothing to rescale (L is kept)
        growth = jnp.min(ratio, initial=jnp.inf)
        carried = jnp.maximum(jnp.ones_like(curvature), curvature * growth)
        return jnp.where(ok & jnp.isfinite(carried), carried, curvature)

    def metric_from(position_cov, gradient_cov, n, state):
        metric, ok = new_metric(position_cov, gradient_cov, n, state.metric)
        return state._replace(
            metric=metric,
            curvature=carried_curvature(state.curvature, state.metric, metric, ok),
            ss_state=ss_init(jnp.log(10.0) + jnp.log(state.step_size)),
        )

    def fresh_window(state):
        size = state.position_state[0].shape[-1]
        return state._replace(position_state=mm_init(size), gradient_state=mm_init(size))

    def end_window(state):
        return fresh_window(metric_from(*window_covariances(state), state))

    def end_window_pooled(states, labels, slot_metrics, slot_steps):
        position_cov, gradient_cov, n = jax.vmap(window_covariances)(states)

        def slot_metric(args):
            # within-chain covariances of the slot's chains, averaged: the W of R-hat
            k, old = args
            member = labels == k
            count = jnp.sum(member)

            def mean(x):
                mask = jnp.reshape(member, member.shape + (1,) * (x.ndim - 1))
                return jnp.sum(jnp.where(mask, x, 0.0), axis=0) / jnp.maximum(count, 1)

            def estimate(old):
                return new_metric(
                    mean(position_cov), mean(gradient_cov), jnp.sum(jnp.where(member, n, 0)), old
                )

            # an empty slot keeps its metric without the factorisations
            return jax.lax.cond(count > 0, estimate, lambda old: (old, jnp.array(False)), old)

        # one slot at a time: a batch of LAPACK calls is what jaxlib's CPU thread
        # pool can deadlock on
        num_slots = slot_steps.shape[0]
        metrics, ok = jax.lax.map(slot_metric, (jnp.arange(num_slots), slot_metrics))

        def chain_values(x):
            return x[labels]

        metric = jax.tree.map(chain_values, metrics)
        # each chain keeps its own curvature, carried into its slot's new metric
        curvature = jax.vmap(carried_curvature)(states.curvature, states.metric, metric, ok[labels])
        ss_state = jax.vmap(lambda h: ss_init(jnp.log(10.0) + jnp.log(h)))(slot_steps[labels])
        states = jax.vmap(fresh_window)(
            states._replace(metric=metric, curvature=curvature, ss_state=ss_state)
        )
        return states, metrics, ok

    def step_size_update(i, accept_prob, ss_state):
        ss_state = ss_update(target_accept_prob - accept_prob, ss_state)
        log_step, log_step_avg, *_ = ss_state
        step_size = jnp.exp(jnp.where(i == num_warmup - 1, log_step_avg, log_step))
        finfo = jnp.finfo(jnp.result_type(step_size))
        return ss_state, jnp.clip(step_size, finfo.tiny, finfo.max)

    def update_step_size(i, accept_prob, state):
        if not adapt_step_size:
            return state
        ss_state, step_size = step_size_update(i, accept_prob, state.ss_state)
        return state._replace(ss_state=ss_state, step_size=step_size)

    def update(i, accept_prob, y, grad, state, adapt_step=True):
        if adapt_step_size:
            stepped = update_step_size(i, accept_prob, state)
            state = jax.tree.map(lambda new, old: jnp.where(adapt_step, new, old), stepped, state)
        if adapt_mass_matrix:
            take = jnp.asarray(window_estimates)[window_of(i)] & jnp.all(jnp.isfinite(grad))
            accumulated = (
                mm_update(y, state.position_state),
                mm_update(grad, state.gradient_state),
            )
            kept = (state.position_state, state.gradient_state)
            position_state, gradient_state = jax.tree.map(
                lambda new, old: jnp.where(take, new, old), accumulated, kept
            )
            state = state._replace(position_state=position_state, gradient_state=gradient_state)
        return state

    def is_window_end(i):
        k = window_of(i)
        return (
            adapt_mass_matrix
            & (i == jnp.asarray(window_ends)[k])
            & jnp.asarray(window_estimates)[k]
        )

    return WindowAdapter(
        init,
        update,
        end_window,
        end_window_pooled,
        update_step_size,
        step_size_update,
        is_window_end,
        adapt_step_size,
        int(window_ends[window_estimates].max()) if window_estimates.any() else -1,
    )


def restart_dual_averaging(state: AdaptState, step_size) -> AdaptState:
    """Set the step size and centre dual averaging on it (as NumPyro does per window)."""
    ss_init, _ = dual_averaging()
    return state._replace(step_size=step_size, ss_state=ss_init(jnp.log(10.0) + jnp.log(step_size)))


#: Largest departure of the potential from its quadratic model along a move, in
#: nats and divided by the dimension, for which the curvature estimate may be
#: lowered (see :func:`update_curvature`).
RESOLVED_ENERGY = 1.0


def cubic_error(potential, grad, potential_new, grad_new, delta):
    """How far the potential departs from a quadratic along a move, in nats.

    ``U(y') - U(y) - (g + g') . (y' - y) / 2``: the trapezoid rule is exact for a
    quadratic potential (a Gaussian, at any scale), so what is left is the
    third-order part, ``-1/12`` of the change of the curvature along the move
    times the squared length.  It is scale free: a Student-t tail seen from
    radius ``r`` with steps of size ``r`` leaves the same error at every ``r``.
    """
    return potential_new - potential - 0.5 * jnp.dot(grad + grad_new, delta)


#: Length, in the metric, of the probe along the gradient that sets the starting
#: curvature (:func:`initial_curvature`).
CURVATURE_PROBE = 1e-3

#: The most a positive secant raises the starting curvature by: as much as one
#: secant raises it during the annealing (:func:`update_curvature`).  The start may
#: curve far more than the posterior (a binomial started at p = 0.5 curves 300
#: times more than at its posterior, p = 0.00077) and the annealing lowers ``L``
#: only gradually, so an unbounded probe left that chain still travelling when a
#: 200-iteration warmup ended (posterior mean 7% off).
CURVATURE_PROBE_MAX_RAISE = 10.0


#: Differences below this many machine epsilons of the values differenced are
#: taken as rounding error.
ROUNDING = 64


def _rounding(x):
    # relative size of rounding error in values of x's dtype
    return ROUNDING * jnp.finfo(jnp.result_type(x)).eps


def _resolved(difference, a, b):
    # a difference at the level of rounding error says nothing about curvature
    return jnp.linalg.norm(difference) > _rounding(a) * (jnp.linalg.norm(a) + jnp.linalg.norm(b))


def initial_curvature(potential_and_grad: Callable, y, grad, metric, curvature):
    """The curvature ``L`` to start the annealing with: at least ``curvature``.

    One extra gradient, a short step ``CURVATURE_PROBE`` down the gradient (in
    the metric), gives the secant there.  Without it ``L`` starts at
    ``1 / step_size`` and climbs only 4x per divergent annealing step: from 1
    to the 2e4 of a 2000-observation posterior takes 8 steps, all rejected,
    more than a 10-iteration warmup anneals for.

    Where the secant is positive the probe raises ``L`` by at most
    ``CURVATURE_PROBE_MAX_RAISE``.  Where it is negative the start stands on a
    crest of the potential, between basins (a centre amid the modes of a
    mixture, or of a posterior with label switching), and its size, taken in
    full, sizes the first step: ``1 / step_size`` is in no unit of the
    posterior's, and on a posterior of small scale a first step sized for it
    throws chains far into heavy tails, where the warmup may leave them.  A
    crest that curves more than the modes only makes the first steps shorter.
    ``L`` is only ever raised here: where the potential is flatter than at the
    start, lowering it is the annealing's job.
    """
    p = metric.inverse_mass_matrix
    natural = p @ grad if jnp.ndim(p) == 2 else p * grad
    length = jnp.sqrt(jnp.maximum(jnp.dot(grad, natural), 0.0))
    ok = jnp.isfinite(length) & (length > 0)
    delta = -CURVATURE_PROBE * natural / jnp.where(ok, length, 1.0)
    _, grad_new = potential_and_grad(y + delta)
    grad_delta = grad_new - grad
    secant = jnp.dot(grad_delta, delta) / CURVATURE_PROBE**2
    ok = ok & _resolved(grad_delta, grad, grad_new) & jnp.isfinite(secant)
    raised = jnp.where(
        secant >= 0,
        jnp.clip(secant, curvature, CURVATURE_PROBE_MAX_RAISE * curvature),
        jnp.maximum(-secant, curvature),
    )
    return jnp.where(ok, raised, curvature)


def update_curvature(
    curvature, y, grad, y_new, grad_new, whitening, diverging, potential=None, potential_new=None
):
    """Track the curvature ``L`` of the potential from the secant along a move.

    ``(g' - g) . (y' - y) / |y' - y|^2`` in the sampler's metric needs no extra
    gradient: both gradients are of the same potential (the rescaled coordinates
    see the target at every level), and a rejected proposal informs it as well as
    an accepted one.  Increases are followed quickly (up to 10x a step), decreases
    slowly, so that the annealing step errs towards stability.  A divergent
    proposal quadruples ``L`` instead: its secant measures the curvature wherever
    the step landed (often a flat, far-away region), not where the chain is.

    With the potentials at both ends, ``L`` is lowered only along moves on which
    the potential is still quadratic to within ``RESOLVED_ENERGY / d`` nats
    (:func:`cubic_error`).  Locally a heavy (Student-t) tail at radius ``r``
    looks like a Gaussian of scale ``r / sqrt(nu + d)``: its secant falls as
    ``1 / r^2``, the step ``1 / L`` grows as ``r^2`` and moves the chain by about
    ``r``, farther out, where the potential is flatter still, without end.  Such moves
    leave a cubic error of several nats whatever ``r``, where on a Gaussian
    there is none, so the step stops growing before it outruns the tail.  The
    tolerance falls with ``d``: the error of a move grows about as ``d``, and
    the largest relative step at which Langevin still returns from a tail,
    ``2 nu / (nu + d)``, falls as ``1 / d``.
    """
    delta = y_new - y
    grad_delta = grad_new - grad
    secant = jnp.dot(grad_delta, delta) / metric_norm_sq(whitening, delta)
    log_ratio = jnp.log(jnp.maximum(secant, 1e-3 * curvature)) - jnp.log(curvature)
    # Differences at the level of rounding error say nothing about curvature; fed
    # back they would shrink the step, and with it the differences, without end.
    resolved = _resolved(grad_delta, grad, grad_new) & _resolved(delta, y, y_new)
    log_ratio = jnp.where(jnp.isfinite(log_ratio) & resolved, log_ratio, 0.0)
    if potential is not None:
        error = cubic_error(potential, grad, potential_new, grad_new, delta)
        rounding = _rounding(y) * (
            jnp.abs(potential)
            + jnp.abs(potential_new)
            + jnp.abs(jnp.dot(grad, delta))
            + jnp.abs(jnp.dot(grad_new, delta))
        )
        quadratic = jnp.abs(error) <= RESOLVED_ENERGY / max(jnp.size(y), 1) + rounding
        log_ratio = jnp.where((log_ratio < 0) & ~quadratic, 0.0, log_ratio)
    # Up by at most 10x a step: a proposal flung far out measures the curvature out
    # there, not here, and one such secant must not freeze the chain.
    step = jnp.where(log_ratio > 0, jnp.minimum(log_ratio, jnp.log(10.0)), 0.05 * log_ratio)
    return jnp.where(diverging, 4.0 * curvature, curvature * jnp.exp(step))


#: Acceptance that a divergent (or nearly always rejected) chain counts as in
#: :func:`pooled_acceptance`: low enough to pull the pooled step down, finite so
#: that one bad iteration cannot send it to zero.
POOLED_ACCEPT_FLOOR = 0.01


def pooled_acceptance(accept_prob: ArrayLike) -> jax.Array:
    """The acceptance that the shared step size of vectorised chains is adapted on.

    The geometric mean of the chains' acceptance probabilities, each floored at
    :data:`POOLED_ACCEPT_FLOOR`.  The arithmetic mean lets a few chains in a hard
    region (the arms of a banana, the neck of a hierarchical model) reject, or
    diverge, at every iteration while the mean stays on target; the geometric
    mean gives those chains more weight, as the harmonic mean of Hoffman, Radul
    & Sountsov (2021) does, without letting one chain near zero decide
    (docs/how-it-works.md has the measurements of all three).
    """
    floored = jnp.maximum(jnp.asarray(accept_prob), POOLED_ACCEPT_FLOOR)
    return jnp.exp(jnp.mean(jnp.log(floored)))


def running_mean(mean: ArrayLike, value: ArrayLike, i: ArrayLike, phase_start: ArrayLike):
    """Running mean of ``value`` over the iterations since ``phase_start`` (restarts there)."""
    n = i - phase_start + 1
    return jnp.where(n <= 1, value, mean + (value - mean) / n)


__all__ = [
    "CURVATURE_PROBE",
    "CURVATURE_PROBE_MAX_RAISE",
    "MIN_ADAPT_STEPS",
    "MIN_ANNEAL_STEPS",
    "MIN_DRAWS_PER_DIM",
    "MIN_METRIC_WINDOW",
    "MIN_TERMINAL_BUFFER",
    "POOLED_ACCEPT_FLOOR",
    "RESOLVED_ENERGY",
    "ROUNDING",
    "AdaptState",
    "WindowAdapter",
    "adaptation_windows",
    "cubic_error",
    "initial_curvature",
    "pooled_acceptance",
    "restart_dual_averaging",
    "running_mean",
    "short_warmup_message",
    "update_curvature",
    "warmup_phases",
    "window_adapter",
]
