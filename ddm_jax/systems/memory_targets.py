"""Input-dependent targets for memory tasks (DESIGN §1 "Memory tasks").

- ``cued_wells``: the associative-memory target. The multi-well gradient flow of
  `library.MultiWell` (wells at the patterns ξ_μ) plus one input per pattern that pulls
  the state towards it: ``f(z, u) = −∇U(z) + κ Σ_μ u_μ (ξ_μ − z)``, additive noise.
  A cue u_μ = 1 moves the state into well μ; after the cue (u = 0) the well holds it.
- ``sequence_wells``: the sequential-memory target, P wells on a circle plus a
  rotation ω J (z − c) about its centre; ω = 0 is the equilibrium control.

The input is ``args``: a constant u ``(P,)``, a `ddm_jax.inputs.Schedule` u(t) or None
(no cue).
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ..inputs import input_at
from .library import MultiWell, _scalar


class CuedWells(MultiWell):
    """Wells at the patterns, each with a cue input: ``f(z, u) = −∇U(z) +
    κ Σ_μ u_μ (ξ_μ − z)`` (see the module docstring).

    **Arguments:** those of `multi_well`, plus `cue_gain` κ > 0, the pull of a unit
    cue.
    """

    cue_gain: Float[Array, ""]

    def __init__(
        self,
        patterns=((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)),
        depth=1.0,
        width=0.4,
        confinement=0.05,
        noise=0.5,
        cue_gain=4.0,
    ):
        super().__init__(patterns, depth, width, confinement, noise)
        if (num := self.patterns.shape[0]) < 2:
            raise ValueError(
                "`system.patterns` of cued_wells must hold at least 2 patterns (a cue "
                f"moves the state from one well to another); got {num}"
            )
        self.cue_gain = _scalar(cue_gain, "system.cue_gain", positive=True)

    input_dim = property(lambda self: self.patterns.shape[0])
    name = property(lambda self: "cued_wells")

    def drift(self, t, z, args):
        f = super().drift(t, z, None)
        u = input_at(args, t)
        if u is None:
            return f
        u = jnp.asarray(u, z.dtype)
        return f + self.cue_gain * (u @ self.patterns - jnp.sum(u) * z)


class SequenceWells(MultiWell):
    """P wells on a circle in the plane and a rotation about its centre c:
    ``f(z) = −∇U(z) + ω J (z − c)``, J the 90° rotation (DESIGN §1 "Memory tasks").
    Noise-driven escapes then go ξ_μ → ξ_{μ+1} in order for ω > 0 (anticlockwise);
    with ω = 0 the same wells switch without order (the equilibrium control).

    **Arguments:**

    - `num_wells`: P ≥ 2 wells at angles 2π μ / P on the circle.
    - `radius`: the circle's radius.
    - `omega`: ω, the rotation rate (0: a gradient system).
    - `depth`, `width`, `confinement`, `noise`: as `multi_well`.
    """

    omega: Float[Array, ""]

    def __init__(
        self,
        num_wells=4,
        radius=1.0,
        omega=1.0,
        depth=1.0,
        width=0.4,
        confinement=0.05,
        noise=0.6,
    ):
        if isinstance(num_wells, bool) or int(num_wells) != num_wells or num_wells < 2:
            raise ValueError(
                f"`system.num_wells` must be an integer ≥ 2; got {num_wells!r}"
            )
        radius = float(_scalar(radius, "system.radius", positive=True))
        angles = 2 * jnp.pi * jnp.arange(int(num_wells)) / int(num_wells)
        patterns = radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)
        super().__init__(patterns, depth, width, confinement, noise)
        self.omega = jnp.asarray(omega, dtype=float)

    name = property(lambda self: "sequence_wells")

    def statistics(self, zs, dt):
        """Those of `multi_well`, ``sequence_fidelity`` (the share of transitions to
        the successor well) and ``cycle_period`` (P times the mean dwell: one pass
        round the circle), from `ddm_jax.memory`."""
        from .. import memory

        num_wells = self.patterns.shape[0]
        labels = memory.well_labels(zs, self.patterns, self.core_radius)
        return super().statistics(zs, dt) | {
            "sequence_fidelity": memory.sequence_fidelity(labels, num_wells),
            "cycle_period": memory.cycle_period(labels, dt, num_wells),
        }

    def drift(self, t, z, args):
        r = z - jnp.mean(self.patterns, axis=0)
        rotation = jnp.stack([-r[1], r[0]])
        return super().drift(t, z, None) + self.omega * rotation
