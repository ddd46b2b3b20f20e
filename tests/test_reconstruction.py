"""Reconstruction statistics: state-space KL, spectra, autocorrelation, dimension."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddm_jax
from ddm_jax import systems
from ddm_jax.reconstruction import (
    autocorrelation,
    autocorrelation_error,
    correlation_dimension,
    hellinger,
    power_spectrum,
    power_spectrum_hellinger,
    state_space_divergence,
)


def gaussian_kl(mean_b, std_b, mean_a, std_a):
    """D_KL(N_b ‖ N_a) for diagonal Gaussians."""
    mean_b, std_b, mean_a, std_a = map(np.asarray, (mean_b, std_b, mean_a, std_a))
    per_dim = (
        np.log(std_a / std_b)
        + (std_b**2 + (mean_b - mean_a) ** 2) / (2 * std_a**2)
        - 0.5
    )
    return float(per_dim.sum())


def ou_paths(rng, theta, dt, num_paths, num_steps, num_dims=1):
    """Stationary OU paths dz = -θ z dt + dB sampled exactly: an AR(1) chain."""
    a = np.exp(-theta * dt)
    std = np.sqrt(1 / (2 * theta))
    z = np.empty((num_paths, num_steps, num_dims))
    z[:, 0] = std * rng.normal(size=(num_paths, num_dims))
    kicks = std * np.sqrt(1 - a**2) * rng.normal(size=(num_paths, num_steps, num_dims))
    for t in range(1, num_steps):
        z[:, t] = a * z[:, t - 1] + kicks[:, t]
    return z


# --- State space.


@pytest.mark.parametrize("num_dims", [2, 5])
def test_state_space_divergence_approaches_the_gaussian_kl(num_dims):
    rng = np.random.default_rng(0)
    n = 200_000
    mean_a = np.array([0.5, -0.3, 0.0, 0.2, 0.0])[:num_dims]
    std_a = np.array([1.5, 1.2, 1.0, 0.8, 1.3])[:num_dims]
    z_b = rng.normal(size=(n, num_dims))
    z_a = mean_a + std_a * rng.normal(size=(n, num_dims))
    exact = gaussian_kl(np.zeros(num_dims), np.ones(num_dims), mean_a, std_a)
    kl = state_space_divergence(z_a, z_b, bins=30)
    # 2-D: the full grid; 5-D: the sum of marginals, exact for independent
    # coordinates. Binning lowers the KL by about h²/24 E|∇log(p_b/p_a)|² ≈ 0.002
    # (h ≈ 0.3) and the plug-in estimate of 30^K or 5 × 30 cells from 2e5 points
    # raises it by about cells/2n ≈ 0.002: 0.01 is three times both together.
    np.testing.assert_allclose(kl, exact, atol=0.01)
    assert exact > 0.2  # (0.244 and 0.392): the tolerance is small against it


def test_state_space_divergence_is_zero_for_identical_samples_and_counts_escapes():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 500, 3))
    assert state_space_divergence(z, z) == 0.0  # same cells, same probabilities
    # A network that puts half its mass outside the target's range: p_a = p_b / 2 in
    # every cell, so D_KL(p_b ‖ p_a) = log 2, less Σ p_b ε/p_b = ε × (occupied
    # cells ≤ 1000) = 1e-3 at most from the smoothing ε = 1e-6.
    escaped = np.concatenate([z, z + 100.0], axis=1)
    kl = state_space_divergence(escaped, z, bins=10)
    np.testing.assert_allclose(kl, np.log(2), atol=1e-3)


# --- Power spectra.


def test_power_spectrum_hellinger_is_zero_for_equal_and_one_for_disjoint_spectra():
    rng = np.random.default_rng(2)
    dt, t = 0.01, np.arange(1000) * 0.01
    phases = rng.uniform(0, 2 * np.pi, size=(4, 1, 1))
    slow = np.sin(2 * np.pi * 1.0 * t[None, :, None] + phases)
    fast = np.sin(2 * np.pi * 3.0 * t[None, :, None] + phases)
    assert power_spectrum_hellinger(slow, slow, dt) == 0.0
    # 1 and 3 cycles per unit are 20 bins of 0.1 apart; the Hann main lobe (±2 bins)
    # and the Gaussian kernel (σ = 2 bins) overlap by e^{-20²/(8·(2²+1))} ~ 1e-4.
    h = power_spectrum_hellinger(slow, fast, dt)
    assert h > 0.99, h


def test_ou_power_spectrum_matches_the_lorentzian():
    rng = np.random.default_rng(3)
    theta, dt = 1.0, 0.05
    z = ou_paths(rng, theta, dt, num_paths=64, num_steps=2048)
    freqs, spectra = power_spectrum(z, dt)

    def lorentzian(theta):
        # The spectrum of OU sampled every dt (the AR(1) chain): the Lorentzian
        # 1/(θ² + (2πf)²) with its aliases folded in, exact for these samples.
        a = np.exp(-theta * dt)
        s = 1 / (1 - 2 * a * np.cos(2 * np.pi * freqs * dt) + a**2)
        return (s / s.sum())[:, None]

    h = float(hellinger(spectra, lorentzian(theta))[0])
    # Noise: 64 paths × ~7 bins in the kernel give a relative sd near 5% per bin and
    # H² ≈ var/8 → H ≈ 0.02; the kernel's bias at the peak is -1.5%. Measured 0.016.
    assert h < 0.04, h
    # The same test would fail for a process twice as fast.
    assert float(hellinger(spectra, lorentzian(2 * theta))[0]) > 0.1


# --- Autocorrelation.


def test_ou_autocorrelation_is_exp_minus_theta_tau():
    rng = np.random.default_rng(4)
    theta, dt = 1.0, 0.05
    z = ou_paths(rng, theta, dt, num_paths=64, num_steps=2048, num_dims=2)
    lags, rho = autocorrelation(z, dt, max_lag=3.0)
    assert lags.shape == (61,) and rho.shape == (61, 2)
    assert np.all(rho[0] == 1.0)
    # Bartlett's formula: var ρ̂(τ) ≤ (1/N)(1 + a²)/(1 - a²) ≈ 1/(N θ dt) with N =
    # 64 × 2048 points per coordinate: sd ≤ 0.013. 0.05 is ~4 sd for the max over lags.
    exact = np.broadcast_to(np.exp(-theta * lags)[:, None], rho.shape)
    np.testing.assert_allclose(rho, exact, atol=0.05)


def test_autocorrelation_error_is_zero_for_identical_and_matches_the_exponentials():
    rng = np.random.default_rng(5)
    dt = 0.05
    z_b = ou_paths(rng, 1.0, dt, num_paths=64, num_steps=2048)
    z_a = ou_paths(rng, 2.0, dt, num_paths=64, num_steps=2048)
    assert autocorrelation_error(z_b, z_b, dt, max_lag=3.0) == 0.0
    tau = dt * np.arange(61)
    exact = np.sum((np.exp(-2 * tau) - np.exp(-tau)) ** 2) / np.sum(np.exp(-2 * tau))
    err = autocorrelation_error(z_a, z_b, dt, max_lag=3.0)
    # exact = 0.157; the estimated curves carry sd ≤ 0.013 per lag (Bartlett),
    # which moves the ratio by a few hundredths at most.
    np.testing.assert_allclose(err, exact, atol=0.03)


def test_autocorrelation_rejects_a_lag_beyond_the_path():
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(np.zeros((2, 10, 1)), 0.1, max_lag=5.0)


# --- Correlation dimension.


def test_correlation_dimension_of_a_segment_and_a_square():
    rng = np.random.default_rng(6)
    m = 2000
    segment = rng.uniform(size=(m, 1)) * np.array([[1.0, 2.0, -0.5]])
    square = np.c_[rng.uniform(size=(m, 2)), np.zeros(m)]
    # Independent points: no Theiler window. Over seeds 0-5 the segment gave
    # 0.99-1.00 (counting noise of the fit); the square 1.93-1.95, below 2 because its
    # edges subtract (8/3) r³ from C(r) = π r², lowering the local slope by about
    # 0.85 r, i.e. 0.03-0.08 over the fitted radii (r ≈ 0.03-0.1).
    np.testing.assert_allclose(
        correlation_dimension(segment, num_points=m, theiler=0), 1.0, atol=0.04
    )
    np.testing.assert_allclose(
        correlation_dimension(square, num_points=m, theiler=0), 2.0, atol=0.1
    )


def test_lorenz_correlation_dimension_matches_grassberger_procaccia():
    lorenz = systems.get("lorenz", noise=0.0)
    z0 = jnp.array([[1.0, 1.0, 25.0], [-5.0, 3.0, 20.0], [2.0, -4.0, 30.0]])
    _, zs = ddm_jax.simulate_sde(
        lorenz,
        key=jax.random.key(0),
        z0=z0,
        t1=420.0,
        dt=0.02,
        save_every=5,
        solver=diffrax.Tsit5(),
        noise=False,
    )
    zs = np.asarray(zs)[:, 200:]  # drop 20 time units of transient; 0.1 apart
    nu = correlation_dimension(zs, num_points=3000, theiler=10)
    # Grassberger & Procaccia (1983): 2.05 ± 0.01. These starts gave 2.047, others
    # 2.035-2.068: the fitted decade of r moves with the sample; 0.1 covers that
    # spread with room.
    np.testing.assert_allclose(nu, 2.05, atol=0.1)
