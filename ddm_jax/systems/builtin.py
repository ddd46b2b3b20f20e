"""The built-in target systems.

Each is an Itô SDE with additive noise ``g = noise · I`` unless said otherwise:

- ``ou``: ``dz = −A z dt + g dB`` in any dimension K (DESIGN §1 "Decompositions").
- ``double_well``: ``f = −U′(z)``, ``U(z) = h (z² − 1)²``.
- ``stuart_landau``: ``dz = ((μ − |z|²) z + ω J z) dt + σ dB`` in the plane.
- ``lorenz``: Lorenz-63 in its original coordinates and time unit.
- ``gbm``: geometric Brownian motion ``dz = μ z dt + σ z dB`` (multiplicative noise).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .base import SDE, _as_matrix


def _additive(noise: Float[Array, ""], k: int) -> Float[Array, "K K"]:
    return noise * jnp.eye(k)


class OU(SDE):
    """Ornstein–Uhlenbeck process ``dz = −A z dt + g dB``.

    **Arguments:**

    - `A`: drift matrix (K×K) with eigenvalues of positive real part, or a scalar.
    - `g`: noise matrix (K×K) or a scalar (times the identity).
    - `dim`: K when both `A` and `g` are scalars.
    """

    A: Float[Array, "K K"]
    g: Float[Array, "K K"]

    def __init__(self, A=((1.0, -1.0), (1.0, 1.0)), g=0.5, dim=None):
        a = np.asarray(A, dtype=float)
        k = dim if dim is not None else (a.shape[0] if a.ndim == 2 else 1)
        self.A = _as_matrix(A, int(k), "system.A")
        self.g = _as_matrix(g, int(k), "system.g")
        if np.any(np.linalg.eigvals(np.asarray(self.A)).real <= 0):
            raise ValueError(
                "`system.A` must have eigenvalues with positive real part (stable "
                f"drift −A z); got eigenvalues {np.linalg.eigvals(np.asarray(self.A))}"
            )

    @property
    def latent_dim(self):
        return self.A.shape[0]

    @property
    def noise_dim(self):
        return self.g.shape[1]

    @property
    def name(self):
        return "ou"

    def drift(self, t, z, args):
        return -self.A @ z

    def diffusion(self, t, z, args):
        return self.g

    @property
    def z0(self):
        return jnp.zeros(self.latent_dim)

    @property
    def box(self):
        s = jnp.sqrt(jnp.diag(self.stationary_covariance()))
        return -4 * s, 4 * s

    def stationary_covariance(self) -> Float[Array, "K K"]:
        """S solving the Lyapunov equation ``A S + S Aᵀ = g gᵀ``."""
        k = self.latent_dim
        eye = jnp.eye(k)
        lhs = jnp.kron(eye, self.A) + jnp.kron(self.A, eye)
        rhs = (self.g @ self.g.T).reshape(-1)
        return jnp.linalg.solve(lhs, rhs).reshape(k, k).T

    def reference(self):
        return {"covariance": np.asarray(self.stationary_covariance()).tolist()}


class DoubleWell(SDE):
    """``dz = −4 h z (z² − 1) dt + noise dB``, the gradient flow of ``h (z² − 1)²``."""

    h: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, h=1.0, noise=0.7):
        self.h = jnp.asarray(h, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 1)
    noise_dim = property(lambda self: 1)
    name = property(lambda self: "double_well")

    def drift(self, t, z, args):
        return -4 * self.h * z * (z**2 - 1)

    def diffusion(self, t, z, args):
        return _additive(self.noise, 1)

    @property
    def z0(self):
        return jnp.ones(1)

    @property
    def box(self):
        return -2 * jnp.ones(1), 2 * jnp.ones(1)

    def statistics(self, zs, dt):
        rate, count = switch_rate(np.asarray(zs)[..., 0], dt, threshold=0.5)
        return {"switch_rate": rate, "switches": count}


class StuartLandau(SDE):
    """``dz = ((μ − |z|²) z + ω J z) dt + noise dB`` in the plane; J rotates by 90°."""

    mu: Float[Array, ""]
    omega: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, mu=1.0, omega=2 * math.pi, noise=0.1):
        self.mu = jnp.asarray(mu, dtype=float)
        self.omega = jnp.asarray(omega, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 2)
    noise_dim = property(lambda self: 2)
    name = property(lambda self: "stuart_landau")

    def drift(self, t, z, args):
        rot = jnp.stack([-z[1], z[0]])
        return (self.mu - z @ z) * z + self.omega * rot

    def diffusion(self, t, z, args):
        return _additive(self.noise, 2)

    @property
    def z0(self):
        return jnp.array([1.0, 0.0]) * jnp.sqrt(jnp.maximum(self.mu, 0.1))

    @property
    def box(self):
        r = 1.5 * jnp.sqrt(jnp.maximum(self.mu, 0.1))
        return -r * jnp.ones(2), r * jnp.ones(2)

    def statistics(self, zs, dt):
        return {"period": oscillation_period(np.asarray(zs), dt)}


class Lorenz(SDE):
    """Lorenz-63, ``f = (σ(y − x), x(ρ − w) − y, x y − β w)``, additive noise."""

    sigma: Float[Array, ""]
    rho: Float[Array, ""]
    beta: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, sigma=10.0, rho=28.0, beta=8.0 / 3.0, noise=1.0):
        self.sigma = jnp.asarray(sigma, dtype=float)
        self.rho = jnp.asarray(rho, dtype=float)
        self.beta = jnp.asarray(beta, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 3)
    noise_dim = property(lambda self: 3)
    name = property(lambda self: "lorenz")

    def drift(self, t, z, args):
        x, y, w = z[0], z[1], z[2]
        return jnp.stack(
            [self.sigma * (y - x), x * (self.rho - w) - y, x * y - self.beta * w]
        )

    def diffusion(self, t, z, args):
        return _additive(self.noise, 3)

    @property
    def z0(self):
        return jnp.array([1.0, 1.0, 25.0])

    def reference(self):
        # The maximal exponent 0.9056 (Sprott, "Chaos and Time-Series Analysis", 2003)
        # holds for the deterministic flow at the classic parameters only.
        params = [float(self.sigma), float(self.rho), float(self.beta)]
        classic = np.allclose(params, [10.0, 28.0, 8.0 / 3.0], rtol=1e-6)
        return {"lyapunov_max": 0.9056} if classic else {}

    @property
    def box(self):
        return jnp.array([-25.0, -30.0, 0.0]), jnp.array([25.0, 30.0, 55.0])


class GBM(SDE):
    """Geometric Brownian motion ``dz = μ z dt + σ z dB`` (Itô); E[z_t] = z0 e^{μt}."""

    mu: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, mu=0.5, noise=0.5):
        self.mu = jnp.asarray(mu, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 1)
    noise_dim = property(lambda self: 1)
    name = property(lambda self: "gbm")

    def drift(self, t, z, args):
        return self.mu * z

    def diffusion(self, t, z, args):
        return self.noise * z[:, None]

    @property
    def z0(self):
        return jnp.ones(1)

    @property
    def box(self):
        return 0.05 * jnp.ones(1), 3.0 * jnp.ones(1)


# --- statistics shared by the systems above -------------------------------------


def switch_rate(xs: np.ndarray, dt: float, threshold: float) -> tuple[float, int]:
    """Switches per unit time between ``x > threshold`` and ``x < −threshold``.

    A switch is counted when a path that last visited one side reaches the other
    (hysteresis between ``±threshold``), so recrossings near zero are not counted.

    **Arguments:** `xs` of shape ``(B, T)`` sampled every `dt`.

    **Returns:** ``(rate, count)``.
    """
    xs = np.atleast_2d(np.asarray(xs, dtype=np.float64))
    side = np.where(xs > threshold, 1, np.where(xs < -threshold, -1, 0))
    count = 0
    for row in side:
        visited = row[row != 0]
        count += int(np.count_nonzero(np.diff(visited)))
    total_time = xs.shape[0] * (xs.shape[1] - 1) * dt
    return count / total_time, count


def oscillation_period(zs: np.ndarray, dt: float) -> float:
    """2π over the mean phase velocity of planar paths ``(B, T, 2)`` saved every dt."""
    zs = np.asarray(zs, dtype=np.float64)
    phase = np.unwrap(np.arctan2(zs[..., 1], zs[..., 0]), axis=1)
    velocity = (phase[:, -1] - phase[:, 0]).sum() / (
        zs.shape[0] * (zs.shape[1] - 1) * dt
    )
    return float(2 * np.pi / abs(velocity))
