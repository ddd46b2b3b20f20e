"""The public functions inside a user's own `jax.jit`, `jax.vmap` and `jax.grad`.

DESIGN §3: models are PyTrees usable inside the user's transformations. Each check
compares against an independent value: the eager call, separate calls per key or
model, a closed-form gradient, an envelope-theorem identity or a finite difference.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ddm_jax
from ddm_jax import LatentRNN


def _index(tree, i):
    return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


def _drift_at(model, z):
    return jax.vmap(lambda zi: model.latent_drift(0.0, zi, None))(z)


@pytest.fixture(scope="module")
def tanh_model(ou):
    return LatentRNN.init(key=jax.random.key(0), system=ou, num_neurons=32)


@pytest.fixture(scope="module")
def stacked_models(ou):
    keys = jax.random.split(jax.random.key(1), 2)
    return eqx.filter_vmap(lambda k: LatentRNN.init(key=k, system=ou, num_neurons=16))(
        keys
    )


# --- solve_readout ------------------------------------------------------------------


def test_solve_readout_under_jit_equals_eager(ou, tanh_model, ou_points, ou_held_out):
    eager = ddm_jax.solve_readout(tanh_model, ou, ou_points)
    jitted = jax.jit(lambda m, z: ddm_jax.solve_readout(m, ou, z))(
        tanh_model, ou_points
    )
    # V itself is ill-determined (features nearly collinear), so compare the fitted
    # field: float32 reassociation under XLA fusion moves it by ~1e-6 relative.
    np.testing.assert_allclose(
        _drift_at(jitted, ou_held_out),
        _drift_at(eager, ou_held_out),
        rtol=1e-4,
        atol=1e-5,
    )
    np.testing.assert_allclose(jitted.G0, eager.G0, rtol=1e-6, atol=1e-7)


def test_solve_readout_vmapped_over_models_equals_separate_solves(
    ou, stacked_models, ou_points, ou_held_out
):
    assert stacked_models.E.shape == (2, 16, 2)
    solved = jax.vmap(lambda m: ddm_jax.solve_readout(m, ou, ou_points))(stacked_models)
    for i in range(2):
        alone = ddm_jax.solve_readout(_index(stacked_models, i), ou, ou_points)
        # Batched and single SVDs may take different LAPACK paths: float32 rounding.
        np.testing.assert_allclose(
            _drift_at(_index(solved, i), ou_held_out),
            _drift_at(alone, ou_held_out),
            rtol=1e-4,
            atol=1e-5,
        )


def test_grad_through_solve_readout_obeys_the_envelope_theorem(ou, ou_points):
    # V*(b) minimises L_drift on the same points, so dL(b, V*(b))/db = dL/db at fixed
    # V = V*(b): the SVD's derivative must cancel exactly.
    model = LatentRNN.init(key=jax.random.key(2), system=ou, num_neurons=8)
    solved = ddm_jax.solve_readout(model, ou, ou_points, noise=False)

    def through_solve(b):
        m = eqx.tree_at(lambda m: m.b, model, b)
        m = ddm_jax.solve_readout(m, ou, ou_points, noise=False)
        return ddm_jax.relative_errors(m, ou, ou_points)["drift"]

    def fixed_readout(b):
        m = eqx.tree_at(lambda m: m.b, solved, b)
        return ddm_jax.relative_errors(m, ou, ou_points)["drift"]

    g_solve = jax.grad(through_solve)(model.b)
    g_fixed = jax.grad(fixed_readout)(model.b)
    assert float(jnp.linalg.norm(g_fixed)) > 1e-4  # not trivially zero
    # float32 SVD derivative of 8 tanh features: ~1e-3 relative seen, bound 2e-2.
    np.testing.assert_allclose(
        g_solve, g_fixed, atol=2e-2 * float(jnp.abs(g_fixed).max())
    )


# --- matching_loss ------------------------------------------------------------------


def test_matching_loss_under_jit_equals_eager(ou, tanh_model, ou_points):
    eager, parts = ddm_jax.matching_loss(tanh_model, ou, ou_points)
    jitted, jparts = jax.jit(lambda m, z: ddm_jax.matching_loss(m, ou, z))(
        tanh_model, ou_points
    )
    # float32 means over 256 points, fused differently: ~1e-7 relative.
    np.testing.assert_allclose(jitted, eager, rtol=1e-5)
    for name in parts:
        np.testing.assert_allclose(jparts[name], parts[name], rtol=1e-5, atol=1e-12)


def test_matching_loss_vmapped_over_models_equals_separate_calls(
    ou, stacked_models, ou_points
):
    losses, _ = jax.vmap(lambda m: ddm_jax.matching_loss(m, ou, ou_points))(
        stacked_models
    )
    assert losses.shape == (2,)
    for i in range(2):
        alone, _ = ddm_jax.matching_loss(_index(stacked_models, i), ou, ou_points)
        np.testing.assert_allclose(losses[i], alone, rtol=1e-5)  # float32 rounding


def test_matching_loss_gradients_match_closed_forms(ou, tanh_model, ou_points):
    # Low rank, constant noise: L = L_drift(V) + L_diff(G0) with
    #   L_drift = mean ||(-z + V^T phi)/tau - f||^2 / mean ||f||^2
    #   dL/dV   = 2 Phi^T R / (M tau mean||f||^2),   R = f_theta - f
    #   L_diff  = ||G0 G0^T - D||_F^2 / ||D||_F^2,
    #   dL/dG0  = 4 (G0 G0^T - D) G0 / ||D||^2.
    grads = jax.grad(lambda m: ddm_jax.matching_loss(m, ou, ou_points)[0])(tanh_model)

    z = np.asarray(ou_points, np.float64)
    E, b = np.asarray(tanh_model.E, np.float64), np.asarray(tanh_model.b, np.float64)
    V, G0 = np.asarray(tanh_model.V, np.float64), np.asarray(tanh_model.G0, np.float64)
    A, tau = np.asarray(ou.A, np.float64), tanh_model.tau
    Phi = np.tanh(z @ E.T + b)
    f = -z @ A.T
    R = (-z + Phi @ V) / tau - f
    power = np.mean(np.sum(f**2, 1))
    dV = 2 * Phi.T @ R / (len(z) * tau * power)
    D = 0.25 * np.eye(2)
    dG0 = 4 * (G0 @ G0.T - D) @ G0 / np.sum(D**2)
    # float32 autodiff against a float64 formula: relative ~1e-6.
    np.testing.assert_allclose(grads.V, dV, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads.G0, dG0, rtol=1e-4, atol=1e-6)


def test_matching_loss_gradient_in_E_matches_finite_difference(
    ou, tanh_model, ou_points
):
    # E enters through phi(E z + b) and the pseudo-inverse E+: a nonlinear path.
    direction = jax.random.normal(jax.random.key(3), tanh_model.E.shape)

    def loss(s):
        m = eqx.tree_at(lambda m: m.E, tanh_model, tanh_model.E + s * direction)
        return ddm_jax.matching_loss(m, ou, ou_points)[0]

    grads = jax.grad(lambda m: ddm_jax.matching_loss(m, ou, ou_points)[0])(tanh_model)
    along = float(jnp.sum(grads.E * direction))
    eps = 1e-2
    fd = (float(loss(eps)) - float(loss(-eps))) / (2 * eps)
    # Central difference: O(eps^2) truncation plus float32 cancellation ~1e-7/eps,
    # together well under 1% of the derivative (|along| ~ 1).
    np.testing.assert_allclose(along, fd, rtol=1e-2)


# --- make_train_step ----------------------------------------------------------------


@pytest.fixture(scope="module")
def train_setup(ou, tanh_model):
    optimizer = optax.adam(1e-2)
    state = optimizer.init(eqx.filter(tanh_model, eqx.is_inexact_array))
    step = ddm_jax.make_train_step(ou, optimizer, batch_size=32)
    return step, state


def test_train_step_under_jit_equals_eager(tanh_model, ou_points, train_setup):
    step, state = train_setup
    key = jax.random.key(4)
    m_eager, _, loss_eager, _ = step(tanh_model, state, ou_points, key)
    m_jit, _, loss_jit, _ = eqx.filter_jit(step)(tanh_model, state, ou_points, key)
    np.testing.assert_allclose(loss_jit, loss_eager, rtol=1e-5)  # float32 fusion
    # Adam's first step moves each parameter by ~lr sign(g): compare the moves.
    np.testing.assert_allclose(m_jit.V, m_eager.V, atol=1e-5)
    np.testing.assert_allclose(m_jit.E, m_eager.E, atol=1e-5)


def test_train_step_vmapped_over_keys_equals_separate_calls(
    tanh_model, ou_points, train_setup
):
    step, state = train_setup
    keys = jax.random.split(jax.random.key(5), 2)
    models, _, losses, _ = jax.vmap(lambda k: step(tanh_model, state, ou_points, k))(
        keys
    )
    singles = [step(tanh_model, state, ou_points, k) for k in keys]
    # The two keys draw different mini-batches: different losses.
    assert abs(float(singles[0][2]) - float(singles[1][2])) > 1e-6
    for i, (m, _, loss, _) in enumerate(singles):
        np.testing.assert_allclose(losses[i], loss, rtol=1e-5)  # float32 rounding
        np.testing.assert_allclose(models.V[i], m.V, atol=1e-5)


def test_grad_through_a_train_step_matches_closed_form(ou, tanh_model, ou_points):
    # With SGD, G0 is updated by G0' = G0 - lr dL_diff/dG0 and nothing else depends on
    # G0, so d L(step(G0)) / dG0 = d L_diff(G0 - lr h(G0)) / dG0 with the closed-form
    # h = 4 (G G^T - D) G / ||D||^2, differentiated here by float64 central differences.
    lr = 0.1
    optimizer = optax.sgd(lr)
    state = optimizer.init(eqx.filter(tanh_model, eqx.is_inexact_array))
    step = ddm_jax.make_train_step(ou, optimizer)

    def after_step(G0):
        m = eqx.tree_at(lambda m: m.G0, tanh_model, G0)
        m, _, _, _ = step(m, state, ou_points, jax.random.key(6))
        return ddm_jax.matching_loss(m, ou, ou_points)[0]

    grad = jax.grad(after_step)(tanh_model.G0)

    D = 0.25 * np.eye(2)

    def closed(G):
        new = G - lr * 4 * (G @ G.T - D) @ G / np.sum(D**2)
        return np.sum((new @ new.T - D) ** 2) / np.sum(D**2)

    G = np.asarray(tanh_model.G0, np.float64)
    fd, eps = np.zeros_like(G), 1e-6
    for idx in np.ndindex(G.shape):
        d = np.zeros_like(G)
        d[idx] = eps
        fd[idx] = (closed(G + d) - closed(G - d)) / (2 * eps)
    # float32 second-order autodiff vs float64 differences (error ~1e-9): ~1e-6 rel.
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-6)


# --- simulate_rnn (and simulate_sde) ------------------------------------------------


@pytest.fixture(scope="module")
def linear_model(ou, ou_points):
    """An identity-phi network solved on the OU: an exactly linear SDE in x."""
    model = LatentRNN.init(
        key=jax.random.key(7), system=ou, num_neurons=16, nonlinearity="identity"
    )
    return ddm_jax.solve_readout(model, ou, ou_points)


def test_simulate_rnn_vmapped_over_keys_equals_separate_calls(linear_model):
    def run(key):
        return ddm_jax.simulate_rnn(
            linear_model,
            key=key,
            z0=jnp.array([0.3, -0.2]),
            num_paths=2,
            t1=0.5,
            dt=0.01,
        )[1]

    keys = jax.random.split(jax.random.key(8), 2)
    batched = jax.vmap(run)(keys)
    separate = jnp.stack([run(k) for k in keys])
    assert batched.shape == (2, 2, 51, 2)
    assert float(jnp.abs(separate[0] - separate[1]).max()) > 1e-3  # keys matter
    # Same Euler updates batched: float32 rounding only.
    np.testing.assert_allclose(batched, separate, atol=1e-6)


def test_simulate_rnn_under_jit_equals_eager(linear_model):
    # brownian="tree" makes the noise a pure function of (key, t), so the jitted run
    # must reproduce the eager one. (The default UnsafeBrownianPath draws each
    # increment from the key folded with the bits of t, and XLA may round the step
    # times differently under an outer jit, so only its statistics are comparable:
    # see test_simulate_sde_with_unsafe_noise_under_jit_has_ou_variance.)
    def run(key):
        return ddm_jax.simulate_rnn(
            linear_model,
            key=key,
            z0=jnp.array([0.3, -0.2]),
            num_paths=2,
            t1=0.5,
            dt=0.01,
            brownian="tree",
        )[1]

    key = jax.random.key(9)
    # The tree is continuous in t: ulp-level time differences move z by ~1e-6.
    np.testing.assert_allclose(jax.jit(run)(key), run(key), atol=1e-5)


def test_simulate_sde_under_jit_equals_eager(ou):
    def run(key):
        return ddm_jax.simulate_sde(
            ou, key=key, num_paths=2, t1=0.5, dt=0.01, brownian="tree"
        )[1]

    key = jax.random.key(10)
    np.testing.assert_allclose(jax.jit(run)(key), run(key), atol=1e-5)  # as above


def test_simulate_sde_with_unsafe_noise_under_jit_has_ou_variance():
    # PITFALLS 1 inside the user's jit: dX = -X dt + dW, Euler dt = 0.01, T = 1:
    # per-component Var X1 = 0.4352 for the Euler chain.
    sde = ddm_jax.systems.get("ou", A=1.0, g=1.0, dim=2)
    n = 2000

    @jax.jit
    def final(key):
        return ddm_jax.simulate_sde(
            sde,
            key=key,
            z0=jnp.zeros(2),
            num_paths=n,
            t1=1.0,
            dt=0.01,
            save_every=100,
        )[1][:, -1]

    x = np.asarray(final(jax.random.key(12)), np.float64)
    r = 0.99**2
    euler = 0.01 * (1.0 - r**100) / (1.0 - r)
    # SE of a variance from n Gaussian samples: 0.4352 sqrt(2/n) = 0.014; 4 SE.
    np.testing.assert_allclose(x.var(0), euler, atol=4 * euler * np.sqrt(2.0 / n))


def test_grad_through_simulate_rnn_matches_finite_difference(linear_model):
    # With phi = identity the Euler map x' = x + dt F(x) + E G0 dW is affine in G0 for
    # a fixed Brownian path (brownian="tree" is a pure function of the key), so the
    # final readout is affine in G0 and a central difference of any size is exact.
    weights = jnp.array([1.0, 2.0])

    def final(G0):
        m = eqx.tree_at(lambda m: m.G0, linear_model, G0)
        _, zs = ddm_jax.simulate_rnn(
            m,
            key=jax.random.key(11),
            z0=jnp.array([0.3, -0.2]),
            num_paths=3,
            t1=0.5,
            dt=0.01,
            brownian="tree",
        )
        return jnp.sum(zs[:, -1] @ weights)

    grad = jax.grad(final)(linear_model.G0)
    fd, eps = np.zeros((2, 2)), 0.5
    for idx in np.ndindex(2, 2):
        d = jnp.zeros((2, 2)).at[idx].set(eps)
        fd[idx] = float(final(linear_model.G0 + d)) - float(final(linear_model.G0 - d))
        fd[idx] /= 2 * eps
    assert np.abs(fd).max() > 0.1  # the noise does reach the readout
    # Affine map: only float32 rounding of sums of ~50 terms of size ~1 remains.
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-5)
