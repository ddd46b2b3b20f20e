"""Taking an embedded network apart (DESIGN §1 "Decompositions").

Connectivity: ``W = W_S + W_A`` with ``W_S = (W + Wᵀ)/2`` and ``W_A = (W − Wᵀ)/2``, and
the latent drift ``f_θ = −z/τ + f_S + f_A`` with ``f_S = E⁺ W_S φ(x)/τ`` and
``f_A = E⁺ W_A φ(x)/τ`` at the manifold point ``x = E z + b + B_u u`` (`connectivity`,
`drift_parts`). For low rank ``W = E Vᵀ`` nothing N×N is formed: with ``U = [E V]``,
``W_S = U M_S Uᵀ`` and ``W_A = U M_A Uᵀ`` for the 2K×2K blocks
``M_S = ½[[0, I], [I, 0]]`` and ``M_A = ½[[0, I], [−I, 0]]``, so norms and nonzero
eigenvalues come from 2K×2K products with the Gram matrix ``UᵀU``.

Irreversibility, with ``D_phys = D/2``:

- `ou_theory`: for ``dz = −A z dt + g dB`` the stationary covariance S
  (``A S + S Aᵀ = 2 D_phys``), the antisymmetric ``A S − D_phys`` and
  ``Φ = tr(D_phys⁻¹ A S Aᵀ) − tr A``; `linearise` applies it to any drift at a stable
  fixed point (A = −∂f/∂z there).
- `stratonovich_entropy_production`: the mean rate of ``f(z_mid)ᵀ D_phys⁻¹ Δz`` along
  stationary paths (additive noise), per path, with its standard error.
- `lagged_asymmetry`: a model-free measure from paths alone,
  ``‖C(ℓ) − C(ℓ)ᵀ‖_F / ‖C(ℓ) + C(ℓ)ᵀ‖_F`` with ``C(ℓ) = E[(z_t − μ)(z_{t+ℓ} − μ)ᵀ]``;
  zero for a reversible process (C(ℓ) = C(ℓ)ᵀ), per path with its standard error.
- `split_by_irreversibility`: separate readouts fitted to ``f_rev`` and ``f_irr`` (from
  `fokker_planck.stationary_fokker_planck` or from `ou_theory`), giving
  ``W = W_rev + W_irr``, compared with ``W_S`` and ``W_A``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .rnn import LatentRNN
from .solve import features, lstsq

# --- connectivity -----------------------------------------------------------------


def _factors(model: LatentRNN) -> tuple[np.ndarray, np.ndarray]:
    E = np.asarray(model.E, np.float64)
    return E, np.asarray(model.V, np.float64)


def _blocks(k: int) -> tuple[np.ndarray, np.ndarray]:
    eye, zero = np.eye(k), np.zeros((k, k))
    M_S = 0.5 * np.block([[zero, eye], [eye, zero]])
    M_A = 0.5 * np.block([[zero, eye], [-eye, zero]])
    return M_S, M_A


def _low_rank_parts(model: LatentRNN) -> dict:
    """Norms and nonzero eigenvalues of W, W_S, W_A from K×K and 2K×2K algebra."""
    E, V = _factors(model)
    k = E.shape[1]
    U = np.concatenate([E, V], axis=1)
    gram = U.T @ U
    M_S, M_A = _blocks(k)
    # ‖U M Uᵀ‖²_F = tr(M G Mᵀ G) with G = UᵀU; the nonzero eigenvalues of U M Uᵀ are
    # those of M G (same nonzero spectrum as Uᵀ U M).
    norm2 = {
        name: float(np.trace(M @ gram @ M.T @ gram))
        for name, M in (("S", M_S), ("A", M_A))
    }
    eig_W = np.linalg.eigvals(V.T @ E)  # W = E Vᵀ shares its nonzero spectrum with VᵀE
    eig_S = np.sort(np.linalg.eigvals(M_S @ gram).real)
    eig_A = np.linalg.eigvals(M_A @ gram)
    eig_A = np.sort(eig_A.imag)
    return {"norm2": norm2, "eig_W": eig_W, "eig_S": eig_S, "eig_A": eig_A}


def _dense_parts(model: LatentRNN) -> dict:
    W = np.asarray(model.W, np.float64)
    W_S, W_A = (W + W.T) / 2, (W - W.T) / 2
    return {
        "norm2": {"S": float(np.sum(W_S**2)), "A": float(np.sum(W_A**2))},
        "eig_W": np.linalg.eigvals(W),
        "eig_S": np.sort(np.linalg.eigvalsh(W_S)),
        "eig_A": np.sort(np.linalg.eigvals(W_A).imag),
    }


def connectivity(model: LatentRNN) -> dict:
    """The symmetric/antisymmetric split of W.

    **Arguments:**

    - `model`: a `LatentRNN`, low-rank (factor form, never N×N) or dense.

    **Returns:** a dict with the Frobenius norms ``norm_W``, ``norm_S``, ``norm_A``
    (``‖W‖² = ‖W_S‖² + ‖W_A‖²``: the parts are orthogonal), the ``asymmetry`` index
    ``‖W_A‖²/‖W‖²`` (0 symmetric, ½ for a random Gaussian matrix, 1 antisymmetric),
    and the eigenvalues: ``eigenvalues_W`` (complex, as ``[re, im]`` pairs),
    ``eigenvalues_S`` (real) and ``eigenvalues_A`` (the imaginary parts; W_A's
    spectrum is purely imaginary). For low rank only the nonzero eigenvalues (K for
    W, 2K for W_S and W_A) are listed.
    """
    if model.connectivity == "low_rank":
        parts = _low_rank_parts(model)
    else:
        parts = _dense_parts(model)
    s2, a2 = parts["norm2"]["S"], parts["norm2"]["A"]
    total = s2 + a2
    return {
        "connectivity": model.connectivity,
        "norm_W": math.sqrt(total),
        "norm_S": math.sqrt(max(s2, 0.0)),
        "norm_A": math.sqrt(max(a2, 0.0)),
        "asymmetry": a2 / total if total > 0 else 0.0,
        "eigenvalues_W": [[float(e.real), float(e.imag)] for e in parts["eig_W"]],
        "eigenvalues_S": [float(e) for e in parts["eig_S"]],
        "eigenvalues_A": [float(e) for e in parts["eig_A"]],
    }


def _split_apply(model: LatentRNN, r: Float[Array, " N"]):
    """(E⁺ W_S r, E⁺ W_A r) without forming W."""
    E_pinv = model.E_pinv
    if model.connectivity == "low_rank":
        Wr = model.E @ (model.V.T @ r)
        WTr = model.V @ (model.E.T @ r)
    else:
        Wr, WTr = model.W @ r, model.W.T @ r
    return E_pinv @ (Wr + WTr) / 2, E_pinv @ (Wr - WTr) / 2


def drift_parts(
    model: LatentRNN, z: Float[Array, " K"], args=None
) -> dict[str, Float[Array, " K"]]:
    """The latent drift split ``f_θ = leak + f_S + f_A`` at one point.

    **Arguments:**

    - `model`: a `LatentRNN`.
    - `z`: a latent point ``(K,)``; batch with `jax.vmap`.
    - `args`: the input u, or None.

    **Returns:** ``{"leak": −z/τ, "symmetric": f_S, "antisymmetric": f_A}``; their sum
    is `model.latent_drift` to rounding (the inputs leave the latent space through
    ``E⁺ B_u = 0``).
    """
    r = model.phi(model.embed(z, args))
    f_S, f_A = _split_apply(model, r)
    tau = model.tau
    return {"leak": -z / tau, "symmetric": f_S / tau, "antisymmetric": f_A / tau}


def drift_part_shares(model: LatentRNN, points: Float[Array, "M K"], args=None) -> dict:
    """Mean squared size of each drift part over `points`, relative to ``E‖f_θ‖²``."""
    parts = jax.vmap(lambda z: drift_parts(model, z, args))(points)
    f = jax.vmap(lambda z: model.latent_drift(0.0, z, args))(points)
    total = float(jnp.mean(jnp.sum(f**2, -1)))
    return {
        name: float(jnp.mean(jnp.sum(value**2, -1))) / total
        for name, value in parts.items()
    }


# --- linear theory ----------------------------------------------------------------


def ou_theory(A: ArrayLike, D: ArrayLike) -> dict:
    """Stationary law and entropy production of ``dz = −A z dt + g dB``, ``D = g gᵀ``.

    **Arguments:**

    - `A`: the K×K drift matrix, all eigenvalues with positive real part.
    - `D`: the K×K diffusion matrix g gᵀ (positive definite).

    **Returns:** ``covariance`` S solving ``A S + S Aᵀ = 2 D_phys = D``,
    ``circulation`` ``A S − D_phys`` (antisymmetric; zero iff detailed balance) and
    ``entropy_production`` ``Φ = tr(D_phys⁻¹ A S Aᵀ) − tr A``, all float64.

    **Raises:** `ValueError` if A is not stable or D not positive definite.
    """
    from scipy.linalg import solve_continuous_lyapunov

    A = np.atleast_2d(np.asarray(A, np.float64))
    D = np.atleast_2d(np.asarray(D, np.float64))
    eigenvalues = np.linalg.eigvals(A)
    if not np.all(eigenvalues.real > 0):
        raise ValueError(
            "the drift matrix A must have eigenvalues with positive real part "
            f"(dz = −A z dt is stable); got {np.round(eigenvalues, 6).tolist()}"
        )
    if np.min(np.linalg.eigvalsh((D + D.T) / 2)) <= 0:
        raise ValueError("the diffusion matrix D must be positive definite")
    D_phys = D / 2
    S = solve_continuous_lyapunov(A, D)  # A S + S Aᵀ = D
    S = (S + S.T) / 2
    phi = np.trace(np.linalg.solve(D_phys, A @ S @ A.T)) - np.trace(A)
    return {
        "covariance": S,
        "circulation": A @ S - D_phys,
        "entropy_production": float(phi),
    }


def linearise(drift, diffusion, z0: ArrayLike, *, args=None) -> dict:
    """`ou_theory` of a drift linearised at the fixed point nearest `z0`.

    **Arguments:**

    - `drift`: a vector field ``(t, z, args) -> (K,)`` (a target's `drift` or a
      network's `latent_drift`).
    - `diffusion`: ``(t, z, args) -> (K, K)``, the diffusion matrix D(z) = g gᵀ.
    - `z0`: the start of Newton's iteration.

    **Returns:** `ou_theory`'s dict plus ``fixed_point``, ``jacobian`` (∂f/∂z there)
    and ``residual`` (‖f‖ at the fixed point).

    **Raises:** `ValueError` if Newton's iteration does not converge or the fixed point
    is not stable.
    """
    import optimistix as optx

    z0 = jnp.asarray(z0)
    solver = optx.Newton(rtol=1e-6, atol=1e-6)
    sol = optx.root_find(
        lambda z, a: drift(0.0, z, a), solver, z0, args, throw=False, max_steps=256
    )
    z_star = sol.value
    residual = float(jnp.linalg.norm(drift(0.0, z_star, args)))
    scale = float(jnp.linalg.norm(drift(0.0, z0, args))) + 1e-12
    if not np.isfinite(residual) or residual > 1e-3 * max(scale, 1.0):
        raise ValueError(
            f"no fixed point found from z0 = {np.asarray(z0).tolist()} "
            f"(‖f‖ = {residual:.3g} after Newton's iteration)"
        )
    J = np.asarray(jax.jacfwd(lambda z: drift(0.0, z, args))(z_star), np.float64)
    D = np.asarray(diffusion(0.0, z_star, args), np.float64)
    out = ou_theory(-J, D)
    out.update(fixed_point=np.asarray(z_star), jacobian=J, residual=residual)
    return out


# --- path estimators --------------------------------------------------------------


def _mean_and_error(values: np.ndarray) -> dict:
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    error = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"value": float(values.mean()), "stderr": error, "per_path": values.tolist()}


def stratonovich_entropy_production(
    drift, D: ArrayLike, zs: Float[ArrayLike, "B T K"], dt: float, *, args=None
) -> dict:
    """Entropy production rate from stationary paths with additive noise.

    ``Φ ≈ Σ_n f(z_mid)ᵀ D_phys⁻¹ (z_{n+1} − z_n) / (T Δt)`` with the midpoint
    ``z_mid = (z_n + z_{n+1})/2`` (the Stratonovich product; an Itô sum would add the
    mean of ``tr ∂f`` instead), one value per path.

    **Arguments:**

    - `drift`: ``(t, z, args) -> (K,)``.
    - `D`: the constant diffusion matrix g gᵀ (K×K).
    - `zs`: paths ``(B, T, K)`` sampled every `dt` after a transient.
    - `dt`: the saving step. The estimator's bias is O(dt) (a few % at dt = 0.01 for
      unit rates); its spread shrinks as 1/√(B T dt).

    **Returns:** ``{"value", "stderr", "per_path"}``, the mean over paths and its
    standard error over the B independent paths.
    """
    zs = jnp.asarray(zs)
    D_phys_inv = jnp.linalg.inv(jnp.asarray(D, zs.dtype) / 2)
    mid = (zs[:, 1:] + zs[:, :-1]) / 2
    step = zs[:, 1:] - zs[:, :-1]
    f_mid = jax.vmap(jax.vmap(lambda z: drift(0.0, z, args)))(mid)
    work = jnp.einsum("btk,kl,btl->b", f_mid, D_phys_inv, step)
    rates = np.asarray(work, np.float64) / (step.shape[1] * dt)
    return _mean_and_error(rates)


def lagged_asymmetry(zs: Float[ArrayLike, "B T K"], lag: int) -> dict:
    """Model-free irreversibility from paths: the asymmetry of lagged covariances.

    Per path, ``C(ℓ) = mean_t (z_t − μ)(z_{t+ℓ} − μ)ᵀ`` and the index
    ``‖C − Cᵀ‖_F / ‖C + Cᵀ‖_F``; zero (up to sampling noise) for a time-reversible
    process, since then C(ℓ) = C(−ℓ) = C(ℓ)ᵀ. For the OU process,
    ``C(ℓ) = S e^{−Aᵀ ℓ Δt}``.

    **Arguments:**

    - `zs`: stationary paths ``(B, T, K)``, K ≥ 2 (a scalar process has no asymmetry
      to measure).
    - `lag`: ℓ in saving steps, 1 ≤ ℓ < T.

    **Returns:** ``{"value", "stderr", "per_path", "covariance"}`` with the index's
    mean over paths, its standard error and the lagged covariance pooled over paths.
    """
    zs = np.asarray(zs, np.float64)
    if zs.ndim != 3 or zs.shape[-1] < 2:
        raise ValueError(f"paths must have shape (B, T, K) with K ≥ 2; got {zs.shape}")
    if not 1 <= lag < zs.shape[1]:
        raise ValueError(f"lag must be in [1, {zs.shape[1] - 1}]; got {lag}")
    centred = zs - zs.mean(axis=1, keepdims=True)
    C = np.einsum("btk,btl->bkl", centred[:, :-lag], centred[:, lag:]) / (
        zs.shape[1] - lag
    )
    Ct = np.swapaxes(C, 1, 2)
    index = np.linalg.norm(C - Ct, axis=(1, 2)) / np.linalg.norm(C + Ct, axis=(1, 2))
    out = _mean_and_error(index)
    out["covariance"] = C.mean(0).tolist()
    return out


# --- splitting W by irreversibility -----------------------------------------------


def _inner(E, V1, V2, transpose: bool) -> float:
    """⟨E V1ᵀ, E V2ᵀ⟩_F, or ⟨E V1ᵀ, (E V2ᵀ)ᵀ⟩_F, from K×K products."""
    if transpose:
        return float(np.trace((E.T @ V1) @ (E.T @ V2)))
    return float(np.trace((E.T @ E) @ (V2.T @ V1)))


def split_by_irreversibility(
    model: LatentRNN,
    points: Float[Array, "M K"],
    f_rev: Float[ArrayLike, "M K"],
    f_irr: Float[ArrayLike, "M K"],
    *,
    rcond: float = 1e-4,
    args=None,
) -> dict:
    """Split the readout weights by the flow they carry: ``W = W_rev + W_irr``.

    The readout equation ``Vᵀ φ(E z + b) = τ f + z`` is linear in its target. ``V_irr``
    is the least-squares readout of ``τ f_irr`` on the model's features at `points`,
    ``V_rev = V − V_irr`` carries the rest (the leak's ``z`` included), and
    ``W_irr = E V_irrᵀ``, ``W_rev = E V_revᵀ`` add up to W exactly. For a dense model
    the split is of ``E E⁺ W``, the part of W the latent readout sees.

    The cutoff is larger than the readout's own 1e-7: at 1e-7 the fitted weights
    are dominated by large, mutually cancelling components along nearly degenerate
    features (norms ~250 times W's for the OU example), which carry no flow and would
    make the comparison below meaningless; at 1e-4 the weights are the minimum-norm
    ones that still fit f_irr to ~1e-3.

    **Arguments:**

    - `model`: the network.
    - `points`: latent points ``(M, K)`` where the parts are known.
    - `f_rev`, `f_irr`: the parts of the drift there (e.g. from
      `fokker_planck.stationary_fokker_planck` on the network's own latent field).
    - `rcond`: the cutoff of the f_irr fit (PITFALLS 7).

    **Returns:** ``fit_rel_error`` of each readout against its target on `points`
    (squared relative: ``rev`` includes the model's own fit error), the norms of W_rev
    and W_irr, the antisymmetric share ``‖(W_x)_A‖²/‖W_x‖²`` of each, and the cosines
    ``cos(W_rev, W_S)``, ``cos(W_irr, W_A)``, ``cos(W_irr, W_S)`` against the model's
    own W_S and W_A — an empirical comparison: neither split implies the other.
    """
    points = jnp.asarray(points)
    tau = model.tau
    Phi = np.asarray(features(model, points, args), np.float64)
    E = np.asarray(model.E, np.float64)
    if model.connectivity == "low_rank":
        V_model = np.asarray(model.V, np.float64)
    else:
        V_model = (np.linalg.pinv(E) @ np.asarray(model.W, np.float64)).T
    targets = {
        "rev": tau * np.asarray(f_rev, np.float64) + np.asarray(points, np.float64),
        "irr": tau * np.asarray(f_irr, np.float64),
    }
    V_irr = np.asarray(
        lstsq(jnp.asarray(Phi), jnp.asarray(targets["irr"]), rcond=rcond), np.float64
    )
    V = {"rev": V_model - V_irr, "irr": V_irr}
    fit_error = {
        name: float(np.sum((Phi @ V[name] - y) ** 2) / max(np.sum(y**2), 1e-300))
        for name, y in targets.items()
    }

    def norm2(v):
        return _inner(E, v, v, False)

    def sym2(v1, v2, sign):
        # ⟨(W1 ± W1ᵀ)/2, (W2 ± W2ᵀ)/2⟩ = (⟨W1, W2⟩ ± ⟨W1, W2ᵀ⟩)/2
        return (_inner(E, v1, v2, False) + sign * _inner(E, v1, v2, True)) / 2

    def cosine(v1, v2, sign):
        """cos between W1 = E v1ᵀ and the (sign=+1) symmetric or (−1) antisymmetric
        part of W2 = E v2ᵀ."""
        part = sym2(v2, v2, sign)
        cross = sym2(v1, v2, sign)
        denominator = math.sqrt(max(norm2(v1), 0.0) * max(part, 0.0))
        return cross / denominator if denominator > 0 else 0.0

    out = {"fit_rel_error": fit_error}
    for name, v in V.items():
        total = norm2(v)
        out[f"norm_W_{name}"] = math.sqrt(max(total, 0.0))
        out[f"antisymmetric_share_W_{name}"] = sym2(v, v, -1) / total if total else 0.0
    out["cos_W_rev_W_S"] = cosine(V["rev"], V_model, +1)
    out["cos_W_irr_W_A"] = cosine(V["irr"], V_model, -1)
    out["cos_W_irr_W_S"] = cosine(V["irr"], V_model, +1)
    return out
