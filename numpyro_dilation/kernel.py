"""The :class:`DilationLangevin` MCMC kernel: a thin NumPyro layer over the functional core.

This module does what only a NumPyro kernel does: check the arguments, build
the potential from the model (``initialize_model``), resolve the centre, map
the core's :func:`~numpyro_dilation.dilation.init` over vectorised chains, and
run the health checks.  The sampler itself is :mod:`numpyro_dilation.dilation`
(composing :mod:`numpyro_dilation.moves` and :mod:`numpyro_dilation.iteration`;
:mod:`numpyro_dilation.ensemble` for population moves).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import random, vmap
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import ParamInfo, initialize_model
from numpyro.util import identity, is_prng_key

from numpyro_dilation import (
    convergence,
    dilation,
    ensemble,
    nuts,
    path,
    pooling,
    run_checks,
    sharding,
)
from numpyro_dilation._checks import (
    check_continuous_latents,
    check_dimensions,
    check_ensemble_chains,
    check_finite_start,
    check_init_params,
    check_options,
    is_key_batch,
    resolve_center,
    resolve_inverse_mass_matrix,
)
from numpyro_dilation.adaptation import (
    MIN_ADAPT_STEPS,
    short_warmup_message,
    warmup_phases,
    window_adapter,
)
from numpyro_dilation.dilation import DilationSettings, DilationState
from numpyro_dilation.health import (
    SamplerHealthWarning,
)

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
#: ``dense_mass=None`` uses a dense mass matrix up to this many unconstrained
#: dimensions: the short annealing and warmup cannot make up for correlations
#: that a diagonal metric leaves (measurements in docs/how-it-works.md).  A window
#: with too few draws for a dense estimate falls back to the diagonal
#: (``adaptation.MIN_DRAWS_PER_DIM``).
AUTO_DENSE_MAX_DIM = 100


class DilationLangevin(MCMCKernel):
    """Annealed Langevin along the dilation path, then an exact stationary kernel.

    The dilation path (Chehab & Korba, 2024) shrinks the posterior towards a
    centre ``c``: its level ``t`` is the law of ``c + sqrt(t) (X - c)``.  During
    the first part of warmup every chain starts at ``c`` and follows the path
    from ``t_min`` to ``t = 1`` with unadjusted Langevin steps
    ``h = eps * t**alpha`` (the paper's adaptive step sizes), which spreads
    chains over the modes of a multimodal posterior.  From ``t = 1`` on a
    Metropolis-adjusted kernel takes over (``stationary``): by default HMC with
    a jittered trajectory length tuned by ChEES, or single-step MALA, or
    NumPyro's own NUTS.  The rest of warmup adapts its step size (dual
    averaging) and mass matrix (Stan's windows, from positions and gradients);
    vectorised chains adapt together with the chains of their own mode (one
    step size from their geometric-mean acceptance, one metric from their mean
    within-chain covariance, one trajectory length per mode).  The draws are
    exact.

    Parameters
    ----------
    model : callable, optional
        A NumPyro model with continuous latent sites.
    potential_fn : callable, optional
        Potential energy (negative log density) of a pytree of parameters;
        give exactly one of ``model`` and ``potential_fn``.  With
        ``potential_fn``, :meth:`numpyro.infer.MCMC.run` needs ``init_params``.
    step_size : float, default 1.0
        Initial step size, as in NumPyro's kernels (the Langevin time step for
        MALA, the leapfrog step for HMC and NUTS).  With
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
    target_accept_prob : float, optional
        Acceptance rate targeted by step size adaptation; by default 0.8 for
        HMC and NUTS (NumPyro's value) and 0.574 for MALA (optimal in high
        dimension).
    adjust : bool, default True
        Metropolis-adjust the sampling phase.  ``False`` (with
        ``stationary="mala"`` only) gives the paper's unadjusted Langevin,
        biased by its step size.
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
        Ensemble mode: vectorised chains find the posterior's modes together
        (scouts look for basins the chains missed), and every chain makes mode
        moves, hops between the modes' Gaussians and independence draws from
        their mixture, each accepted with its exact Metropolis-Hastings ratio,
        so that chains change modes and the mode weights come out right.
        Needs ``chain_method="vectorized"`` and at least 4 chains (128-1024 in
        practice).  Extra fields ``ensemble.num_mode_jumps``,
        ``ensemble.accept_prob``, ``ensemble.mean_accept_prob``,
        ``ensemble.num_proposals``, ``ensemble.num_accepted`` and the tuned
        ``ensemble.move_probs`` and ``ensemble.mode_move_prob``; with or without
        it, vectorised chains report ``modes.label`` and ``modes.num_modes``.
        See the "Ensemble mode" page of the docs.
    stationary : {"hmc", "mala", "nuts"}, default "hmc"
        The kernel after the annealing.  ``"hmc"``: HMC whose number of
        leapfrog steps is ``ceil(u T / step)`` with a quasi-random jitter ``u``
        and a trajectory length ``T`` tuned by the ChEES criterion (Hoffman,
        Radul & Sountsov, 2021); HMC-class scaling (``d**(1/4)``, ``sqrt(kappa)``)
        and no per-chain ``while`` loop when chains are vectorised.  ``"mala"``:
        one Langevin step per iteration (cheapest per iteration, slow on
        ill-conditioned or high-dimensional posteriors).  ``"nuts"``: the
        annealed chains are handed to NumPyro's NUTS, which adapts over the
        rest of the warmup as NUTS does (not with ``ensemble=True``).  Extra
        fields ``num_steps`` and ``adapt_state.trajectory.length`` report the
        trajectories.
    mesh : jax.sharding.Mesh, optional
        Split vectorised chains over the devices of ``mesh`` (their chain axis
        over all of its axes; the number of chains a multiple of its size):
        each device holds and moves its share of the chains, and XLA inserts
        the collectives that pooled adaptation and ``ensemble=True`` need.  The
        draws are those of one device, up to the order of floating-point sums,
        and come back split the same way.  A mesh over several processes
        (``jax.distributed.initialize``) runs each process's chains on its own
        devices.  See the "Scaling out" page of the docs.

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
    >>> mcmc.run(jax.random.PRNGKey(0), extra_fields=("t", "num_grad_evals", "num_steps"))
    >>> mcmc.get_samples()["x"].shape
    (200, 3)
    >>> fields = mcmc.get_extra_fields()
    >>> bool(fields["num_steps"].min() >= 1)  # leapfrog steps of each HMC iteration
    True
    >>> mala = MCMC(DilationLangevin(model, stationary="mala"), num_warmup=200,
    ...             num_samples=200, progress_bar=False)
    >>> mala.run(jax.random.PRNGKey(0), extra_fields=("num_grad_evals",))
    >>> from numpyro_dilation.modes import chain_search_cost
    >>> # one per iteration, 3 at init, and a lone chain's search for other basins
    >>> int(mala.get_extra_fields()["num_grad_evals"][-1]) == 400 + 3 + chain_search_cost(3)
    True
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
        target_accept_prob: float | None = None,
        adjust: bool = True,
        init_strategy: Callable = init_to_uniform,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
        ensemble: bool = False,
        stationary: str = "hmc",
        mesh: Mesh | None = None,
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
        options = check_options(
            step_size=step_size,
            eps=eps,
            alpha=alpha,
            t_min=t_min,
            num_anneal_steps=num_anneal_steps,
            schedule=schedule,
            center=center,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            inverse_mass_matrix=inverse_mass_matrix,
            target_accept_prob=target_accept_prob,
            adjust=adjust,
            init_strategy=init_strategy,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
            ensemble=ensemble,
            stationary=stationary,
        )
        for name, value in options.items():
            setattr(self, f"_{name}", value)
        self._mesh = sharding.check_mesh(mesh)
        self._reset()

    def _reset(self) -> None:
        """Forget everything built by :meth:`init` (closures over a model or its data)."""
        self._potential_fn_gen = None
        self._postprocess_fn = None
        self._sample_fn = None
        self._host_checks = True
        # chains already named for collapsed acceptance during this run's sampling
        self._collapsed_reported: set[int] = set()

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
        num_anneal, num_adapt = warmup_phases(num_warmup, self._num_anneal_steps)

        vectorized = is_key_batch(rng_key)
        if self._ensemble:
            check_ensemble_chains(vectorized, rng_key)
        if self._mesh is not None:
            sharding.check_chains_fit(self._mesh, vectorized, jnp.shape(rng_key)[0])
        self._host_checks = self._mesh is None or sharding.host_checks_work(self._mesh)
        # in place: a compiled sampler keeps the set it was traced with
        self._collapsed_reported.clear()
        if not self._host_checks:
            warnings.warn(sharding.HOST_CHECKS_OFF, SamplerHealthWarning, stacklevel=2)
        if vectorized:
            rng_key, key_init_model = jnp.swapaxes(vmap(random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init_model = random.split(rng_key)
        init_params = self._init_model(key_init_model, model_args, model_kwargs, init_params)
        check_init_params(init_params)

        one_chain_params = jax.tree.map(lambda x: x[0], init_params) if vectorized else init_params
        flat, _ = ravel_pytree(one_chain_params)
        size = flat.size
        dense = self._dense_mass if self._dense_mass is not None else size <= AUTO_DENSE_MAX_DIM
        # A model without free coordinates (only deterministic sites, or a site
        # such as Dirichlet(ones(1))) runs as NumPyro's kernels run it: nothing moves.
        dense = dense and size > 0
        adapting = (self._adapt_step_size or self._adapt_mass_matrix) and size > 0
        inverse_mass_matrix = resolve_inverse_mass_matrix(
            self._inverse_mass_matrix, one_chain_params, dense
        )
        check_dimensions(
            size, flat.dtype, self._t_min, inverse_mass_matrix, dense, AUTO_DENSE_MAX_DIM
        )
        message = short_warmup_message(num_warmup, self._num_anneal_steps, adapting)
        if message is not None:
            warnings.warn(message, SamplerHealthWarning, stacklevel=2)
        center = resolve_center(self._center, one_chain_params, flat)
        # Only Python values and numpy arrays go into the closures kept on `self`:
        # `init` may run under pmap, and a tracer kept here would leak into later runs.
        adapter = window_adapter(
            num_anneal,
            num_warmup,
            # dual averaging over a handful of iterations ends far from any good step
            adapt_step_size=self._adapt_step_size and size > 0 and num_adapt >= MIN_ADAPT_STEPS,
            adapt_mass_matrix=self._adapt_mass_matrix and size > 0,
            dense_mass=dense,
            target_accept_prob=self._target_accept_prob,
            regularize_mass_matrix=self._regularize_mass_matrix,
        )
        settings = DilationSettings(
            eps=self._eps,
            alpha=self._alpha,
            levels=path.make_schedule(self._schedule, self._t_min),
            adjust=self._adjust,
            step_from_curvature=self._adapt_step_size and size > 0,
            forward_mode_differentiation=self._forward_mode_differentiation,
            # the annealing's own moves are Langevin whichever kernel follows
            stationary="mala" if self._stationary == "nuts" else self._stationary,
        )
        init_one = partial(
            dilation.init,
            potential_fn=self._current_potential_fn(model_args, model_kwargs),
            adapter=adapter,
            settings=settings,
            center=center,
            step_size=self._step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            num_anneal_steps=num_anneal,
            num_warmup=num_warmup,
        )
        # one compiled program: run op by op, the start compiled each of its ~200
        # operations on its own, which took longer than compiling the sampler
        if vectorized:
            state = jax.jit(vmap(init_one))(rng_key, init_params)
        else:
            state = jax.jit(init_one)(rng_key, init_params)
        batch_shape = state.y.shape[:-1]
        state = state._replace(convergence=convergence.init(size, flat.dtype, batch_shape))
        step = dilation.build_kernel(settings, adapter).step
        if self._stationary == "nuts":
            state, step = nuts.attach(
                state,
                rng_key,
                step,
                potential_fn=self._potential_fn,
                potential_fn_gen=None if self._model is None else self._potential_fn_gen,
                num_adapt=num_adapt,
                vectorized=vectorized,
                model_args=model_args,
                model_kwargs=model_kwargs,
                step_size=self._step_size,
                adapt_step_size=self._adapt_step_size,
                adapt_mass_matrix=self._adapt_mass_matrix,
                dense_mass=dense,
                target_accept_prob=self._target_accept_prob,
                forward_mode_differentiation=self._forward_mode_differentiation,
                regularize_mass_matrix=self._regularize_mass_matrix,
            )
        if vectorized:
            init_modes = jax.jit(pooling.init, static_argnums=2)
            state = state._replace(
                modes=init_modes(
                    state.adapt_state, state.y, pooling.num_slots_for(state.y.shape[0])
                )
            )
        # the end-of-warmup check needs an adaptation phase long enough to average over
        self._sample_fn = partial(
            self._sample,
            step=step,
            batched=vectorized,
            check=size > 0,
            checks={
                "check_warmup": num_adapt >= MIN_ADAPT_STEPS,
                "check_large_step": self._adapt_step_size and self._adapt_mass_matrix,
                "ensemble": self._ensemble,
                "reported": self._collapsed_reported,
                "call": run_checks.host_call(self._host_checks),
            },
            leaves=site_leaves(one_chain_params),
            last_window_end=adapter.last_window_end,
            search_at=search_schedule(adapter, num_anneal),
        )
        if self._ensemble:
            state = jax.jit(ensemble.init)(state)
        check_finite_start(state.potential_energy, state.y_grad, self._center)
        if self._mesh is not None:
            state = sharding.place(state, self._mesh, state.y.shape[0])
        return state

    def sample(self, state: DilationState, model_args: tuple, model_kwargs: dict) -> DilationState:
        """Run one transition (annealing, adaptation or sampling, by ``state.i``)."""
        assert self._sample_fn is not None, "`init` must be called before `sample`."
        if self._mesh is None:
            return self._sample_fn(state, model_args, model_kwargs)
        num_chains = state.y.shape[0]
        state = sharding.constrain(state, self._mesh, num_chains)
        state = self._sample_fn(state, model_args, model_kwargs)
        return sharding.constrain(state, self._mesh, num_chains)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_sample_fn"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # kernels pickled before the set existed
        self.__dict__.setdefault("_collapsed_reported", set())

    def wrap_model(self, wrapper: Callable) -> DilationLangevin:
        """Return a copy of this kernel bound to ``wrapper(self.model)``."""
        if self._model is None:
            raise ValueError("`wrap_model` needs a kernel built from a model, not a potential_fn.")
        kernel = copy.copy(self)
        kernel._model = wrapper(self._model)
        kernel._reset()
        return kernel

    # ------------------------------------------------------------------ internals

    def _sample(
        self,
        state,
        model_args,
        model_kwargs,
        step,
        batched,
        check,
        checks,
        leaves,
        last_window_end,
        search_at,
    ):
        potential_fn = self._current_potential_fn(model_args, model_kwargs)
        sums = state.convergence
        if self._ensemble:
            _, unravel = ravel_pytree(jax.tree.map(lambda x: x[0], state.z))
            state = ensemble.ensemble_step(
                state,
                partial(step, potential_fn=potential_fn, batched=True),
                dilation.flat_potential_and_grad(
                    potential_fn, unravel, self._forward_mode_differentiation
                ),
                last_window_end,
                search_at,
            )
        elif self._stationary == "nuts":
            state = step(state, potential_fn, batched, model_args, model_kwargs)
        else:
            state = step(state, potential_fn, batched)
        if check:
            state = run_checks.run_checks(state, sums, batched, leaves, **checks)
        return state

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


def search_schedule(adapter, num_anneal: int) -> Callable:
    """When ensemble mode searches for basins the chains missed: the annealing's last
    iteration and the ends of the mass-matrix windows after it, but the last (whose
    chains would have no window left to adapt in their new basins)."""
    last = adapter.last_window_end

    def search_at(i):
        window = adapter.is_window_end(i) & (i >= num_anneal) & (i < last)
        return (i == num_anneal - 1) | window

    return search_at


def site_leaves(params: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``(name, shape)`` of each leaf of ``params`` in raveling order (to name flat coordinates).

    Examples
    --------
    >>> import numpy as np
    >>> site_leaves({"theta": np.zeros((2, 3)), "mu": np.zeros(())})
    (('mu', ()), ('theta', (2, 3)))
    """

    def name(path) -> str:
        parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        return ".".join(parts) if parts else "z"

    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return tuple((name(path), tuple(int(n) for n in jnp.shape(leaf))) for path, leaf in leaves)


__all__ = [
    "DilationLangevin",
    "DilationState",
    "check_continuous_latents",
    "search_schedule",
    "site_leaves",
]
