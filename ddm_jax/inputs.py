"""Time-varying inputs u(t) for targets and networks (DESIGN §1 "Target system":
"piecewise-constant or smooth signals given by the user").

Vector fields take diffrax's ``(t, y, args)``; ``args`` is the input: ``None``, a
constant u of shape ``(P,)``, or a `Schedule`, which `input_at` evaluates at t. A
`Schedule` holds one piecewise-constant signal, or B of them (one per trial) that
`simulate.solve_paths` hands out path by path.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float


class Schedule(eqx.Module):
    """A piecewise-constant input: ``u(t) = values[i]`` for
    ``times[i] ≤ t < times[i + 1]``, ``values[0]`` before ``times[0]`` and the last
    value after the last time.

    **Arguments:**

    - `times`: ``(S,)`` ascending start times, or ``(B, S)`` for B trials.
    - `values`: ``(S, P)`` inputs, or ``(B, S, P)``.

    **Raises:** `ValueError` naming the shapes when they disagree, when times do not
    ascend, or when a value is not finite.
    """

    times: Float[Array, "*B S"]
    values: Float[Array, "*B S P"]

    def __init__(
        self, times: Float[ArrayLike, "*B S"], values: Float[ArrayLike, "*B S P"]
    ):
        t = np.asarray(times, dtype=float)
        v = np.asarray(values, dtype=float)
        if v.ndim != t.ndim + 1 or v.shape[:-1] != t.shape or t.ndim not in (1, 2):
            raise ValueError(
                "a schedule needs `times` of shape (S,) or (B, S) and `values` of "
                f"shape (S, P) or (B, S, P); got {t.shape} and {v.shape}"
            )
        if t.shape[-1] < 1 or np.any(np.diff(t, axis=-1) <= 0):
            raise ValueError(
                "schedule `times` must be non-empty and strictly ascending"
            )
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
            raise ValueError("schedule times and values must be finite")
        self.times = jnp.asarray(t)
        self.values = jnp.asarray(v)

    @property
    def batched(self) -> bool:
        """Whether this holds one schedule per trial."""
        return self.times.ndim == 2

    @property
    def input_dim(self) -> int:
        return self.values.shape[-1]

    def __call__(self, t) -> Float[Array, " P"]:
        """u(t) of a single (not batched) schedule."""
        index = jnp.searchsorted(self.times, t, side="right") - 1
        return self.values[jnp.clip(index, 0, self.times.shape[0] - 1)]


def pulse(t_on: float, t_off: float, value: Float[ArrayLike, " P"]) -> Schedule:
    """u = `value` on [t_on, t_off), zero before and after."""
    value = np.asarray(value, dtype=float)
    zero = np.zeros_like(value)
    return Schedule([float("-1e30"), t_on, t_off], np.stack([zero, value, zero]))


def stack(schedules: list[Schedule]) -> Schedule:
    """One batched schedule from single ones with the same number of pieces."""
    return Schedule(
        np.stack([np.asarray(s.times) for s in schedules]),
        np.stack([np.asarray(s.values) for s in schedules]),
    )


def per_point(args, z) -> bool:
    """Whether `args` holds one input per row of the points `z` (shape (M, P)) rather
    than one input for all of them."""
    return getattr(args, "ndim", 0) == 2 and args.shape[0] == z.shape[0]


def over_points(fn, z, args):
    """``fn(z_i, u_i)`` at every row of `z`, vmapped: u_i the i-th row of `args`
    when it holds one input per point (`per_point`), `args` itself otherwise."""
    return jax.vmap(fn, in_axes=(0, 0 if per_point(args, z) else None))(z, args)


def input_at(args, t):
    """The input at time t: ``args(t)`` for a `Schedule`, `args` itself otherwise."""
    if isinstance(args, Schedule):
        return args(t)
    return args
