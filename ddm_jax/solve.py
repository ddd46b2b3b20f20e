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

Private noise: D_θ = E⁺ diag(s) E⁺ᵀ = Σ_i s_i p_i p_iᵀ (p_i the columns of E⁺,
s = σ²) is constant and linear in s, so the minimiser of ``E‖D_θ − D(z)‖²`` matches
D̄ = E[D]; `private_noise_variances` takes the minimum-norm s ≥ 0 doing so.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jaxtyping import Array, ArrayLike, Float

from .inputs import over_points

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
    """Rates φ(E z + b + B_u u) at each point; `args` is one input u ``(P,)`` for all
    points, one per point ``(M, P)``, or None."""
    return over_points(lambda zi, ui: model.phi(model.embed(zi, ui)), z, args)


def pointwise(field, z: Float[Array, "M K"], args=None):
    """``field(0, z_i, u_i)`` at each point, inputs as in `features`."""
    return over_points(lambda zi, ui: field(0.0, zi, ui), z, args)


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
    - `args`: the input u at the points: one ``(P,)`` for all, or ``(M, P)``, one a
      point (drift matching over (z, u) pairs).
    - `noise`: also solve the noise parameters (G0, A, or σ for private noise).

    **Returns:** a new model with V (or W = E Vᵀ) and, if `noise`, G0/A (or σ)
    replaced.
    """
    Phi = features(model, points, args)
    f = pointwise(system.drift, points, args)
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
    """The noise parameters in closed form.

    Gated noise fits g itself, not D: the loss sees only D = g gᵀ, which is blind to
    g → g Q (Q orthogonal, e.g. g → −g), but a linear fit of g needs one smooth branch.
    The built-in targets write g smoothly (GBM's σ z keeps its sign on its box); a
    target whose g flips sign or rotates along the way (e.g. written as σ|z| where
    σ z would do) fits worse than its D would allow, and gradient training on D is
    the remedy.
    """
    k, c = model.latent_dim, model.noise_dim
    g = pointwise(system.diffusion, points, args)
    if model.noise == "private":
        D_mean = jnp.mean(g @ jnp.swapaxes(g, 1, 2), axis=0)
        s = private_noise_variances(model.E, D_mean)
        return eqx.tree_at(
            lambda m: m.sigma, model, jnp.sqrt(s).astype(model.sigma.dtype)
        )
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


@eqx.filter_jit
def private_noise_variances(
    E: Float[Array, "N K"],
    D: Float[Array, "K K"],
    *,
    num_iterations: int = 30,
    rel_ridge: float = 1e-7,
) -> Float[Array, " N"]:
    """The minimum-norm s = σ² ≥ 0 with E⁺ diag(s) E⁺ᵀ = D.

    Whitening: with the thin SVD E = U S Wᵀ (u_i the rows of U, Σ_i u_i u_iᵀ = I) the
    equation reads Σ_i s_i u_i u_iᵀ = D̃ := S Wᵀ D W S. The KKT conditions of
    min ½‖s‖² subject to it and s ≥ 0 give s_i = max(0, u_iᵀ Λ u_i) for a symmetric
    K×K multiplier Λ that maximises the concave dual
    ⟨Λ, D̃⟩ − ½ Σ_i max(0, u_iᵀ Λ u_i)² − (ε/2)‖Λ‖²; it is found by semi-smooth
    Newton steps (Hessian Σ_{active} (u_i u_iᵀ)(u_i u_iᵀ)ᵀ + ε) with a step-halving
    line search, started from the unconstrained minimum-norm solution. The ridge ε
    (`rel_ridge` times the mean Hessian eigenvalue) keeps the dual bounded; it leaves
    a residual ε Λ, far below float32 rounding when D is reachable.

    - When every u_iᵀ Λ u_i > 0 the start is already the answer, exact for any
      symmetric D: e.g. D̃ ∝ I (D ∝ (EᵀE)⁻¹) has s uniform; D = c I with E of
      roughly orthogonal, equal-norm columns has s ≈ c N e².
    - Any D in the interior of the reachable cone {Σ s_i p_i p_iᵀ : s ≥ 0} is
      reproduced exactly, some s_i then being 0.
    - D outside it (D singular or too anisotropic for the N directions p_i) gives
      the non-negative least-squares fit Σ s_i u_i u_iᵀ ≈ D̃ in the whitened metric
      with the ridge as penalty; the loss then reports the remaining mismatch.

    **Arguments:**

    - `E`: the embedding (N, K), full column rank.
    - `D`: the target diffusion matrix (K, K), symmetrised here.
    - `num_iterations`: Newton steps; few are needed when D is reachable.
    - `rel_ridge`: ε relative to the Hessian's mean eigenvalue.

    **Returns:** s (N,), non-negative; σ = √s.
    """
    k = E.shape[1]
    U, S, Wt = jnp.linalg.svd(E, full_matrices=False)
    D = (D + D.T) / 2
    D_white = S[:, None] * (Wt @ D @ Wt.T) * S[None, :]

    # Symmetric K×K matrices as vectors with the √2 weight off the diagonal, so that
    # the dot product of two such vectors is the Frobenius product of the matrices.
    rows, cols = jnp.triu_indices(k)
    weight = jnp.where(rows == cols, 1.0, jnp.sqrt(2.0)).astype(E.dtype)
    feats = U[:, rows] * U[:, cols] * weight
    d = D_white[rows, cols] * weight
    eye = jnp.eye(d.shape[0], dtype=E.dtype)
    gram = feats.T @ feats
    eps = rel_ridge * jnp.trace(gram) / d.shape[0]

    def dual(lam, q):
        return lam @ d - 0.5 * jnp.sum(jax.nn.relu(q) ** 2) - 0.5 * eps * lam @ lam

    steps = jnp.concatenate([2.0 ** -jnp.arange(21.0), jnp.zeros(1)]).astype(E.dtype)

    def newton(_, lam):
        q = feats @ lam
        grad = d - feats.T @ jax.nn.relu(q) - eps * lam
        hess = (feats * (q > 0)[:, None]).T @ feats + eps * eye
        delta = jnp.linalg.solve(hess, grad)
        dq = feats @ delta
        values = jax.lax.map(lambda t: dual(lam + t * delta, q + t * dq), steps)
        return lam + steps[jnp.argmax(values)] * delta

    lam = jnp.linalg.solve(gram + eps * eye, d)
    lam = jax.lax.fori_loop(0, num_iterations, newton, lam)
    return jax.nn.relu(feats @ lam)


# --- closed form from recorded increments (DESIGN §1 "Matching from data") ----------

CORRECTIONS = ("none", "ito", "ou")


def fit_linear_sde(
    z: Float[ArrayLike, "M K"],
    dz: Float[ArrayLike, "M K"],
    dt: Float[ArrayLike, " M"],
    *,
    exact_ou: bool = False,
) -> dict[str, np.ndarray]:
    """Kramers–Moyal fit of a linear SDE ``dz = (B z + c) dt + g dB`` to increments,
    in float64 on the host.

    The naive estimates (PITFALLS 5) are the least-squares slope of Δz/Δt on
    ``[z, 1]`` and D = mean of r rᵀ/Δt with the residuals r = Δz − (B z + c) Δt.
    For exact OU samples at step Δt they are biased (PITFALLS 6): the slope is
    ``(e^{BΔt} − I)/Δt`` and D is ``Σ_Δ/Δt``, the one-step covariance
    ``Σ_Δ = ∫_0^Δt e^{Bs} D e^{Bᵀs} ds``. With `exact_ou` both are inverted:
    ``B = log(I + B̂ Δt)/Δt`` (matrix logarithm) and D solves the Stein equation
    ``D − F D Fᵀ = −(B Σ_Δ + Σ_Δ Bᵀ)``, ``F = e^{BΔt}`` (from d/ds of the integrand).

    **Arguments:**

    - `z`, `dz`, `dt`: pooled increments (see `ddm_jax.data.increments`).
    - `exact_ou`: invert the exact OU map; needs even steps (within 0.1 %) and
      ``I + B̂ Δt`` with no eigenvalue on the closed negative real axis.

    **Returns:** a dict with ``drift_matrix`` B (K, K), ``offset`` c (K,),
    ``diffusion`` D (K, K) and, with `exact_ou`, ``naive_drift_matrix`` and
    ``naive_diffusion``.

    **Raises:** `ValueError` for bad shapes, uneven steps or a slope the OU map
    cannot produce.
    """
    z, dz, dt = _host_increments(z, dz, dt)
    k = z.shape[1]
    X = np.concatenate([z, np.ones((z.shape[0], 1))], axis=1)
    coef = np.linalg.lstsq(X, dz / dt[:, None], rcond=None)[0]
    B, c = coef[:k].T, coef[k]
    r = dz - (X @ coef) * dt[:, None]
    D = (r.T / dt) @ r / z.shape[0]
    out = {"drift_matrix": B, "offset": c, "diffusion": D}
    if not exact_ou:
        return out
    h = _even_step(dt, "exact_ou")
    eig = np.linalg.eigvals(np.eye(k) + B * h)
    if np.any((np.abs(eig.imag) <= 1e-12) & (eig.real <= 0)):
        raise ValueError(
            "`exact_ou`: I + slope·Δt has an eigenvalue ≤ 0, which no OU process "
            "gives at this Δt; use a smaller Δt or no correction"
        )
    B_ou = np.real(scipy.linalg.logm(np.eye(k) + B * h)) / h
    # The naive line and the OU line share the mean μ = −B̂⁻¹ c, so c_ou = B_ou B̂⁻¹ c.
    c_ou = B_ou @ np.linalg.solve(B, c)
    D_ou = _stein_diffusion(B_ou, D, h)
    out.update(
        drift_matrix=B_ou,
        offset=c_ou,
        diffusion=D_ou,
        naive_drift_matrix=B,
        naive_diffusion=D,
    )
    return out


def _host_increments(z, dz, dt):
    z = np.asarray(z, np.float64)
    dz = np.asarray(dz, np.float64)
    dt = np.asarray(dt, np.float64)
    if z.ndim != 2 or dz.shape != z.shape or dt.shape != (z.shape[0],):
        raise ValueError(
            "increments must be z (M, K), dz (M, K) and dt (M,); got "
            f"{z.shape}, {dz.shape} and {dt.shape}"
        )
    if z.shape[0] < 2 or not np.all(dt > 0):
        raise ValueError("increments need M ≥ 2 and every Δt > 0")
    return z, dz, dt


def _even_step(dt: np.ndarray, what: str) -> float:
    h = float(np.mean(dt))
    if np.max(np.abs(dt - h)) > 1e-3 * h:
        raise ValueError(
            f"correction {what!r} needs even steps (Δt within 0.1 % of its mean "
            f"{h:g}); got Δt from {dt.min():g} to {dt.max():g}"
        )
    return h


@eqx.filter_jit
def _weighted_block(model, z, Y, sqrt_w):
    return jnp.concatenate([features(model, z), Y], axis=1) * sqrt_w[:, None]


def _tsqr(model, z, Y, sqrt_w, chunk) -> np.ndarray:
    """The R factor ((N+R) square, float64) of ``[√w Φ | √w Y]``, accumulated over row
    chunks, R ← qr([R; block]).R, so that the M×N feature matrix is never held. Its
    blocks are R_Φ, Qᵀ(√w Y) and a factor of the residual outside span(Φ). The
    features come from JAX; the small QRs run in float64 LAPACK on the host."""
    n = model.num_neurons + Y.shape[1]
    R = np.zeros((0, n))
    for start in range(0, z.shape[0], chunk):
        rows = slice(start, start + chunk)
        block = _weighted_block(model, z[rows], Y[rows], sqrt_w[rows])
        R = np.linalg.qr(np.concatenate([R, np.asarray(block, np.float64)]), mode="r")
    return np.concatenate([R, np.zeros((n - R.shape[0], n))])


def _chunks(a, chunk):
    """`a` as (num_chunks, chunk, …), padded with zero rows (zero weight)."""
    m = a.shape[0]
    pad = (-m) % chunk
    a = jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)])
    return a.reshape(-1, chunk, *a.shape[1:])


def _ridge_readout(R, n, num_rows, rcond, ridge):
    """V from the TSQR factor, with the ridge given or chosen by Mallows' C_p.

    In the SVD R_Φ = U S Wᵀ the projected targets are Uᵀ Qᵀ Y; a ridge λ (per sample
    times M) filters them by s/(s² + λ). C_p(λ) = RSS(λ) + 2 σ² dof(λ), with
    dof = Σ s²/(s² + λ) and σ² (summed over outputs) the residual variance of the
    least-regularised fit, RSS(0)/(M − dof(0)): an unbiased estimate of the risk
    when the noise of each target row has variance σ².
    """
    QtY, Ryy = R[:n, n:], R[n:, n:]
    U, s, Wt = np.linalg.svd(R[:n, :n])
    proj = U.T @ QtY
    keep = s > rcond * s[0]
    outside = float(np.sum(Ryy**2)) + float(np.sum(proj[~keep] ** 2))
    s2 = np.where(keep, s, 0.0) ** 2

    def rss_dof(lam):
        denom = np.where(keep, s2 + lam, 1.0)  # dropped directions: no 0/0
        shrink = np.where(keep, lam / denom, 1.0)
        rss = outside + float(np.sum((shrink[:, None] * proj)[keep] ** 2))
        return rss, float(np.sum(np.where(keep, s2 / denom, 0.0)))

    if ridge == "auto":
        rss0, dof0 = rss_dof(0.0)
        sigma2 = rss0 / max(num_rows - dof0, 1.0)
        grid = s[0] ** 2 * np.logspace(-16, 0, 129)
        cp = [r + 2 * sigma2 * d for r, d in (rss_dof(lam) for lam in grid)]
        lam = float(grid[int(np.argmin(cp))])
    else:
        lam = float(ridge) * num_rows
        sigma2 = float("nan")
    filt = np.where(keep, s / np.where(keep, s**2 + lam, 1.0), 0.0)
    V = Wt.T @ (filt[:, None] * proj)
    return V, {"ridge": lam / num_rows, "dof": rss_dof(lam)[1], "noise_power": sigma2}


def _set_readout(model, V):
    if model.connectivity == "low_rank":
        return eqx.tree_at(lambda m: m.V, model, jnp.asarray(V, model.E.dtype))
    return eqx.tree_at(lambda m: m.W, model, jnp.asarray(model.E @ V.T, model.E.dtype))


@eqx.filter_jit
def _chunked_sum(fn, model, arrays, chunk):
    """Σ_n fn(model, row n) over the rows of `arrays`, chunk by chunk (padded rows
    carry a zero mask). `fn` is a module-level function, so compilations are reused."""
    mask = jnp.ones(arrays[0].shape[0], arrays[0].dtype)
    chunked = tuple(_chunks(a, chunk) for a in (*arrays, mask))

    def body(total, rows):
        *cols, w = rows
        vals = jax.vmap(lambda *c: fn(model, *c))(*cols)
        # `where`, not a product: a padded row (Δt = 0) may give inf or nan.
        vals = jnp.where(w.reshape(-1, *([1] * (vals.ndim - 1))) > 0, vals, 0.0)
        return total + jnp.sum(vals, axis=0), None

    shape = jax.eval_shape(lambda *c: fn(model, *c), *(a[0] for a in arrays))
    total, _ = jax.lax.scan(body, jnp.zeros(shape.shape, shape.dtype), chunked)
    return total


def _residual_outer(model, z, dz, dt):
    r = dz - model.latent_drift(0.0, z, None) * dt
    return jnp.outer(r, r) / dt


def _drift_jacobian(model, z):
    return jax.jacfwd(lambda x: model.latent_drift(0.0, x, None))(z)


@eqx.filter_jit
def _generator(model, g, z, chunk):
    """L f̂ = J f̂ + ½ Σ_c ∂²f̂[g_c, g_c] (the Itô generator applied to the network's
    drift, D = g gᵀ) at every row of `z`, by nested `jax.jvp`."""

    def f(x):
        return model.latent_drift(0.0, x, None)

    def one(zi):
        _, Jf = jax.jvp(f, (zi,), (f(zi),))

        def curvature(v):
            return jax.jvp(lambda x: jax.jvp(f, (x,), (v,))[1], (zi,), (v,))[1]

        return Jf + 0.5 * jnp.sum(jax.vmap(curvature, in_axes=1)(g), axis=0)

    out = jax.lax.map(jax.vmap(one), _chunks(z, chunk))
    return out.reshape(-1, z.shape[1])[: z.shape[0]]


def _stein_diffusion(B, D_naive, h):
    """D with ``Σ_Δ = ∫_0^h e^{Bs} D e^{Bᵀs} ds = D_naive h`` (see `fit_linear_sde`)."""
    k = B.shape[0]
    Sigma = D_naive * h
    F = scipy.linalg.expm(B * h)
    rhs = -(B @ Sigma + Sigma @ B.T)
    D = np.linalg.solve(np.eye(k * k) - np.kron(F, F), rhs.reshape(-1)).reshape(k, k)
    return (D + D.T) / 2


def _set_noise(model, D):
    """Constant latent noise with G Gᵀ = D (gated: A = 0; private: σ² by
    `private_noise_variances`)."""
    D = jnp.asarray(D, model.E.dtype)
    if model.noise == "private":
        s = private_noise_variances(model.E, D)
        return eqx.tree_at(lambda m: m.sigma, model, jnp.sqrt(s).astype(D.dtype))
    G0 = _root(D, model.noise_dim).astype(model.G0.dtype)
    model = eqx.tree_at(lambda m: m.G0, model, G0)
    if model.noise == "gated":
        model = eqx.tree_at(lambda m: m.A, model, jnp.zeros_like(model.A))
    return model


def solve_readout_data(
    model,
    z: Float[ArrayLike, "M K"],
    dz: Float[ArrayLike, "M K"],
    dt: Float[ArrayLike, " M"],
    *,
    rcond: float = 1e-7,
    ridge: float | str = "auto",
    correction: str = "none",
    noise: bool = True,
    chunk_size: int = 65536,
    return_info: bool = False,
):
    """The closed-form readout (and constant noise) from recorded increments.

    Drift: V solves the weighted least squares ``φ(E z_n + b)ᵀ V ≈ τ y_n + z_n`` with
    the noisy drift targets y_n = Δz_n/Δt_n, rows weighted by w_n = Δt_n/mean(Δt): y_n
    carries noise of covariance D/Δt_n, so the weights make it homoscedastic (the
    Gaussian maximum-likelihood fit; no change for even steps). The fit runs through
    a chunked QR of the weighted features and an SVD of the N×N factor (never the
    normal equations, PITFALLS 7), so M = 10⁶ samples cost O(chunk·N) memory.

    Ridge: each target row carries noise of variance τ² tr(D)/mean(Δt), about
    τ²·tr D/Δt: with Δt = 0.01 and D = 0.25 I (the OU example) that is 100× the
    signal power E‖τ f‖² per sample, so an unregularised fit on hundreds of features
    would learn the noise. ``ridge="auto"`` chooses λ by Mallows' C_p, with that
    noise variance estimated from the least-regularised fit's residuals (valid when
    M ≫ N): the λ that minimises the unbiased estimate of the out-of-sample error.
    A number fixes the ridge per sample, as in `lstsq`.

    Noise: G Gᵀ = mean of r_n r_nᵀ/Δt_n with r_n = Δz_n − f_θ(z_n) Δt_n, the residuals
    of the naive fitted drift (the one-step conditional mean, whatever correction).
    Gated noise gets this constant G0 and A = 0 (gradient training on the data loss
    can learn the state dependence); private noise the σ of
    `private_noise_variances`.

    Finite-Δt bias (PITFALLS 6): the naive drift is ``f + (Δt/2) L f + O(Δt²)``
    (L f = J f + ½ D:∇²f, the generator) and D ``D + (Δt/2)(J D + D Jᵀ) + O(Δt²)``:
    relative biases of order Δt·|Re λ(J)|. `correction`:

    - ``"none"``: the naive estimates; bias O(Δt).
    - ``"ito"``: one Itô–Taylor step: refit to ``y − (Δt/2) L f̂`` with L f̂ from the
      naive network f̂ (J f̂ by `jax.jvp`, D:∇²f̂ by second jvps along the columns of
      ĝ), and ``D̂ − (Δt/2) mean(J D̂ + D̂ Jᵀ)``. Any drift; bias O(Δt²), and the
      derivatives of a noisy fit add variance. Needs even steps.
    - ``"ou"``: exact for a linear drift: the targets are mapped by
      ``C = log(I + B̂Δt)/Δt · B̂⁻¹`` (B̂ the naive linear slope, `fit_linear_sde`)
      and D̂ through the OU Stein equation. Removes the bias completely for OU data;
      for a nonlinear drift it only rescales along the best linear fit and can make
      matters worse. Needs even steps.

    **Arguments:**

    - `model`: a `LatentRNN`; E, b and B are kept.
    - `z`, `dz`, `dt`: pooled increments (`ddm_jax.data.increments`), float64 best.
    - `rcond`: relative singular-value cutoff.
    - `ridge`: ``"auto"`` or a per-sample ridge ≥ 0.
    - `correction`: ``"none"``, ``"ito"`` or ``"ou"``.
    - `noise`: also set the noise parameters.
    - `chunk_size`: rows per QR chunk (capped so a block holds ≤ 2²⁵ numbers): large
      blocks keep LAPACK efficient.
    - `return_info`: also return a dict with the chosen ``ridge``, ``dof`` (effective
      parameters), ``noise_power`` (σ² of the C_p rule), ``naive_diffusion`` and
      ``diffusion``.

    **Returns:** the new model, or ``(model, info)``.

    **Raises:** `ValueError` for bad shapes, an unknown correction or a ridge < 0;
    uneven steps with ``"ito"`` or ``"ou"``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(
            f"`train.correction` must be one of {CORRECTIONS}; got {correction!r}"
        )
    if ridge != "auto" and not (isinstance(ridge, int | float) and ridge >= 0):
        raise ValueError(f"`train.ridge` must be 'auto' or ≥ 0; got {ridge!r}")
    z, dz, dt = _host_increments(z, dz, dt)
    if z.shape[1] != model.latent_dim:
        raise ValueError(
            f"increments have K = {z.shape[1]}; the model has {model.latent_dim}"
        )
    h = float(np.mean(dt))
    if correction != "none":
        h = _even_step(dt, correction)
    dtype = model.E.dtype
    y = dz / dt[:, None]
    sqrt_w = np.sqrt(dt / np.mean(dt))
    chunk = max(1, min(int(chunk_size), z.shape[0], 2**25 // model.num_neurons))
    n = model.num_neurons
    zj, wj = jnp.asarray(z, dtype), jnp.asarray(sqrt_w, dtype)

    def readout(target):
        Y = jnp.asarray(model.tau * target + z, dtype)
        R = _tsqr(model, zj, Y, wj, chunk)
        return _ridge_readout(R, n, z.shape[0], rcond, ridge)

    V, info = readout(y)
    model = _set_readout(model, V)

    # D from the naive fit's residuals: that fit estimates E[Δz | z]/Δt, the mean
    # about which the one-step covariance is taken, whatever correction follows.
    arrays = (zj, jnp.asarray(dz, dtype), jnp.asarray(dt, dtype))
    D = np.asarray(_chunked_sum(_residual_outer, model, arrays, chunk), np.float64)
    D = (D + D.T) / (2 * z.shape[0])
    info["naive_diffusion"] = D

    if correction == "ou":
        linear = fit_linear_sde(z, dz, dt, exact_ou=True)
        C = linear["drift_matrix"] @ np.linalg.inv(linear["naive_drift_matrix"])
        V, more = readout(y @ C.T)
        D = _stein_diffusion(linear["drift_matrix"], D, h)
    elif correction == "ito":
        g = jnp.asarray(np.linalg.cholesky(D + 1e-12 * np.trace(D) * np.eye(len(D))))
        Lf = np.asarray(_generator(model, g.astype(dtype), zj, chunk), np.float64)
        J = _chunked_sum(_drift_jacobian, model, (zj,), chunk)
        J = np.asarray(J, np.float64) / z.shape[0]
        V, more = readout(y - 0.5 * dt[:, None] * Lf)
        D = D - 0.5 * h * (J @ D + D @ J.T)
    if correction != "none":
        info.update(more)
        model = _set_readout(model, V)
    info["diffusion"] = D
    if noise:
        model = _set_noise(model, D)
    return (model, info) if return_info else model
