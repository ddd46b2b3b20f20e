"""Attractor statistics: Lyapunov exponents, transverse stability, distances."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ddm_jax
from ddm_jax import LatentRNN, systems
from ddm_jax.metrics import sliced_wasserstein, transverse_max_real


def test_lorenz_maximal_exponent_matches_published_value():
    lorenz = systems.get("lorenz")
    z0 = jnp.array(
        [[1.0, 1.0, 25.0], [-5.0, 3.0, 20.0], [2.0, -4.0, 30.0], [0.5, 0.5, 10.0]]
    )
    lam = ddm_jax.lyapunov_max(
        lorenz.drift, z0, key=jax.random.key(0), dt=0.01, t1=200.0, transient=10.0
    )
    assert lam.shape == (4,)
    # Sprott (2003): 0.9056. Finite-time estimates over t1 = 200 scatter by ~3% per
    # start; the mean of four is within 5% (measured 0.901).
    np.testing.assert_allclose(float(lam.mean()), 0.9056, rtol=0.05)
    assert lorenz.reference() == {"lyapunov_max": 0.9056}


def test_ou_maximal_exponent_is_the_largest_real_part_of_minus_A(ou):
    # dz/dt = -A z with eig(A) = 1 +- i: every tangent vector shrinks as e^{-t}.
    lam = ddm_jax.lyapunov_max(
        ou.drift,
        jnp.array([[0.5, 0.5]]),
        key=jax.random.key(1),
        dt=0.01,
        t1=20.0,
        transient=1.0,
    )
    # Linear flow: the estimate is exact up to Tsit5 error (~1e-10) and rounding.
    np.testing.assert_allclose(lam, [-1.0], atol=1e-4)


def test_low_rank_transverse_exponent_is_minus_one_over_tau(ou, ou_points):
    model = LatentRNN.init(key=jax.random.key(2), system=ou, num_neurons=16, tau=0.25)
    assert transverse_max_real(model, ou_points) == -4.0  # exact by construction


def test_dense_solve_gives_transverse_exponent_minus_one_over_tau(ou, ou_points):
    # The dense solve sets W = E V^T, so (I - EE+) W = 0 and the transverse Jacobian
    # is -I / tau on the complement: the eigenvalue route must find -1/tau.
    model = LatentRNN.init(
        key=jax.random.key(3), system=ou, num_neurons=16, connectivity="dense", tau=0.5
    )
    model = ddm_jax.solve_readout(model, ou, ou_points)
    # float32 W = E V^T leaves (I - EE+) W ~ 1e-6; float64 eigenvalues follow.
    np.testing.assert_allclose(transverse_max_real(model, ou_points), -2.0, atol=1e-4)


def test_dense_transverse_exponent_sees_unstable_off_manifold_coupling(ou, ou_points):
    # Identity phi and W = c P, P = I - EE+ the projector off the manifold:
    # P(-I + W)P / tau = (c - 1) P / tau, so the largest real part is (c - 1)/tau.
    model = LatentRNN.init(
        key=jax.random.key(4),
        system=ou,
        num_neurons=12,
        connectivity="dense",
        nonlinearity="identity",
        tau=2.0,
    )
    E = np.asarray(model.E, np.float64)
    P = np.eye(12) - E @ np.linalg.pinv(E)
    model = eqx.tree_at(lambda m: m.W, model, jnp.asarray(3.0 * P, jnp.float32))
    # float32 P: eigenvalues within ~1e-6 of (3 - 1)/2 = 1.
    np.testing.assert_allclose(transverse_max_real(model, ou_points), 1.0, atol=1e-4)


def test_sliced_wasserstein_is_zero_for_equal_samples_and_the_shift_otherwise():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 1)) * 2.0
    assert sliced_wasserstein(a, a, key=jax.random.key(5)) == 0.0
    # In 1-D every direction is +-1, and W1 between a sample and itself shifted by
    # delta is |delta|; in units of the std of the second sample: 1.5 / std(a).
    w = sliced_wasserstein(a + 1.5, a, key=jax.random.key(5))
    np.testing.assert_allclose(w, 1.5 / a.std(), rtol=1e-9)  # float64, exact shift
