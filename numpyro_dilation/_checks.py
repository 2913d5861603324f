"""Argument validation: every message names the argument and what would be valid."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.initialization import init_to_uniform
from numpyro.util import is_prng_key

from numpyro_dilation.path import check_schedule


def _is_real(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError):  # ragged or unconvertible objects
        return False
    return arr.ndim == 0 and (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    )


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a bool, or raise TypeError unless it is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {value!r}.")
    return bool(value)


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise unless it is a finite number > 0.

    A traced value (a kernel built inside ``jax.jit``) cannot be checked here and
    is passed through as it is.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    if not _is_real(value):
        raise TypeError(f"`{name}` must be a positive finite number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return value


def check_unit_interval(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise unless it lies in the open interval (0, 1).

    Traced values pass through unchecked, as in :func:`check_positive_float`.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    if not _is_real(value):
        raise TypeError(f"`{name}` must be a number in the open interval (0, 1); got {value!r}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in the open interval (0, 1); got {value!r}.")
    return value


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"`{name}` must be a non-negative integer; got {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer; got {value!r}.")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, or raise unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"`{name}` must be a positive integer; got {value!r}.")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def check_center(center: Any) -> Any:
    """Validate the dilation centre: "origin", "init", an array, or a dict of arrays."""
    if isinstance(center, str):
        if center not in ("origin", "init"):
            raise ValueError(
                "`center` must be 'origin', 'init', or a point in unconstrained space"
                f" (array or dict of site values); got {center!r}."
            )
        return center
    if isinstance(center, dict):
        leaves = list(center.values())
    else:
        leaves = [center]
    for leaf in leaves:
        try:
            # None and booleans would convert to NaN and 0/1: refuse them by type.
            if leaf is None or np.asarray(leaf).dtype == bool:
                raise TypeError
            arr = np.asarray(leaf, dtype=float)
        except (TypeError, ValueError) as err:
            raise TypeError(
                "`center` must be 'origin', 'init', or a point in unconstrained space"
                f" (array or dict of site values); got {type(leaf).__name__}."
            ) from err
        if not np.all(np.isfinite(arr)):
            raise ValueError("`center` must have finite entries (a point in unconstrained space).")
    return center


def check_dense_mass(value: Any) -> bool | None:
    """``dense_mass`` is True, False, or None (dense for small models)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        raise TypeError(
            "`dense_mass` must be True, False or None; NumPyro's block structures (lists of"
            " site-name tuples) are not supported by DilationLangevin."
        )
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`dense_mass` must be True, False or None; got {value!r}.")
    return bool(value)


def _check_matrix(value: Any, dense_mass: bool | None, what: str) -> None:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be an array (1-D or 2-D).") from err
    if arr.ndim == 1:
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError(f"{what} (diagonal) must have finite positive entries.")
    elif arr.ndim == 2:
        if dense_mass is False:
            raise ValueError(
                f"A 2-D {what} needs dense_mass=True; pass its diagonal for a diagonal mass matrix."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} (dense) must have finite entries.")
        if arr.shape[0] != arr.shape[1] or not np.allclose(arr, arr.T):
            raise ValueError(f"{what} (dense) must be a symmetric square matrix.")
        if np.any(np.linalg.eigvalsh(arr) <= 0):
            raise ValueError(f"{what} (dense) must be positive definite.")
    else:
        raise ValueError(f"{what} must be 1-D or 2-D; got {arr.ndim}-D.")


def check_inverse_mass_matrix(value: Any, dense_mass: bool | None) -> Any:
    """Validate an initial inverse mass matrix.

    ``None``, a positive 1-D diagonal, an SPD 2-D matrix, or NumPyro's structured
    form: a dict from site names (or tuples of site names) to such matrices,
    one block per key (see :func:`resolve_inverse_mass_matrix`).
    """
    if value is None:
        return None
    if isinstance(value, dict):
        for key, block in value.items():
            names = (key,) if isinstance(key, str) else key
            if not (isinstance(names, tuple) and names and all(isinstance(n, str) for n in names)):
                raise TypeError(
                    "`inverse_mass_matrix` given as a dict must be keyed by site names or"
                    f" tuples of site names, as in NumPyro; got key {key!r}."
                )
            _check_matrix(block, dense_mass, f"`inverse_mass_matrix[{key!r}]`")
        return value
    _check_matrix(value, dense_mass, "`inverse_mass_matrix`")
    return value


def resolve_inverse_mass_matrix(value: Any, params: Any, dense: bool) -> Any:
    """Flat inverse mass matrix for one chain's ``params``, from any accepted form.

    A dict keyed by (tuples of) site names is assembled block-diagonally, in the
    order in which the sites are flattened, with the identity for the sites it
    leaves out; a block covers its sites' coordinates concatenated in the key's
    order.  Arrays are returned unchanged.
    """
    if not isinstance(value, dict):
        return value
    if not isinstance(params, dict):
        raise TypeError(
            "`inverse_mass_matrix` given as a dict needs parameters that are a dict of sites."
        )
    sizes = {name: int(np.size(v)) for name, v in params.items()}
    order = sorted(sizes)  # ravel_pytree flattens a dict in sorted key order
    offsets = dict(zip(order, np.cumsum([0] + [sizes[n] for n in order[:-1]])))
    size = sum(sizes.values())
    out = np.eye(size) if dense else np.ones(size)
    covered: set[str] = set()
    for key, block in value.items():
        names = (key,) if isinstance(key, str) else key
        unknown = [n for n in names if n not in sizes]
        if unknown or covered & set(names):
            raise ValueError(
                f"`inverse_mass_matrix` key {key!r} must name latent sites {order} once each."
            )
        covered |= set(names)
        index = np.concatenate([offsets[n] + np.arange(sizes[n]) for n in names])
        block = np.asarray(block, dtype=float)
        if block.shape[0] != index.size:
            raise ValueError(
                f"`inverse_mass_matrix[{key!r}]` must have {index.size} rows (the sizes of"
                f" {list(names)} in unconstrained space); got shape {block.shape}."
            )
        if dense:
            out[np.ix_(index, index)] = block if block.ndim == 2 else np.diag(block)
        else:
            out[index] = block
    return out


def is_key_batch(rng_key: Any) -> bool:
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


def resolve_center(center: Any, params: Any, flat: jax.Array) -> jax.Array | None:
    """Flat centre array for a validated ``center``, or ``None`` for ``"init"``.

    ``params`` is one chain's unconstrained parameters and ``flat`` their
    flattening, which fix the order and size a given centre must have.
    """
    if isinstance(center, str):
        return None if center == "init" else jnp.zeros_like(flat)
    given = center
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


#: Stationary kernels a user can choose, and the acceptance each targets by
#: default: NumPyro's HMC/NUTS value for HMC, the optimal-scaling value for MALA.
STATIONARY_OPTIONS = ("hmc", "mala", "nuts")
DEFAULT_TARGET_ACCEPT_PROB = {"hmc": 0.8, "mala": 0.574, "nuts": 0.8}


def check_options(**options: Any) -> dict[str, Any]:
    """Validate :class:`~numpyro_dilation.DilationLangevin`'s keyword options.

    Returns the options converted (floats, ints, bools); raises a TypeError or
    ValueError naming the first invalid one and what would be valid.
    """
    out = dict(options)
    for name in ("step_size", "eps", "alpha"):
        out[name] = check_positive_float(name, options[name])
    stationary = options["stationary"]
    if stationary not in STATIONARY_OPTIONS:
        raise ValueError(
            f"`stationary` must be one of {', '.join(map(repr, STATIONARY_OPTIONS))}; got"
            f" {stationary!r}."
        )
    out["t_min"] = check_unit_interval("t_min", options["t_min"])
    if options["target_accept_prob"] is None:
        out["target_accept_prob"] = DEFAULT_TARGET_ACCEPT_PROB[stationary]
    else:
        out["target_accept_prob"] = check_unit_interval(
            "target_accept_prob", options["target_accept_prob"]
        )
    if options["num_anneal_steps"] is not None:
        out["num_anneal_steps"] = check_nonnegative_int(
            "num_anneal_steps", options["num_anneal_steps"]
        )
    check_schedule(options["schedule"])
    out["center"] = check_center(options["center"])
    for name in (
        "adapt_step_size",
        "adapt_mass_matrix",
        "adjust",
        "forward_mode_differentiation",
        "regularize_mass_matrix",
        "ensemble",
    ):
        out[name] = check_bool(name, options[name])
    if out["ensemble"] and stationary == "nuts":
        raise ValueError(
            "`ensemble=True` needs stationary='hmc' or 'mala' (the population moves run"
            " between the chains' own steps, which NUTS's adaptation does not expect); got"
            " stationary='nuts'."
        )
    if not out["adjust"] and stationary != "mala":
        raise ValueError(
            "`adjust=False` (unadjusted Langevin draws) needs stationary='mala'; got"
            f" stationary={stationary!r}, whose draws are always Metropolis-adjusted."
        )
    out["dense_mass"] = check_dense_mass(options["dense_mass"])
    out["inverse_mass_matrix"] = check_inverse_mass_matrix(
        options["inverse_mass_matrix"], options["dense_mass"]
    )
    if not callable(options["init_strategy"]):
        raise TypeError(
            "`init_strategy` must be a callable such as numpyro.infer.init_to_median;"
            f" got {type(options['init_strategy']).__name__}."
        )
    return out


def check_ensemble_chains(vectorized: bool, rng_key: Any) -> None:
    """Ensemble mode needs vectorised chains, at least 4 of them."""
    num_chains = rng_key.shape[0] if vectorized else 1
    if not vectorized or num_chains < 4:
        got = (
            f"num_chains={num_chains}"
            if vectorized
            else "a single chain or a non-vectorized chain_method"
        )
        raise ValueError(
            "ensemble=True moves chains using the other chains: it needs"
            " MCMC(..., chain_method='vectorized') with num_chains >= 4 (64 to 1024"
            f" recommended); got {got}."
        )


def check_finite_start(potential_energy: Any, grad: Any, center: Any) -> None:
    """The chains start at the centre: the potential and its gradient must be finite there."""
    if isinstance(potential_energy, jax.core.Tracer):
        return  # under pmap the values are not known here
    finite = np.all(np.isfinite(np.asarray(potential_energy))) and np.all(
        np.isfinite(np.asarray(grad))
    )
    if not finite:
        where = "each chain's initial point" if center == "init" else "the dilation centre"
        raise ValueError(
            f"The potential energy or its gradient is not finite at {where}, where every"
            " chain starts. Pass `center=` a point where the model's density is positive"
            " and smooth (or `center='init'` with a suitable `init_strategy`/`init_params`)."
        )


def check_init_params(init_params: Any) -> None:
    """Unconstrained initial values must be floating point (integers cannot move)."""
    for leaf in jax.tree.leaves(init_params):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                "`init_params` must hold floating-point arrays (unconstrained values);"
                f" got dtype {jnp.result_type(leaf)}. Pass e.g. jnp.zeros(3) rather than"
                " an integer array."
            )


def check_dimensions(
    size: int, dtype, t_min: float, inverse_mass_matrix: Any, dense: bool, auto_dense_max_dim: int
) -> None:
    """Check the settings that depend on the model's size and dtype, once it is known."""
    if t_min < np.finfo(dtype).tiny:
        raise ValueError(
            f"`t_min`={t_min!r} underflows in {dtype}: it must be at least"
            f" {np.finfo(dtype).tiny:.3g} (the smallest normal number); values near"
            " 0.01-0.1 are typical."
        )
    if inverse_mass_matrix is not None and np.shape(inverse_mass_matrix)[0] != size:
        raise ValueError(
            f"`inverse_mass_matrix` must have {size} rows (one per unconstrained latent"
            f" coordinate); got shape {np.shape(inverse_mass_matrix)}."
        )
    if np.ndim(inverse_mass_matrix) == 2 and not dense:
        raise ValueError(
            f"A 2-D `inverse_mass_matrix` needs a dense mass matrix, but this model has"
            f" {size} dimensions (diagonal above {auto_dense_max_dim} unless dense_mass=True)."
        )


__all__ = [
    "check_bool",
    "check_center",
    "check_continuous_latents",
    "check_dense_mass",
    "check_dimensions",
    "check_ensemble_chains",
    "check_finite_start",
    "check_init_params",
    "check_inverse_mass_matrix",
    "check_nonnegative_int",
    "check_options",
    "check_positive_float",
    "check_positive_int",
    "check_unit_interval",
    "is_key_batch",
    "resolve_center",
    "resolve_inverse_mass_matrix",
]
