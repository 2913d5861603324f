"""The :class:`DilationLangevin` MCMC kernel: a thin NumPyro layer over the functional core."""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random, vmap
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.hmc_util import _value_and_grad
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_dilation import ensemble as population
from numpyro_dilation import path
from numpyro_dilation._checks import (
    check_bool,
    check_center,
    check_dense_mass,
    check_inverse_mass_matrix,
    check_positive_float,
    check_positive_int,
    check_unit_interval,
)
from numpyro_dilation.adaptation import (
    AdaptState,
    metric_norm_sq,
    restart_dual_averaging,
    running_mean,
    update_curvature,
    warmup_phases,
    window_adapter,
)
from numpyro_dilation.health import CHECK_EVERY, warn_if_unhealthy
from numpyro_dilation.langevin import MAX_DELTA_ENERGY, langevin_move

# Defaults, from the measurements in docs/how-it-works.md (4-mode mixtures in
# d = 2, 8, 32, 256 chains; the six posteriordb posteriors):
# - the annealing spreads chains over separated modes only when its first levels
#   sit near the edge of stability, eps * t_min**(alpha - 1) ~ 1.8 (in units of the
#   inverse curvature; 2 is the edge): mode-weight TV 0.12 against 0.33-0.59 at
#   1.5.  alpha = 0.75, t_min = 0.03, eps = 0.75 was the best such setting.
# - alpha = 1 (constant relative step) sent every chain to the basin nearest the
#   centre (TV 0.67-0.70), as the prototype found.
DEFAULT_STEP_SIZE = 1.0
DEFAULT_EPS = 0.75
DEFAULT_ALPHA = 0.75
DEFAULT_T_MIN = 0.03
DEFAULT_TARGET_ACCEPT_PROB = 0.574
#: ``dense_mass=None`` uses a dense mass matrix up to this many unconstrained
#: dimensions: MALA, unlike NUTS, cannot make up for correlations with long
#: trajectories (on the posteriordb regressions a diagonal metric gave min ESS
#: 5-49 per 4000 draws, a dense one 520-1700).  A window with too few draws for
#: a dense estimate falls back to the diagonal (``adaptation.MIN_DRAWS_PER_DIM``).
AUTO_DENSE_MAX_DIM = 100
#: Weight of the newest acceptance in ``recent_accept_prob`` (a ~100-iteration memory).
RECENT_WEIGHT = 0.01


def _is_key_batch(rng_key) -> bool:
    """True for a batch of keys (vectorised chains), False for one key; TypeError otherwise."""
    if is_prng_key(rng_key):
        return False
    dtype = getattr(rng_key, "dtype", None)
    ndim = np.ndim(rng_key)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and ndim == 1:
        return True
    if dtype == jnp.uint32 and ndim == 2 and np.shape(rng_key)[-1] == 2:
        return True
    raise TypeError(
        "`rng_key` must be a JAX random key such as jax.random.PRNGKey(0) (or, for"
        f" vectorised chains, a batch of them); got {rng_key!r:.80}."
    )


class DilationState(NamedTuple):
    """State of one :class:`DilationLangevin` chain.

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
    adapt_state : numpyro_dilation.adaptation.AdaptState
        Step size, mass matrix and curvature adaptation state.
    rng_key : jax.Array
        Random key for the next transition.
    num_anneal_steps, num_warmup : int
        Phase boundaries of the run that made this state, so that a state
        carried over with ``mcmc.post_warmup_state`` keeps its own schedule.
    ensemble : numpyro_dilation.ensemble.EnsembleState or None
        Population-move settings and statistics (``ensemble=True`` only).  In
        ensemble mode every field is batched over chains except ``rng_key``,
        which is one key for the whole ensemble.
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
    adapt_state: AdaptState
    rng_key: jax.Array
    num_anneal_steps: jax.Array
    num_warmup: jax.Array
    ensemble: population.EnsembleState | None = None


class DilationLangevin(MCMCKernel):
    """Annealed Langevin along the dilation path, then exact MALA.

    The dilation path (Chehab & Korba, 2024) shrinks the posterior towards a
    centre ``c``: its level ``t`` is the law of ``c + sqrt(t) (X - c)``.  During
    the first part of warmup every chain starts at ``c`` and follows the path
    from ``t_min`` to ``t = 1`` with unadjusted Langevin steps
    ``h = eps * t**alpha`` (the paper's adaptive step sizes), which spreads
    chains over the modes of a multimodal posterior.  The rest of warmup runs
    MALA at ``t = 1`` and adapts its step size (dual averaging) and mass matrix
    (Stan's windows, from positions and gradients); the sampling phase is
    Metropolis-adjusted, so the draws are exact.

    Parameters
    ----------
    model : callable, optional
        A NumPyro model with continuous latent sites.
    potential_fn : callable, optional
        Potential energy (negative log density) of a pytree of parameters;
        give exactly one of ``model`` and ``potential_fn``.  With
        ``potential_fn``, :meth:`numpyro.infer.MCMC.run` needs ``init_params``.
    step_size : float, default 1.0
        Initial MALA step size, as in NumPyro's kernels.  With
        ``adapt_step_size=True`` (default) the annealing replaces it by its own
        estimate before dual averaging starts; otherwise it is the step size of
        the sampling phase.  It also seeds the curvature estimate (``1 / step_size``).
    eps : float, default 0.75
        The paper's ``eps`` in ``h = eps * t**alpha``, measured in units of the
        inverse curvature of the potential (tracked during the annealing from
        consecutive gradients), so that the annealing behaves alike on posteriors
        of any scale.  The annealing is unstable where ``eps * t**(alpha - 1)``
        exceeds 2; it spreads chains over modes best just below that edge at
        ``t = t_min``.
    alpha : float, default 0.75
        Exponent of the adaptive step sizes: the step at level ``t`` is
        ``eps * t**(alpha - 1)`` relative to that level's scale.  ``alpha = 1``
        keeps a constant relative step and sends every chain into the basin
        nearest the centre; smaller values make the early levels hotter.
    t_min : float, default 0.03
        First level of the path, in ``(0, 1)``.
    num_anneal_steps : int, optional
        Warmup iterations spent annealing (one Langevin step each); default half
        of ``num_warmup``.
    schedule : {"geometric", "linear"} or callable, default "geometric"
        Levels of the annealing: equally spaced in ``log t``, in ``t``, or a
        JAX-traceable ``u -> t`` mapping the annealing progress ``u`` in [0, 1]
        to a level (non-decreasing, ending at 1; ``t_min`` is then unused).
    center : {"origin", "init"} or array or dict, default "origin"
        Centre of the dilation, in unconstrained space: the origin, each chain's
        initial point (from ``init_strategy`` or ``init_params``), or a given
        point (flat array, or a dict of unconstrained site values).  The chains
        start at the centre, so ``init_strategy`` only matters with ``"init"``.
    adapt_step_size : bool, default True
        Adapt the step size at ``t = 1`` by dual averaging.
    adapt_mass_matrix : bool, default True
        Adapt the mass matrix in Stan's windows, during the annealing and again
        at ``t = 1``.
    dense_mass : bool or None, default None
        Dense (full-rank) or diagonal mass matrix; ``None`` chooses dense for up
        to 100 unconstrained dimensions and diagonal above.
    inverse_mass_matrix : array, optional
        Initial inverse mass matrix (1-D diagonal or 2-D dense); identity by default.
    target_accept_prob : float, default 0.574
        Acceptance rate targeted by step size adaptation (0.574 is optimal for
        MALA in high dimension).
    adjust : bool, default True
        Metropolis-adjust the sampling phase (MALA, exact).  ``False`` gives the
        paper's unadjusted Langevin, biased by its step size.
    init_strategy : callable, default numpyro.infer.init_to_uniform
        Per-site initialisation, used for ``center="init"``.
    forward_mode_differentiation : bool, default False
        Use forward-mode differentiation of the potential (for models with
        ``jax.lax.while_loop`` and the like).
    regularize_mass_matrix : bool, default True
        Shrink each adapted mass matrix towards a multiple of the identity in
        log-eigenvalue space (of its correlation matrix when its eigenvalues
        span beyond float32's resolution), with Stan's weight ``5 / (n + 5)``.
    ensemble : bool, default False
        Ensemble mode: after each chain's own step, move the chains with
        population proposals built from the other half of the chains
        (differential evolution, translations between cluster centres and
        independence draws from a Gaussian mixture fitted to the other half),
        each accepted with its exact Metropolis-Hastings ratio, so that chains
        jump between modes and mode weights come out right.  Needs
        ``chain_method="vectorized"`` and at least 4 chains (64-1024 in
        practice).  Extra fields ``ensemble.num_mode_jumps``,
        ``ensemble.accept_prob``, ``ensemble.mean_accept_prob``,
        ``ensemble.num_proposals``, ``ensemble.num_accepted`` and the tuned
        ``ensemble.move_probs``, ``ensemble.population_prob``,
        ``ensemble.num_clusters``.  See the "Ensemble mode" page of the docs.

    Examples
    --------
    >>> import jax
    >>> import numpyro
    >>> import numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> from numpyro_dilation import DilationLangevin
    >>> def model():
    ...     numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]))
    >>> mcmc = MCMC(DilationLangevin(model), num_warmup=200, num_samples=200,
    ...             progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0), extra_fields=("t", "num_grad_evals"))
    >>> mcmc.get_samples()["x"].shape
    (200, 3)
    >>> int(mcmc.get_extra_fields()["num_grad_evals"][-1])  # one per iteration, plus init
    401
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        step_size: float = DEFAULT_STEP_SIZE,
        eps: float = DEFAULT_EPS,
        alpha: float = DEFAULT_ALPHA,
        t_min: float = DEFAULT_T_MIN,
        num_anneal_steps: int | None = None,
        schedule: str | Callable = "geometric",
        center: str | Any = "origin",
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool | None = None,
        inverse_mass_matrix: Any = None,
        target_accept_prob: float = DEFAULT_TARGET_ACCEPT_PROB,
        adjust: bool = True,
        init_strategy: Callable = init_to_uniform,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
        ensemble: bool = False,
    ) -> None:
        if (model is None) == (potential_fn is None):
            raise ValueError(
                "Give exactly one of `model` (a NumPyro model) and `potential_fn`"
                f" (a potential energy function); got {'both' if model is not None else 'neither'}."
            )
        for name, fn in (("model", model), ("potential_fn", potential_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"`{name}` must be callable; got {type(fn).__name__}.")
        self._model = model
        self._potential_fn = potential_fn
        self._step_size = check_positive_float("step_size", step_size)
        self._eps = check_positive_float("eps", eps)
        self._alpha = check_positive_float("alpha", alpha)
        self._t_min = check_unit_interval("t_min", t_min)
        self._num_anneal_steps = (
            None
            if num_anneal_steps is None
            else check_positive_int("num_anneal_steps", num_anneal_steps)
        )
        path.check_schedule(schedule)
        self._schedule = schedule
        self._center = check_center(center)
        self._adapt_step_size = check_bool("adapt_step_size", adapt_step_size)
        self._adapt_mass_matrix = check_bool("adapt_mass_matrix", adapt_mass_matrix)
        self._dense_mass = check_dense_mass(dense_mass)
        self._inverse_mass_matrix = check_inverse_mass_matrix(inverse_mass_matrix, dense_mass)
        self._target_accept_prob = check_unit_interval("target_accept_prob", target_accept_prob)
        self._adjust = check_bool("adjust", adjust)
        if not callable(init_strategy):
            raise TypeError(
                "`init_strategy` must be a callable such as numpyro.infer.init_to_median;"
                f" got {type(init_strategy).__name__}."
            )
        self._init_strategy = init_strategy
        self._forward_mode_differentiation = check_bool(
            "forward_mode_differentiation", forward_mode_differentiation
        )
        self._regularize_mass_matrix = check_bool("regularize_mass_matrix", regularize_mass_matrix)
        self._ensemble = check_bool("ensemble", ensemble)
        self._reset()

    def _reset(self) -> None:
        """Forget everything built by :meth:`init` (closures over a model or its data)."""
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._sample_fn = None
        self._adapter = None

    # ------------------------------------------------------------------ NumPyro API

    @property
    def model(self) -> Callable | None:
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    @property
    def default_fields(self) -> tuple[str, ...]:
        return ("z", "diverging")

    @property
    def is_ensemble_kernel(self) -> bool:
        return self._ensemble

    def get_diagnostics_str(self, state: DilationState) -> str:
        # ensemble states are batched over chains: report chain averages
        t = float(jnp.min(state.t))
        if t < 1.0:
            return f"t={t:.2e}, step size {float(jnp.mean(state.step_size)):.2e}"
        step_size = float(jnp.mean(state.adapt_state.step_size))
        text = f"step size {step_size:.2e}. acc. prob={float(jnp.mean(state.mean_accept_prob)):.2f}"
        if state.ensemble is not None:
            jumps = int(jnp.sum(state.ensemble.num_mode_jumps))
            text += f". mode jumps={jumps}"
        return text

    def postprocess_fn(self, model_args, model_kwargs):
        if self._postprocess_fn is None:
            return identity
        return self._postprocess_fn(*model_args, **model_kwargs)

    def init(
        self,
        rng_key: jax.Array,
        num_warmup: int,
        init_params: Any = None,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
    ) -> DilationState:
        """Build the initial state: every chain at the dilation centre, at ``t = t_min``."""
        model_kwargs = {} if model_kwargs is None else model_kwargs
        adapting = self._adapt_step_size or self._adapt_mass_matrix
        num_anneal, _ = warmup_phases(num_warmup, self._num_anneal_steps, adapting)

        vectorized = _is_key_batch(rng_key)
        if self._ensemble:
            num_chains = 1 if not vectorized else rng_key.shape[0]
            if not vectorized or num_chains < 4:
                raise ValueError(
                    "ensemble=True moves chains using the other chains: it needs"
                    " MCMC(..., chain_method='vectorized') with num_chains >= 4 (64 to 1024"
                    f" recommended); got {'a single chain or a non-vectorized chain_method' if not vectorized else f'num_chains={num_chains}'}."
                )
        if vectorized:
            rng_key, key_init_model = jnp.swapaxes(vmap(random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init_model = random.split(rng_key)
        init_params = self._init_model(key_init_model, model_args, model_kwargs, init_params)
        for leaf in jax.tree.leaves(init_params):
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                raise TypeError(
                    "`init_params` must hold floating-point arrays (unconstrained values);"
                    f" got dtype {jnp.result_type(leaf)}. Pass e.g. jnp.zeros(3) rather than"
                    " an integer array."
                )

        one_chain_params = jax.tree.map(lambda x: x[0], init_params) if vectorized else init_params
        flat, _ = ravel_pytree(one_chain_params)
        if flat.size == 0:
            raise ValueError("The model has no latent sample sites: there is nothing to sample.")
        size = flat.size
        if self._t_min < np.finfo(flat.dtype).tiny:
            raise ValueError(
                f"`t_min`={self._t_min!r} underflows in {flat.dtype}: it must be at least"
                f" {np.finfo(flat.dtype).tiny:.3g} (the smallest normal number); values near"
                " 0.01-0.1 are typical."
            )
        center = self._resolve_center(one_chain_params, flat)
        dense = self._dense_mass if self._dense_mass is not None else size <= AUTO_DENSE_MAX_DIM
        if self._inverse_mass_matrix is not None and np.shape(self._inverse_mass_matrix)[0] != size:
            raise ValueError(
                f"`inverse_mass_matrix` must have {size} rows (one per unconstrained latent"
                f" coordinate); got shape {np.shape(self._inverse_mass_matrix)}."
            )
        if np.ndim(self._inverse_mass_matrix) == 2 and not dense:
            raise ValueError(
                f"A 2-D `inverse_mass_matrix` needs a dense mass matrix, but this model has"
                f" {size} dimensions (diagonal above {AUTO_DENSE_MAX_DIM} unless dense_mass=True)."
            )
        self._adapter = window_adapter(
            num_anneal,
            num_warmup,
            adapt_step_size=self._adapt_step_size,
            adapt_mass_matrix=self._adapt_mass_matrix,
            dense_mass=dense,
            target_accept_prob=self._target_accept_prob,
            regularize_mass_matrix=self._regularize_mass_matrix,
        )
        potential_fn = self._current_potential_fn(model_args, model_kwargs)

        def init_one(params, key):
            flat, unravel = ravel_pytree(params)
            c = flat if center is None else center.astype(flat.dtype)
            t0 = jnp.asarray(self._levels(jnp.zeros((), flat.dtype)), flat.dtype)
            pe, grad = self._potential_and_grad(potential_fn, unravel)(c)
            adapt_state = self._adapter.init(
                size, self._step_size, self._inverse_mass_matrix, flat.dtype
            )
            int_zero = jnp.array(0, dtype=jnp.result_type(int))
            return DilationState(
                i=int_zero,
                z=unravel(c),
                potential_energy=pe + 0.5 * size * jnp.log(t0),
                y=c,
                y_grad=grad,
                center=c,
                t=t0,
                step_size=jnp.zeros((), flat.dtype),
                accept_prob=jnp.zeros((), flat.dtype),
                mean_accept_prob=jnp.zeros((), flat.dtype),
                recent_accept_prob=jnp.ones((), flat.dtype),
                diverging=jnp.array(False),
                num_grad_evals=int_zero + 1,
                adapt_state=adapt_state,
                rng_key=key,
                num_anneal_steps=int_zero + num_anneal,
                num_warmup=int_zero + num_warmup,
            )

        state = (
            vmap(init_one)(init_params, rng_key) if vectorized else init_one(init_params, rng_key)
        )
        self._sample_fn = partial(self._sample, vectorized=vectorized)
        if self._ensemble:
            n = state.y.shape[0]
            state = state._replace(
                rng_key=random.fold_in(rng_key[0], n),
                ensemble=population.init_ensemble_state(n, state.y.dtype),
            )
            self._sample_fn = self._sample_ensemble
        self._check_finite_start(state)
        return state

    def sample(self, state: DilationState, model_args: tuple, model_kwargs: dict) -> DilationState:
        """Run one transition (annealing, adaptation or sampling, by ``state.i``)."""
        assert self._sample_fn is not None, "`init` must be called before `sample`."
        return self._sample_fn(state, model_args, model_kwargs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        state["_adapter"] = None
        return state

    def wrap_model(self, wrapper: Callable) -> DilationLangevin:
        """Return a copy of this kernel bound to ``wrapper(self.model)``."""
        if self._model is None:
            raise ValueError("`wrap_model` needs a kernel built from a model, not a potential_fn.")
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    # ------------------------------------------------------------------ internals

    def _levels(self, u):
        return path.make_schedule(self._schedule, self._t_min)(u)

    def _potential_and_grad(self, potential_fn, unravel):
        def flat_potential(y):
            return potential_fn(unravel(y))

        return lambda y: _value_and_grad(flat_potential, y, self._forward_mode_differentiation)

    def _current_potential_fn(self, model_args, model_kwargs):
        if self._potential_fn_gen is not None:
            return self._potential_fn_gen(*model_args, **(model_kwargs or {}))
        return self._potential_fn

    def _init_model(self, rng_key, model_args, model_kwargs, init_params):
        if self._model is None:
            if init_params is None:
                raise ValueError(
                    "`init_params` must be given to MCMC.run when DilationLangevin is built from"
                    " a `potential_fn` (it fixes the structure and shape of the parameters)."
                )
            return init_params.z if isinstance(init_params, ParamInfo) else init_params
        one_key = rng_key if is_prng_key(rng_key) else rng_key[0]
        check_continuous_latents(
            self._model, one_key, model_args, model_kwargs, self._init_strategy
        )
        params_info, self._potential_fn_gen, self._postprocess_fn, _ = initialize_model(
            rng_key,
            self._model,
            dynamic_args=True,
            init_strategy=self._init_strategy,
            model_args=model_args,
            model_kwargs=model_kwargs,
            forward_mode_differentiation=self._forward_mode_differentiation,
        )
        if init_params is None:
            return params_info.z
        return init_params.z if isinstance(init_params, ParamInfo) else init_params

    def _resolve_center(self, params, flat):
        """Flat centre array, or ``None`` for ``"init"`` (each chain's own start)."""
        if isinstance(self._center, str):
            return None if self._center == "init" else jnp.zeros_like(flat)
        given = self._center
        if isinstance(given, dict):
            if isinstance(params, dict) and set(given) != set(params):
                raise ValueError(
                    "`center` given as a dict must have one entry per latent site,"
                    f" {sorted(params)}; got {sorted(given)}."
                )
            # Order the entries as the latent sites are flattened.
            given = {k: given[k] for k in params} if isinstance(params, dict) else given
            given = ravel_pytree(jax.tree.map(jnp.asarray, given))[0]
        given = jnp.ravel(jnp.asarray(given))
        if given.size != flat.size:
            raise ValueError(
                f"`center` must have {flat.size} entries (one per unconstrained latent"
                f" coordinate); got {given.size}."
            )
        return given.astype(flat.dtype)

    def _check_finite_start(self, state):
        if isinstance(state.potential_energy, jax.core.Tracer):
            return  # under pmap the values are not known here
        finite = np.all(np.isfinite(np.asarray(state.potential_energy))) and np.all(
            np.isfinite(np.asarray(state.y_grad))
        )
        if not finite:
            where = (
                "each chain's initial point" if self._center == "init" else "the dilation centre"
            )
            raise ValueError(
                f"The potential energy or its gradient is not finite at {where}, where every"
                " chain starts. Pass `center=` a point where the model's density is positive"
                " and smooth (or `center='init'` with a suitable `init_strategy`/`init_params`)."
            )

    def _sample(self, state, model_args, model_kwargs, vectorized):
        # Vectorised chains share the iteration counter, so the phase and the
        # window boundaries are decided once for all chains: a per-chain
        # `lax.cond` under `vmap` would compute the costly window end every time.
        i = state.i[0] if vectorized else state.i
        num_warmup = state.num_warmup[0] if vectorized else state.num_warmup
        num_anneal = state.num_anneal_steps[0] if vectorized else state.num_anneal_steps
        transition = partial(self._transition, model_args=model_args, model_kwargs=model_kwargs)
        end_window = self._adapter.end_window
        if vectorized:
            # The phase counters go in unbatched too, so that the warmup-only work
            # stays behind a real branch (a batched predicate would turn the
            # `lax.cond` into a select that runs the warmup update every iteration).
            transition = vmap(transition, in_axes=(0, None, None, None))
            end_window = vmap(end_window)
        state = transition(state, i, num_anneal, num_warmup)
        adapt_state = jax.lax.cond(
            self._adapter.is_window_end(i) & (i < num_warmup),
            end_window,
            identity,
            state.adapt_state,
        )
        state = state._replace(adapt_state=adapt_state)
        sampling = i >= num_warmup
        checkpoint = (i == num_warmup - 1) | (
            sampling & ((i - num_warmup) % CHECK_EVERY == CHECK_EVERY - 1)
        )
        jax.lax.cond(
            checkpoint,
            lambda s: jax.debug.callback(
                partial(
                    warn_if_unhealthy,
                    check_large_step=self._adapt_step_size and self._adapt_mass_matrix,
                ),
                sampling,
                i,
                jnp.where(sampling, s.recent_accept_prob, s.mean_accept_prob),
                s.adapt_state.step_size,
            ),
            lambda s: None,
            state,
        )
        return state

    def _sample_ensemble(self, state, model_args, model_kwargs):
        """Local step of every chain, then population moves between the two halves."""
        n = state.y.shape[0]
        i = state.i[0]
        num_anneal, num_warmup = state.num_anneal_steps[0], state.num_warmup[0]
        key, key_chains, key_population, key_gate = random.split(state.rng_key, 4)

        before = state
        state = self._sample(
            state._replace(rng_key=random.split(key_chains, n)),
            model_args,
            model_kwargs,
            vectorized=True,
        )
        local_jump = vmap(metric_norm_sq)(state.adapt_state.whitening, state.y - before.y)

        shared = jax.tree.map(lambda x: x[0], state.ensemble)
        start = jnp.floor(population.POPULATION_START * num_anneal).astype(i.dtype)
        run = (i >= start) & (random.uniform(key_gate) < shared.population_prob)
        potential_fn = self._current_potential_fn(model_args, model_kwargs)
        state, stats = jax.lax.cond(
            run,
            lambda s: self._population_moves(key_population, s, potential_fn),
            lambda s: (s, self._no_population_stats(s)),
            state,
        )
        move, accept_prob, accepted, jump = stats
        onehot = jax.nn.one_hot(move, len(population.MOVES), dtype=state.y.dtype) * run
        counts = jnp.sum(onehot, axis=0)
        d = state.y.shape[1]
        mode_jump = accepted & (jump > 2 * d + 6 * jnp.sqrt(2.0 * d))
        ens = state.ensemble._replace(
            accept_prob=onehot * accept_prob[:, None],
            num_proposals=state.ensemble.num_proposals
            + onehot.astype(state.ensemble.num_proposals.dtype),
            num_accepted=state.ensemble.num_accepted
            + (onehot * accepted[:, None]).astype(state.ensemble.num_accepted.dtype),
            num_mode_jumps=state.ensemble.num_mode_jumps
            + mode_jump.astype(state.ensemble.num_mode_jumps.dtype),
        )
        # Tune during the MALA part of warmup only; the settings are frozen afterwards.
        cluster_moves = onehot[:, 1] + onehot[:, 2]
        tuned = population.tune_ensemble(
            shared,
            jnp.mean(local_jump),
            run,
            jnp.sum(onehot * jump[:, None], axis=0),
            counts,
            jnp.sum(cluster_moves * jump) / jnp.maximum(jnp.sum(cluster_moves), 1.0),
            i == num_warmup - 1,
            self._max_cluster_candidate(n),
            jnp.mean(mode_jump.astype(state.y.dtype)),
        )
        tuning = (i >= num_anneal) & (i < num_warmup)
        tuned = jax.tree.map(lambda new, old: jnp.where(tuning, new, old), tuned, shared)
        ens = ens._replace(
            **{
                field: jnp.broadcast_to(getattr(tuned, field), getattr(ens, field).shape)
                for field in (
                    "move_probs",
                    "population_prob",
                    "num_clusters",
                    "jump_local",
                    "jump_moves",
                    "jump_clusters",
                    "mode_jump_rate",
                )
            }
        )
        grads = state.num_grad_evals + run.astype(state.num_grad_evals.dtype)
        return state._replace(rng_key=key, ensemble=ens, num_grad_evals=grads)

    @staticmethod
    def _max_cluster_candidate(num_chains: int) -> int:
        half = num_chains // 2
        usable = [k for k, c in enumerate(population.CLUSTER_CANDIDATES) if c <= max(half // 4, 2)]
        return max(usable)

    @staticmethod
    def _no_population_stats(state):
        n = state.y.shape[0]
        zeros = jnp.zeros(n, state.y.dtype)
        return jnp.zeros(n, jnp.result_type(int)), zeros, jnp.zeros(n, bool), zeros

    def _population_moves(self, rng_key, state, potential_fn):
        """Update each half with proposals built from the other half (exact MH)."""
        n, d = state.y.shape
        half = n // 2
        _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
        pag = self._potential_and_grad(potential_fn, unravel)
        log_t = 0.5 * d * jnp.log(state.t)
        target_pe = state.potential_energy - log_t  # the target's own potential at y
        shared = jax.tree.map(lambda x: x[0], state.ensemble)
        key_a, key_b = random.split(rng_key)
        whitening = state.adapt_state.whitening
        imm = state.adapt_state.inverse_mass_matrix
        variances = imm if imm.ndim == 2 else jnp.diagonal(imm, axis1=-2, axis2=-1)

        def update(key, idx, other_idx, others, y, pe, grad):
            norm = lambda k, delta: metric_norm_sq(whitening[idx][k], delta)
            # the other half's adapted metric: the scale within a mode
            scale = jnp.sqrt(jnp.mean(variances[other_idx], axis=0))
            return population.population_update(
                key,
                y[idx],
                pe[idx],
                grad[idx],
                others,
                shared.move_probs,
                shared.num_clusters,
                pag,
                norm,
                scale=scale,
            )

        first, second = jnp.arange(half), jnp.arange(half, n)
        y, pe, grad = state.y, target_pe, state.y_grad
        up_a = update(key_a, first, second, y[second], y, pe, grad)
        y = y.at[first].set(up_a.y)
        pe = pe.at[first].set(up_a.potential_energy)
        grad = grad.at[first].set(up_a.grad)
        up_b = update(key_b, second, first, y[first], y, pe, grad)
        y = y.at[second].set(up_b.y)
        pe = pe.at[second].set(up_b.potential_energy)
        grad = grad.at[second].set(up_b.grad)

        z = vmap(lambda yy, t, c: unravel(path.from_rescaled(yy, t, c)))(y, state.t, state.center)
        state = state._replace(y=y, y_grad=grad, potential_energy=pe + log_t, z=z)
        stats = tuple(
            jnp.concatenate([a, b])
            for a, b in zip(
                (up_a.move, up_a.accept_prob, up_a.accepted, up_a.jump),
                (up_b.move, up_b.accept_prob, up_b.accepted, up_b.jump),
            )
        )
        return state, stats

    def _transition(
        self, state: DilationState, i, num_anneal, num_warmup, model_args, model_kwargs
    ) -> DilationState:
        """One step of one chain; the window-end work is left to :meth:`_sample`."""
        potential_fn = self._current_potential_fn(model_args, model_kwargs)
        _, unravel = ravel_pytree(state.z)
        dtype = state.y.dtype
        d = state.y.size
        adapt = state.adapt_state

        annealing = i < num_anneal
        u_next = ((i + 1) / jnp.maximum(num_anneal, 1)).astype(dtype)
        t_next = jnp.where(i + 1 < num_anneal, self._levels(u_next), 1.0).astype(dtype)
        # Step in rescaled coordinates: the paper's h = eps * t**alpha on p_t is
        # eps * t**(alpha - 1) on the target, here in units of 1 / curvature.
        step_y = jnp.where(
            annealing,
            self._eps * state.t ** (self._alpha - 1) / adapt.curvature,
            adapt.step_size,
        )
        adjusted = ~annealing & (self._adjust | (i < num_warmup))

        rng_key, key_move = random.split(state.rng_key)
        move = langevin_move(
            key_move,
            state.y,
            state.potential_energy - 0.5 * d * jnp.log(state.t),
            state.y_grad,
            self._potential_and_grad(potential_fn, unravel),
            step_y,
            adapt.inverse_mass_matrix,
            adapt.inverse_mass_matrix_sqrt,
            adjusted=adjusted,
            center=state.center,
            contraction=jnp.sqrt(state.t / t_next),
            max_delta_energy=MAX_DELTA_ENERGY,
        )
        # A rejected annealing step keeps the rescaled position y: in the original
        # coordinates the particle is dilated from level t to t_next, which maps a
        # draw of p_t to a draw of p_t_next exactly.  So the level always advances.
        t_new = t_next

        adapt = jax.lax.cond(
            i < num_warmup,
            partial(self._warmup_update, annealing, i, state, move),
            identity,
            adapt,
        )
        phase_start = jnp.where(annealing, 0, jnp.where(i < num_warmup, num_anneal, num_warmup))
        return DilationState(
            i=state.i + 1,
            z=unravel(path.from_rescaled(move.y, t_new, state.center)),
            potential_energy=move.potential_energy + 0.5 * d * jnp.log(t_new),
            y=move.y,
            y_grad=move.grad,
            center=state.center,
            t=t_new,
            step_size=step_y * state.t,
            accept_prob=move.accept_prob,
            mean_accept_prob=running_mean(state.mean_accept_prob, move.accept_prob, i, phase_start),
            recent_accept_prob=state.recent_accept_prob
            + RECENT_WEIGHT * (move.accept_prob - state.recent_accept_prob),
            diverging=move.diverging,
            num_grad_evals=state.num_grad_evals + 1,
            adapt_state=adapt,
            rng_key=rng_key,
            num_anneal_steps=state.num_anneal_steps,
            num_warmup=state.num_warmup,
            ensemble=state.ensemble,
        )

    def _warmup_update(self, annealing, i, state, move, adapt: AdaptState) -> AdaptState:
        """Per-iteration warmup adaptation (curvature while annealing, dual averaging after)."""
        curvature = update_curvature(
            adapt.curvature,
            state.y,
            state.y_grad,
            move.proposal,
            move.proposal_grad,
            adapt.whitening,
            move.diverging,
        )
        adapt = adapt._replace(curvature=jnp.where(annealing, curvature, adapt.curvature))
        adapt = self._adapter.update(i, move.accept_prob, move.y, move.grad, adapt, ~annealing)
        if self._adapt_step_size:
            # Dual averaging at t = 1 starts from the step the curvature suggests.
            restarted = restart_dual_averaging(adapt, 1.0 / adapt.curvature)
            adapt = jax.tree.map(lambda new, old: jnp.where(annealing, new, old), restarted, adapt)
        return adapt


def check_continuous_latents(
    model: Callable, rng_key, model_args, model_kwargs, init_strategy=init_to_uniform
) -> None:
    """Raise a clear error if ``model`` has discrete latent sites not marked for enumeration."""
    # Values come from the init strategy, as in NumPyro's own initialisation, so that
    # improper priors (which cannot be sampled) trace too.
    seeded = handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_strategy)
    with handlers.block(), handlers.trace() as trace:
        seeded(*model_args, **model_kwargs)
    discrete = [
        name
        for name, site in trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and site["fn"].support.is_discrete
        and site["infer"].get("enumerate") is None
    ]
    if discrete:
        one = len(discrete) == 1
        raise ValueError(
            f"DilationLangevin samples continuous latent sites only, but {discrete} "
            f"{'is' if one else 'are'} discrete. Marginalise {'it' if one else 'them'} out of"
            " the model, or mark the site with infer={'enumerate': 'parallel'} (needs the"
            " funsor package) so that NumPyro sums it out of the potential energy."
        )


__all__ = ["DilationLangevin", "DilationState", "check_continuous_latents"]
