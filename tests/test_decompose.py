"""Connectivity and irreversibility decompositions (`ddm_jax.decompose`) against closed
forms: the N×N matrices themselves, the OU Lyapunov solution and Φ = 2 ω²/γ of the
nonequilibrium OU process, and its lagged covariance S e^{−Aᵀ t}."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import ddm_jax
from ddm_jax import decompose, systems


def _embedded(system, *, num_neurons=200, connectivity="low_rank", seed=0, tau=1.0):
    key_init, key_pts = jr.split(jr.key(seed))
    lower, upper = system.box
    points = jr.uniform(key_pts, (2000, system.latent_dim), minval=lower, maxval=upper)
    model = ddm_jax.LatentRNN.init(
        key=key_init,
        system=system,
        num_neurons=num_neurons,
        connectivity=connectivity,
        tau=tau,
        points=points,
    )
    return ddm_jax.solve_readout(model, system, points), points


# --- connectivity ---------------------------------------------------------------------


def test_low_rank_factor_form_equals_the_full_matrices():
    model, _ = _embedded(systems.get("noneq_ou"), num_neurons=60)
    out = decompose.connectivity(model)
    W = np.asarray(model.E, np.float64) @ np.asarray(model.V, np.float64).T
    W_S, W_A = (W + W.T) / 2, (W - W.T) / 2
    # float64 algebra on the same float32 factors: agreement to ~1e-12 relative.
    assert out["norm_W"] == pytest.approx(np.linalg.norm(W), rel=1e-9)
    assert out["norm_S"] == pytest.approx(np.linalg.norm(W_S), rel=1e-9)
    assert out["norm_A"] == pytest.approx(np.linalg.norm(W_A), rel=1e-9)
    assert out["asymmetry"] == pytest.approx(np.sum(W_A**2) / np.sum(W**2), rel=1e-9)

    # The nonzero eigenvalues: K of W, 2K of W_S (real) and W_A (imaginary).
    def top(values, n):
        return np.sort_complex(values[np.argsort(-np.abs(values))][:n])

    eig_W = np.array([complex(*e) for e in out["eigenvalues_W"]])
    np.testing.assert_allclose(
        np.sort_complex(eig_W), top(np.linalg.eigvals(W), 2), rtol=1e-7, atol=1e-9
    )
    np.testing.assert_allclose(
        np.sort(out["eigenvalues_S"]),
        np.sort(top(np.linalg.eigvalsh(W_S).astype(complex), 4).real),
        rtol=1e-7,
        atol=1e-9,
    )
    eig_A = np.linalg.eigvals(W_A)
    assert np.max(np.abs(eig_A.real)) < 1e-9  # antisymmetric: imaginary spectrum
    np.testing.assert_allclose(
        np.sort(out["eigenvalues_A"]), np.sort(top(eig_A, 4).imag), rtol=1e-7, atol=1e-9
    )


def test_drift_parts_sum_to_the_latent_drift_and_match_the_dense_matrices():
    system = systems.get("noneq_ou")
    model, points = _embedded(system, num_neurons=80)
    parts = jax.vmap(lambda z: decompose.drift_parts(model, z))(points[:50])
    total = parts["leak"] + parts["symmetric"] + parts["antisymmetric"]
    f = jax.vmap(lambda z: model.latent_drift(0.0, z, None))(points[:50])
    np.testing.assert_allclose(total, f, rtol=1e-4, atol=1e-5)  # float32 rounding
    # The same split from the N×N matrices of a dense copy.
    W = model.E @ model.V.T
    E_pinv = jnp.linalg.pinv(model.E)
    r = jax.vmap(lambda z: model.phi(model.embed(z)))(points[:50])
    f_A = r @ ((W - W.T) / 2).T @ E_pinv.T / model.tau
    np.testing.assert_allclose(parts["antisymmetric"], f_A, rtol=1e-4, atol=1e-5)


def test_symmetric_network_has_no_antisymmetric_drift():
    model, points = _embedded(
        systems.get("ou", dim=2), num_neurons=50, connectivity="dense"
    )
    W = model.W
    model = eqx.tree_at(lambda m: m.W, model, (W + W.T) / 2)
    out = decompose.connectivity(model)
    assert out["norm_A"] == 0.0 and out["asymmetry"] == 0.0
    assert np.all(np.asarray(out["eigenvalues_A"]) == 0.0)
    parts = jax.vmap(lambda z: decompose.drift_parts(model, z))(points[:100])
    # W − Wᵀ is exactly zero for a matrix symmetrised in floating point.
    assert float(jnp.max(jnp.abs(parts["antisymmetric"]))) == 0.0
    assert float(jnp.max(jnp.abs(parts["symmetric"]))) > 0.0


# --- linear theory --------------------------------------------------------------------


def test_ou_theory_matches_the_nonequilibrium_ou_closed_form():
    gamma, omega, sigma = 1.5, 2.0, 0.7
    system = systems.get("noneq_ou", gamma=gamma, omega=omega, noise=sigma)
    g = np.asarray(system.g, np.float64)
    out = decompose.ou_theory(system.A, g @ g.T)
    # S = σ²/(2γ) I and Φ = 2 ω²/γ (one rotating plane); σ is stored in float32
    # (relative rounding 3e-8, doubled in σ²).
    np.testing.assert_allclose(
        out["covariance"], sigma**2 / (2 * gamma) * np.eye(2), rtol=1e-7, atol=1e-12
    )
    assert out["entropy_production"] == pytest.approx(2 * omega**2 / gamma, rel=1e-9)
    Q = out["circulation"]
    np.testing.assert_allclose(Q, -Q.T, atol=1e-12)
    # Equilibrium OU (symmetric A, isotropic noise): no circulation, Φ = 0.
    eq = decompose.ou_theory([[2.0, 0.5], [0.5, 1.0]], 0.3 * np.eye(2))
    assert abs(eq["entropy_production"]) < 1e-12
    np.testing.assert_allclose(eq["circulation"], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="positive real part"):
        decompose.ou_theory([[-1.0, 0.0], [0.0, 1.0]], np.eye(2))


def test_linearised_network_reproduces_the_targets_entropy_production():
    system = systems.get("noneq_ou", gamma=1.0, omega=1.0, noise=0.5)
    model, _ = _embedded(system, num_neurons=200)
    out = decompose.linearise(
        model.latent_drift, model.latent_diffusion, jnp.array([0.3, -0.2])
    )
    assert np.linalg.norm(out["fixed_point"]) < 1e-3
    np.testing.assert_allclose(out["jacobian"], -np.asarray(system.A), atol=1e-3)
    # Φ = 2 ω²/γ = 2; the solved drift is within ~1e-4 of −A z.
    assert out["entropy_production"] == pytest.approx(2.0, rel=1e-2)


# --- path estimators ------------------------------------------------------------------


@pytest.fixture(scope="module")
def noneq_ou_paths():
    system = systems.get("noneq_ou", gamma=1.0, omega=1.0, noise=1.0)
    z0 = jr.normal(jr.key(10), (256, 2)) * math.sqrt(0.5)  # from S = ½ I
    _, zs = ddm_jax.simulate_sde(
        system, key=jr.key(20), z0=z0, t1=100.0, dt=0.002, save_every=5
    )
    return system, np.asarray(zs, np.float64), 0.01


def test_stratonovich_estimator_recovers_the_analytic_entropy_production(
    noneq_ou_paths,
):
    system, zs, dt = noneq_ou_paths
    g = np.asarray(system.g)
    out = decompose.stratonovich_entropy_production(
        system.drift, g @ g.T, jnp.asarray(zs, jnp.float32), dt
    )
    # Φ = 2 ω²/γ = 2. On exact samples Δt apart the estimator's mean is
    # 2 ω e^{−γΔt} sin(ωΔt)/(γΔt), 1 % low at Δt = 0.01; 256 paths × 100 time units
    # give a standard error of 0.018 (0.9 %; seeds 10–12 read 2.016, 1.993, 1.980).
    assert out["value"] == pytest.approx(2.0, rel=0.03)
    assert 0.01 < out["stderr"] < 0.03


def test_lagged_covariance_asymmetry_is_tan_omega_t_for_rotating_ou(noneq_ou_paths):
    _, zs, dt = noneq_ou_paths
    lag = 50  # ℓ Δt = 0.5: C = S e^{−γ t} R(ω t), index |tan(ω t)| = tan(0.5)
    out = decompose.lagged_asymmetry(zs, lag)
    assert out["value"] == pytest.approx(math.tan(0.5), abs=4 * out["stderr"] + 0.02)
    # The pooled C(ℓ) against S e^{−Aᵀ ℓ Δt} with S = ½ I.
    t = lag * dt
    R = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    expected = 0.5 * math.exp(-t) * R.T
    np.testing.assert_allclose(out["covariance"], expected, atol=0.02)


def test_lagged_asymmetry_vanishes_for_an_equilibrium_process():
    system = systems.get("noneq_ou", gamma=1.0, omega=0.0, noise=1.0)
    z0 = jr.normal(jr.key(5), (32, 2)) * math.sqrt(0.5)
    _, zs = ddm_jax.simulate_sde(system, key=jr.key(6), z0=z0, t1=100.0, dt=0.01)
    out = decompose.lagged_asymmetry(zs, 50)
    # Pure sampling noise: well below the rotating case's tan(0.5) = 0.55.
    assert out["value"] < 0.1
    with pytest.raises(ValueError, match="lag must be"):
        decompose.lagged_asymmetry(zs, 0)


# --- splitting W ----------------------------------------------------------------------


def test_split_by_irreversibility_adds_up_and_fits_both_parts():
    gamma, omega = 1.0, 1.0
    system = systems.get("noneq_ou", gamma=gamma, omega=omega, noise=0.5)
    model, points = _embedded(system, num_neurons=200, tau=0.5)
    A = np.asarray(system.A)
    # OU: f_rev = −D_phys S⁻¹ z = −γ z, f_irr = f − f_rev = ω Q z.
    f = -np.asarray(points) @ A.T
    f_rev = -gamma * np.asarray(points)
    out = decompose.split_by_irreversibility(model, points, f_rev, f - f_rev)
    # Both readouts reproduce their parts (the cutoff 1e-4 costs ~1e-4 here).
    assert out["fit_rel_error"]["irr"] < 1e-3 and out["fit_rel_error"]["rev"] < 1e-3
    # W_rev + W_irr = W exactly: the norms obey the triangle inequality around ‖W‖.
    norm_W = decompose.connectivity(model)["norm_W"]
    assert abs(out["norm_W_rev"] - out["norm_W_irr"]) <= norm_W * (1 + 1e-9)
    assert norm_W <= (out["norm_W_rev"] + out["norm_W_irr"]) * (1 + 1e-9)
    # A random embedding does not make W_irr antisymmetric (nor W_rev symmetric):
    # for the rotation the antisymmetric share of W_irr sits near a random matrix's ½.
    assert 0.2 < out["antisymmetric_share_W_irr"] < 0.8


def test_network_embedding_stuart_landau_has_the_targets_entropy_production():
    # A nonlinear nonequilibrium target: Stuart–Landau, μ = 1, ω = 1, σ = 0.5, whose
    # Φ = ω² E_p[r²]/D_phys = 8.221 (tests/test_fokker_planck.py). The network's own
    # latent SDE (f_θ, D_θ) on the same 64² grid must be within 15 % of the target's.
    from ddm_jax.fokker_planck import stationary_fokker_planck

    system = systems.get("stuart_landau", mu=1.0, omega=1.0, noise=0.5)
    model, _ = _embedded(system, num_neurons=256, tau=0.1)
    box = {"lower": [-2.4, -2.4], "upper": [2.4, 2.4], "num_cells": 64}

    target = stationary_fokker_planck(system.drift, system.diffusion_matrix, **box)
    network = stationary_fokker_planck(
        model.latent_drift, model.latent_diffusion, **box
    )
    assert target.entropy_production == pytest.approx(8.221, rel=0.02)
    # Measured 8.1839 vs 8.1832 (9e-5 apart): the closed-form readout fits f
    # closely on the box, so the two agree far inside the acceptance's 15 %.
    assert network.entropy_production == pytest.approx(
        target.entropy_production, rel=0.15
    )
    assert network.entropy_production == pytest.approx(
        target.entropy_production, rel=1e-2
    )
