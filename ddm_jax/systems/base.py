"""Target systems: Itô SDEs ``dz = f(z, u) dt + g(z) dB`` on the latent space.

DESIGN §1 "Target system": a system supplies the drift ``f`` (``drift``), the noise
matrix ``g`` of shape ``(K, C)`` (``diffusion``) and hence ``D(z) = g gᵀ``. Both follow
diffrax's vector-field signature ``(t, z, args)``; ``args`` carries the input ``u`` (an
array of shape ``(P,)``) or ``None`` when the system has no inputs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float


class SDE(eqx.Module):
    """Abstract target SDE.

    Subclasses define ``drift`` and ``diffusion`` and the static dimensions. Every
    system carries a default initial state ``z0`` and a sampling box ``box``.
    """

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """K, the latent dimension."""

    @property
    @abc.abstractmethod
    def noise_dim(self) -> int:
        """C, the number of noise channels."""

    @property
    def input_dim(self) -> int:
        """P, the number of inputs (0 for an autonomous system)."""
        return 0

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def drift(self, t, z: Float[Array, " K"], args) -> Float[Array, " K"]:
        """The drift f(z, u)."""

    @abc.abstractmethod
    def diffusion(self, t, z: Float[Array, " K"], args) -> Float[Array, "K C"]:
        """The noise matrix g(z); the diffusion matrix is D = g gᵀ."""

    def diffusion_matrix(self, t, z: Float[Array, " K"], args) -> Float[Array, "K K"]:
        """D(z) = g(z) g(z)ᵀ."""
        g = self.diffusion(t, z, args)
        return g @ g.T

    @property
    @abc.abstractmethod
    def z0(self) -> Float[Array, " K"]:
        """A default initial state."""

    @property
    @abc.abstractmethod
    def box(self) -> tuple[Float[Array, " K"], Float[Array, " K"]]:
        """Lower and upper corners of the default sampling box."""

    def reference(self) -> dict:
        """Independently known values (analytic or published) that `metrics.evaluate`
        reports beside the measured ones; none by default."""
        return {}

    def statistics(self, zs: Float[Array, "B T K"], dt: float) -> dict:
        """System-specific statistics of stationary trajectories (saved every ``dt``).

        Used to compare a network with its target (`metrics.evaluate`); the default has
        none.
        """
        del zs, dt
        return {}


def _as_matrix(value, k: int, field: str) -> Float[Array, "K K"]:
    """A scalar becomes ``value * I``; a matrix must be square of size ``k``."""
    arr = jnp.asarray(value, dtype=float)
    if arr.ndim == 0:
        return arr * jnp.eye(k)
    if arr.shape != (k, k):
        raise ValueError(
            f"`{field}` must be a scalar or a {k}x{k} matrix; got {arr.shape}"
        )
    return arr


class FunctionSDE(SDE):
    """A target built from the user's own drift and diffusion functions.

    **Arguments:**

    - `drift_fn`: ``(t, z, args) -> f`` of shape ``(K,)``.
    - `diffusion_fn`: ``(t, z, args) -> g`` of shape ``(K, C)``.
    - `z0`: default initial state, shape ``(K,)``; fixes K.
    - `box_lower`, `box_upper`: the sampling box.
    - `noise_dim`: C.
    """

    drift_fn: Callable = eqx.field(static=True)
    diffusion_fn: Callable = eqx.field(static=True)
    initial: Float[Array, " K"]
    lower: Float[Array, " K"]
    upper: Float[Array, " K"]
    channels: int = eqx.field(static=True)
    label: str = eqx.field(static=True, default="custom")

    def __init__(
        self,
        drift_fn,
        diffusion_fn,
        *,
        z0,
        box_lower,
        box_upper,
        noise_dim,
        name="custom",
    ):
        self.drift_fn = drift_fn
        self.diffusion_fn = diffusion_fn
        self.initial = jnp.asarray(z0, dtype=float)
        self.lower = jnp.asarray(box_lower, dtype=float)
        self.upper = jnp.asarray(box_upper, dtype=float)
        self.channels = int(noise_dim)
        self.label = name

    @property
    def latent_dim(self):
        return self.initial.shape[0]

    @property
    def noise_dim(self):
        return self.channels

    @property
    def name(self):
        return self.label

    def drift(self, t, z, args):
        return self.drift_fn(t, z, args)

    def diffusion(self, t, z, args):
        return self.diffusion_fn(t, z, args)

    @property
    def z0(self):
        return self.initial

    @property
    def box(self):
        return self.lower, self.upper
