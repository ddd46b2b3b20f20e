"""Ensembles and devices: helpers shared by `fit` and `simulate_rnn`.

Data parallelism uses JAX's own sharding: rows of the training batch (or of the
simulated paths) are split over a one-axis device mesh, the model is replicated, and
the compiler inserts the all-reduce of the gradient mean. The same code runs on one
device, on several local devices, and on several hosts after
``jax.distributed.initialize()`` (then ``data_sharding(jax.devices())`` spans all
of them; every host runs the same program and feeds the rows it holds, see the
README's "Several devices").

An ensemble is a model whose every array has a leading member axis, as
``eqx.filter_vmap(lambda k: LatentRNN.init(key=k, …))(jr.split(key, M))`` builds.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np


def data_sharding(devices=None) -> jax.sharding.NamedSharding:
    """Rows (the leading axis) split over `devices` (all local ones by default), for
    ``fit(sharding=…)`` and ``simulate_rnn(sharding=…)``."""
    devices = np.asarray(jax.local_devices() if devices is None else devices)
    mesh = jax.sharding.Mesh(devices.reshape(-1), ("data",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))


def replicate(tree, sharding: jax.sharding.NamedSharding):
    """Every array of `tree` copied to all of the sharding's devices."""
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    params, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jax.device_put(params, replicated), static)


def check_divides(sharding: jax.sharding.NamedSharding, **sizes) -> None:
    """**Raises:** `ValueError` for a size (None skips) the device count does not
    divide."""
    count = len(sharding.device_set)
    for name, size in sizes.items():
        if size is not None and int(size) % count:
            raise ValueError(
                f"the {name.replace('_', ' ')} ({size}) must be a multiple of the "
                f"{count} devices the rows are split over"
            )


def members(model) -> int:
    """The ensemble size: the common leading axis of the model's arrays.

    **Raises:** `ValueError` when the arrays do not share one leading axis.
    """
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    # E is (N, K) in one model and (members, N, K) in an ensemble.
    if len(sizes) != 1 or getattr(model, "E", None) is None or model.E.ndim != 3:
        raise ValueError(
            "an ensemble needs a batch of models, every array with the same leading "
            "member axis (build it with eqx.filter_vmap over LatentRNN.init); got "
            f"leading sizes {sorted(map(str, sizes))}"
        )
    return sizes.pop()


def check_single(model) -> None:
    """**Raises:** `ValueError` for a batch of models passed as one."""
    if getattr(model, "E", None) is not None and model.E.ndim == 3:
        raise ValueError(
            f"the model is an ensemble of {model.E.shape[0]} networks (its arrays have "
            "a leading member axis); pass ensemble=True"
        )
