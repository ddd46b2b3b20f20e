"""`simulate_sde` against analytic moments (PITFALLS 1-5) and solver conventions."""

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg

import ddm_jax
from ddm_jax import systems
from ddm_jax.simulate import save_times


def _brownian(dim, scales):
    """dz = diag(scales) dW with a (K, K) noise matrix, no drift."""
    g = jnp.diag(jnp.asarray(scales))
    return systems.FunctionSDE(
        lambda t, z, args: jnp.zeros(dim),
        lambda t, z, args: g,
        z0=jnp.zeros(dim),
        box_lower=-jnp.ones(dim),
        box_upper=jnp.ones(dim),
        noise_dim=dim,
    )


def test_ou_sample_covariance_matches_lyapunov(ou):
    n, dt = 4000, 0.01
    # Relaxation: both eigenvalues of A have real part 1, so the covariance started at
    # 0 is within e^{-2 t1} ~ 1e-7 of stationary at t1 = 8.
    ts, zs = ddm_jax.simulate_sde(
        ou,
        key=jax.random.key(0),
        z0=jnp.zeros(2),
        num_paths=n,
        t1=8.0,
        dt=dt,
        save_every=800,
    )
    assert zs.shape == (n, 2, 2)
    C = np.cov(np.asarray(zs[:, -1], np.float64).T)

    S = 0.125 * np.eye(2)  # A S + S A^T = g g^T, see test_systems
    # The Euler chain z' = (I - dt A) z + sqrt(dt) g xi has its own stationary
    # covariance (discrete Lyapunov equation); its distance from S is the method's
    # O(dt) bias, which must be small next to the Monte-Carlo band below.
    M = np.eye(2) - dt * np.asarray(ou.A, np.float64)
    S_euler = scipy.linalg.solve_discrete_lyapunov(M, dt * 0.25 * np.eye(2))
    # Monte-Carlo standard errors of a Gaussian sample covariance with n paths:
    # var entries s sqrt(2/n) = 0.0028, cross entry s / sqrt(n) = 0.0020. 4 SE bands.
    se = np.array([[np.sqrt(2.0), 1.0], [1.0, np.sqrt(2.0)]]) * 0.125 / np.sqrt(n)
    bias = np.abs(S_euler - S).max()  # 1.3e-3, about 0.1 S dt
    assert bias < se.min()
    assert np.all(np.abs(C - S_euler) < 4 * se), (C, S_euler)
    assert np.all(np.abs(C - S) < 4 * se + bias), (C, S)


def test_every_path_gets_its_own_brownian_motion():
    # PITFALLS 1: 2-D OU dX = -X dt + dW, X0 = 0, T = 1, Euler dt = 0.01, 4000 paths.
    sde = systems.get("ou", A=1.0, g=1.0, dim=2)
    n, dt, steps = 4000, 0.01, 100
    _, zs = ddm_jax.simulate_sde(
        sde,
        key=jax.random.key(1),
        z0=jnp.zeros(2),
        num_paths=n,
        t1=1.0,
        dt=dt,
        save_every=steps,
    )
    x = np.asarray(zs[:, -1], np.float64)
    assert np.unique(x, axis=0).shape[0] == n  # no two paths share a key

    exact = (1.0 - np.exp(-2.0)) / 2.0  # 0.4323
    # The Euler chain X' = (1 - dt) X + sqrt(dt) xi: Var = dt (1 - r^n) / (1 - r),
    # r = (1 - dt)^2, which gives the 0.4352 quoted in PITFALLS 1.
    r = (1.0 - dt) ** 2
    euler = dt * (1.0 - r**steps) / (1.0 - r)
    np.testing.assert_allclose([exact, euler], [0.4323, 0.4352], atol=5e-5)

    C = np.cov(x.T)
    se_var = euler * np.sqrt(2.0 / (n - 1))  # ~0.0098, the SE ~ 0.01 of PITFALLS 1
    se_cov = euler / np.sqrt(n)  # ~0.0069
    # 4 SE bands around the Euler value; the exact value is 0.3 SE away from it.
    np.testing.assert_allclose(np.diag(C), euler, atol=4 * se_var)
    np.testing.assert_allclose(np.diag(C), exact, atol=4 * se_var + (euler - exact))
    assert abs(C[0, 1]) < 4 * se_cov


def test_diagonal_noise_matrix_gives_independent_channels():
    # PITFALLS 2: dX = diag(1, 0.5) dW, T = 1: Cov X1 = [[1, 0], [0, 0.25]] (Euler
    # sums Gaussian increments, so it is exact here up to sampling error).
    n = 4000
    _, zs = ddm_jax.simulate_sde(
        _brownian(2, [1.0, 0.5]),
        key=jax.random.key(2),
        num_paths=n,
        t1=1.0,
        dt=0.01,
        save_every=100,
    )
    C = np.cov(np.asarray(zs[:, -1], np.float64).T)
    expected = np.array([[1.0, 0.0], [0.0, 0.25]])
    # SEs: var entries v sqrt(2/n) (0.022, 0.0056); cross sqrt(v1 v2 / n) = 0.0079.
    se = np.array([[np.sqrt(2.0), 0.5], [0.5, 0.25 * np.sqrt(2.0)]]) / np.sqrt(n)
    assert np.all(np.abs(C - expected) < 4 * se), C


def test_gbm_mean_follows_ito_under_euler():
    # PITFALLS 3: dX = 0.5 X dt + 0.5 X dW, X0 = 1, T = 1: E[X1] = e^0.5 (Ito).
    gbm = systems.get("gbm")
    n, dt = 20000, 0.01
    _, zs = ddm_jax.simulate_sde(
        gbm, key=jax.random.key(3), num_paths=n, t1=1.0, dt=dt, save_every=100
    )
    x = np.asarray(zs[:, -1, 0], np.float64)
    ito = np.exp(0.5)
    euler = (1.0 + 0.5 * dt) ** 100  # E of the Euler chain: 1.6467
    # SE = sd / sqrt(n), sd^2 = e^{2 mu}(e^{sigma^2} - 1) = 0.77: SE = 0.0062.
    se = np.sqrt(np.exp(1.0) * (np.exp(0.25) - 1.0) / n)
    assert abs(x.mean() - euler) < 4 * se
    assert abs(x.mean() - ito) < 4 * se + (ito - euler)
    assert abs(x.mean() - np.exp(0.625)) > 20 * se  # not the Stratonovich value


def test_a_stratonovich_solver_gives_the_stratonovich_gbm_mean():
    # PITFALLS 3: Heun converges to the Stratonovich solution, E[X1] = e^0.625.
    gbm = systems.get("gbm")
    n = 8000
    _, zs = ddm_jax.simulate_sde(
        gbm,
        key=jax.random.key(4),
        num_paths=n,
        t1=1.0,
        dt=0.01,
        save_every=100,
        solver=diffrax.Heun(),
    )
    x = np.asarray(zs[:, -1, 0], np.float64)
    strat = np.exp(0.625)
    # Stratonovich GBM: X1 = exp(0.625 - 0.125 + 0.5 W): sd^2 = e^{1.25}(e^{0.25} - 1).
    se = np.sqrt(np.exp(1.25) * (np.exp(0.25) - 1.0) / n)  # 0.011
    # 4 SE plus Heun's O(dt^2) weak error (well under 1e-3 at dt = 0.01).
    assert abs(x.mean() - strat) < 4 * se + 1e-3


def test_simulated_increments_obey_kramers_moyal_normalisation():
    # PITFALLS 5: OU theta = 0.3, sigma = 0.1, dt = 1e-3, 5e5 increments: the drift
    # slope of E[dx | x]/dt is -0.3 (SE ~0.035) and E[dx^2 | x]/dt = sigma^2 = 0.01.
    theta, sigma, dt = 0.3, 0.1, 1e-3
    sde = systems.get("ou", A=theta, g=sigma, dim=1)
    paths, steps = 100, 5000
    s = sigma / np.sqrt(2 * theta)  # stationary sd, so x spreads from the start
    z0 = s * jax.random.normal(jax.random.key(5), (paths, 1))
    _, zs = ddm_jax.simulate_sde(
        sde, key=jax.random.key(6), z0=z0, t1=steps * dt, dt=dt
    )
    z = np.asarray(zs[..., 0], np.float64)
    x, dx = z[:, :-1].ravel(), np.diff(z, axis=1).ravel()
    assert x.size == paths * steps

    slope = np.polyfit(x, dx / dt, 1)[0]
    # Regression SE: sqrt((sigma^2/dt) / (n Var x)) = 0.035; 4 SE band.
    se_slope = np.sqrt((sigma**2 / dt) / (x.size * x.var()))
    assert abs(slope + theta) < 4 * se_slope, slope

    D = np.mean(dx**2) / dt
    # Relative SE of a mean of squared Gaussians: sqrt(2/n) = 0.002; the drift's
    # contribution theta^2 Var(x) dt / sigma^2 = 1.5e-4 is below it. 1% is 5 SE.
    np.testing.assert_allclose(D, sigma**2, rtol=1e-2)


def test_brownian_tree_keeps_quadratic_variation():
    # PITFALLS 4: sampled on a 1e-3 grid over [0, 1] a correct path has quadratic
    # variation 1.00 (a tree with tol = 5e-3 gives 0.52).
    ts, zs = ddm_jax.simulate_sde(
        _brownian(1, [1.0]),
        key=jax.random.key(7),
        num_paths=16,
        t1=1.0,
        dt=1e-3,
        brownian="tree",
    )
    qv = np.sum(np.diff(np.asarray(zs[..., 0], np.float64), axis=1) ** 2, axis=1)
    # Per path sd sqrt(2/1000) = 0.045; mean of 16 paths: SE 0.011, 4 SE band.
    assert abs(qv.mean() - 1.0) < 0.045, qv.mean()


def test_deterministic_flow_matches_matrix_exponential(ou):
    z0 = jnp.array([[1.0, -0.5], [0.2, 0.8]])
    ts, zs = ddm_jax.simulate_sde(
        ou,
        key=jax.random.key(8),
        z0=z0,
        t1=2.0,
        dt=0.01,
        noise=False,
        solver=diffrax.Tsit5(),
    )
    expected = np.asarray(z0) @ scipy.linalg.expm(-2.0 * np.asarray(ou.A)).T
    # Tsit5 at dt = 0.01 has error ~1e-10; float32 rounding over 200 steps ~1e-6.
    np.testing.assert_allclose(zs[:, -1], expected, atol=1e-5)
    np.testing.assert_allclose(ts[-1], 2.0, rtol=1e-6)


def test_save_times_lie_on_whole_steps():
    ts = np.asarray(save_times(0.0, 1.0, 0.01, 30))
    # floor(100 / 30) = 3 saved intervals after t0; float32 multiples of 0.3.
    np.testing.assert_allclose(ts, [0.0, 0.3, 0.6, 0.9], atol=1e-6)
    with pytest.raises(ValueError, match="simulate.dt"):
        save_times(0.0, 1.0, 0.0, 1)
    with pytest.raises(ValueError, match="simulate.t1"):
        save_times(1.0, 1.0, 0.1, 1)


def test_simulate_sde_rejects_a_badly_shaped_start(ou):
    with pytest.raises(ValueError, match="z0"):
        ddm_jax.simulate_sde(ou, key=jax.random.key(9), z0=jnp.zeros(3), t1=1.0, dt=0.1)


def test_simulate_sde_runs_under_strict_dtype_promotion(ou):
    # STYLE asks the library to pass under strict promotion; the result must equal the
    # standard-promotion run bit for bit (same key, same operations).
    kwargs = dict(key=jax.random.key(10), z0=jnp.zeros(2), num_paths=4, t1=0.5, dt=0.01)
    ts, zs = ddm_jax.simulate_sde(ou, **kwargs)
    with jax.numpy_dtype_promotion("strict"):
        ts_strict, zs_strict = ddm_jax.simulate_sde(ou, **kwargs)
    np.testing.assert_array_equal(ts_strict, ts)
    np.testing.assert_array_equal(zs_strict, zs)


@pytest.mark.parametrize(
    "connectivity, noise",
    [("low_rank", "latent"), ("dense", "gated"), ("low_rank", "private")],
)
def test_fused_network_step_is_drift_dt_plus_noise_dw(connectivity, noise):
    # The simulation's one-pass step must equal the two separate pieces it fuses.
    system = systems.get("cued_wells") if noise == "latent" else systems.get("lorenz")
    model = ddm_jax.LatentRNN.init(
        key=jr.key(0), system=system, num_neurons=40, connectivity=connectivity,
        noise=noise, weight_scale=0.5,
    )  # fmt: skip
    x = jr.normal(jr.key(1), (40,))
    dw = jr.normal(jr.key(2), (model.noise_dim,))
    u = jnp.ones(system.input_dim) if system.input_dim else None
    dt = 0.01
    expected = model.vector_field(0.0, x, u) * dt + model.noise_operator(0.0, x, u).mv(
        dw
    )
    got = model.fused_increment()(0.0, x, u, dt, dw)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # And the matrix form of the noise agrees with the operator.
    sigma = model.noise_matrix(0.0, x, u)
    sigma = sigma.as_matrix() if hasattr(sigma, "as_matrix") else sigma
    np.testing.assert_allclose(
        sigma @ dw, model.noise_operator(0.0, x, u).mv(dw), rtol=1e-5, atol=1e-6
    )


def test_network_paths_agree_between_the_fused_step_and_a_generic_solver():
    # Euler through the fused step and diffrax's own Euler over the separate drift
    # and noise terms integrate the same SDE with the same Brownian increments.
    system = systems.get("lorenz")
    model = ddm_jax.LatentRNN.init(
        key=jr.key(0), system=system, num_neurons=64, tau=0.1
    )
    options = dict(
        key=jr.key(3), z0=system.z0, num_paths=3, t1=0.2, dt=0.002, save_every=5
    )
    _, fused = ddm_jax.simulate_rnn(model, **options)
    _, generic = ddm_jax.simulate_rnn(model, solver=diffrax.Euler(), **options)
    np.testing.assert_allclose(fused, generic, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("brownian", ["unsafe", "tree"])
def test_reverse_mode_gradient_through_a_network_run_matches_finite_differences(
    brownian,
):
    # The same Brownian increments are drawn in the forward and the backward pass,
    # so jax.grad of a path statistic equals its central difference.
    import equinox as eqx

    system = systems.get("ou")
    model = ddm_jax.LatentRNN.init(key=jr.key(0), system=system, num_neurons=16)

    def loss(G0):
        m = eqx.tree_at(lambda m: m.G0, model, G0)
        _, zs = ddm_jax.simulate_rnn(
            m, key=jr.key(1), z0=jnp.zeros(system.latent_dim), num_paths=32,
            t1=0.5, dt=0.01, brownian=brownian,
        )  # fmt: skip
        return jnp.mean(zs[:, -1] ** 2)

    grad = jax.grad(loss)(model.G0)[0, 0]
    eps = 1e-3
    central = (loss(model.G0.at[0, 0].add(eps)) - loss(model.G0.at[0, 0].add(-eps))) / (
        2 * eps
    )
    np.testing.assert_allclose(grad, central, rtol=2e-3)


def test_simulate_rnn_refuses_contradictory_or_empty_runs():
    system = systems.get("ou")
    model = ddm_jax.LatentRNN.init(key=jr.key(0), system=system, num_neurons=16)
    run = dict(key=jr.key(1), t1=0.1, dt=0.01)
    z0 = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="not both"):
        ddm_jax.simulate_rnn(model, z0=z0, x0=jnp.zeros(16), **run)
    with pytest.raises(ValueError, match=r"`x0` must have shape \(16,\)"):
        ddm_jax.simulate_rnn(model, z0=None, x0=jnp.zeros(10), **run)
    with pytest.raises(ValueError, match="disagrees with the 3 rows"):
        ddm_jax.simulate_rnn(model, z0=None, x0=jnp.zeros((3, 16)), num_paths=5, **run)
    with pytest.raises(ValueError, match="shorter than one saving interval"):
        ddm_jax.simulate_rnn(
            model, z0=z0, key=jr.key(1), t1=0.1, dt=0.01, save_every=50
        )
    with pytest.raises(ValueError, match="not an SDE solver"):
        ddm_jax.simulate_rnn(model, z0=z0, solver=diffrax.Tsit5(), **run)
    # Without noise any diffrax solver integrates the flow.
    _, zs = ddm_jax.simulate_rnn(
        model, z0=z0, solver=diffrax.Tsit5(), noise=False, **run
    )
    assert zs.shape == (3, 11, 2)
