"""More target systems: nonequilibrium, multistable, oscillatory, chaotic, heteroclinic
and state-dependent-noise examples.

Each is an Itô SDE ``dz = f(z) dt + g(z) dB`` (DESIGN §1 "Target system"):

- ``noneq_ou``: ``dz = −A z dt + σ dB``, ``A = γ I − ω Q`` with Q antisymmetric (a
  rotation generator in each plane (0, 1), (2, 3), …); its stationary covariance and
  entropy production rate are known in closed form (DESIGN §1 "Decompositions").
- ``multi_well``: ``f = −∇U``, ``U(z) = −depth · log Σ_μ exp(−‖z − ξ_μ‖²/(2 w²)) +
  (c/2) ‖z − z̄‖²``, wells at the patterns ξ_μ (DESIGN §1 "Memory tasks").
- ``van_der_pol``: ``dx = y dt``, ``dy = (μ (1 − x²) y − x) dt``, additive noise.
- ``rossler``: the Rössler attractor, additive noise.
- ``may_leonard``: three competing species with a heteroclinic cycle, additive noise.
- ``cir``: Cox–Ingersoll–Ross ``dz = κ (θ − z) dt + σ √z dB``, stationary Gamma law.
- ``hopf``: the Hopf normal form, multiplicative noise ``g = σ (1 + a|z|²)^{1/2} I``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
from jaxtyping import Array, Float

from .base import SDE
from .builtin import OU, StuartLandau, _additive, oscillation_period


def _scalar(value, field: str, *, positive: bool = False) -> Float[Array, ""]:
    """A float parameter; with `positive`, rejected unless > 0."""
    if positive and not float(value) > 0:
        raise ValueError(f"`{field}` must be > 0; got {value}")
    return jnp.asarray(value, dtype=float)


def _matching(params: list[float], classic: list[float]) -> bool:
    return bool(np.allclose(params, classic, rtol=1e-6))


class NoneqOU(OU):
    """Nonequilibrium Ornstein–Uhlenbeck process ``dz = −A z dt + σ dB`` in any K.

    ``A = γ I − ω Q`` with ``Q[2i, 2i+1] = 1 = −Q[2i+1, 2i]`` (a rotation generator
    in each plane (2i, 2i+1); the last coordinate of an odd K does not rotate). Since
    Q is antisymmetric, ``A S + S Aᵀ = σ² I`` has the solution ``S = σ²/(2γ) I``, and
    ``Φ = tr(D_phys⁻¹ A S Aᵀ) − tr A = 2 ⌊K/2⌋ ω²/γ`` with ``D_phys = σ² I/2``: the
    rotation breaks detailed balance without changing the stationary law.

    **Arguments:**

    - `dim`: K ≥ 1.
    - `gamma`: γ > 0, the relaxation rate.
    - `omega`: ω, the rotation rate in each plane.
    - `noise`: σ > 0.
    """

    def __init__(self, dim=2, gamma=1.0, omega=1.0, noise=0.5):
        if isinstance(dim, bool) or int(dim) != dim or dim < 1:
            raise ValueError(f"`system.dim` must be a positive integer; got {dim!r}")
        k = int(dim)
        gamma = _scalar(gamma, "system.gamma", positive=True)
        noise = _scalar(noise, "system.noise", positive=True)
        Q = np.zeros((k, k))
        for i in range(0, k - 1, 2):
            Q[i, i + 1], Q[i + 1, i] = 1.0, -1.0
        # The drift, noise, start, box and the Lyapunov-equation solve are OU's.
        self.A = gamma * jnp.eye(k) - jnp.asarray(omega, dtype=float) * jnp.asarray(Q)
        self.g = _additive(noise, k)

    @property
    def name(self):
        return "noneq_ou"

    def entropy_production(self) -> float:
        """``Φ = tr(D_phys⁻¹ A S Aᵀ) − tr A`` (DESIGN §1), in float64."""
        A = np.asarray(self.A, np.float64)
        S = np.asarray(self.stationary_covariance(), np.float64)
        D_phys = np.asarray(self.g @ self.g.T, np.float64) / 2
        return float(np.trace(np.linalg.solve(D_phys, A @ S @ A.T)) - np.trace(A))

    def reference(self):
        return {
            "covariance": np.asarray(self.stationary_covariance()).tolist(),
            "entropy_production": self.entropy_production(),
        }

    def statistics(self, zs, dt):
        """``entropy_production``: the mean rate of the Stratonovich sum
        ``f(z_mid)ᵀ D_phys⁻¹ Δz`` along the paths (DESIGN §1; additive noise), which
        tends to Φ for stationary paths as the saving step goes to 0."""
        zs = np.asarray(zs, np.float64)
        A = np.asarray(self.A, np.float64)
        D_phys = np.asarray(self.g @ self.g.T, np.float64) / 2
        mid = (zs[:, 1:] + zs[:, :-1]) / 2
        step = zs[:, 1:] - zs[:, :-1]
        f_mid = -mid @ A.T
        work = np.einsum("btk,btk->", f_mid @ np.linalg.inv(D_phys), step)
        total_time = step.shape[0] * step.shape[1] * dt
        return {"entropy_production": float(work / total_time)}


class MultiWell(SDE):
    """Gradient flow in a multi-well potential with wells at the patterns ξ_μ.

    ``U(z) = −depth · log Σ_μ exp(−‖z − ξ_μ‖²/(2 w²)) + (c/2) ‖z − z̄‖²`` with z̄ the
    mean pattern; ``f = −∇U`` (by `jax.grad`), ``g = noise · I``. Near well μ, with
    the other wells far apart compared with w, ``U ≈ depth ‖z − ξ_μ‖²/(2w²)``: the
    Hessian there is about ``(depth/w² + c) I``. The weak confinement c keeps paths
    from wandering off when all wells are far.

    **Arguments:**

    - `patterns`: P × K matrix, one well per row (default: four wells on the unit
      circle in the plane).
    - `depth`: well depth scale, > 0.
    - `width`: w > 0, each well's width.
    - `confinement`: c ≥ 0.
    - `noise`: additive noise σ.
    """

    patterns: Float[Array, "P K"]
    depth: Float[Array, ""]
    width: Float[Array, ""]
    confinement: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(
        self,
        patterns=((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)),
        depth=1.0,
        width=0.4,
        confinement=0.05,
        noise=0.8,
    ):
        xi = np.asarray(patterns, dtype=float)
        if xi.ndim != 2 or xi.shape[0] < 1 or xi.shape[1] < 1:
            raise ValueError(
                "`system.patterns` must be a P×K matrix (one well per row); "
                f"got shape {np.shape(patterns)}"
            )
        if float(confinement) < 0:
            raise ValueError(f"`system.confinement` must be ≥ 0; got {confinement}")
        same = [
            (i, j)
            for i in range(len(xi))
            for j in range(i + 1, len(xi))
            if np.array_equal(xi[i], xi[j])
        ]
        if same:
            raise ValueError(
                f"`system.patterns` must be distinct wells; rows {same[0][0]} and "
                f"{same[0][1]} are both {xi[same[0][0]].tolist()}"
            )
        self.patterns = jnp.asarray(xi)
        self.depth = _scalar(depth, "system.depth", positive=True)
        self.width = _scalar(width, "system.width", positive=True)
        self.confinement = jnp.asarray(confinement, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: self.patterns.shape[1])
    noise_dim = property(lambda self: self.patterns.shape[1])
    name = property(lambda self: "multi_well")

    def potential(self, z: Float[Array, " K"]) -> Float[Array, ""]:
        """U(z)."""
        sq = jnp.sum((z - self.patterns) ** 2, axis=-1)
        wells = -self.depth * jax.nn.logsumexp(-sq / (2 * self.width**2))
        centre = jnp.mean(self.patterns, axis=0)
        return wells + 0.5 * self.confinement * jnp.sum((z - centre) ** 2)

    def drift(self, t, z, args):
        return -jax.grad(self.potential)(z)

    def diffusion(self, t, z, args):
        return _additive(self.noise, self.latent_dim)

    @property
    def z0(self):
        return self.patterns[0]

    @property
    def box(self):
        margin = 3 * self.width + 0.5
        return (
            jnp.min(self.patterns, axis=0) - margin,
            jnp.max(self.patterns, axis=0) + margin,
        )

    @property
    def core_radius(self) -> float:
        """The radius within which a state counts as in a well (`ddm_jax.memory`): a
        third of the closest two patterns' distance (the width w for one well)."""
        xi = np.asarray(self.patterns, np.float64)
        if xi.shape[0] < 2:
            return float(self.width)
        d = np.linalg.norm(xi[:, None] - xi[None], axis=-1)
        return float(d[np.triu_indices(xi.shape[0], 1)].min() / 3)

    def statistics(self, zs, dt):
        """``occupancy`` (the share of samples nearest to each pattern), and the
        switching between wells (`ddm_jax.memory`, wells of radius `core_radius`):
        ``transitions``, ``transition_matrix`` (row-normalised) and ``mean_dwell``."""
        from .. import memory

        flat = np.asarray(zs, np.float64).reshape(-1, self.latent_dim)
        xi = np.asarray(self.patterns, np.float64)
        nearest = np.argmin(((flat[:, None, :] - xi[None]) ** 2).sum(-1), axis=1)
        counts = np.bincount(nearest, minlength=xi.shape[0])
        labels = memory.well_labels(zs, xi, self.core_radius)
        moves, matrix = memory.transition_matrix(labels, xi.shape[0])
        dwell = memory.dwell_times(labels, dt)
        return {
            "occupancy": (counts / len(flat)).tolist(),
            "transitions": int(moves.sum()),
            "transition_matrix": matrix.tolist(),
            "mean_dwell": float(dwell.mean()) if dwell.size else float("nan"),
        }


class VanDerPol(SDE):
    """``dx = y dt + σ dB₁``, ``dy = (μ (1 − x²) y − x) dt + σ dB₂``.

    At μ = 1 the deterministic limit cycle has period 6.6633 (the published numerical
    value, 6.66329 to more digits), which `reference` reports for that μ only.

    **Arguments:**

    - `mu`: μ > 0, the nonlinear damping.
    - `noise`: additive noise σ.
    """

    mu: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, mu=1.0, noise=0.1):
        self.mu = _scalar(mu, "system.mu", positive=True)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 2)
    noise_dim = property(lambda self: 2)
    name = property(lambda self: "van_der_pol")

    def drift(self, t, z, args):
        x, y = z[0], z[1]
        return jnp.stack([y, self.mu * (1 - x**2) * y - x])

    def diffusion(self, t, z, args):
        return _additive(self.noise, 2)

    @property
    def z0(self):
        return jnp.array([2.0, 0.0])

    @property
    def box(self):
        # The cycle reaches |x| ≈ 2 and |y| ≈ 2.7 at μ = 1, growing about like μ.
        y = 2.5 + 1.5 * self.mu
        return jnp.stack([-3.0, -y]), jnp.stack([3.0, y])

    def reference(self):
        return {"period": 6.6633} if _matching([float(self.mu)], [1.0]) else {}

    def statistics(self, zs, dt):
        return {"period": oscillation_period(np.asarray(zs), dt)}


class Rossler(SDE):
    """The Rössler system ``f = (−y − w, x + a y, b + w (x − c))``, additive noise
    ``g = noise · diag(1, 1, 0)`` on x and y only (see `diffusion`).

    At a = b = 0.2, c = 5.7 the deterministic flow's maximal Lyapunov exponent is
    0.0714 (Sprott, "Chaos and Time-Series Analysis", 2003), which `reference`
    reports for those parameters only.

    **Arguments:**

    - `a`, `b`, `c`: the Rössler parameters.
    - `noise`: additive noise σ on x and y.
    """

    a: Float[Array, ""]
    b: Float[Array, ""]
    c: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, a=0.2, b=0.2, c=5.7, noise=0.1):
        self.a = jnp.asarray(a, dtype=float)
        self.b = jnp.asarray(b, dtype=float)
        self.c = jnp.asarray(c, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 3)
    noise_dim = property(lambda self: 3)
    name = property(lambda self: "rossler")

    def drift(self, t, z, args):
        x, y, w = z[0], z[1], z[2]
        return jnp.stack([-y - w, x + self.a * y, self.b + w * (x - self.c)])

    def diffusion(self, t, z, args):
        # No noise on w: with w' = b + w (x − c), noise that pushes w below 0 while
        # x > c grows without bound and the path escapes to infinity; without it
        # w = 0 is a barrier (w' = b > 0 there) and the attractor persists.
        return self.noise * jnp.diag(jnp.array([1.0, 1.0, 0.0]))

    @property
    def z0(self):
        # A point near the classic attractor (which spans x ∈ [−9, 11], y ∈ [−11, 8],
        # w ∈ [0, 23]).
        return jnp.array([1.0, -6.0, 0.1])

    @property
    def box(self):
        return jnp.array([-12.0, -12.0, 0.0]), jnp.array([12.0, 10.0, 25.0])

    def reference(self):
        params = [float(self.a), float(self.b), float(self.c)]
        return {"lyapunov_max": 0.0714} if _matching(params, [0.2, 0.2, 5.7]) else {}


class MayLeonard(SDE):
    """Three competing species with a heteroclinic cycle (May & Leonard 1975).

    ``dz_i = z_i (1 − z_i − α z_{i+1} − β z_{i+2}) dt + σ dB_i`` (indices mod 3) for
    ``z_i ≥ 0``. With ``α < 1 < β`` and ``α + β > 2`` the saddles e_i (unit vectors)
    are joined in the cycle e_1 → e_3 → e_2 → e_1 (each species is invaded by the one
    before it), which attracts; the interior fixed point ``z* = (1, 1, 1)/(1 + α + β)``
    is an unstable focus. Additive noise keeps the passages near the saddles finite.

    Limit: with additive noise a species near a saddle where it could invade can be
    pushed below 0, where ``z_i (1 − z_i − …)`` runs off to −∞ in finite time. Below
    0 the drift is therefore the linear restoring ``−z_i`` (continuous at 0), which
    keeps the paths near the positive orthant and leaves the flow inside it as above.

    **Arguments:**

    - `alpha`, `beta`: competition coefficients α and β.
    - `noise`: additive noise σ (small: the cycling slows down like log(1/σ)).
    """

    alpha: Float[Array, ""]
    beta: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, alpha=0.8, beta=1.3, noise=0.01):
        self.alpha = jnp.asarray(alpha, dtype=float)
        self.beta = jnp.asarray(beta, dtype=float)
        self.noise = jnp.asarray(noise, dtype=float)

    latent_dim = property(lambda self: 3)
    noise_dim = property(lambda self: 3)
    name = property(lambda self: "may_leonard")

    def drift(self, t, z, args):
        competition = z + self.alpha * jnp.roll(z, -1) + self.beta * jnp.roll(z, -2)
        return jnp.where(z >= 0, z * (1 - competition), -z)

    def diffusion(self, t, z, args):
        return _additive(self.noise, 3)

    @property
    def z0(self):
        return jnp.array([0.6, 0.3, 0.1])

    @property
    def box(self):
        return -0.05 * jnp.ones(3), 1.1 * jnp.ones(3)

    def interior_fixed_point(self) -> Float[Array, " K"]:
        """``z* = (1, 1, 1)/(1 + α + β)``."""
        return jnp.ones(3) / (1 + self.alpha + self.beta)

    def reference(self):
        # Dominance passes i → i − 1 (mod 3) at every switch when α < 1 < β.
        ordered = float(self.alpha) < 1 < float(self.beta)
        return {"cycle_order": 1.0} if ordered else {}

    def statistics(self, zs, dt):
        """``switch_rate``: changes of the dominant species (the last one above 0.6)
        per unit time; ``cycle_order``: the share of them that go i → i − 1 (NaN
        without any). Near the cycle the species sum to about 1, so at most one is
        above 0.6 at a time; a higher threshold misses passages that noise cuts short.
        """
        zs = np.asarray(zs, np.float64)
        count = forward = 0
        for path in zs:
            above = path > 0.6
            idx = np.nonzero(above.any(axis=1))[0]
            visited = np.argmax(above[idx], axis=1)
            change = np.diff(visited)
            change = change[change != 0] % 3
            count += len(change)
            forward += int(np.count_nonzero(change == 2))
        total_time = zs.shape[0] * (zs.shape[1] - 1) * dt
        return {
            "switch_rate": count / total_time,
            "cycle_order": forward / count if count else float("nan"),
        }


class CIR(SDE):
    """Cox–Ingersoll–Ross ``dz = κ (θ − z) dt + σ √z dB`` (Itô).

    The stationary law is Gamma with shape ``2κθ/σ²`` and scale ``σ²/(2κ)``: mean θ,
    variance ``θ σ²/(2κ)``. Under the Feller condition ``2κθ ≥ σ²`` (true for the
    defaults) the process never reaches 0; a discretised path may step below it,
    so the noise uses ``√max(z, 0)``.

    **Arguments:**

    - `kappa`: κ > 0, the mean-reversion rate.
    - `theta`: θ > 0, the long-run mean.
    - `noise`: σ > 0.
    """

    kappa: Float[Array, ""]
    theta: Float[Array, ""]
    noise: Float[Array, ""]

    def __init__(self, kappa=1.0, theta=1.0, noise=0.5):
        self.kappa = _scalar(kappa, "system.kappa", positive=True)
        self.theta = _scalar(theta, "system.theta", positive=True)
        self.noise = _scalar(noise, "system.noise", positive=True)

    latent_dim = property(lambda self: 1)
    noise_dim = property(lambda self: 1)
    name = property(lambda self: "cir")

    def drift(self, t, z, args):
        return self.kappa * (self.theta - z)

    def diffusion(self, t, z, args):
        return self.noise * jnp.sqrt(jnp.maximum(z, 0.0))[:, None]

    @property
    def z0(self):
        return self.theta * jnp.ones(1)

    @property
    def box(self):
        shape, scale = self.stationary_gamma()
        sd = math.sqrt(shape) * scale
        return jnp.zeros(1), (self.theta + 5 * sd) * jnp.ones(1)

    def stationary_gamma(self) -> tuple[float, float]:
        """(shape, scale) of the stationary Gamma law."""
        kappa, theta, sigma = (float(v) for v in (self.kappa, self.theta, self.noise))
        return 2 * kappa * theta / sigma**2, sigma**2 / (2 * kappa)

    def reference(self):
        shape, scale = self.stationary_gamma()
        return {
            "gamma_shape": shape,
            "gamma_scale": scale,
            "mean": shape * scale,
            "variance": shape * scale**2,
        }

    def statistics(self, zs, dt):
        """``ks_gamma``: the Kolmogorov–Smirnov distance of all samples to the
        stationary Gamma law (samples along a path are correlated, so this is a
        distance, not a test statistic with its usual null law)."""
        shape, scale = self.stationary_gamma()
        x = np.sort(np.asarray(zs, np.float64).ravel())
        cdf = np.asarray(jsp.gammainc(shape, jnp.asarray(np.maximum(x, 0.0) / scale)))
        n = len(x)
        above = np.arange(1, n + 1) / n - cdf
        below = cdf - np.arange(n) / n
        return {"ks_gamma": float(max(above.max(), below.max()))}


class Hopf(StuartLandau):
    """Hopf normal form with multiplicative noise in the plane.

    ``dz = ((μ − |z|²) z + ω J z) dt + g(z) dB`` with ``g(z) = σ (1 + a|z|²)^{1/2} I``,
    so ``D(z) = σ² (1 + a|z|²) I``. For μ > 0 the deterministic flow has a limit cycle
    of radius √μ and period 2π/ω. The noise is isotropic, so the phase obeys
    ``dφ = ω dt + (noise)`` with no Itô drift: the mean period is 2π/|ω| with noise too.

    **Arguments:**

    - `mu`: μ, the bifurcation parameter.
    - `omega`: ω, the angular speed.
    - `noise`: σ, the noise at the origin.
    - `noise_gain`: a ≥ 0, how fast the noise variance grows with |z|².
    """

    noise_gain: Float[Array, ""]

    def __init__(self, mu=1.0, omega=2 * math.pi, noise=0.1, noise_gain=1.0):
        if float(noise_gain) < 0:
            raise ValueError(f"`system.noise_gain` must be ≥ 0; got {noise_gain}")
        # The drift, start, box and period statistics are Stuart–Landau's.
        super().__init__(mu=mu, omega=omega, noise=noise)
        self.noise_gain = jnp.asarray(noise_gain, dtype=float)

    name = property(lambda self: "hopf")

    def diffusion(self, t, z, args):
        scale = self.noise * jnp.sqrt(1 + self.noise_gain * (z @ z))
        return scale * jnp.eye(2)

    def reference(self):
        mu, omega = float(self.mu), float(self.omega)
        out = {"cycle_radius": math.sqrt(mu)} if mu > 0 else {}
        if omega != 0:
            out["period"] = 2 * math.pi / abs(omega)
        return out
