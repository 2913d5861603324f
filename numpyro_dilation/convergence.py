"""Online convergence checks: split R-hat and a batch-means ESS from running sums.

NumPyro's :class:`~numpyro.infer.MCMC` gives a kernel no end-of-run hook (the
kernel never learns ``num_samples``), so the kernel checks convergence over
*windows* of iterations whose ends it knows:

- the **warmup window**: the last half of the adaptation iterations at ``t = 1``
  (the last ``2 * ((num_warmup - num_anneal_steps) // 4)`` warmup iterations),
  checked at the last warmup iteration.  A chain still travelling towards the
  posterior when warmup ends shows a split R-hat far above 1 there;
- **sampling blocks** of :data:`~numpyro_dilation.health.CHECK_EVERY` sampling
  iterations, each checked at its last iteration (the standard run of 1000
  draws is checked at its last draw).

For each chain the state carries Welford sums (count, mean and sum of squared
deviations) of the flat position in :data:`NUM_BATCHES` consecutive batches of
the current window, half of them in each half of the window.  Each iteration
updates one batch: ``O(d)`` work per chain, no linear algebra.  At the window's
end the host merges the batches (in float64, with Chan's formula) into:

- the classic split R-hat (Gelman et al.; :func:`numpyro.diagnostics.split_gelman_rubin`):
  across all chains when they are vectorised (the state is batched), otherwise
  per chain, from its two halves;
- the batch-means effective sample size ``N * var / (n_b * var(batch means))``,
  pooled over chains (batch means around the grand mean, so that chains that
  disagree lower it too);
- the *excess* disagreement of the halves: the variance of the split chains'
  means over the variance that the autocorrelation explains (estimated from
  the batch means around each half's own mean).  Under stationarity it is about
  1 whatever the autocorrelation, where the split R-hat of a short window of
  slowly mixing chains is well above 1; the end-of-warmup check asks for both.

Everything here is a pure function on arrays; :mod:`numpyro_dilation.kernel`
calls :func:`update` each iteration and :func:`warn_if_not_converged` from the host.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_dilation.health import SamplerHealthWarning

#: Batches per window, half in each half of the window (batch-means ESS from
#: ``NUM_BATCHES * num_chains - 1`` degrees of freedom).
NUM_BATCHES = 16
#: A sampling block is flagged when the split R-hat of a coordinate exceeds this...
MAX_RHAT = 1.01
#: ... or its batch-means ESS (over all chains) is below this.
MIN_ESS = 100.0
#: The warmup window flags a coordinate whose split R-hat exceeds this (a window of
#: a few hundred correlated draws is too short for 1.01: under stationarity its
#: split R-hat is about ``1 + num_split_chains / (2 * ESS)``) ...
WARMUP_MAX_RHAT = 1.1
#: ... and whose halves' means disagree more than the chains' autocorrelation
#: explains (:attr:`WindowSummary.excess`, about 1 for stationary chains, about
#: ``3 * NUM_BATCHES`` for a chain drifting at a steady pace): beyond the
#: ``1 - WARMUP_FALSE_ALARM / d`` quantile of its F distribution under
#: stationarity (a Bonferroni bound over the ``d`` coordinates) ...
WARMUP_FALSE_ALARM = 0.01
#: ... and beyond this (short batches of a slowly mixing chain understate the
#: variance that autocorrelation explains).
WARMUP_MIN_EXCESS = 10.0
#: Fewest iterations in each half of the warmup window for it to be checked.
MIN_WARMUP_HALF = 20


class ConvergenceState(NamedTuple):
    """Welford sums of the flat position in the batches of the current window (one chain).

    Attributes
    ----------
    count : jax.Array
        Iterations in each batch, shape ``(NUM_BATCHES,)``.
    mean : jax.Array
        Running mean of the flat position in each batch, ``(NUM_BATCHES, d)``.
    m2 : jax.Array
        Sum of squared deviations from that mean, ``(NUM_BATCHES, d)``.
    divergences : jax.Array
        Divergent transitions in the window so far (a scalar per chain).
    """

    count: jax.Array
    mean: jax.Array
    m2: jax.Array
    divergences: jax.Array


def init(size: int, dtype, batch_shape: tuple[int, ...] = ()) -> ConvergenceState:
    """Empty sums for ``size`` coordinates (``batch_shape`` for vectorised chains).

    Parameters
    ----------
    size : int
        Number of unconstrained coordinates ``d``.
    dtype : dtype
        Floating dtype of the positions.
    batch_shape : tuple of int, default ()
        Leading shape of a batch of chains, ``(num_chains,)`` when vectorised.

    Returns
    -------
    ConvergenceState
    """
    return ConvergenceState(
        count=jnp.zeros((*batch_shape, NUM_BATCHES), jnp.result_type(int)),
        mean=jnp.zeros((*batch_shape, NUM_BATCHES, size), dtype),
        m2=jnp.zeros((*batch_shape, NUM_BATCHES, size), dtype),
        divergences=jnp.zeros(batch_shape, jnp.result_type(int)),
    )


def window_position(
    i: jax.Array, num_anneal_steps: jax.Array, num_warmup: jax.Array, check_every: int
) -> tuple[jax.Array, jax.Array]:
    """Position of iteration ``i`` in its window, and the window's length.

    Parameters
    ----------
    i : int
        Iteration (0-based, warmup and sampling alike).
    num_anneal_steps, num_warmup : int
        Phase boundaries of the run.
    check_every : int
        Length of a sampling block.

    Returns
    -------
    (int, int)
        ``(k, length)``: ``0 <= k < length`` inside a window, ``k = -1`` outside
        (the annealing, the first half of the adaptation, and warmups whose window
        would have fewer than :data:`MIN_WARMUP_HALF` iterations per half).
    """
    half = (num_warmup - num_anneal_steps) // 4
    start = num_warmup - 2 * half
    warm = (i >= start) & (i < num_warmup) & (half >= MIN_WARMUP_HALF)
    sampling = i >= num_warmup
    k = jnp.where(sampling, (i - num_warmup) % check_every, jnp.where(warm, i - start, -1))
    length = jnp.where(sampling, check_every, 2 * half)
    return k, length


def batch_index(k: jax.Array, length: jax.Array) -> jax.Array:
    """Batch of position ``k`` in a window of ``length`` (even) iterations."""
    per_half = NUM_BATCHES // 2
    half = jnp.maximum(length // 2, 1)
    h = jnp.minimum(k // half, 1)
    return h * per_half + jnp.minimum(((k - h * half) * per_half) // half, per_half - 1)


def update(state: ConvergenceState, y: jax.Array, k: jax.Array, length: jax.Array, diverging=False):
    """Add the flat position ``y`` of one chain at window position ``k`` (``k = 0`` restarts).

    Parameters
    ----------
    state : ConvergenceState
        Sums of one chain.
    y : jax.Array
        Flat position, shape ``(d,)``.
    k, length : int
        From :func:`window_position`; ``k`` must be in ``[0, length)``.
    diverging : bool, default False
        Whether the transition that reached ``y`` was divergent.

    Returns
    -------
    ConvergenceState
    """
    restart = k == 0
    state = jax.tree.map(lambda x: jnp.where(restart, jnp.zeros_like(x), x), state)
    b = batch_index(k, length)
    n = state.count[b] + 1
    mean_b = state.mean[b]
    delta = y - mean_b
    mean_new = mean_b + delta / n.astype(y.dtype)
    m2_new = state.m2[b] + delta * (y - mean_new)
    return ConvergenceState(
        count=state.count.at[b].set(n),
        mean=state.mean.at[b].set(mean_new),
        m2=state.m2.at[b].set(m2_new),
        divergences=state.divergences + jnp.asarray(diverging, state.divergences.dtype),
    )


# ------------------------------------------------------------------ host side


class WindowSummary(NamedTuple):
    """Split R-hat and batch-means ESS per flat coordinate over one window.

    Attributes
    ----------
    rhat : numpy.ndarray
        Classic split R-hat, shape ``(d,)`` (NaN where a coordinate never moved).
    ess : numpy.ndarray
        Batch-means effective sample size over all chains, ``(d,)``.
    excess : numpy.ndarray
        Variance of the split chains' means over the variance of one such mean
        that the chains' autocorrelation explains (from the batch means around
        each half's own mean), ``(d,)``: about 1 for stationary chains (an
        ``F(2C - 1, C (NUM_BATCHES - 2))`` variable), large for chains that
        travel or disagree.
    num_draws : int
        Draws per chain in the window.
    num_chains : int
        Chains pooled.
    """

    rhat: np.ndarray
    ess: np.ndarray
    excess: np.ndarray
    num_draws: int
    num_chains: int


def summarize(count, mean, m2) -> WindowSummary:
    """Merge the batches of a window into split R-hat and batch-means ESS (host, float64).

    Parameters
    ----------
    count, mean, m2 : array
        A :class:`ConvergenceState`'s fields, for one chain (``(B,)``, ``(B, d)``)
        or a batch of chains (``(C, B)``, ``(C, B, d)``).

    Returns
    -------
    WindowSummary
    """
    count = np.asarray(count, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    m2 = np.asarray(m2, dtype=np.float64)
    if count.ndim == 1:
        count, mean, m2 = count[None], mean[None], m2[None]
    num_chains, num_batches = count.shape
    # the two halves of each chain: (chains, 2, batches per half)
    n_b = count.reshape(num_chains, 2, num_batches // 2)
    mean_b = mean.reshape(num_chains, 2, num_batches // 2, -1)
    m2_b = m2.reshape(num_chains, 2, num_batches // 2, -1)
    n_h = n_b.sum(-1)  # (C, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_h = np.einsum("chb,chbd->chd", n_b, mean_b) / n_h[..., None]
        m2_h = m2_b.sum(2) + np.einsum("chb,chbd->chd", n_b, (mean_b - mean_h[:, :, None]) ** 2)
        n = n_h.min()
        # split R-hat, as numpyro.diagnostics.split_gelman_rubin
        var_h = (m2_h / (n_h[..., None] - 1)).reshape(2 * num_chains, -1)
        means = mean_h.reshape(2 * num_chains, -1)
        var_within = var_h.mean(0)
        var_estimator = var_within * (n - 1) / n + means.var(0, ddof=1)
        rhat = np.sqrt(var_estimator / var_within)
        # batch means around the grand mean, pooled over chains
        total = count.sum()
        grand = np.einsum("cb,cbd->d", count, mean) / total
        nonempty = count > 0
        dof = max(int(nonempty.sum()) - 1, 1)
        batch_var = np.einsum("cb,cbd->d", count, (mean - grand) ** 2) / dof
        ess = total * var_estimator / batch_var
        # batch means around their own half's mean: the variance of a half's mean
        # that autocorrelation alone explains, whatever the halves' disagreement
        within_dof = max(int(nonempty.sum()) - 2 * num_chains, 1)
        spread = np.einsum("chb,chbd->d", n_b, (mean_b - mean_h[:, :, None]) ** 2) / within_dof
        excess = means.var(0, ddof=1) / (spread / n)
    return WindowSummary(
        rhat=rhat,
        ess=ess,
        excess=excess,
        num_draws=int(n_h.sum() // num_chains),
        num_chains=num_chains,
    )


def excess_threshold(
    summary: WindowSummary,
    min_excess: float = WARMUP_MIN_EXCESS,
    false_alarm: float = WARMUP_FALSE_ALARM,
) -> float:
    """Largest :attr:`WindowSummary.excess` that stationary chains plausibly show.

    The ``1 - false_alarm / d`` quantile of ``F(2C - 1, C (NUM_BATCHES - 2))``
    (``C`` chains, ``d`` coordinates), and at least ``min_excess``.

    Examples
    --------
    >>> s = WindowSummary(np.ones(1), np.ones(1), np.ones(1), num_draws=50, num_chains=1)
    >>> round(excess_threshold(s), 2)  # F(1, 14) at 0.99
    10.0
    """
    from scipy.special import fdtri  # a dependency of jax; needed only here, on the host

    d = max(summary.rhat.size, 1)
    dfn = 2 * summary.num_chains - 1
    dfd = summary.num_chains * (NUM_BATCHES - 2)
    return max(float(min_excess), float(fdtri(dfn, dfd, 1.0 - false_alarm / d)))


def flat_label(leaves: Sequence[tuple[str, tuple[int, ...]]], index: int) -> str:
    """Name of flat coordinate ``index`` given the ``(name, shape)`` of each raveled leaf.

    Examples
    --------
    >>> flat_label([("mu", ()), ("theta", (2, 3))], 4)
    'theta[1, 0]'
    """
    offset = 0
    for name, shape in leaves:
        size = int(np.prod(shape, dtype=int))
        if index < offset + size:
            if not shape:
                return name
            where = np.unravel_index(index - offset, shape)
            return f"{name}[{', '.join(str(int(j)) for j in where)}]"
        offset += size
    return f"coordinate {index}"


def _worst(values: np.ndarray, bad: np.ndarray, largest: bool) -> int:
    candidates = np.flatnonzero(bad)
    pick = np.argmax if largest else np.argmin
    return int(candidates[pick(values[candidates])])


def warn_if_not_converged(
    sampling,
    iteration,
    count,
    mean,
    m2,
    divergences=0,
    *,
    leaves: Sequence[tuple[str, tuple[int, ...]]] = (),
    max_rhat: float = MAX_RHAT,
    min_ess: float = MIN_ESS,
    warmup_max_rhat: float = WARMUP_MAX_RHAT,
    warmup_min_excess: float = WARMUP_MIN_EXCESS,
    warmup_false_alarm: float = WARMUP_FALSE_ALARM,
) -> None:
    """Warn if the window just ended shows chains that have not converged.

    At the end of warmup a coordinate is flagged when its split R-hat exceeds
    ``warmup_max_rhat`` and the disagreement of the halves is beyond what the
    autocorrelation explains (:func:`excess_threshold`): slow but stationary
    chains in a short window are left to the checks that follow.  At
    a sampling checkpoint, the split R-hat is checked against ``max_rhat`` and
    the batch-means ESS against ``min_ess``, and any divergent transition in
    the block is reported (as Stan does: a divergence marks a region of high
    curvature that the chains could not enter, so the draws may miss its mass,
    however well they seem to mix).

    Parameters
    ----------
    sampling : bool
        False at the end of warmup, True at a sampling checkpoint.
    iteration : int
        Iteration just completed (0-based).
    count, mean, m2, divergences : array
        The window's :class:`ConvergenceState` fields (batched for vectorised chains).
    leaves : sequence of (str, tuple of int)
        Name and shape of each unconstrained site, in raveling order, to name
        the worst coordinate.
    max_rhat, min_ess, warmup_max_rhat, warmup_min_excess, warmup_false_alarm : float
        Thresholds (see the module's constants).
    """
    summary = summarize(count, mean, m2)
    if summary.num_draws < 4:
        return
    if sampling:
        warn_if_divergent(int(np.sum(divergences)), summary, int(iteration))
    rhat, ess = summary.rhat, summary.ess
    d = rhat.size
    if sampling:
        over = rhat > max_rhat  # NaN: never moved, not judged
    else:
        limit = excess_threshold(summary, warmup_min_excess, warmup_false_alarm)
        over = (rhat > warmup_max_rhat) & ~(summary.excess <= limit)
    low = (ess < min_ess) if sampling else np.zeros(d, bool)
    if not (over.any() or low.any()):
        return

    def name(j):
        return f"{flat_label(leaves, j)} (flat index {j})"

    chains = (
        f"{summary.num_chains} chains"
        if summary.num_chains > 1
        else "a single chain, split in halves"
    )
    if not sampling:
        j = _worst(rhat, over, largest=True)
        warnings.warn(
            f"DilationLangevin: the chains had not converged when warmup ended: over the last"
            f" {summary.num_draws} warmup iterations ({chains}) the split R-hat is"
            f" {rhat[j]:.3g} for {name(j)}, whose halves disagree"
            f" {summary.excess[j]:.3g} times more than the chains' autocorrelation explains"
            f" ({int(over.sum())} of {d} coordinates above R-hat {warmup_max_rhat} and"
            f" {limit:.3g} times).  The chains were still travelling"
            " (or stuck apart), so the draws that follow are biased.  Lengthen num_warmup,"
            " then check r_hat and ESS of the draws (numpyro_dilation.check_convergence);"
            " if that does not help, reparametrise the model.",
            SamplerHealthWarning,
            stacklevel=2,
        )
        return
    problems = []
    if over.any():
        j = _worst(rhat, over, largest=True)
        problems.append(
            f"split R-hat above {max_rhat} for {int(over.sum())} of {d} coordinates"
            f" (worst {rhat[j]:.3g} for {name(j)})"
        )
    if low.any():
        j = _worst(ess, low, largest=False)
        problems.append(
            f"effective sample size (batch means) below {min_ess:g} for {int(low.sum())} of {d}"
            f" coordinates (lowest {ess[j]:.3g} for {name(j)})"
        )
    first = int(iteration) + 1 - summary.num_draws
    warnings.warn(
        f"DilationLangevin: the chains have not converged over sampling iterations"
        f" {first}-{int(iteration)} ({chains}): {'; '.join(problems)}.  (The kernel sees"
        " one block of sampling iterations at a time: if the run goes on, its draws as a whole"
        " may still pass; numpyro_dilation.check_convergence checks them all.)  Run more"
        " iterations (a longer num_warmup and num_samples) or reparametrise the model.",
        SamplerHealthWarning,
        stacklevel=2,
    )


def warn_if_divergent(num_divergent: int, summary: WindowSummary, iteration: int) -> None:
    """Warn that ``num_divergent`` transitions of a sampling block were divergent."""
    if num_divergent == 0:
        return
    total = summary.num_draws * summary.num_chains
    first = iteration + 1 - summary.num_draws
    warnings.warn(
        f"DilationLangevin: {num_divergent} of {total} transitions in sampling iterations"
        f" {first}-{iteration} were divergent (an energy error above the bound, or a"
        " non-finite potential).  A divergence marks a region of high curvature that the"
        " chains could not enter, so the draws may miss its mass even when R-hat and ESS"
        " look fine (the banana and the funnel of the project's benchmarks lose a quarter"
        " or more of their sd this way).  Reparametrise the model (e.g. non-centred), or"
        " raise target_accept_prob for a smaller step size; the 'diverging' extra field"
        " marks each one (numpyro_dilation.to_inference_data keeps it as"
        " sample_stats.diverging).",
        SamplerHealthWarning,
        stacklevel=3,
    )


__all__ = [
    "MAX_RHAT",
    "MIN_ESS",
    "MIN_WARMUP_HALF",
    "NUM_BATCHES",
    "WARMUP_FALSE_ALARM",
    "WARMUP_MAX_RHAT",
    "WARMUP_MIN_EXCESS",
    "ConvergenceState",
    "WindowSummary",
    "batch_index",
    "excess_threshold",
    "flat_label",
    "init",
    "summarize",
    "update",
    "warn_if_divergent",
    "warn_if_not_converged",
    "window_position",
]
