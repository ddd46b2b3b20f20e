"""Noise models (DESIGN §1 "Noise models"): private per-neuron noise, its closed form,
its off-manifold state and drift bias, and activity-gated latent noise."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import pytest
from scipy.optimize import nnls

import ddm_jax
from ddm_jax import LatentRNN, systems
from ddm_jax.rnn import noise_averaged_drift, private_noise_drift_bias
from ddm_jax.solve import private_noise_variances


@pytest.fixture(scope="module")
def private_ou(ou, ou_points):
    """A solved tanh network with private noise for the OU target (N = 16)."""
    model = LatentRNN.init(
        key=jax.random.key(0),
        system=ou,
        num_neurons=16,
        noise="private",
        points=ou_points,
    )
    return ddm_jax.solve_readout(model, ou, ou_points)


def _dense_off_manifold_covariance(model):
    """(τ/2) P diag(σ²) P, P = I − E E⁺, as a dense float64 matrix (small N only)."""
    E = np.asarray(model.E, np.float64)
    P = np.eye(E.shape[0]) - E @ np.linalg.pinv(E)
    return model.tau / 2 * P @ np.diag(np.asarray(model.sigma, np.float64) ** 2) @ P


def _shapes(jaxpr, found):
    """Every value shape in a jaxpr and in the jaxprs nested inside it."""
    for var in [*jaxpr.invars, *jaxpr.constvars]:
        found.add(tuple(getattr(var.aval, "shape", ())))
    for eqn in jaxpr.eqns:
        found.update(tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    _shapes(sub.jaxpr, found)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    _shapes(sub, found)
    return found


# --- private noise: the model ----------------------------------------------------


def test_private_latent_diffusion_matches_the_dense_formula(ou):
    model = LatentRNN.init(
        key=jax.random.key(1), system=ou, num_neurons=12, noise="private"
    )
    assert model.noise_dim == 12 and model.sigma.shape == (12,)
    sigma = np.asarray(model.sigma, np.float64)
    E_pinv = np.linalg.pinv(np.asarray(model.E, np.float64))
    expected = E_pinv @ np.diag(sigma**2) @ E_pinv.T
    D = model.latent_diffusion(0.0, jnp.array([0.3, -1.0]), None)
    # float32 pseudo-inverse and products of a 12x2 problem: a few ulps of |D|.
    np.testing.assert_allclose(D, expected, rtol=1e-5, atol=1e-7)

    # Σ = diag(|σ|) as a lineax operator, never an array; σ's signs are a gauge.
    Sigma = model.noise_matrix(0.0, model.embed(jnp.zeros(2)), None)
    assert isinstance(Sigma, lx.DiagonalLinearOperator)
    np.testing.assert_array_equal(Sigma.as_matrix(), np.diag(np.abs(sigma)))
    flipped = eqx.tree_at(lambda m: m.sigma, model, -model.sigma)
    np.testing.assert_array_equal(flipped.latent_diffusion(0.0, jnp.zeros(2), None), D)


def test_private_solve_reproduces_the_ou_diffusion(private_ou, ou, ou_held_out):
    model = private_ou
    errors = ddm_jax.relative_errors(model, ou, ou_held_out)
    # Exact closed form in float32: squared relative error ~1e-14 (measured 4e-14);
    # 1e-6 is the promised accuracy.
    assert float(errors["diffusion"]) <= 1e-6
    D = model.latent_diffusion(0.0, jnp.zeros(2), None)
    np.testing.assert_allclose(D, 0.25 * np.eye(2), atol=1e-6)  # float32 rounding

    # The answer is the minimum-norm s = σ² (here all s_i > 0, so the unconstrained
    # minimum-norm solution of the K(K+1)/2 linear equations, float64 reference).
    E_pinv = np.linalg.pinv(np.asarray(model.E, np.float64))
    M = np.stack([E_pinv[0] ** 2, E_pinv[0] * E_pinv[1], E_pinv[1] ** 2])
    s_ref = np.linalg.lstsq(M, [0.25, 0.0, 0.25], rcond=None)[0]
    assert s_ref.min() > 0
    # float32 SVD and Newton solve: relative ~1e-6 of the largest s.
    np.testing.assert_allclose(model.sigma**2, s_ref, atol=1e-4 * s_ref.max())


def test_private_noise_variances_exact_when_reachable_nnls_otherwise():
    E = jax.random.normal(jax.random.key(3), (200, 3))
    E_pinv = np.linalg.pinv(np.asarray(E, np.float64))
    rows, cols = np.triu_indices(3)
    M = np.stack([np.outer(p, p)[rows, cols] for p in E_pinv.T], axis=1)

    def relative_residual(s, D):
        return np.linalg.norm((E_pinv * s) @ E_pinv.T - D) / np.linalg.norm(D)

    # Anisotropic but reachable (scipy's NNLS fits it exactly): reproduced to
    # float32 accuracy (measured 6e-7) with most s_i = 0.
    D = np.diag([1.0, 0.3, 0.1])
    assert nnls(M, D[rows, cols])[1] < 1e-10
    s = np.asarray(private_noise_variances(E, jnp.asarray(D, jnp.float32)))
    assert s.min() >= 0 and np.sum(s == 0) > 50
    assert relative_residual(s, D) < 1e-5

    # Rank one: no s >= 0 reaches it with 200 generic directions. The result is
    # the best non-negative fit in the whitened metric: within 10% of NNLS's
    # residual in the plain one (measured 0.0442 against 0.0433).
    D = np.diag([1.0, 0.0, 0.0])
    best = nnls(M, D[rows, cols])[1] / np.linalg.norm(D)
    s = np.asarray(private_noise_variances(E, jnp.asarray(D, jnp.float32)))
    assert s.min() >= 0
    assert best < relative_residual(s, D) < 1.1 * best


# --- private noise: simulation ---------------------------------------------------


def test_private_noise_simulation_forms_no_N_by_N_matrix(ou):
    n = 20_000
    model = LatentRNN.init(
        key=jax.random.key(4), system=ou, num_neurons=n, noise="private"
    )

    def run(m):
        options = dict(z0=jnp.zeros(2), num_paths=2, t1=0.05, dt=0.01)
        return ddm_jax.simulate_rnn(m, key=jax.random.key(5), **options)[1]

    shapes = _shapes(jax.make_jaxpr(run)(model).jaxpr, set())
    assert (n,) in shapes  # the walk does see the network's state
    assert not [s for s in shapes if s.count(n) >= 2]
    assert max(int(np.prod(s)) for s in shapes) <= 16 * n
    zs = run(model)
    assert zs.shape == (2, 6, 2) and bool(jnp.all(jnp.isfinite(zs)))

    # Control: the same walk finds the (N, N) W of a dense network.
    dense = LatentRNN.init(
        key=jax.random.key(4), system=ou, num_neurons=50, connectivity="dense"
    )
    assert (50, 50) in _shapes(jax.make_jaxpr(run)(dense).jaxpr, set())


def test_private_noise_readout_has_the_ou_lyapunov_covariance(ou, ou_points):
    # phi = identity and b = 0: the min-norm readout V lies in span(E), so
    # V^T x_perp = 0 and the recurrence never sees the off-manifold noise. The
    # readout is then exactly dz = -A z dt + E+ diag(|sigma|) dB with E+ diag(s) E+^T
    # = 0.25 I. Its Euler chain has the stationary covariance solving
    # S = (I - A dt) S (I - A dt)^T + 0.25 I dt; I - A dt is a rotation times
    # sqrt((1 - dt)^2 + dt^2), so S = 0.125 I / (1 - dt), 0.12755 I at dt = 0.02
    # (the Lyapunov solution, dt -> 0, is 0.125 I).
    model = LatentRNN.init(
        key=jax.random.key(6),
        system=ou,
        num_neurons=32,
        noise="private",
        nonlinearity="identity",
    )
    model = eqx.tree_at(lambda m: m.b, model, jnp.zeros_like(model.b))
    model = ddm_jax.solve_readout(model, ou, ou_points)
    ts, zs = ddm_jax.simulate_rnn(
        model,
        key=jax.random.key(7),
        z0=jnp.zeros(2),
        num_paths=1000,
        t1=20.0,
        dt=0.02,
        save_every=50,
    )
    zs = np.asarray(zs[:, ts >= 4.0], np.float64).reshape(-1, 2)
    C = np.cov(zs.T)
    # 17000 samples one relaxation time apart: SE of a variance 0.125 sqrt(2/17000)
    # = 1.4e-3, of a covariance 1e-3; 5.5e-3 is four SE. No drift bias here.
    np.testing.assert_allclose(C, 0.125 / (1 - 0.02) * np.eye(2), atol=5.5e-3)
    # Against Lyapunov itself, add the Euler offset 0.125 dt / (1 - dt) = 2.6e-3.
    np.testing.assert_allclose(C, 0.125 * np.eye(2), atol=5.5e-3 + 2.6e-3)


def test_off_manifold_variance_matches_the_gaussian_formula(private_ou):
    # Low rank: x_perp = (I - E E+)(x - b) is OU with dx_perp = -x_perp/tau dt +
    # P Sigma dB, exactly, whatever phi does on the manifold. Its Euler chain has
    # the covariance dt P diag(s) P / (1 - (1 - dt/tau)^2) = C / (1 - dt/(2 tau)),
    # C = (tau/2) P diag(s) P: 1% above C at dt = 0.02.
    model, dt = private_ou, 0.02
    ts, zs, xs = ddm_jax.simulate_rnn(
        model,
        key=jax.random.key(8),
        z0=jnp.zeros(2),
        num_paths=500,
        t1=23.0,
        dt=dt,
        save_every=50,
        full_state=True,
    )
    E = np.asarray(model.E, np.float64)
    x = np.asarray(xs[:, ts >= 3.0], np.float64).reshape(-1, E.shape[0])
    x = x - np.asarray(model.b, np.float64)
    x_perp = x - (x @ np.linalg.pinv(E).T) @ E.T
    measured = x_perp.var(0)
    C = _dense_off_manifold_covariance(model)
    expected = np.diag(C) / (1 - dt / (2 * model.tau))
    # 10500 samples per neuron, one tau apart: relative SE sqrt(2/10500) = 1.4% per
    # neuron; 6% is four SE.
    np.testing.assert_allclose(measured, expected, rtol=0.06)
    # About sigma^2 tau / 2 per neuron, less the leverage of E (K/N on average).
    s = np.asarray(model.sigma, np.float64) ** 2
    assert np.mean(expected) == pytest.approx(np.mean(s) * model.tau / 2, rel=0.25)


def test_noise_averaged_drift_matches_the_network_drift_off_the_manifold(
    private_ou, ou_points
):
    # Start B paths at x = E z0 + b + x_perp, x_perp drawn (float64 Cholesky) from
    # the stationary Gaussian, and measure E[z(h) - z0]/h over h = 2 steps. Noise
    # doubled (off-manifold variance x4) so the bias stands out of the MC error.
    model = eqx.tree_at(lambda m: m.sigma, private_ou, 2 * private_ou.sigma)
    n, paths, h = model.num_neurons, 40_000, 0.02
    C = _dense_off_manifold_covariance(model)
    L = np.linalg.cholesky(C + 1e-12 * np.eye(n))
    xi = np.random.default_rng(9).normal(size=(paths, n))
    z0 = jnp.array([0.5, -0.3])
    x0 = np.asarray(model.embed(z0), np.float64) + xi @ L.T
    _, zs = ddm_jax.simulate_rnn(
        model,
        key=jax.random.key(10),
        z0=None,
        x0=jnp.asarray(x0, jnp.float32),
        t1=h,
        dt=0.01,
    )
    step = (np.asarray(zs[:, -1], np.float64) - np.asarray(z0)) / h
    measured, se = step.mean(0), step.std(0) / np.sqrt(paths)
    predicted = np.asarray(
        noise_averaged_drift(model, z0[None], key=jax.random.key(11), num_samples=4096)
    )[0]
    f0 = np.asarray(model.latent_drift(0.0, z0, None))
    # SE ~0.04 per component (drift spread and latent noise); over h = 0.02 the
    # drift itself moves by about |grad f| |f| h ~ 0.03. Measured |diff| < 0.05.
    np.testing.assert_allclose(measured, predicted, atol=4 * se.max() + 0.03)
    # The bias itself, ~(0.17, 0.22) here, is several SE from zero.
    assert np.linalg.norm(measured - f0) > 5 * se.max()
    assert np.linalg.norm(predicted - f0) > 0.15

    # The relative squared bias over the box grows with the off-manifold variance
    # (measured 0.013 as solved, 0.068 doubled; the MC error is a few 1e-3).
    options = dict(key=jax.random.key(12), num_samples=256)
    solved = float(private_noise_drift_bias(private_ou, ou_points, **options))
    doubled = float(private_noise_drift_bias(model, ou_points, **options))
    assert 0 < solved < doubled


# --- private noise: transforms -----------------------------------------------------


def test_private_loss_jits_vmaps_and_has_the_analytic_sigma_gradient(
    private_ou, ou, ou_points
):
    model = eqx.tree_at(lambda m: m.sigma, private_ou, 1.1 * private_ou.sigma)
    loss = lambda m, z: ddm_jax.matching_loss(m, ou, z)[0]  # noqa: E731
    eager = loss(model, ou_points)
    # Same float32 program compiled or not: equal up to reassociation.
    assert float(jax.jit(loss)(model, ou_points)) == pytest.approx(float(eager), 1e-5)
    batched = jax.vmap(loss, in_axes=(None, 0))(model, ou_points.reshape(4, 64, 2))
    assert batched.shape == (4,) and bool(jnp.all(jnp.isfinite(batched)))

    # D_theta is constant and D = 0.25 I: dL_diff/dsigma_i
    # = 4 sigma_i p_i^T (D_theta - D) p_i / ||D||^2, p_i the i-th column of E+.
    grads = eqx.filter_grad(loss)(model, ou_points)
    E_pinv = np.linalg.pinv(np.asarray(model.E, np.float64))
    sigma = np.asarray(model.sigma, np.float64)
    R = (E_pinv * sigma**2) @ E_pinv.T - 0.25 * np.eye(2)
    expected = 4 * sigma * np.einsum("ki,kl,li->i", E_pinv, R, E_pinv) / 0.125
    # float32 gradient of a float32 loss: relative 1e-4 of the largest entry.
    np.testing.assert_allclose(
        grads.sigma, expected, atol=1e-4 * np.abs(expected).max()
    )


# --- activity-gated latent noise ---------------------------------------------------


def test_gated_noise_matches_gbm_diffusion_at_128_neurons_by_solve_and_by_fit():
    # D(z) = sigma^2 z^2 is state dependent; g = sigma z keeps its sign on the box
    # [0.05, 3], so the linear fit of g on [1, phi] is well posed. tests/test_solve.py
    # and tests/test_train.py check N = 32 (and 512 for the solve); this is the
    # acceptance bound 1e-2 at N = 128 for both routes.
    gbm = systems.get("gbm")
    points = ddm_jax.sample_points(
        gbm, key=jax.random.key(13), num_points=256, method="box"
    )
    held_out = ddm_jax.sample_points(
        gbm, key=jax.random.key(14), num_points=256, method="box"
    )
    model = LatentRNN.init(
        key=jax.random.key(15), system=gbm, num_neurons=128, noise="gated"
    )
    solved = ddm_jax.solve_readout(model, gbm, points)
    # Measured 1e-12 (129 features for a linear g).
    assert float(ddm_jax.relative_errors(solved, gbm, held_out)["diffusion"]) <= 1e-2

    trained, history = ddm_jax.fit(
        model,
        gbm,
        points,
        key=jax.random.key(16),
        optimizer=optax.adam(1e-2),
        steps=300,
        chunk_size=300,
    )
    assert history["diffusion"][0] > 0.5  # the random start is far off
    errors = ddm_jax.relative_errors(trained, gbm, held_out)
    # Measured 1.6e-5 (diffusion) and 8.5e-4 (drift) after 300 Adam steps.
    assert float(errors["diffusion"]) <= 1e-2
    assert float(errors["drift"]) <= 1e-2
