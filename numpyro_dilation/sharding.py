"""Vectorised chains split over the devices of a :class:`jax.sharding.Mesh`.

The kernel's vectorised state has a leading chain axis on every per-chain array.
Placing that axis on a mesh (``NamedSharding(mesh, P(mesh.axis_names))``) and
constraining it again at each iteration is all it takes: XLA's SPMD partitioner
splits the per-chain work between the devices and inserts the collectives that
the cross-chain work (pooled step size and metric, cluster fits, population
moves) needs.  Arrays without a chain axis (the modes' shared adaptation, the
ensemble's one key, the counters) are replicated, which keeps every device's
decisions identical without any exchange.

Several processes (``jax.distributed.initialize``) work the same way: the mesh
then spans every process's devices, each process holds only its devices' share
of the chains, and the arrays that come back are global arrays of which each
process can read its own chains (``jax.experimental.multihost_utils`` gathers
them where one process needs all).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from numpyro_dilation._jaxlib import installed_release


def chain_sharding(mesh: Mesh) -> NamedSharding:
    """The chain axis split over every axis of ``mesh`` (the rest of each array whole)."""
    return NamedSharding(mesh, PartitionSpec(tuple(mesh.axis_names)))


def replicated(mesh: Mesh) -> NamedSharding:
    """A copy of the whole array on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def has_chain_axis(x: Any, num_chains: int) -> bool:
    """Whether ``x``'s leading axis is the chain axis of ``num_chains`` vectorised chains.

    Shared arrays never have ``num_chains`` entries along their first axis: the
    modes' slots are at most half the chains (:func:`numpyro_dilation.pooling.num_slots_for`).
    """
    shape = np.shape(x)
    return len(shape) >= 1 and shape[0] == num_chains


def place(tree: Any, mesh: Mesh, num_chains: int) -> Any:
    """Put every array of ``tree`` on ``mesh``: chain-axis arrays split, the rest replicated.

    Outside a trace each process builds its own devices' shards from its copy
    of the array (:func:`jax.make_array_from_callback`), so that this works
    with several processes as with one; inside a trace it is a sharding
    constraint.
    """
    split, whole = chain_sharding(mesh), replicated(mesh)

    def one(x):
        sharding = split if has_chain_axis(x, num_chains) else whole
        if isinstance(x, jax.core.Tracer):
            return jax.lax.with_sharding_constraint(x, sharding)
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def constrain(tree: Any, mesh: Mesh, num_chains: int) -> Any:
    """Inside a trace: keep the chain axis of ``tree``'s arrays split over ``mesh``.

    Only the chain-axis arrays are constrained; XLA is free to place the shared
    ones (it keeps them replicated, as :func:`place` put them).
    """
    split = chain_sharding(mesh)

    def one(x):
        if has_chain_axis(x, num_chains):
            return jax.lax.with_sharding_constraint(x, split)
        return x

    return jax.tree.map(one, tree)


#: jaxlib from which the kernel's host callbacks run with a mesh of several devices.
CALLBACKS_JAXLIB = (0, 12)

HOST_CHECKS_OFF = (
    "DilationLangevin: with `mesh` over several devices and jaxlib older than 0.12, the"
    " health and convergence checks that run on the host during sampling are off (with"
    " jaxlib 0.10 a host callback from a program split over several devices could hang it)."
    " Check the draws after the run: numpyro_dilation.check_convergence(mcmc) or"
    " numpyro_dilation.to_inference_data(mcmc), which warn as those checks would; jaxlib 0.12"
    " (Python 3.12 or newer) runs them."
)


def host_checks_work(mesh: Mesh) -> bool:
    """Whether the kernel's host callbacks can run during sampling on ``mesh``.

    With jaxlib 0.10 a callback from a program split over several devices
    could wait for a transfer queued behind work that waited for the callback
    (256 chains on 2 host devices hung at the last check); one device, or
    jaxlib 0.12, is fine.
    """
    return mesh.size == 1 or installed_release() >= CALLBACKS_JAXLIB


def check_mesh(mesh: Any) -> Mesh | None:
    """Return ``mesh`` unchanged, or raise unless it is ``None`` or a :class:`jax.sharding.Mesh`."""
    if mesh is None or isinstance(mesh, Mesh):
        return mesh
    raise TypeError(
        "`mesh` must be a jax.sharding.Mesh (for example"
        " `Mesh(jax.devices(), ('chain',))`) or None; got"
        f" {type(mesh).__name__}."
    )


def check_chains_fit(mesh: Mesh, vectorized: bool, num_chains: int) -> None:
    """Raise unless the chains are vectorised and split evenly over ``mesh``'s devices."""
    if not vectorized:
        raise ValueError(
            "`mesh` splits vectorised chains over devices: run MCMC with"
            ' chain_method="vectorized" (and num_chains >= 2), or leave `mesh` out.'
        )
    if num_chains % mesh.size:
        raise ValueError(
            f"`mesh` has {mesh.size} devices and num_chains={num_chains} does not split"
            f" evenly over them; use a multiple of {mesh.size} chains."
        )


__all__ = [
    "CALLBACKS_JAXLIB",
    "HOST_CHECKS_OFF",
    "chain_sharding",
    "check_chains_fit",
    "check_mesh",
    "constrain",
    "has_chain_axis",
    "host_checks_work",
    "place",
    "replicated",
]
