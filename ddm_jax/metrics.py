"""Accuracy and attractor statistics of an embedded network (DESIGN §4 `metrics.json`).

- Held-out errors: the squared ratios of `losses.relative_errors` on points of an
  independent target run (its own key).
- Stationary statistics: the full network state and the target are simulated with the
  same solver, step and noise (PITFALLS 8) from the same kind of start, and their
  samples compared: mean, std, covariance and a sliced Wasserstein distance.
- `lyapunov_max`: the maximal Lyapunov exponent of a deterministic flow by Benettin's
  method: a tangent vector carried along by the Jacobian-vector product (`jax.jvp`),
  renormalised every `renorm_every` time units, λ = Σ log ‖v‖ / T. The network's
  latent flow f_θ and the target's f use the same solver, step and duration.
- Reconstruction statistics of the same two simulations (`reconstruction`):
  state-space KL divergence, power-spectrum Hellinger distance, autocorrelation error
  and the correlation dimension of each.
"""

from __future__ import annotations

import time

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .data import sample_points
from .losses import relative_errors
from .memory import transition_distance
from .reconstruction import reconstruction_statistics
from .simulate import simulate_rnn, simulate_sde


def lyapunov_max(
    drift,
    z0: Float[Array, "B K"],
    *,
    key: PRNGKeyArray,
    dt: float = 0.01,
    t1: float = 200.0,
    transient: float = 20.0,
    renorm_every: float = 1.0,
    args=None,
    solver: diffrax.AbstractSolver | None = None,
) -> Float[Array, " B"]:
    """Maximal Lyapunov exponent of ``dz/dt = drift(t, z, args)``, one per start.

    **Arguments:**

    - `drift`: a vector field ``(t, z, args) -> dz/dt``.
    - `z0`: starts ``(B, K)``, integrated with their tangent vectors for `transient`
      (rounded to whole intervals) before measuring.
    - `key`: draws the initial tangent vectors.
    - `dt`: fixed step of `solver` (Tsit5 by default).
    - `t1`: measuring time, a whole number of `renorm_every` intervals.
    - `renorm_every`: time between renormalisations.

    **Returns:** λ_max for each start, in the flow's time units.
    """
    solver = diffrax.Tsit5() if solver is None else solver
    num_intervals = max(1, int(round(t1 / renorm_every)))
    steps_per = int(round(renorm_every / dt))
    num_transient = int(round(transient / renorm_every))

    def field(t, y, a):
        z, v = y
        return jax.jvp(lambda z_: drift(t, z_, a), (z,), (v,))

    def flow(y, t_span):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            solver,
            0.0,
            t_span,
            dt,
            y,
            args,
            max_steps=int(round(t_span / dt)) + 2,
        )
        return jax.tree_util.tree_map(lambda leaf: leaf[-1], sol.ys)

    def one(z, k):
        v = jr.normal(k, z.shape, z.dtype)

        def interval(carry, _):
            z, v = flow(carry, steps_per * dt)
            norm = jnp.linalg.norm(v)
            return (z, v / norm), jnp.log(norm)

        # The transient aligns the tangent vector with the most unstable direction as
        # well as bringing z to the attractor; its growth is not counted.
        carry = (z, v / jnp.linalg.norm(v))
        if num_transient > 0:
            carry, _ = jax.lax.scan(interval, carry, None, length=num_transient)
        _, logs = jax.lax.scan(interval, carry, None, length=num_intervals)
        return jnp.sum(logs) / (num_intervals * steps_per * dt)

    return jax.jit(jax.vmap(one))(z0, jr.split(key, z0.shape[0]))


def stationary_statistics(
    z_network: Float[Array, "B T K"], z_target: Float[Array, "B T K"], *, key
) -> dict:
    """Network vs target sample statistics, each as ``{"network", "target"}``, and the
    sliced Wasserstein-1 distance between the two samples in units of the target's
    standard deviation (64 random directions)."""
    a = np.asarray(z_network, np.float64).reshape(-1, np.shape(z_network)[-1])
    b = np.asarray(z_target, np.float64).reshape(-1, np.shape(z_target)[-1])
    out = {}
    for name, fn in (
        ("mean", lambda x: x.mean(0)),
        ("std", lambda x: x.std(0)),
        ("covariance", lambda x: np.atleast_2d(np.cov(x, rowvar=False))),
    ):
        out[name] = {"network": fn(a).tolist(), "target": fn(b).tolist()}
    out["sliced_wasserstein"] = sliced_wasserstein(a, b, key=key)
    return out


def sliced_wasserstein(a, b, *, key, num_directions: int = 64) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance, both samples
    scaled by the std of `b`."""
    scale = np.where(b.std(0) > 0, b.std(0), 1.0)
    a, b = a / scale, b / scale
    size = min(len(a), len(b), 20000)
    rng = np.random.default_rng(np.asarray(jr.key_data(key)).ravel())
    dirs = rng.normal(size=(num_directions, a.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    pa = np.sort(rng.choice(a, size, replace=False) @ dirs.T, axis=0)
    pb = np.sort(rng.choice(b, size, replace=False) @ dirs.T, axis=0)
    return float(np.mean(np.abs(pa - pb)))


def simulate_pair(
    model,
    system,
    *,
    key: PRNGKeyArray,
    num_points: int = 4096,
    data_options: dict | None = None,
    dt: float = 0.01,
    t1: float = 100.0,
    burn_in: float = 5.0,
    num_paths: int = 32,
    save_every: int = 1,
    solver: diffrax.AbstractSolver | None = None,
) -> dict:
    """Held-out points and the two stationary simulations that `evaluate` compares.

    The held-out points come from an independent target run (`sample_points` with
    this key and `data_options`); `num_paths` of them start both the full network and
    the target, simulated with the same `solver`, `dt` and noise but their own keys;
    the first `burn_in` is dropped.

    **Returns:** a dict of NumPy arrays: ``points`` (M, K), ``ts`` (T,), ``network``
    and ``target`` (B, T, K), and ``dt`` (the saved spacing) and
    ``simulate_seconds`` (the network run, wall clock).
    """
    points_key, net_key, target_key = jr.split(key, 3)
    opts = {"method": "stationary", **(data_options or {})}
    held_out = sample_points(system, key=points_key, num_points=num_points, **opts)
    idx = np.linspace(0, held_out.shape[0] - 1, num_paths).astype(int)
    starts = held_out[idx]
    sim = {"t1": t1, "dt": dt, "save_every": save_every, "solver": solver}
    start = time.perf_counter()
    ts, z_net = simulate_rnn(model, key=net_key, z0=starts, **sim)
    z_net.block_until_ready()
    seconds = time.perf_counter() - start
    _, z_tgt = simulate_sde(system, key=target_key, z0=starts, **sim)
    keep = np.asarray(ts) >= burn_in
    return {
        "points": np.asarray(held_out),
        "ts": np.asarray(ts)[keep],
        "network": np.asarray(z_net)[:, keep],
        "target": np.asarray(z_tgt)[:, keep],
        "dt": np.asarray(dt * save_every),
        "simulate_seconds": np.asarray(seconds),
    }


def evaluate(
    model,
    system,
    *,
    key: PRNGKeyArray,
    paths: dict | None = None,
    lyapunov: dict | None = None,
    reconstruction: dict | None = None,
    **simulate_options,
) -> dict:
    """The metrics dictionary written to `metrics.json` (DESIGN §4).

    **Arguments:**

    - `model`, `system`: the network and its target.
    - `key`: PRNG key; the held-out points and simulations (`simulate_pair`), the
      Lyapunov tangents and the sliced Wasserstein directions get their own subkeys.
    - `paths`: a `simulate_pair` result to evaluate; simulated here when None.
    - `lyapunov`: `lyapunov_max` options (`dt`, `t1`, `transient`) and `num_paths`
      (0 skips it).
    - `reconstruction`: `reconstruction.reconstruction_statistics` options (`bins`,
      `smoothing`, `max_lag`, `num_points`).
    - `simulate_options`: `simulate_pair` options when `paths` is None.

    When the network's or the target's simulated paths are not finite (a run that
    blew up), only the held-out field errors are computed, beside ``paths_finite``
    (``{"network": bool, "target": bool}``); the statistics of the paths are left out.

    **Returns:** a dict of plain Python numbers, lists and dicts.
    """
    sim_key, lya_key, sw_key = jr.split(key, 3)
    if paths is None:
        paths = simulate_pair(model, system, key=sim_key, **simulate_options)
    held_out = jnp.asarray(paths["points"], model.E.dtype)
    # A target that takes inputs is matched, and checked, over (z, u) pairs.
    point_inputs = paths.get("point_inputs")
    if point_inputs is not None:
        point_inputs = jnp.asarray(point_inputs, model.E.dtype)
    errors = relative_errors(model, system, held_out, point_inputs)
    errors = {k: float(v) for k, v in errors.items()}
    z_net, z_tgt = paths["network"], paths["target"]
    metrics = {
        "system": system.name,
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "drift_rel_error": errors["drift"],
        "diffusion_rel_error": errors["diffusion"],
        "manifold_rel_error": errors["manifold"],
        "transverse_max_real": transverse_max_real(model, held_out),
        "simulate_seconds": float(paths["simulate_seconds"]),
    }
    finite = {
        who: bool(np.all(np.isfinite(z)))
        for who, z in (("network", z_net), ("target", z_tgt))
    }
    if not all(finite.values()):
        # A simulation that blew up has no statistics to compare: say so, keep the
        # field errors (they need no simulation) and stop.
        metrics["paths_finite"] = finite
        metrics["network_paths_finite"] = finite["network"]
        return metrics
    metrics["stationary"] = stationary_statistics(z_net, z_tgt, key=sw_key)
    saved_dt = float(paths["dt"])
    net_stats = system.statistics(z_net, saved_dt)
    tgt_stats = system.statistics(z_tgt, saved_dt)
    for name in net_stats:
        metrics[name] = {"network": net_stats[name], "target": tgt_stats[name]}
    if "transition_matrix" in net_stats:
        metrics["transition_distance"] = transition_distance(
            net_stats["transition_matrix"], tgt_stats["transition_matrix"]
        )
    metrics.update(
        reconstruction_statistics(z_net, z_tgt, saved_dt, **(reconstruction or {}))
    )

    lya = {
        "dt": 0.01,
        "t1": 200.0,
        "transient": 20.0,
        "num_paths": 8,
        **(lyapunov or {}),
    }
    n_lya = int(lya.pop("num_paths"))
    if n_lya > 0:
        z0 = held_out[np.linspace(0, held_out.shape[0] - 1, n_lya).astype(int)]
        lam_net = lyapunov_max(model.latent_drift, z0, key=lya_key, **lya)
        lam_tgt = lyapunov_max(system.drift, z0, key=lya_key, **lya)
        metrics["lyapunov_max"] = {
            "network": float(jnp.mean(lam_net)),
            "target": float(jnp.mean(lam_tgt)),
        }
    reference = system.reference()
    if reference:
        metrics["reference"] = reference
    if "covariance" in reference:
        exact = np.asarray(reference["covariance"])
        metrics["covariance_rel_error"] = {
            who: float(
                np.linalg.norm(
                    np.asarray(metrics["stationary"]["covariance"][who]) - exact
                )
                / np.linalg.norm(exact)
            )
            for who in ("network", "target")
        }
    return metrics


def transverse_max_real(model, z: Float[Array, "M K"], max_points: int = 8) -> float:
    """max Re λ of (I − EE⁺)(−I + W diag φ′)(I − EE⁺)/τ over (at most `max_points`
    of) the points (DESIGN §1), restricted to the complement of the manifold; −1/τ
    exactly for low rank. Each point costs a dense N×N eigenvalue problem."""
    if model.connectivity == "low_rank":
        return -1.0 / model.tau
    E = np.asarray(model.E, np.float64)
    P = np.eye(E.shape[0]) - E @ np.linalg.pinv(E)
    # An orthonormal basis Q of the complement, so the K zero modes of P drop out.
    Q = np.linalg.svd(P)[0][:, : E.shape[0] - E.shape[1]]
    W = np.asarray(model.W, np.float64)
    worst = -np.inf
    slope = jax.vmap(jax.grad(model.phi))
    for zi in np.asarray(z)[:max_points]:
        x = model.embed(jnp.asarray(zi))
        dphi = np.asarray(slope(x), np.float64)
        J = (-np.eye(len(x)) + W * dphi[None, :]) / model.tau
        worst = max(worst, float(np.linalg.eigvals(Q.T @ J @ Q).real.max()))
    return worst
