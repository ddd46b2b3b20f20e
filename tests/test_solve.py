"""The closed-form readout (`solve_readout`, `lstsq`) against exact solutions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddm_jax
from ddm_jax import LatentRNN, systems
from ddm_jax.solve import lstsq


def test_identity_network_reproduces_linear_target_exactly(ou, ou_points, ou_held_out):
    # With phi = identity the features E z + b span every affine function of z, and
    # tau f(z) + z = (I - tau A) z is linear: the least-squares fit is exact.
    model = LatentRNN.init(
        key=jax.random.key(0), system=ou, num_neurons=32, nonlinearity="identity"
    )
    model = ddm_jax.solve_readout(model, ou, ou_points)
    errors = ddm_jax.relative_errors(model, ou, ou_held_out)
    # float32 rounding of a rank-3 fit: relative error ~1e-7, squared ~1e-13 (seen);
    # 1e-6 is the accuracy the toolkit promises for this case.
    assert float(errors["drift"]) <= 1e-6
    # Constant latent noise: G0 G0^T = E[D] = 0.25 I exactly (eigh of a constant).
    assert float(errors["diffusion"]) <= 1e-10
    # Low rank: F_perp vanishes identically; only rounding remains.
    assert float(errors["manifold"]) <= 1e-8


def test_explicit_cutoff_beats_the_default_lstsq_cutoff_on_lorenz():
    # PITFALLS 7: tanh features of the Lorenz drift have singular values over many
    # decades; the default cutoff eps * max(M, N) discards most and stalls L_drift
    # near 1e-3, while rcond = 1e-7 keeps them.
    lorenz = systems.get("lorenz")
    options = dict(method="stationary", burn_in=5.0, num_paths=64)
    points = ddm_jax.sample_points(
        lorenz, key=jax.random.key(1), num_points=2048, **options
    )
    held_out = ddm_jax.sample_points(
        lorenz, key=jax.random.key(2), num_points=2048, **options
    )
    model = LatentRNN.init(
        key=jax.random.key(3), system=lorenz, num_neurons=256, points=points
    )
    explicit = ddm_jax.solve_readout(model, lorenz, points, rcond=1e-7)
    default = ddm_jax.solve_readout(
        model, lorenz, points, rcond=float(np.finfo(np.float32).eps) * 2048
    )
    err_explicit = float(ddm_jax.relative_errors(explicit, lorenz, held_out)["drift"])
    err_default = float(ddm_jax.relative_errors(default, lorenz, held_out)["drift"])
    # PITFALLS 7 quotes 1e-3 for the default cutoff; measured 7e-7 with rcond = 1e-7
    # for these 256 features. The bounds leave a factor ~10 for other keys.
    assert err_default > 1e-4
    assert err_explicit < 1e-5
    assert err_explicit < err_default / 100


def test_dense_solve_is_E_times_the_low_rank_readout(ou, ou_points, ou_held_out):
    dense = LatentRNN.init(
        key=jax.random.key(4), system=ou, num_neurons=32, connectivity="dense"
    )
    low_rank = LatentRNN(
        dense.E,
        dense.b,
        jnp.zeros_like(dense.E),
        None,
        dense.G0,
        None,
        dense.B,
        dense.tau,
        dense.nonlinearity,
        "low_rank",
        dense.noise,
    )
    dense = ddm_jax.solve_readout(dense, ou, ou_points)
    low_rank = ddm_jax.solve_readout(low_rank, ou, ou_points)
    W = np.asarray(low_rank.E) @ np.asarray(low_rank.V).T
    # Same SVD solve; only the float32 product E V^T differs (|W| ~ 1, eps 1e-7).
    np.testing.assert_allclose(dense.W, W, atol=1e-5)
    # W = E V^T leaves the manifold exactly invariant: F_perp = 0 up to rounding.
    errors = ddm_jax.relative_errors(dense, ou, ou_held_out)
    assert float(errors["manifold"]) < 1e-8
    # tanh features of a linear field with 32 neurons: measured ~1e-10.
    assert float(errors["drift"]) < 1e-6


def test_latent_noise_solve_matches_the_mean_diffusion():
    # Constant G: the minimiser of E||G G^T - D(z)||^2 is G G^T = E[D] = sigma^2 E[z^2].
    gbm = systems.get("gbm")
    points = ddm_jax.sample_points(
        gbm, key=jax.random.key(5), num_points=200, method="box"
    )
    model = LatentRNN.init(key=jax.random.key(6), system=gbm, num_neurons=16)
    model = ddm_jax.solve_readout(model, gbm, points)
    expected = 0.25 * np.mean(np.asarray(points, np.float64) ** 2)
    G0 = np.asarray(model.G0, np.float64)
    # float32 mean and square root: relative error ~1e-7.
    np.testing.assert_allclose(G0 @ G0.T, [[expected]], rtol=1e-5)


@pytest.mark.parametrize("num_neurons", [32, 512])
def test_gated_noise_solve_follows_state_dependent_diffusion(num_neurons):
    # Gated G(z) = G0 + sum_i phi_i A_i is fitted to g(z) = sigma z on [1, phi]; then
    # D_theta = G G^T = sigma^2 z^2 wherever the fit is good. With 512 neurons the
    # 513 features outnumber the 256 points: the minimum-norm fit interpolates.
    gbm = systems.get("gbm")
    points = ddm_jax.sample_points(
        gbm, key=jax.random.key(7), num_points=256, method="box"
    )
    held_out = ddm_jax.sample_points(
        gbm, key=jax.random.key(8), num_points=256, method="box"
    )
    model = LatentRNN.init(
        key=jax.random.key(9), system=gbm, num_neurons=num_neurons, noise="gated"
    )
    model = ddm_jax.solve_readout(model, gbm, points)
    errors = ddm_jax.relative_errors(model, gbm, held_out)
    # 33 (513) features for a linear g on an interval: measured ~1e-12 (5e-13);
    # bound with margin.
    assert float(errors["diffusion"]) < 1e-8
    assert float(errors["drift"]) < 1e-8
    z = jnp.array([0.5, 1.0, 2.0])
    D = jax.vmap(lambda zi: model.latent_diffusion(0.0, zi[None], None))(z)[:, 0, 0]
    # A relative error 1e-4 in D at single points sits far above the measured ~1e-6.
    np.testing.assert_allclose(D, 0.25 * z**2, rtol=1e-4)


@pytest.mark.parametrize("method", ["svd", "qr"])
def test_lstsq_ridge_matches_float64_normal_equations(method):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(60, 8))
    Y = rng.normal(size=(60, 3))
    ridge = 1e-2
    # Reference: (A^T A + M ridge I)^{-1} A^T Y in float64 (well conditioned here).
    expected = np.linalg.solve(A.T @ A + 60 * ridge * np.eye(8), A.T @ Y)
    X = lstsq(
        jnp.asarray(A, jnp.float32),
        jnp.asarray(Y, jnp.float32),
        ridge=ridge,
        method=method,
    )
    # float32 factorisation of a matrix with condition number ~3: relative 1e-5.
    np.testing.assert_allclose(X, expected, rtol=1e-4, atol=1e-5)


def test_lstsq_cutoff_returns_the_truncated_pseudo_inverse():
    # A = u1 v1^T + 1e-9 u2 v2^T: with rcond = 1e-7 the second direction is dropped
    # and the solution is v1 (u1 . y) exactly (minimum norm in the kept subspace).
    u = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 2)))[0]
    v = np.array([[0.6, 0.8], [-0.8, 0.6]])
    A = u @ np.diag([1.0, 1e-9]) @ v.T
    y = np.array([1.0, 2.0, -1.0, 0.5, 0.0])[:, None]
    X = lstsq(jnp.asarray(A, jnp.float32), jnp.asarray(y, jnp.float32), rcond=1e-7)
    expected = v[:, :1] * (u[:, 0] @ y[:, 0])
    # float32 SVD of a 5x2 matrix: a few ulps.
    np.testing.assert_allclose(X, expected, atol=1e-5)


def test_unknown_solver_is_rejected_by_name(ou, ou_points):
    model = LatentRNN.init(key=jax.random.key(10), system=ou, num_neurons=8)
    with pytest.raises(ValueError, match="train.solver"):
        ddm_jax.solve_readout(model, ou, ou_points, method="cholesky")


def test_solve_readout_keeps_embedding_and_bias(ou, ou_points):
    model = LatentRNN.init(key=jax.random.key(11), system=ou, num_neurons=8)
    solved = ddm_jax.solve_readout(model, ou, ou_points)
    assert eqx.tree_equal(solved.E, model.E) and eqx.tree_equal(solved.b, model.b)
