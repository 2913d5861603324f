"""Argument validation: every message names the argument and what would be valid."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


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
    """Return ``value`` as a float, or raise unless it is a finite number > 0."""
    if not _is_real(value):
        raise TypeError(f"`{name}` must be a positive finite number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")
    return value


def check_unit_interval(name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise unless it lies in the open interval (0, 1)."""
    if not _is_real(value):
        raise TypeError(f"`{name}` must be a number in the open interval (0, 1); got {value!r}.")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in the open interval (0, 1); got {value!r}.")
    return value


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


def check_inverse_mass_matrix(value: Any, dense_mass: bool | None) -> Any:
    """Validate an initial inverse mass matrix (None, positive 1-D, or SPD 2-D)."""
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError("`inverse_mass_matrix` must be an array (1-D or 2-D) or None.") from err
    if arr.ndim == 1:
        if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
            raise ValueError("`inverse_mass_matrix` (diagonal) must have finite positive entries.")
    elif arr.ndim == 2:
        if dense_mass is False:
            raise ValueError(
                "A 2-D `inverse_mass_matrix` needs dense_mass=True; pass its diagonal for"
                " a diagonal mass matrix."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("`inverse_mass_matrix` (dense) must have finite entries.")
        if arr.shape[0] != arr.shape[1] or not np.allclose(arr, arr.T):
            raise ValueError("`inverse_mass_matrix` (dense) must be a symmetric square matrix.")
        if np.any(np.linalg.eigvalsh(arr) <= 0):
            raise ValueError("`inverse_mass_matrix` (dense) must be positive definite.")
    else:
        raise ValueError(f"`inverse_mass_matrix` must be 1-D or 2-D; got {arr.ndim}-D.")
    return value
