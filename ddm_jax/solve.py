"""The closed-form start (DESIGN §1 "Closed form start").

With E and b fixed the drift loss is linear least squares in the readout V:

    f_θ(z) = (−z + Vᵀ φ(E z + b)) / τ = f(z)   ⇔   φ(E z + b)ᵀ V = τ f(z) + z,

a random-feature (NEF-style) decoder. The feature matrix Φ (M×N) has singular values
spread over many decades (PITFALLS 7), so it is solved through an SVD of Φ itself with
an explicit relative cutoff `rcond` and optional ridge, or through a QR factor, never
through the normal equations. For dense connectivity the minimum-norm solution is
``W = E Vᵀ``, which leaves the manifold exactly invariant.

The noise has a closed form too: for constant latent noise the minimiser of
``E‖G Gᵀ − D(z)‖²`` is ``G Gᵀ = E[D]``; for activity-gated noise ``G(z)`` is fitted
linearly to the target's own noise matrix ``g(z)`` on the features ``[1, φ]``, which
makes ``G Gᵀ = g gᵀ = D`` wherever the fit is exact.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

SOLVERS = ("svd", "qr")


def lstsq(
    A: Float[Array, "M N"],
    Y: Float[Array, "M R"],
    *,
    rcond: float = 1e-7,
    ridge: float = 0.0,
    method: str = "svd",
) -> Float[Array, "N R"]:
    """Least squares ``min ‖A X − Y‖²/M + ridge ‖X‖²`` with an explicit cutoff.

    **Arguments:**

    - `A`, `Y`: the design matrix and the targets.
    - `rcond`: singular values below ``rcond · s_max`` are dropped (SVD only).
    - `ridge`: Tikhonov weight per sample (0 for none).
    - `method`: ``"svd"`` or ``"qr"``.

    **Returns:** X of shape ``(N, R)``.
    """
    if method not in SOLVERS:
        raise ValueError(f"`train.solver` must be one of {SOLVERS}; got {method!r}")
    m, n = A.shape
    lam = m * ridge
    if method == "qr":
        if ridge > 0:
            A = jnp.concatenate([A, jnp.sqrt(lam) * jnp.eye(n, dtype=A.dtype)])
            Y = jnp.concatenate([Y, jnp.zeros((n, Y.shape[1]), Y.dtype)])
        Q, R = jnp.linalg.qr(A)
        return jax.scipy.linalg.solve_triangular(R, Q.T @ Y, lower=False)
    U, s, Vt = jnp.linalg.svd(A, full_matrices=False)
    keep = s > rcond * s[0]
    safe = jnp.where(keep, s, 1.0)
    filt = jnp.where(keep, safe / (safe**2 + lam), 0.0)
    return Vt.T @ (filt[:, None] * (U.T @ Y))


def features(model, z: Float[Array, "M K"], args=None) -> Float[Array, "M N"]:
    """Rates φ(E z + b + B_u u) at each point."""
    return jax.vmap(lambda zi: model.phi(model.embed(zi, args)))(z)


@eqx.filter_jit
def solve_readout(
    model,
    system,
    points: Float[Array, "M K"],
    *,
    rcond: float = 1e-7,
    ridge: float = 0.0,
    method: str = "svd",
    args=None,
    noise: bool = True,
):
    """The closed-form readout (and noise) for `model` on `points`.

    **Arguments:**

    - `model`: a `LatentRNN`; E, b and B are kept.
    - `system`: the target.
    - `points`: latent points ``(M, K)`` from the sampling measure.
    - `rcond`, `ridge`, `method`: see `lstsq`.
    - `args`: input u at the points.
    - `noise`: also solve the noise parameters (G0, A).

    **Returns:** a new model with V (or W = E Vᵀ) and, if `noise`, G0/A replaced.
    """
    Phi = features(model, points, args)
    f = jax.vmap(lambda zi: system.drift(0.0, zi, args))(points)
    V = lstsq(Phi, model.tau * f + points, rcond=rcond, ridge=ridge, method=method)
    if model.connectivity == "low_rank":
        model = eqx.tree_at(lambda m: m.V, model, V.astype(model.E.dtype))
    else:
        W = (model.E @ V.T).astype(model.E.dtype)
        model = eqx.tree_at(lambda m: m.W, model, W)
    if noise:
        model = _solve_noise(model, system, points, Phi, rcond, ridge, method, args)
    return model


def _solve_noise(model, system, points, Phi, rcond, ridge, method, args):
    k, c = model.latent_dim, model.noise_dim
    g = jax.vmap(lambda zi: system.diffusion(0.0, zi, args))(points)
    if model.noise == "latent":
        D_mean = jnp.mean(g @ jnp.swapaxes(g, 1, 2), axis=0)
        return eqx.tree_at(
            lambda m: m.G0, model, _root(D_mean, c).astype(model.G0.dtype)
        )
    if g.shape[-1] != c:
        raise ValueError(
            f"gated noise needs `noise_dim` = the system's ({g.shape[-1]}); got {c}"
        )
    ones = jnp.ones((Phi.shape[0], 1), Phi.dtype)
    coef = lstsq(
        jnp.concatenate([ones, Phi], axis=1),
        g.reshape(g.shape[0], k * c),
        rcond=rcond,
        ridge=ridge,
        method=method,
    )
    G0 = coef[0].reshape(k, c).astype(model.G0.dtype)
    A = coef[1:].reshape(-1, k, c).astype(model.G0.dtype)
    return eqx.tree_at(lambda m: (m.G0, m.A), model, (G0, A))


def _root(D: Float[Array, "K K"], c: int) -> Float[Array, "K C"]:
    """A K×C matrix G with G Gᵀ = D (the best rank-C one if C < K)."""
    lam, U = jnp.linalg.eigh((D + D.T) / 2)
    lam, U = lam[::-1], U[:, ::-1]
    root = U * jnp.sqrt(jnp.maximum(lam, 0.0))
    k = D.shape[0]
    if c <= k:
        return root[:, :c]
    return jnp.concatenate([root, jnp.zeros((k, c - k), D.dtype)], axis=1)
