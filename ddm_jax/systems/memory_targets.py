"""Input-dependent targets for memory tasks (DESIGN §1 "Memory tasks").

- ``cued_wells``: the associative-memory target. The multi-well gradient flow of
  `library.MultiWell` (wells at the patterns ξ_μ) plus one input per pattern that pulls
  the state towards it: ``f(z, u) = −∇U(z) + κ Σ_μ u_μ (ξ_μ − z)``, additive noise.
  A cue u_μ = 1 moves the state into well μ; after the cue (u = 0) the well holds it.

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
