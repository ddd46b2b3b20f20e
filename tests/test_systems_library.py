"""The systems of `ddm_jax.systems.library`: each test checks a value known
independently of the code (a closed form, a hand computation or a published number)."""

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import ddm_jax
from ddm_jax import systems

NEW = ("noneq_ou", "multi_well", "van_der_pol", "rossler", "may_leonard", "cir", "hopf")


@jax.jit
def _drifts(sde, zs):
    """f at each row of `zs`, batched and compiled once per system."""
    return jax.vmap(lambda z: sde.drift(0.0, z, None))(zs)


@jax.jit
def _jacobians(sde, zs):
    """∂f/∂z at each row of `zs`."""
    return jax.vmap(jax.jacfwd(lambda z: sde.drift(0.0, z, None)))(zs)


def test_registry_lists_the_library_systems():
    for name in NEW:
        assert name in systems.names()
        sde = systems.get(name)
        assert sde.name == name
        # Defaults must be plain numbers or nested tuples (YAML-expressible).
        for value in systems.parameters(name).values():
            assert np.asarray(value).dtype.kind in "if"


# --- noneq_ou ----------------------------------------------------------------------


def test_noneq_ou_reference_matches_the_hand_computed_case():
    # Defaults: A = [[1, -1], [1, 1]], g = 0.5 I. A S + S A^T = 0.25 I gives
    # S = 0.125 I (Q's part cancels); D_phys = 0.125 I, A S A^T = 0.125 A A^T =
    # 0.25 I, so tr(D_phys^{-1} A S A^T) = 4 and Phi = 4 - tr A = 2.
    sde = systems.get("noneq_ou")
    np.testing.assert_array_equal(np.asarray(sde.A), [[1.0, -1.0], [1.0, 1.0]])
    ref = sde.reference()
    # float32 4x4 solve of a well-conditioned system: a few ulps.
    np.testing.assert_allclose(ref["covariance"], 0.125 * np.eye(2), atol=1e-6)
    np.testing.assert_allclose(ref["entropy_production"], 2.0, rtol=1e-5)


def test_noneq_ou_in_odd_dimension_matches_closed_form_and_scipy():
    # K = 5: rotations in planes (0, 1) and (2, 3), none in 4. S = sigma^2/(2 gamma) I
    # and Phi = 2 floor(K/2) omega^2 / gamma (see the class docstring).
    gamma, omega, sigma = 0.7, 1.3, 0.4
    sde = systems.get("noneq_ou", dim=5, gamma=gamma, omega=omega, noise=sigma)
    A = np.asarray(sde.A, np.float64)
    np.testing.assert_allclose(A + A.T, 2 * gamma * np.eye(5), atol=1e-7)
    assert A[4, 4] == pytest.approx(gamma) and not A[4, :4].any()
    S = np.asarray(sde.stationary_covariance())
    expected = scipy.linalg.solve_continuous_lyapunov(-A, -(sigma**2) * np.eye(5))
    # float32 Kronecker solve (25x25, condition ~10): relative error ~1e-6.
    np.testing.assert_allclose(S, sigma**2 / (2 * gamma) * np.eye(5), atol=1e-6)
    np.testing.assert_allclose(S, expected, atol=1e-6)
    # Phi from float32 S: relative rounding ~1e-6.
    phi = 4 * omega**2 / gamma
    np.testing.assert_allclose(sde.reference()["entropy_production"], phi, rtol=1e-5)


def test_noneq_ou_entropy_production_estimate_from_paths():
    # DESIGN §1: for additive noise Phi is the mean rate of the Stratonovich sum
    # f(z_mid)^T D_phys^{-1} dz along a stationary path; Phi = 2 here.
    sde = systems.get("noneq_ou")
    dt, burn = 0.01, 5.0
    _, zs = ddm_jax.simulate_sde(
        sde, key=jax.random.key(10), z0=jnp.zeros(2), num_paths=128, t1=55.0, dt=dt
    )
    zs = np.asarray(zs)[:, int(burn / dt) :]
    estimate = sde.statistics(zs, dt)["entropy_production"]
    per_path = [sde.statistics(z[None], dt)["entropy_production"] for z in zs]
    se = np.std(per_path) / np.sqrt(len(per_path))  # independent paths: ~0.04
    # 4 SE plus 0.05 for Euler's O(dt) bias (seeds 0-2 averaged 2.015 at dt = 0.01).
    assert abs(estimate - 2.0) < 4 * se + 0.05, (estimate, se)


# --- multi_well --------------------------------------------------------------------


def _multi_well_potential(z, xi, depth, w, c):
    """U written again in float64 NumPy from the docstring's formula."""
    sq = ((z - xi) ** 2).sum(-1)
    return (
        -depth * np.log(np.exp(-sq / (2 * w**2)).sum())
        + 0.5 * c * ((z - xi.mean(0)) ** 2).sum()
    )


def test_multi_well_drift_is_minus_the_gradient_by_finite_differences():
    xi = np.array([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0], [0.0, -1.0, -0.5]])
    depth, w, c = 1.5, 0.6, 0.1
    sde = systems.get(
        "multi_well", patterns=xi.tolist(), depth=depth, width=w, confinement=c
    )
    assert (sde.latent_dim, sde.noise_dim) == (3, 3)
    zs = np.random.default_rng(0).uniform(-1.5, 1.5, size=(20, 3))
    h = 1e-5
    grad = np.array(
        [
            [
                (
                    _multi_well_potential(z + h * e, xi, depth, w, c)
                    - _multi_well_potential(z - h * e, xi, depth, w, c)
                )
                / (2 * h)
                for e in np.eye(3)
            ]
            for z in zs
        ]
    )
    f = np.asarray(_drifts(sde, jnp.asarray(zs, jnp.float32)))
    # float64 central differences (error ~1e-9) vs a float32 drift of size <~10:
    # float32 rounding of z and of the sums, ~1e-5 relative.
    np.testing.assert_allclose(f, -grad, rtol=1e-4, atol=1e-4)


def test_multi_well_wells_are_near_stationary_minima():
    sde = systems.get("multi_well")
    xi = np.asarray(sde.patterns, np.float64)
    depth, w, c = 1.0, 0.4, 0.05  # the defaults
    curvature = depth / w**2 + c  # Hessian of one isolated well plus confinement
    fs = np.asarray(_drifts(sde, jnp.asarray(xi, jnp.float32)))
    Hs = -np.asarray(_jacobians(sde, jnp.asarray(xi, jnp.float32)))
    for mu, (well, f, H) in enumerate(zip(xi, fs, Hs, strict=True)):
        # |f(xi_mu)| <= c |xi_mu - mean| + sum over the other wells of their softmax
        # weight (<= e^{-d^2/2w^2}) times depth d / w^2: ~0.05 + 0.024 here.
        others = np.delete(xi, mu, axis=0)
        d = np.linalg.norm(others - well, axis=1)
        bound = c * np.linalg.norm(well - xi.mean(0)) + np.sum(
            depth * np.exp(-(d**2) / (2 * w**2)) * d / w**2
        )
        assert np.linalg.norm(f) <= bound * 1.0001 + 1e-6, (f, bound)
        assert np.linalg.norm(f) < 0.02 * curvature  # small next to the restoring force
        np.testing.assert_allclose(H, H.T, atol=1e-5)  # a Hessian is symmetric
        eig = np.linalg.eigvalsh((H + H.T) / 2)
        assert np.all(eig > 0)
        # The neighbours' weights e^{-6.25} = 0.002 times d^2/w^4 (~12.5 each) shift
        # the curvature 6.3 by at most ~0.3, i.e. 5% (measured 6.15).
        np.testing.assert_allclose(eig, curvature, rtol=0.06)


def test_multi_well_occupancy_counts_the_nearest_pattern():
    sde = systems.get("multi_well")
    # Three samples near pattern 0, one near pattern 2: occupancy (3/4, 0, 1/4, 0).
    zs = np.array([[[0.9, 0.1], [1.2, -0.2], [0.6, 0.0], [-1.1, 0.3]]])
    assert sde.statistics(zs, 0.1)["occupancy"] == [0.75, 0.0, 0.25, 0.0]


# --- van_der_pol, rossler ----------------------------------------------------------


def test_van_der_pol_limit_cycle_period_matches_published_value():
    sde = systems.get("van_der_pol", mu=1.0)
    dt = 0.01
    ts, zs = ddm_jax.simulate_sde(
        sde,
        key=jax.random.key(0),
        z0=jnp.array([0.5, 0.0]),
        t1=60.0,
        dt=dt,
        noise=False,
        solver=diffrax.Tsit5(),
    )
    ts, x = np.asarray(ts, np.float64), np.asarray(zs[0, :, 0], np.float64)
    keep = ts > 20.0  # past the transient onto the cycle
    ts, x = ts[keep], x[keep]
    up = np.nonzero((x[:-1] < 0) & (x[1:] >= 0))[0]
    crossings = ts[up] - x[up] * dt / (x[up + 1] - x[up])  # linear interpolation
    period = np.diff(crossings).mean()
    # Published 6.6633 (rounded to 4 decimals); Tsit5 at dt = 0.01 and linear
    # interpolation of the crossings are far more accurate than that rounding.
    assert abs(period - 6.6633) < 1e-3, period
    assert sde.reference() == {"period": 6.6633}
    # The phase-velocity statistic on the same path (6 cycles, start and end at
    # arbitrary phases: a fraction of a cycle's nonuniform phase speed, < 2%).
    stat = sde.statistics(np.asarray(zs)[:, keep], dt)["period"]
    np.testing.assert_allclose(stat, 6.6633, rtol=0.02)


def test_rossler_maximal_exponent_matches_published_value():
    sde = systems.get("rossler")
    z0 = jnp.array(
        [[1.0, -6.0, 0.1], [-5.0, 2.0, 0.05], [4.0, 4.0, 0.2], [0.0, -8.0, 1.0]]
    )
    lam = ddm_jax.lyapunov_max(
        sde.drift, z0, key=jax.random.key(0), dt=0.05, t1=2000.0, transient=50.0
    )
    # Sprott (2003): 0.0714. Finite-time estimates over t1 = 2000 scatter by ~5% per
    # start; the mean of four is within 10% (measured 0.0712).
    np.testing.assert_allclose(float(lam.mean()), 0.0714, rtol=0.1)
    assert sde.reference() == {"lyapunov_max": 0.0714}
    assert systems.get("rossler", c=4.0).reference() == {}


# --- may_leonard -------------------------------------------------------------------


def test_may_leonard_fixed_points_and_their_eigenvalues():
    alpha, beta = 0.8, 1.3
    sde = systems.get("may_leonard", alpha=alpha, beta=beta)

    s = 1 / (1 + alpha + beta)
    z_star = np.asarray(sde.interior_fixed_point())
    np.testing.assert_allclose(z_star, s * np.ones(3), rtol=1e-6)
    points = jnp.concatenate([jnp.eye(3), jnp.asarray(z_star)[None]])
    fs, Js = np.asarray(_drifts(sde, points)), np.asarray(_jacobians(sde, points))

    for i in range(3):
        np.testing.assert_array_equal(fs[i], 0.0)
        # Saddle e_i (from inside the orthant): own rate -1, the species that
        # e_i invades 1 - beta < 0, its invader 1 - alpha > 0.
        eig = np.sort(np.linalg.eigvals(Js[i]).real)
        np.testing.assert_allclose(eig, [-1.0, 1 - beta, 1 - alpha], atol=1e-6)

    # float32 drift of terms of size ~0.3: rounding ~1e-7.
    np.testing.assert_allclose(fs[3], 0.0, atol=1e-6)
    # J = -s M with M circulant (1, alpha, beta): eigenvalues -1 and
    # -s (1 - (alpha + beta)/2) +- i s sqrt(3)/2 (beta - alpha): an unstable focus.
    eig = np.linalg.eigvals(Js[3])
    eig = eig[np.argsort(eig.imag)]
    re, im = -s * (1 - (alpha + beta) / 2), s * math.sqrt(3) / 2 * (beta - alpha)
    expected = np.array([re - 1j * im, -1.0, re + 1j * im])
    np.testing.assert_allclose(eig, expected, atol=1e-6)  # float32 3x3 eigenproblem
    assert re > 0


def test_may_leonard_noisy_paths_cycle_in_the_predicted_order():
    sde = systems.get("may_leonard")
    dt = 0.05
    _, zs = ddm_jax.simulate_sde(
        sde, key=jax.random.key(3), num_paths=16, t1=1000.0, dt=dt, save_every=4
    )
    zs = np.asarray(zs)
    assert np.all(np.isfinite(zs))
    assert zs.min() > -0.1  # noise 0.01 against a restoring drift below 0
    stats = sde.statistics(zs, 4 * dt)
    # Linear stability at the saddles (previous test) fixes the order i -> i - 1;
    # a noise of 0.01 cannot carry a path against it across the simplex.
    assert stats["cycle_order"] == sde.reference()["cycle_order"] == 1.0
    assert stats["switch_rate"] > 0.01  # the cycle keeps going (see message)


# --- cir ---------------------------------------------------------------------------


def test_cir_stationary_law_is_the_gamma_law():
    sde = systems.get("cir", kappa=1.0, theta=1.0, noise=0.5)
    ref = sde.reference()
    assert (ref["gamma_shape"], ref["gamma_scale"]) == (8.0, 0.125)
    assert (ref["mean"], ref["variance"]) == (1.0, 0.125)  # theta, theta sigma^2/2k

    dt, n = 0.01, 256
    _, zs = ddm_jax.simulate_sde(
        sde, key=jax.random.key(7), num_paths=n, t1=55.0, dt=dt, save_every=10
    )
    x = np.asarray(zs, np.float64)[:, 50:, 0]  # drop 5 = 5 relaxation times
    # Per-path means are independent; each averages 50 time units with correlation
    # time 1/kappa, so SE(mean) ~ sqrt(2 Var / 50 / n) = 0.0044 (measured 0.004-0.0046)
    se_mean = x.mean(1).std() / np.sqrt(n)
    se_var = x.var(1).std() / np.sqrt(n)  # ~0.0018
    assert abs(x.mean() - 1.0) < 4 * se_mean
    # Euler's stationary variance is sigma^2 theta / (kappa (2 - kappa dt)) = 0.1256.
    assert abs(x.var() - 0.125) < 4 * se_var + 0.001

    ks = sde.statistics(x[..., None], 10 * dt)["ks_gamma"]
    # ~6000 effective samples: a typical KS distance of 0.011 and a 0.1% quantile of
    # 0.025 for independent draws (measured 0.002-0.004).
    assert ks < 0.025
    # Against a Gamma law with the same mean but shape 4, the distance is large.
    wrong = systems.get("cir", kappa=1.0, theta=1.0, noise=math.sqrt(0.5))
    assert wrong.statistics(x[..., None], 10 * dt)["ks_gamma"] > 0.05


def test_cir_diffusion_is_sigma_root_z_and_zero_below_zero():
    sde = systems.get("cir")
    for z in (0.0, 0.3, 2.0):
        D = sde.diffusion_matrix(0.0, jnp.array([z]), None)
        np.testing.assert_allclose(float(D[0, 0]), 0.25 * z, rtol=1e-6)  # float32
    assert float(sde.diffusion(0.0, jnp.array([-0.1]), None)[0, 0]) == 0.0


# --- hopf --------------------------------------------------------------------------


def test_hopf_diffusion_matrix_has_the_stated_form():
    sigma, a = 0.3, 2.0
    sde = systems.get("hopf", noise=sigma, noise_gain=a)
    for z in ([0.0, 0.0], [0.5, -1.0], [2.0, 1.0]):
        D = np.asarray(sde.diffusion_matrix(0.0, jnp.array(z), None))
        expected = sigma**2 * (1 + a * np.dot(z, z)) * np.eye(2)
        np.testing.assert_allclose(D, expected, rtol=1e-6, atol=1e-7)  # float32


def test_hopf_limit_cycle_radius_and_noisy_period():
    mu, omega = 2.0, 3.0
    sde = systems.get("hopf", mu=mu, omega=omega, noise=0.1, noise_gain=1.0)
    starts = jnp.array([[0.1, 0.0], [3.0, 0.0], [0.0, -1.0]])
    _, zs = ddm_jax.simulate_sde(
        sde,
        key=jax.random.key(0),
        z0=starts,
        t1=10.0,
        dt=0.01,
        noise=False,
        solver=diffrax.Tsit5(),
    )
    r = np.linalg.norm(np.asarray(zs[:, -1], np.float64), axis=1)
    # Radial rate at the cycle is -2 mu: after t = 10 the offset is e^{-40}; what
    # remains is float32 rounding.
    np.testing.assert_allclose(r, math.sqrt(mu), rtol=1e-5)
    assert sde.reference() == {"cycle_radius": math.sqrt(mu), "period": 2 * np.pi / 3}

    # Isotropic noise adds no Ito drift to the phase: the mean period stays 2 pi/omega.
    dt = 0.01
    _, zs = ddm_jax.simulate_sde(
        sde, key=jax.random.key(1), num_paths=16, t1=20.0, dt=dt
    )
    period = sde.statistics(np.asarray(zs), dt)["period"]
    # Phase diffusion sigma^2 (1 + a mu)/mu = 0.015 over 16 x 20 time units: SE of the
    # phase velocity 0.007, i.e. 0.2% of omega; Euler's rotation error is
    # (omega dt)^2/3 = 3e-4. Allow 1%.
    np.testing.assert_allclose(period, 2 * np.pi / omega, rtol=0.01)
