"""Sampling measures ρ for the matching losses (DESIGN §1 "Drift–diffusion matching").

- ``stationary``: states of the target itself, simulated from its default start past a
  burn-in and taken every `spacing` time units along many independent paths.
- ``box``: uniform in the system's sampling box.
- ``mixture``: a fraction `box_fraction` from the box, the rest stationary.

Held-out points for evaluation are drawn by calling `sample_points` again with an
independent key: an independent run of the target, never a split of the training set.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .simulate import simulate_sde

METHODS = ("stationary", "box", "mixture")


def sample_points(
    system,
    *,
    key: PRNGKeyArray,
    num_points: int,
    method: str = "stationary",
    num_paths: int = 64,
    burn_in: float = 10.0,
    spacing: float = 0.1,
    dt: float = 0.01,
    box_fraction: float = 0.2,
    args=None,
) -> Float[Array, "M K"]:
    """Latent points z drawn from the sampling measure ρ.

    **Arguments:**

    - `system`: the target.
    - `key`: PRNG key.
    - `num_points`: M.
    - `method`: ``"stationary"``, ``"box"`` or ``"mixture"``.
    - `num_paths`, `burn_in`, `spacing`, `dt`: the stationary run (Euler–Maruyama, as
      in `simulate_sde`): `num_paths` paths from the default start, jittered, kept
      after `burn_in`, one point every `spacing`.
    - `box_fraction`: share of box points in a mixture.
    - `args`: input u for the stationary run.

    **Returns:** an array of shape ``(M, K)``.

    **Raises:** `ValueError` naming the bad argument.
    """
    if method not in METHODS:
        raise ValueError(f"`data.method` must be one of {METHODS}; got {method!r}")
    if int(num_points) < 1:
        raise ValueError(f"`data.num_points` must be ≥ 1; got {num_points}")
    if not 0.0 <= box_fraction <= 1.0:
        raise ValueError(f"`data.box_fraction` must be in [0, 1]; got {box_fraction}")
    num_points = int(num_points)
    box_key, run_key = jr.split(key)
    if method == "box":
        return box_points(system, key=box_key, num_points=num_points)
    num_box = int(round(box_fraction * num_points)) if method == "mixture" else 0
    z = stationary_points(
        system,
        key=run_key,
        num_points=num_points - num_box,
        num_paths=num_paths,
        burn_in=burn_in,
        spacing=spacing,
        dt=dt,
        args=args,
    )
    if num_box:
        z = jnp.concatenate([z, box_points(system, key=box_key, num_points=num_box)])
    return z


def box_points(system, *, key: PRNGKeyArray, num_points: int) -> Float[Array, "M K"]:
    """Uniform points in the system's box."""
    lower, upper = system.box
    u = jr.uniform(key, (num_points, system.latent_dim))
    return lower + (upper - lower) * u


def stationary_points(
    system,
    *,
    key: PRNGKeyArray,
    num_points: int,
    num_paths: int,
    burn_in: float,
    spacing: float,
    dt: float,
    args=None,
) -> Float[Array, "M K"]:
    """Points along `num_paths` stationary paths of the target (see `sample_points`)."""
    if not spacing >= dt > 0:
        raise ValueError(
            f"`data.spacing` ({spacing}) must be ≥ `data.dt` ({dt}) and dt > 0"
        )
    if burn_in < 0:
        raise ValueError(f"`data.burn_in` must be ≥ 0; got {burn_in}")
    num_paths = max(1, min(int(num_paths), num_points))
    per_path = math.ceil(num_points / num_paths)
    every = max(1, int(round(spacing / dt)))
    start_key, run_key = jr.split(key)
    lower, upper = system.box
    jitter = (
        0.05 * (upper - lower) * jr.normal(start_key, (num_paths, system.latent_dim))
    )
    z0 = system.z0 + jitter
    t_first = every * dt * math.ceil(burn_in / (every * dt))
    t1 = t_first + every * dt * (per_path - 1)
    ts, zs = simulate_sde(
        system, key=run_key, z0=z0, t1=t1, dt=dt, save_every=every, args=args
    )
    kept = zs[:, ts.shape[0] - per_path :]
    return kept.reshape(-1, system.latent_dim)[:num_points]
