"""Stationary Fokker–Planck solutions on a grid and the irreversibility decomposition.

DESIGN §1 "Decompositions", for a latent Itô SDE ``dz = f(z) dt + g(z) dB`` with
``D = g gᵀ`` and ``D_phys = D/2`` diagonal, ``D_phys = diag(d_1(z), …, d_K(z))``:

| code | DESIGN |
|---|---|
| `density` | the stationary density p, ``∫ p dz = 1`` over the box |
| `current` | the probability current ``J = f p − ∇·(D_phys p)`` |
| `f_irr` | the irreversible drift ``J/p`` |
| `f_rev` | the reversible drift ``∇·(D_phys p)/p = f − f_irr`` |
| `entropy_production` | ``Φ = E_p[f_irrᵀ D_phys⁻¹ f_irr] ≥ 0`` |
| `D_phys` | the diagonal ``(d_1, …, d_K)`` of ``D_phys`` at the cell centres |

Discretisation: finite volumes on a regular grid of cells with the Scharfetter–Gummel
(exponentially fitted) flux on every face. Along axis k, with ``q = d_k p`` the current
is ``J_k = v q − ∂_k q``, ``v = f_k/d_k``; holding v at its value at the face between
cells i and i+1 (spacing h) and integrating exactly across the face gives

    J_face = (B(−v h) q_i − B(v h) q_{i+1}) / h,        B(x) = x/(eˣ − 1).

Since B > 0 this is the flux of a Markov chain on the cells with rates
``i → i+1 = d_k(z_i) B(−v h)/h²`` and ``i+1 → i = d_k(z_{i+1}) B(v h)/h²``; the box
edges reflect (no flux). The chain's stationary ratio ``q_{i+1}/q_i = exp(v h)`` should
be ``exp(∫ v)`` across the face, so v h is Simpson's rule on the two centres and the
face, ``v h = h (v_i + 4 v_face + v_{i+1})/6``, rather than the face value alone: a
1-D process (and a product of independent ones) is then exact to O(h⁵) per face, and
whenever v is a gradient (a gradient system with constant isotropic noise, say) the
chain is reversible to the same order. On a non-separable two-well gradient system
at 64² cells that took
Φ from 1e-5 to 5e-10 of the slowest relaxation rate; on OU, where v is linear, the two
rules agree. The stationary law π of the chain solves ``Qᵀ π = 0`` for its generator
Q, and ``p = π/(Σ π · cell volume)``; the scheme is second order in h and upwinds
itself where the drift dominates the noise.

Φ is the chain's own entropy production (Schnakenberg),
``Σ_faces (a − b) log(a/b)`` with ``a = π_i rate(i → i+1)`` and ``b`` the reverse
flux: each term is ≥ 0 and all vanish exactly when the chain satisfies detailed
balance. As h → 0 it tends to ``∫ Σ_k J_k²/(d_k p) dz``. On the 2-D nonequilibrium OU
process (Φ = 2, 6 standard deviations each side) it converged at second order with a
third of the error of the quadratic face estimate ``Σ J_face²/(d p̄)``: relative
errors 2.9e-3 and 8.6e-3 at 64² cells, 1.3e-3 and 3.9e-3 at 96².
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

# Off-diagonal entries of D(z) up to this fraction of sqrt(D_kk D_ll) are round-off.
_OFF_DIAGONAL_RTOL = 1e-6
# B(x) ≈ x e^{-x} underflows near x = 745; beyond this the chain loses its reverse
# rates, so the grid cannot resolve the drift against the noise.
_MAX_PECLET = 500.0


@dataclasses.dataclass(frozen=True)
class StationarySolution:
    """A stationary Fokker–Planck solution on a regular grid (NumPy, float64).

    The grid has cells ``n_1 × … × n_K`` (written `*grid` below); fields are given at
    the cell centres.

    **Fields:**

    - `axes`: the cell centres along each axis.
    - `lower`, `upper`: the box corners, shape ``(K,)``.
    - `spacing`: the cell widths h_k, shape ``(K,)``.
    - `cell_volume`: ``Π_k h_k``.
    - `density`: p in each cell (a finite-volume cell average), shape `*grid`, with
      ``Σ p · cell_volume = 1``.
    - `drift`: f at the centres, `*grid` + ``(K,)``.
    - `D_phys`: the diagonal of D_phys = D/2 at the centres, `*grid` + ``(K,)``.
    - `current`: J at the centres (the mean of the two faces of the cell along each
      axis), `*grid` + ``(K,)``.
    - `face_current`: J_k on the interior faces normal to axis k, one array per axis,
      with ``n_k − 1`` entries along axis k.
    - `f_irr`: J/p, `*grid` + ``(K,)``; 0 where p underflows to 0.
    - `f_rev`: f − f_irr, `*grid` + ``(K,)``.
    - `entropy_production`: Φ (see the module docstring).
    - `peclet`: the typical cell Péclet number ``E_p[max_k |f_k| h_k/d_k]``. Where
      it is above 1 the upwinding of the scheme adds a numerical diffusion of about
      ``|f_k| h_k/2`` per axis, which smears the density across a fast flow (a
      rotation much faster than the noise): refine until it is below 1.
    - `generator`: the chain's generator Q (`scipy.sparse.csr_matrix`, cells in C
      order), ``Q[i, j]`` the rate from cell i to cell j.
    """

    axes: tuple[np.ndarray, ...]
    lower: np.ndarray
    upper: np.ndarray
    spacing: np.ndarray
    cell_volume: float
    density: np.ndarray
    drift: np.ndarray
    D_phys: np.ndarray
    current: np.ndarray
    face_current: tuple[np.ndarray, ...]
    f_irr: np.ndarray
    f_rev: np.ndarray
    entropy_production: float
    peclet: float
    generator: Any

    @property
    def latent_dim(self) -> int:
        """K."""
        return len(self.axes)

    @property
    def num_cells(self) -> tuple[int, ...]:
        """``(n_1, …, n_K)``."""
        return self.density.shape


def _bernoulli(x: np.ndarray) -> np.ndarray:
    """``B(x) = x/(eˣ − 1)``, accurate near 0 and without overflow for large |x|."""
    out = np.empty_like(x)
    small = np.abs(x) < 1e-3
    pos = x >= 1e-3
    neg = x <= -1e-3
    # The Taylor series; its next term, x⁴/720, is at most 1.4e-15 here.
    xs = x[small]
    out[small] = 1 - xs / 2 + xs**2 / 12
    # x e^{-x}/(1 − e^{-x}) for x > 0, so that e^{x} never overflows.
    xp = x[pos]
    out[pos] = xp * np.exp(-xp) / -np.expm1(-xp)
    out[neg] = x[neg] / np.expm1(x[neg])
    return out


def _grid(lower, upper, num_cells) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    if lo.ndim != 1 or hi.shape != lo.shape:
        raise ValueError(
            "`lower` and `upper` must be vectors of the same length K; got shapes "
            f"{np.shape(lower)} and {np.shape(upper)}"
        )
    k = lo.shape[0]
    if k not in (2, 3):
        raise NotImplementedError(
            "stationary_fokker_planck supports latent dimension K = 2 or 3; "
            f"got K = {k}"
        )
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"`lower` and `upper` must be finite; got {lo}, {hi}")
    for axis in range(k):
        if not hi[axis] > lo[axis]:
            raise ValueError(
                f"`upper` must exceed `lower` on every axis; axis {axis} has "
                f"lower = {lo[axis]}, upper = {hi[axis]}"
            )
    counts = (num_cells,) * k if np.ndim(num_cells) == 0 else tuple(num_cells)
    if len(counts) != k:
        raise ValueError(
            f"`num_cells` must be an integer or {k} integers; got {num_cells!r}"
        )
    for count in counts:
        integer = isinstance(count, int | np.integer) and not isinstance(count, bool)
        if not integer or count < 3:
            raise ValueError(
                f"`num_cells` must be integers ≥ 3 on every axis; got {num_cells!r}"
            )
    return lo, hi, tuple(int(c) for c in counts)


def _evaluate(drift, diffusion, points: np.ndarray, args) -> tuple:
    """f and D at `points` (M, K) by `jax.vmap` under jit, returned as float64."""
    k = points.shape[1]
    z = jax.ShapeDtypeStruct((k,), jnp.asarray(points).dtype)
    f_shape = eqx.filter_eval_shape(drift, 0.0, z, args).shape
    D_shape = eqx.filter_eval_shape(diffusion, 0.0, z, args).shape
    if f_shape != (k,):
        raise ValueError(f"`drift` must return shape ({k},); got {f_shape}")
    if D_shape != (k, k):
        raise ValueError(f"`diffusion` must return shape ({k}, {k}); got {D_shape}")

    @eqx.filter_jit
    def fields(zs, a):
        return jax.vmap(lambda z_: (drift(0.0, z_, a), diffusion(0.0, z_, a)))(zs)

    f, D = fields(jnp.asarray(points), args)
    return np.asarray(f, np.float64), np.asarray(D, np.float64)


def _diagonal(f: np.ndarray, D: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Checks f and D at `points` and returns the diagonal of D_phys, shape (M, K)."""
    for name, value in (("drift", f), ("diffusion", D)):
        bad = ~np.all(np.isfinite(value.reshape(len(points), -1)), axis=1)
        if np.any(bad):
            z = points[np.argmax(bad)]
            raise ValueError(
                f"`{name}` is not finite at z = {z.tolist()} ({int(bad.sum())} of "
                f"{len(points)} grid points); shrink the box or fix the field"
            )
    d = np.diagonal(D, axis1=1, axis2=2)
    if np.any(d <= 0):
        m, axis = np.unravel_index(np.argmax(d <= 0), d.shape)
        raise ValueError(
            f"the diffusion matrix must have a positive diagonal on the grid; "
            f"D[{axis}, {axis}] = {d[m, axis]} at z = {points[m].tolist()}"
        )
    scale = np.sqrt(d[:, :, None] * d[:, None, :])
    off = np.abs(D - D * np.eye(D.shape[1])) / scale
    if np.any(off > _OFF_DIAGONAL_RTOL):
        m, row, col = np.unravel_index(np.argmax(off), off.shape)
        raise NotImplementedError(
            "stationary_fokker_planck handles diagonal diffusion only; "
            f"D[{row}, {col}] = {D[m, row, col]:.3g} at z = {points[m].tolist()} "
            f"({off[m, row, col]:.2g} of sqrt(D[{row}, {row}] D[{col}, {col}]))"
        )
    return d / 2


def stationary_fokker_planck(
    drift: Callable,
    diffusion: Callable,
    *,
    lower: Sequence[float] | Float[ArrayLike, " K"],
    upper: Sequence[float] | Float[ArrayLike, " K"],
    num_cells: int | Sequence[int],
    args: Any = None,
) -> StationarySolution:
    """The stationary density, current and entropy production of ``dz = f dt + g dB``.

    Finite volumes with Scharfetter–Gummel fluxes on a regular grid of the box
    ``[lower, upper]`` with reflecting edges (see the module docstring); f and D are
    evaluated at the cell centres and face centres with `jax.vmap` and the problem is
    solved in float64 with a sparse direct solver (scipy). The box should hold almost
    all of the stationary mass: the edges reflect, which for an irreversible process
    also bends the current near them. Cost (one core): about 0.1 s for 100² cells,
    0.5 s for 300², 1 s for 24³ and 7 s for 32³; the sparse LU fill grows fast in
    3-D.

    **Arguments:**

    - `drift`: f as ``(t, z, args) -> (K,)``, jax-traceable (a system's `drift`, a
      model's `latent_drift`); evaluated at t = 0.
    - `diffusion`: D = g gᵀ (not D_phys) as ``(t, z, args) -> (K, K)``, diagonal.
    - `lower`, `upper`: the box corners, K = 2 or 3 entries each.
    - `num_cells`: cells per axis, an integer or one per axis, each ≥ 3.
    - `args`: passed to `drift` and `diffusion`.

    **Returns:** a `StationarySolution`.

    **Raises:**

    - `NotImplementedError` for K other than 2 or 3, or for a diffusion matrix with
      off-diagonal entries above 1e-6 of its diagonal scale.
    - `ValueError` for a bad box or cell count, wrong output shapes, non-finite f or
      D on the grid, a non-positive diagonal of D, or a drift so strong against the
      noise that the grid cannot resolve it (cell Péclet number above 500).
    """
    import scipy.sparse as sparse
    import scipy.sparse.linalg as sparse_linalg

    lo, hi, shape = _grid(lower, upper, num_cells)
    k = len(shape)
    h = (hi - lo) / np.asarray(shape)
    volume = float(np.prod(h))
    axes = tuple(lo[a] + (np.arange(shape[a]) + 0.5) * h[a] for a in range(k))
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    # All points at once: the centres, then the interior faces normal to each axis.
    face_sets = []
    for a in range(k):
        face = centres[(slice(None),) * a + (slice(0, -1),)].copy()
        face[..., a] += h[a] / 2
        face_sets.append(face)
    points = np.concatenate([c.reshape(-1, k) for c in [centres, *face_sets]])
    f_all, D_all = _evaluate(drift, diffusion, points, args)
    d_all = _diagonal(f_all, D_all, points)

    num = int(np.prod(shape))
    f = f_all[:num].reshape(*shape, k)
    d = d_all[:num].reshape(*shape, k)
    index = np.arange(num).reshape(shape)
    rows, cols, rates, faces = [], [], [], []
    start, max_peclet = num, 0.0
    for a, face in enumerate(face_sets):
        size = face.shape[:-1]
        stop = start + int(np.prod(size))
        f_face = f_all[start:stop, a].reshape(size)
        d_face = d_all[start:stop, a].reshape(size)
        start = stop
        rest = (slice(None),) * (k - a - 1)
        left = (slice(None),) * a + (slice(0, -1),) + rest
        right = (slice(None),) * a + (slice(1, None),) + rest
        # SG holds v constant across the face; its stationary ratio q_{i+1}/q_i is
        # exp(v h), against exp(∫ v) for the exact 1-D law. Simpson's rule on the
        # two centres and the face gives that integral to O(h⁵).
        v = f[..., a] / d[..., a]
        vh = (v[left] + 4 * f_face / d_face + v[right]) / 6 * h[a]
        max_peclet = max(max_peclet, float(np.max(np.abs(vh))))
        forward = d[left][..., a] * _bernoulli(-vh) / h[a] ** 2
        backward = d[right][..., a] * _bernoulli(vh) / h[a] ** 2
        rows += [index[left].ravel(), index[right].ravel()]
        cols += [index[right].ravel(), index[left].ravel()]
        rates += [forward.ravel(), backward.ravel()]
        faces.append((left, right, forward, backward))
    if max_peclet > _MAX_PECLET:
        raise ValueError(
            f"the cell Péclet number |f h/d| reaches {max_peclet:.3g} (> "
            f"{_MAX_PECLET:g}): the drift is too strong for the noise at this "
            "resolution; use more cells or a box closer to where p lives"
        )

    rows, cols, rates = (np.concatenate(v) for v in (rows, cols, rates))
    Q = sparse.csr_matrix((rates, (rows, cols)), shape=(num, num))
    Q = (Q - sparse.diags(np.asarray(Q.sum(axis=1)).ravel())).tocsr()

    # Qᵀ π = 0 has a one-dimensional kernel for an irreducible chain. Fixing π = 1 in
    # one cell and dropping its equation (any one is implied by the rest) leaves a
    # nonsingular sparse M-matrix system, unlike a dense normalisation row, which
    # would fill the LU factors.
    QT = Q.T.tocsc()

    def pinned(cell: int) -> np.ndarray:
        keep = np.delete(np.arange(num), cell)
        system = QT[keep][:, keep].tocsc()
        rhs = -QT[keep][:, [cell]].toarray().ravel()
        pi = np.empty(num)
        pi[keep] = sparse_linalg.spsolve(system, rhs)
        pi[cell] = 1.0
        return pi

    # Start at the slowest point of the flow; if that cell holds little mass (an
    # unstable fixed point), solve again pinned at the heaviest cell so that no
    # value under- or overflows.
    pi = pinned(int(np.argmin(np.linalg.norm(f, axis=-1))))
    if not (np.all(np.isfinite(pi)) and np.max(pi) < 1e6):
        pi = pinned(int(np.nanargmax(np.where(np.isfinite(pi), pi, -np.inf))))
    # Round-off can leave tiny negative values where the mass is negligible.
    pi = np.maximum(pi, 0.0)
    p = (pi / (pi.sum() * volume)).reshape(shape)

    current = np.zeros((*shape, k))
    face_current = []
    tiny = np.finfo(np.float64).tiny
    phi = 0.0
    for a, (left, right, forward, backward) in enumerate(faces):
        # Density fluxes a_ = p_i rate(i→i+1) h and b_ = p_{i+1} rate(i+1→i) h.
        a_ = p[left] * forward * h[a]
        b_ = p[right] * backward * h[a]
        J = a_ - b_
        face_current.append(J)
        current[(*left, a)] += J / 2
        current[(*right, a)] += J / 2
        # Σ (A − B) log(A/B) over faces with A = a_ h^{K−1}; logs taken separately
        # (p floored at the smallest normal float) so no product underflows.
        log_ratio = (
            np.log(np.maximum(p[left], tiny))
            + np.log(forward)
            - np.log(np.maximum(p[right], tiny))
            - np.log(backward)
        )
        phi += float(np.sum(J * log_ratio)) * volume / h[a]

    peclet = float(np.sum(p * np.max(np.abs(f) * h / d, axis=-1)) * volume)

    positive = p > 0
    f_irr = np.where(
        positive[..., None], current / np.where(positive, p, 1.0)[..., None], 0.0
    )
    return StationarySolution(
        axes=axes,
        lower=lo,
        upper=hi,
        spacing=h,
        cell_volume=volume,
        density=p,
        drift=f,
        D_phys=d,
        current=current,
        face_current=tuple(face_current),
        f_irr=f_irr,
        f_rev=f - f_irr,
        entropy_production=phi,
        peclet=peclet,
        generator=Q,
    )


def total_variation(
    p: Float[ArrayLike, "*grid"], q: Float[ArrayLike, "*grid"], cell_volume: float
) -> float:
    """``½ Σ |p − q| · cell_volume``, the total variation distance of two densities
    given on the same grid of cells.

    **Arguments:**

    - `p`, `q`: densities (cell averages) of the same shape.
    - `cell_volume`: the volume of one cell.

    **Returns:** the distance, in [0, 1] for normalised densities.

    **Raises:** `ValueError` when the shapes differ.
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(
            f"`p` and `q` must have the same shape; got {p.shape}, {q.shape}"
        )
    return float(0.5 * np.sum(np.abs(p - q)) * cell_volume)


def interpolate(
    solution: StationarySolution,
    field: Float[ArrayLike, "..."],
    points: Float[ArrayLike, "M K"],
) -> Float[np.ndarray, "M ..."]:
    """A field given at the cell centres, interpolated (multilinearly) at `points`.

    Between the outermost centres and the box edge (half a cell) the field is held
    constant; points outside the box get NaN.

    **Arguments:**

    - `solution`: the grid, from `stationary_fokker_planck`.
    - `field`: values at the cell centres, shape `*grid` or `*grid` + trailing
      dimensions (`solution.f_irr`, `solution.density`, …).
    - `points`: ``(M, K)`` points.

    **Returns:** ``(M,)`` + the field's trailing shape.

    **Raises:** `ValueError` when `field` or `points` do not fit the grid.
    """
    from scipy.interpolate import RegularGridInterpolator

    values = np.asarray(field, np.float64)
    z = np.asarray(points, np.float64)
    shape, k = solution.num_cells, solution.latent_dim
    if values.shape[:k] != shape:
        raise ValueError(
            f"`field` must start with the grid shape {shape}; got {values.shape}"
        )
    if z.ndim != 2 or z.shape[1] != k:
        raise ValueError(f"`points` must have shape (M, {k}); got {z.shape}")
    first = np.array([axis[0] for axis in solution.axes])
    last = np.array([axis[-1] for axis in solution.axes])
    interpolator = RegularGridInterpolator(solution.axes, values, method="linear")
    out = interpolator(np.clip(z, first, last))
    outside = np.any((z < solution.lower) | (z > solution.upper), axis=1)
    out[outside] = np.nan
    return out
