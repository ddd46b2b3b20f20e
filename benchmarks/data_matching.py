"""Matching from recorded trajectories: the figures of docs/data.md.

Run: ``python benchmarks/data_matching.py [ou|lorenz|km ...]`` (all by default).

- ou: one 2-D OU path (A = [[1, -1], [1, 1]], g = 0.5 I), Δt = 0.01, 10⁶ samples:
  relative Frobenius errors of the network's mean Jacobian and of D_θ.
- lorenz: 64 stochastic Lorenz paths, Δt = 0.005: drift_rel_error against the true
  drift at held-out samples (an independent run), for each `correction`.
- km: Kramers–Moyal on exact OU samples, θ = σ = 1, Δt = 0.1 (PITFALLS 6).
"""

import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

import ddm_jax
from ddm_jax import systems
from ddm_jax.data import Trial, increments
from ddm_jax.solve import fit_linear_sde, solve_readout_data


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def fit_from_increments(target, z, dz, dt, num_neurons, seed, correction):
    """A network placed on the samples and solved from the increments; its solve's
    info and wall time."""
    model = ddm_jax.LatentRNN.init(
        key=jax.random.key(seed),
        system=target,
        num_neurons=num_neurons,
        tau=0.1,
        points=z,
        gain=0.5,
    )
    start = time.perf_counter()
    model, info = solve_readout_data(
        model, z, dz, dt, correction=correction, return_info=True
    )
    return model, info, time.perf_counter() - start


def ou(num_neurons=64):
    target = systems.get("ou")
    # 40 chained segments: the simulator's float32 clock near t = 1e4 would make the
    # real steps 2 % shorter than 0.01 (see tests/test_data_matching.py).
    z0, parts = jnp.zeros(2), []
    for k in jax.random.split(jax.random.key(0), 40):
        _, zs = ddm_jax.simulate_sde(target, key=k, z0=z0, t1=250.0, dt=0.01)
        parts.append(np.asarray(zs[0, :-1], np.float64))
        z0 = zs[0, -1]
    path = np.concatenate([*parts, np.asarray(z0, np.float64)[None]])
    z, dz, dt = increments([Trial(0.01 * np.arange(path.shape[0]), path)])
    A, D = np.array([[1.0, -1.0], [1.0, 1.0]]), 0.25 * np.eye(2)
    for correction in ("none", "ito", "ou"):
        model, info, seconds = fit_from_increments(
            target, z, dz, dt, num_neurons, 1, correction
        )
        jac = jax.vmap(jax.jacfwd(lambda x, m=model: m.latent_drift(0.0, x, None)))
        J_mean = jnp.mean(jac(jnp.asarray(z[::100], jnp.float32)), 0)
        J_0 = jac(jnp.zeros((1, 2)))[0]
        D_net = model.latent_diffusion(0.0, jnp.zeros(2), None)
        print(
            f"ou {correction}: {seconds:.1f} s, ridge {info['ridge']:.2e}, dof "
            f"{info['dof']:.1f}; mean Jacobian {rel(J_mean, -A):.4f}, at 0 "
            f"{rel(J_0, -A):.4f}, D {rel(D_net, D):.4f}"
        )


def lorenz(num_neurons=512, t1=80.0, dt=0.005):
    target = systems.get("lorenz")
    z0 = ddm_jax.sample_points(target, key=jax.random.key(2), num_points=64)
    ts, zs = ddm_jax.simulate_sde(target, key=jax.random.key(3), z0=z0, t1=t1, dt=dt)
    t = dt * np.arange(ts.shape[0])
    trials = [Trial(t, np.asarray(p, np.float64)) for p in zs]
    z, dz, dts = increments(trials)
    held = ddm_jax.sample_points(target, key=jax.random.key(4), num_points=4096)
    print(f"lorenz: {z.shape[0]} increments, N = {num_neurons}, Δt = {dt}")
    for correction in ("none", "ito"):
        model, info, seconds = fit_from_increments(
            target, z, dz, dts, num_neurons, 5, correction
        )
        err = ddm_jax.relative_errors(model, target, held)
        print(
            f"lorenz {correction}: {seconds:.1f} s, ridge {info['ridge']:.2e}, dof "
            f"{info['dof']:.1f}; drift_rel_error {float(err['drift']):.2e}, "
            f"diffusion_rel_error {float(err['diffusion']):.2e}"
        )


def km(num_samples=4_000_000):
    theta, sigma, h = 1.0, 1.0, 0.1
    rng = np.random.default_rng(0)
    var = sigma**2 / (2 * theta)
    z = rng.normal(0.0, np.sqrt(var), num_samples)
    step_sd = np.sqrt(var * (1 - np.exp(-2 * theta * h)))
    z1 = np.exp(-theta * h) * z + step_sd * rng.normal(size=num_samples)
    args = (z[:, None], (z1 - z)[:, None], np.full(num_samples, h))
    naive = fit_linear_sde(*args)
    exact = fit_linear_sde(*args, exact_ou=True)
    print(
        f"km: naive slope {naive['drift_matrix'][0, 0]:.4f} (exact -0.9516), naive "
        f"D {naive['diffusion'][0, 0]:.4f} (0.9063); OU map slope "
        f"{exact['drift_matrix'][0, 0]:.4f}, D {exact['diffusion'][0, 0]:.4f}"
    )
    stub = types.SimpleNamespace(latent_dim=1, noise_dim=1, input_dim=0)
    for correction in ("none", "ito", "ou"):
        model = ddm_jax.LatentRNN.init(
            key=jax.random.key(6),
            system=stub,
            num_neurons=32,
            tau=0.1,
            points=jnp.asarray(z[:, None]),
            gain=0.5,
        )
        model = solve_readout_data(model, *args, correction=correction)
        J = jax.jacfwd(lambda x, m=model: m.latent_drift(0.0, x, None))(jnp.zeros(1))
        D = model.latent_diffusion(0.0, jnp.zeros(1), None)
        print(
            f"km network {correction}: slope at 0 {float(J[0, 0]):.4f}, "
            f"D {float(D[0, 0]):.4f}"
        )


if __name__ == "__main__":
    for name in sys.argv[1:] or ["km", "ou", "lorenz"]:
        {"ou": ou, "lorenz": lorenz, "km": km}[name]()
