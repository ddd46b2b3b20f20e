"""The grid Fokker–Planck solver against closed-form stationary laws and currents.

Reference values are independent of the solver: the OU process has a Gaussian
stationary law N(0, S) and Φ = tr(D_phys⁻¹ A S Aᵀ) − tr A (`NoneqOU`); gradient
systems and products of independent 1-D processes satisfy detailed balance, so J = 0
and Φ = 0 with a known density. Cell masses of the analytic laws come from the normal
CDF (OU) or from 4-point Gauss–Legendre quadrature in every cell.
"""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize_scalar
from scipy.special import ndtr, roots_legendre

from ddm_jax import systems
from ddm_jax.fokker_planck import (
    interpolate,
    stationary_fokker_planck,
    total_variation,
)


def _ou_solution(dim, num_cells, width=6.0):
    """The nonequilibrium OU target (γ = ω = 1, σ = 0.5, so S = I/8 and Φ = 2 per
    rotating plane) on a box of `width` standard deviations each side."""
    system = systems.get("noneq_ou", dim=dim, gamma=1.0, omega=1.0, noise=0.5)
    sd = float(np.sqrt(system.stationary_covariance()[0, 0]))
    solution = stationary_fokker_planck(
        system.drift,
        system.diffusion_matrix,
        lower=[-width * sd] * dim,
        upper=[width * sd] * dim,
        num_cells=num_cells,
    )
    return system, sd, solution


def _gaussian_cell_density(solution, sd):
    """Cell averages of N(0, sd² I) on the solution's grid, from the normal CDF."""
    density = np.ones(())
    for axis, h in zip(solution.axes, solution.spacing, strict=True):
        edges = np.r_[axis - h / 2, axis[-1] + h / 2]
        density = np.multiply.outer(density, np.diff(ndtr(edges / sd)))
    return density / solution.cell_volume


def _quadrature_cell_density(log_density, solution, order=4):
    """Cell averages of exp(log_density) on a 2-D grid, normalised over the box."""
    nodes, weights = roots_legendre(order)
    points = [
        (axis[:, None] + h / 2 * nodes[None, :]).ravel()
        for axis, h in zip(solution.axes, solution.spacing, strict=True)
    ]
    w0, w1 = (np.tile(weights / 2, len(axis)) for axis in solution.axes)
    grid = np.stack(np.meshgrid(*points, indexing="ij"), axis=-1)
    values = np.exp(log_density(grid)) * w0[:, None] * w1[None, :]
    n0, n1 = solution.num_cells
    mass = values.reshape(n0, order, n1, order).sum(axis=(1, 3))
    return mass / (mass.sum() * solution.cell_volume)


def _slowest_relaxation_rate(solution):
    """The spectral gap of the chain's generator: its eigenvalue 0 belongs to the
    stationary law, the next one (by shift-invert near 0) is −λ₁."""
    from scipy.sparse.linalg import eigs

    generator = solution.generator.T.tocsc()
    values = eigs(generator, k=2, sigma=-1e-3, return_eigenvectors=False)
    return float(np.sort(-values.real)[1])


def test_noneq_ou_entropy_production_density_and_current_match_analytic():
    system, sd, solution = _ou_solution(dim=2, num_cells=64)
    phi = system.entropy_production()
    assert phi == pytest.approx(2.0, rel=1e-6)  # 2 ω²/γ in float32 parameters

    # Measured: −0.29 %. The acceptance band is 2 %; the scheme's second-order error
    # is −1.1 % at 32² cells and the grid here is twice as fine.
    assert solution.entropy_production == pytest.approx(phi, rel=0.02)

    # Measured: 5.8e-4 against the exact cell averages (1e-2 is the acceptance band).
    p = solution.density
    assert np.all(p >= 0)
    assert np.sum(p) * solution.cell_volume == pytest.approx(1.0, abs=1e-12)
    exact = _gaussian_cell_density(solution, sd)
    assert total_variation(p, exact, solution.cell_volume) < 0.01

    # f_irr = −A z + D_phys S⁻¹ z = ω Q z for this process (D_phys S⁻¹ = γ I).
    # Measured p-weighted relative L2 error: 6.7e-3, halving the 2.6e-2 of 32²
    # twice over; 2 % allows for the same error at the box's half-cell margin.
    z = np.stack(np.meshgrid(*solution.axes, indexing="ij"), axis=-1)
    A = np.asarray(system.A, np.float64)
    f_irr = -z @ A.T + z
    error = np.sum(p[..., None] * (solution.f_irr - f_irr) ** 2)
    assert np.sqrt(error / np.sum(p[..., None] * f_irr**2)) < 0.02
    # f_rev = D_phys ∇log p = −γ z, by the same measure.
    error = np.sum(p[..., None] * (solution.f_rev + z) ** 2)
    assert np.sqrt(error / np.sum(p[..., None] * z**2)) < 0.02


def test_entropy_production_error_falls_at_second_order():
    errors = []
    for num_cells in (32, 64):
        system, _, solution = _ou_solution(dim=2, num_cells=num_cells)
        errors.append(
            abs(solution.entropy_production / system.entropy_production() - 1)
        )
    # Measured errors 1.14e-2 and 2.91e-3: a ratio of 3.9, against 4 for O(h²).
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_two_well_gradient_system_has_no_current_or_entropy_production():
    # Wells on a diagonal, so the potential does not separate into x and y parts
    # and the chain's reversibility is not automatic.
    system = systems.get("multi_well", patterns=((-0.8, -0.6), (0.8, 0.6)), noise=1.0)
    lower, upper = (np.asarray(corner, np.float64) for corner in system.box)
    solution = stationary_fokker_planck(
        system.drift,
        system.diffusion_matrix,
        lower=lower,
        upper=upper,
        num_cells=64,
    )

    # The slowest relaxation rate, from the generator's spectral gap (measured
    # 0.0303; 0.0306 at 32² and 0.0303 at 96² cells).
    rate = _slowest_relaxation_rate(solution)

    # Independent check of that rate: Kramers–Langer for the hop between the two
    # symmetric wells, λ₁ = 2 k, k = |μ_s|/(2π) √(det H_min/|det H_s|) e^{−ΔU/D_phys}
    # with the saddle at the origin and the minimum on the line of the wells. It
    # gives 0.0371; the expansion is in D_phys/ΔU ≈ 0.21 here, hence the 30 % band.
    U = system.potential
    direction = np.array([0.8, 0.6])
    s_min = minimize_scalar(
        lambda s: float(U(jnp.asarray(s * direction))), bounds=(0.3, 1.5)
    ).x
    hessian = jax.hessian(U)
    H_min = np.asarray(hessian(jnp.asarray(s_min * direction)), np.float64)
    H_s = np.asarray(hessian(jnp.zeros(2)), np.float64)
    barrier = float(U(jnp.zeros(2)) - U(jnp.asarray(s_min * direction)))
    D_phys = 0.5 * float(system.noise) ** 2
    mu_s = -np.linalg.eigvalsh(H_s)[0]
    kramers = (
        2
        * mu_s
        / (2 * np.pi)
        * np.sqrt(np.linalg.det(H_min) / abs(np.linalg.det(H_s)))
        * np.exp(-barrier / D_phys)
    )
    assert rate == pytest.approx(kramers, rel=0.3)

    # Measured Φ/λ₁ = 4.9e-10 and max|J|/max p‖f‖ = 5.6e-7 (float32 round-off in f
    # limits both); the acceptance bands are 1e-3.
    assert 0 <= solution.entropy_production < 1e-3 * rate
    flux_scale = np.max(solution.density * np.linalg.norm(solution.drift, axis=-1))
    assert np.max(np.linalg.norm(solution.current, axis=-1)) < 1e-3 * flux_scale


def test_stuart_landau_rotation_is_the_irreversible_drift():
    # dz = ((μ − |z|²) z + ω J z) dt + σ dB: the rotation ω J z is divergence-free
    # and orthogonal to ∇U, U = −μ r²/2 + r⁴/4, so p ∝ e^{−U/D_phys} still, the
    # current is J = ω J z p, f_irr = ω J z and Φ = ω² E_p[r²]/D_phys.
    mu, omega, sigma = 1.0, 1.0, 0.5
    system = systems.get("stuart_landau", mu=mu, omega=omega, noise=sigma)
    D_phys = sigma**2 / 2
    solution = stationary_fokker_planck(
        system.drift,
        system.diffusion_matrix,
        lower=[-2.4, -2.4],
        upper=[2.4, 2.4],
        num_cells=64,
    )

    def log_density(z):
        r2 = np.sum(z**2, axis=-1)
        return (mu * r2 / 2 - r2**2 / 4) / D_phys

    radial = [
        lambda r, m=m: r**m * np.exp(log_density(np.array([r, 0.0]))) for m in (1, 3)
    ]
    # Beyond the box's inscribed circle (r = 2.4) the law holds e^{−43} of its mass.
    mass, second_moment = (quad(w, 0.0, 10.0)[0] for w in radial)
    phi = omega**2 * second_moment / mass / D_phys  # 8.221

    # Measured: −0.46 % (−0.81 % at 48², −0.21 % at 96²); the band is the 2 % of
    # the OU test, for the same second-order scheme.
    assert solution.entropy_production == pytest.approx(phi, rel=0.02)
    # Measured TV 2.0e-3 against cell averages of the analytic law on the box.
    exact = _quadrature_cell_density(log_density, solution)
    assert total_variation(solution.density, exact, solution.cell_volume) < 0.01
    # p-weighted relative L2 error of f_irr against ω J z. Measured 1.0e-2 (1.8e-2
    # at 48², 4.7e-3 at 96²: second order), within the 2 % band of the OU test.
    z = np.stack(np.meshgrid(*solution.axes, indexing="ij"), axis=-1)
    rotation = omega * np.stack([-z[..., 1], z[..., 0]], axis=-1)
    p = solution.density[..., None]
    error = np.sum(p * (solution.f_irr - rotation) ** 2) / np.sum(p * rotation**2)
    assert np.sqrt(error) < 0.02


def test_polynomial_gradient_density_is_exact_at_cell_centres():
    # For f = −∇U with constant isotropic noise, the chain's detailed-balance ratio
    # is exp(−Simpson's ∫ ∂_k U/D_phys), and Simpson's rule integrates the cubic
    # ∂_k U of the quartic Stuart–Landau potential exactly: the grid law is
    # e^{−U/D_phys} at the centres. With σ = 0.15 the slowest point of the flow
    # (the origin) carries e^{−22} of the peak mass, so the solve is pinned again
    # at the heaviest cell.
    sigma = 0.15
    system = systems.get("stuart_landau", mu=1.0, omega=0.0, noise=sigma)
    solution = stationary_fokker_planck(
        system.drift,
        system.diffusion_matrix,
        lower=[-1.6, -1.6],
        upper=[1.6, 1.6],
        num_cells=80,
    )
    z = np.stack(np.meshgrid(*solution.axes, indexing="ij"), axis=-1)
    r2 = np.sum(z**2, axis=-1)
    exact = np.exp((r2 / 2 - r2**2 / 4 - 0.25) / (sigma**2 / 2))
    exact /= exact.sum() * solution.cell_volume
    # Only the float32 evaluation of f separates them: measured TV 5.4e-8, Φ 6e-14.
    assert total_variation(solution.density, exact, solution.cell_volume) < 1e-5
    assert solution.entropy_production < 1e-10


def _product_case():
    """Independent axes: CIR dz = κ(θ − z) dt + σ√z dB (Gamma(2κθ/σ², σ²/2κ) law)
    and dz = −z dt + √(s²(1 + z²)) dB, whose law ∝ exp(∫ 2f/g²)/g² is
    ∝ (1 + z²)^(−1/s² − 1) = (1 + z²)^(−3) for s² = 1/2."""
    kappa, theta, sigma = 1.0, 1.0, 0.5
    shape, scale = 2 * kappa * theta / sigma**2, sigma**2 / (2 * kappa)

    def drift(t, z, args):
        return jnp.stack([kappa * (theta - z[0]), -z[1]])

    def diffusion(t, z, args):
        return jnp.diag(jnp.stack([sigma**2 * z[0], 0.5 * (1 + z[1] ** 2)]))

    def log_density(z):
        x, y = z[..., 0], z[..., 1]
        return (shape - 1) * np.log(x) - x / scale - 3 * np.log1p(y**2)

    return drift, diffusion, log_density, ([0.0, -6.0], [3.5, 6.0]), 96


def _gradient_case():
    """Non-separable potential U and isotropic D_phys = d(z) I varying in both
    coordinates, with f = −d ∇U + ∇d, so that J = −d p ∇U − d ∇p = 0 for
    p ∝ e^{−U}."""

    def U(z):
        return 0.5 * (z[0] ** 2 + z[0] * z[1] + 2 * z[1] ** 2) + 0.25 * z[0] ** 4

    def d(z):
        bump = 0.5 * jnp.sin(z[0]) * jnp.cos(z[1]) + 0.2 * z[1] ** 2 / (1 + z[1] ** 2)
        return 0.3 * (1 + bump)

    def drift(t, z, args):
        return -d(z) * jax.grad(U)(z) + jax.grad(d)(z)

    def diffusion(t, z, args):
        return 2 * d(z) * jnp.eye(2)

    def log_density(z):
        x, y = z[..., 0], z[..., 1]
        return -(0.5 * (x**2 + x * y + 2 * y**2) + 0.25 * x**4)

    return drift, diffusion, log_density, ([-3.5, -3.5], [3.5, 3.5]), 64


@pytest.mark.parametrize("case", [_product_case, _gradient_case])
def test_state_dependent_diagonal_noise_recovers_known_equilibrium(case):
    drift, diffusion, log_density, (lower, upper), num_cells = case()
    solution = stationary_fokker_planck(
        drift, diffusion, lower=lower, upper=upper, num_cells=num_cells
    )
    # The edges reflect and these laws are reversible, so the grid law is the
    # analytic one restricted to the box and renormalised.
    exact = _quadrature_cell_density(log_density, solution)
    # Measured TV: 1.5e-3 (product, 96²: the CIR axis near 0 dominates) and 8.2e-4
    # (gradient, 64²); both halve about every √2 refinement (second order).
    assert total_variation(solution.density, exact, solution.cell_volume) < 5e-3
    # Measured Φ: 1e-29 (a product of birth–death chains is exactly reversible) and
    # 5e-15 (v = f/d is a gradient, so only Simpson's O(h⁵) circulation and float32
    # round-off in f remain), against relaxation rates of 1.0 and 0.46.
    assert 0 <= solution.entropy_production < 1e-10


def test_three_dimensional_ou_entropy_production_on_coarse_grid():
    system, sd, solution = _ou_solution(dim=3, num_cells=24, width=5.0)
    phi = system.entropy_production()
    assert phi == pytest.approx(2.0, rel=1e-6)  # only the (0, 1) plane rotates
    # Measured: −1.4 % (−3.0 % at 16³, −0.8 % at 32³: second order with cells of
    # 0.42 sd); 5 % is the acceptance band for this coarse grid.
    assert solution.entropy_production == pytest.approx(phi, rel=0.05)
    # Measured TV 4.8e-3.
    exact = _gaussian_cell_density(solution, sd)
    assert total_variation(solution.density, exact, solution.cell_volume) < 0.01
    # The third axis carries no circulation: its share of E_p‖f_irr‖² is round-off.
    p = solution.density[..., None]
    shares = np.sum(p * solution.f_irr**2, axis=(0, 1, 2))
    assert shares[2] < 1e-6 * shares.sum()


def test_interpolate_is_exact_for_linear_fields_and_nan_outside_the_box():
    _, _, solution = _ou_solution(dim=2, num_cells=16)
    points = np.array([[0.1, -0.2], [-0.5, 0.33], [0.0, 0.0]])
    # The OU drift −A z is linear, so multilinear interpolation reproduces it up to
    # the float32 evaluation of f on the grid.
    A = np.array([[1.0, -1.0], [1.0, 1.0]])
    values = interpolate(solution, solution.drift, points)
    assert values.shape == (3, 2)
    np.testing.assert_allclose(values, -points @ A.T, atol=1e-6)
    # Half a cell from the edge the value is held at the outermost centre.
    edge = solution.upper - solution.spacing / 4
    last = np.array([[solution.axes[0][-1], solution.axes[1][-1]]])
    np.testing.assert_allclose(
        interpolate(solution, solution.density, edge[None]),
        interpolate(solution, solution.density, last),
    )
    outside = interpolate(solution, solution.density, solution.upper[None] + 0.01)
    assert np.isnan(outside).all()


def test_total_variation_of_equal_and_disjoint_densities():
    p = np.array([[2.0, 0.0], [0.0, 0.0]])
    q = np.array([[0.0, 0.0], [0.0, 2.0]])
    assert total_variation(p, p, 0.5) == 0.0
    assert total_variation(p, q, 0.5) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        total_variation(p, q[:1], 0.5)


def _ou_fields(dim):
    def drift(t, z, args):
        return -z

    def diffusion(t, z, args):
        return jnp.eye(dim)

    return drift, diffusion


@pytest.mark.parametrize("dim", [1, 4])
def test_unsupported_latent_dimension_is_named(dim):
    drift, diffusion = _ou_fields(dim)
    with pytest.raises(NotImplementedError, match=f"K = 2 or 3; got K = {dim}"):
        stationary_fokker_planck(
            drift, diffusion, lower=[-1.0] * dim, upper=[1.0] * dim, num_cells=8
        )


@pytest.mark.parametrize(
    "lower, upper, num_cells, message",
    [
        ([-1.0, 1.0], [1.0, 0.5], 8, "axis 1 has lower = 1.0, upper = 0.5"),
        ([-1.0, -1.0], [1.0, 1.0], 2, "integers ≥ 3"),
        ([-1.0, -1.0], [1.0, 1.0], (8, 8, 8), "integer or 2 integers"),
        ([-1.0, -1.0], [1.0, 1.0, 1.0], 8, "same length K"),
        ([-1.0, -np.inf], [1.0, 1.0], 8, "must be finite"),
    ],
)
def test_bad_box_or_cell_count_is_rejected(lower, upper, num_cells, message):
    drift, diffusion = _ou_fields(2)
    with pytest.raises(ValueError, match=message):
        stationary_fokker_planck(
            drift, diffusion, lower=lower, upper=upper, num_cells=num_cells
        )


def test_bad_fields_are_rejected_with_the_point():
    lower, upper = [-1.0, -1.0], [1.0, 1.0]
    drift, diffusion = _ou_fields(2)

    def log_drift(t, z, args):
        return jnp.log(z)  # NaN at negative coordinates

    with pytest.raises(ValueError, match="`drift` is not finite at z = "):
        stationary_fokker_planck(
            log_drift, diffusion, lower=lower, upper=upper, num_cells=8
        )

    def correlated(t, z, args):
        return jnp.array([[1.0, 0.3], [0.3, 1.0]])

    with pytest.raises(
        NotImplementedError, match=r"diagonal diffusion only; D\[0, 1\]"
    ):
        stationary_fokker_planck(
            drift, correlated, lower=lower, upper=upper, num_cells=8
        )

    def degenerate(t, z, args):
        return jnp.diag(jnp.array([1.0, 0.0]))

    with pytest.raises(ValueError, match=r"positive diagonal on the grid; D\[1, 1\]"):
        stationary_fokker_planck(
            drift, degenerate, lower=lower, upper=upper, num_cells=8
        )

    def scalar_drift(t, z, args):
        return z[0]

    with pytest.raises(ValueError, match=r"`drift` must return shape \(2,\)"):
        stationary_fokker_planck(
            scalar_drift, diffusion, lower=lower, upper=upper, num_cells=8
        )

    def faint(t, z, args):
        return 1e-8 * jnp.eye(2)

    with pytest.raises(ValueError, match="Péclet number"):
        stationary_fokker_planck(drift, faint, lower=lower, upper=upper, num_cells=8)


def test_shape_annotations_hold_under_the_runtime_checker():
    script = textwrap.dedent(
        """
        from jaxtyping import install_import_hook

        with install_import_hook("ddm_jax", "beartype.beartype"):
            from ddm_jax import fokker_planck as fp

        import jax.numpy as jnp
        import numpy as np

        solution = fp.stationary_fokker_planck(
            lambda t, z, a: -z,
            lambda t, z, a: jnp.eye(2),
            lower=np.array([-3.0, -3.0]),
            upper=(3.0, 3.0),
            num_cells=(12, 10),
        )
        fp.interpolate(solution, solution.f_irr, np.zeros((5, 2)))
        fp.total_variation(solution.density, solution.density, solution.cell_volume)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
