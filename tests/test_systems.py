"""Target systems: analytic properties of the built-in SDEs and the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from ddm_jax import systems


def test_registry_lists_the_builtin_systems():
    for name in ("ou", "double_well", "stuart_landau", "lorenz", "gbm"):
        assert name in systems.names()


def test_unknown_system_and_parameter_are_rejected_by_name():
    with pytest.raises(ValueError, match="unknown system 'nope'"):
        systems.get("nope")
    with pytest.raises(ValueError, match="system.beta"):
        systems.get("ou", beta=1.0)


def test_ou_stationary_covariance_matches_lyapunov(ou):
    # A = [[1, -1], [1, 1]], g g^T = 0.25 I.  A S + S A^T = g g^T has the solution
    # S = s I with s (A + A^T) = 2 s I = 0.25 I, i.e. S = 0.125 I (A's antisymmetric
    # part commutes with I and drops out).
    S = np.asarray(ou.stationary_covariance())
    # float32 linear solve of a 4x4 well-conditioned system: a few ulps.
    np.testing.assert_allclose(S, 0.125 * np.eye(2), atol=1e-6)


def test_ou_stationary_covariance_agrees_with_scipy_for_a_general_system():
    # A non-normal, non-symmetric A and a full g: compare with SciPy's
    # Bartels-Stewart solver in float64, a second method.
    A = np.array([[2.0, 0.7, 0.0], [-0.3, 1.0, 0.4], [0.1, 0.0, 1.5]])
    g = np.array([[0.5, 0.0, 0.1], [0.2, 0.3, 0.0], [0.0, 0.1, 0.4]])
    sde = systems.get("ou", A=A.tolist(), g=g.tolist())
    expected = scipy.linalg.solve_continuous_lyapunov(A, g @ g.T)
    S = np.asarray(sde.stationary_covariance())
    # float32 Kronecker solve with condition number ~10: relative error ~1e-6.
    np.testing.assert_allclose(S, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(S, S.T, atol=1e-7)  # a covariance is symmetric


def test_ou_rejects_an_unstable_drift_matrix():
    with pytest.raises(ValueError, match="system.A"):
        systems.get("ou", A=[[-1.0, 0.0], [0.0, 1.0]])


def test_gbm_diffusion_matrix_is_sigma_squared_z_squared():
    gbm = systems.get("gbm", mu=0.5, noise=0.5)
    for z in (0.3, 1.0, 2.5):
        D = gbm.diffusion_matrix(0.0, jnp.array([z]), None)
        assert D.shape == (1, 1)
        # 0.25 z^2 in float32: relative rounding ~1e-7.
        np.testing.assert_allclose(float(D[0, 0]), 0.25 * z**2, rtol=1e-6)


def test_double_well_drift_is_minus_gradient_of_potential():
    dw = systems.get("double_well", h=1.5)
    z = jnp.linspace(-2.0, 2.0, 41)[:, None]

    def potential(zi):
        return 1.5 * (zi[0] ** 2 - 1.0) ** 2

    drift = jax.vmap(lambda zi: dw.drift(0.0, zi, None))(z)
    grad = jax.vmap(jax.grad(potential))(z)
    # Two float32 evaluations of the same cubic (|f| <= 36): a few ulps apart.
    np.testing.assert_allclose(drift, -grad, rtol=1e-5, atol=1e-5)


def test_every_builtin_system_has_consistent_shapes():
    # The dysts flows (``dysts:*``, listed when the extra is installed) are checked
    # against dysts's own right-hand side in test_dysts.py.
    for name in [n for n in systems.names() if not n.startswith("dysts:")]:
        sde = systems.get(name)
        k, c = sde.latent_dim, sde.noise_dim
        assert sde.z0.shape == (k,)
        lower, upper = sde.box
        assert lower.shape == upper.shape == (k,)
        assert bool(jnp.all(upper > lower))
        assert sde.drift(0.0, sde.z0, None).shape == (k,)
        assert sde.diffusion(0.0, sde.z0, None).shape == (k, c)
        assert sde.diffusion_matrix(0.0, sde.z0, None).shape == (k, k)
