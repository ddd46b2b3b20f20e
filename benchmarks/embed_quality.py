"""Embedding quality: built-in systems × metrics at N ∈ {128, 512, 2048}.

Run: ``python benchmarks/embed_quality.py [--num-neurons 128,512,2048]
[--systems lorenz,ou] [--out results.json]``; prints one JSON object.

Every system is embedded the same way: M = 8192 training points from the target's own
stationary simulation (a box for `gbm`, whose law has no stationary state), a
low-rank tanh network (gated noise where the target's noise depends on the state),
the closed-form SVD readout with cutoff 1e-7 (float32), and `ddm_jax.evaluate` with
its defaults: held-out points of an independent target run, 32 stationary paths of the
full network and of the target under the same Euler–Maruyama step, the statistics of
dynamical-systems reconstruction, and λ_max of both deterministic latent flows. The
per-system settings below are the target's time scale (τ, the step and the length of
the runs), chosen once from the system's own relaxation or oscillation time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.random as jr

import ddm_jax
from ddm_jax import io, systems

# name: (tau, simulation dt, simulation t1, noise model, sampling method, spacing of
# the sampling run's points, its burn-in); slow flows get sparser, longer runs.
SETTINGS = {
    "ou": (0.1, 0.01, 105.0, "latent", "mixture", 0.1, 5.0),
    "noneq_ou": (0.1, 0.01, 105.0, "latent", "mixture", 0.1, 5.0),
    "double_well": (0.1, 0.01, 505.0, "latent", "mixture", 0.5, 5.0),
    "multi_well": (0.1, 0.01, 205.0, "latent", "mixture", 0.5, 5.0),
    "stuart_landau": (0.05, 0.005, 55.0, "latent", "mixture", 0.05, 5.0),
    "hopf": (0.05, 0.005, 55.0, "gated", "mixture", 0.05, 5.0),
    "van_der_pol": (0.2, 0.01, 105.0, "latent", "mixture", 0.1, 5.0),
    "lorenz": (0.1, 0.005, 45.0, "latent", "stationary", 0.05, 5.0),
    "rossler": (0.5, 0.01, 505.0, "latent", "stationary", 0.5, 50.0),
    "may_leonard": (0.5, 0.05, 1005.0, "latent", "stationary", 2.0, 100.0),
    "cir": (0.1, 0.01, 205.0, "gated", "box", 0.1, 5.0),
    "gbm": (0.1, 0.001, 1.0, "gated", "box", 0.1, 5.0),
}

HEADLINE = (
    "drift_rel_error",
    "diffusion_rel_error",
    "manifold_rel_error",
    "state_space_divergence",
    "power_spectrum_hellinger",
    "autocorrelation_error",
)


def embed(name: str, num_neurons: int, seed: int = 0) -> dict:
    tau, dt, t1, noise, method, spacing, burn_in = SETTINGS[name]
    system = systems.get(name)
    data_key, init_key, eval_key = jr.split(jr.key(seed), 3)
    start = time.perf_counter()
    sampling = {"method": method, "dt": dt, "spacing": spacing, "burn_in": burn_in}
    points = ddm_jax.sample_points(system, key=data_key, num_points=8192, **sampling)
    model = ddm_jax.LatentRNN.init(
        key=init_key,
        system=system,
        num_neurons=num_neurons,
        tau=tau,
        noise=noise,
        points=points,
        gain=0.5,
        bias_spread=1.0,
    )
    model = jax.block_until_ready(ddm_jax.solve_readout(model, system, points))
    solve_seconds = time.perf_counter() - start
    # Lyapunov runs: 20 time scales of transient, 200 measured (the GBM flow leaves
    # its box at once and is skipped).
    scale = 10 * tau
    lyapunov = {
        "dt": min(dt * 2, scale / 20),
        "t1": 200 * scale,
        "transient": 20 * scale,
        "num_paths": 0 if name == "gbm" else 4,
    }
    metrics = ddm_jax.evaluate(
        model,
        system,
        key=eval_key,
        lyapunov=lyapunov,
        num_points=2048,
        data_options=sampling,
        dt=dt,
        t1=t1,
        burn_in=0.0 if name == "gbm" else 5.0,
        num_paths=32,
        save_every=max(1, int(round(0.05 / dt))) if name != "gbm" else 10,
    )
    row = {key: metrics.get(key) for key in HEADLINE}
    row["lyapunov_max"] = metrics.get("lyapunov_max")
    row["correlation_dimension"] = metrics.get("correlation_dimension")
    stat = metrics["stationary"]
    row["mean_gap_in_std"] = max(
        abs(a - b) / s
        for a, b, s in zip(
            stat["mean"]["network"],
            stat["mean"]["target"],
            stat["std"]["target"],
            strict=True,
        )
    )
    net_std, tgt_std = stat["std"]["network"], stat["std"]["target"]
    row["std_ratio_gap"] = max(
        abs(a / b - 1) for a, b in zip(net_std, tgt_std, strict=True)
    )
    row["solve_seconds"] = solve_seconds
    row["seconds"] = time.perf_counter() - start
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-neurons", default="128,512,2048")
    p.add_argument("--systems", default=",".join(SETTINGS))
    p.add_argument("--out")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.num_neurons.split(",")]
    names = [n for n in args.systems.split(",") if n]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        p.error(f"unknown system {unknown[0]!r}; allowed: {', '.join(SETTINGS)}")
    table = {}
    for name in names:
        table[name] = {}
        for n in sizes:
            row = embed(name, n)
            table[name][str(n)] = row
            brief = {k: row[k] for k in ("drift_rel_error", "seconds")}
            print(name, n, json.dumps(brief), file=sys.stderr, flush=True)
    result = {
        "machine": {"backend": jax.default_backend(), "devices": len(jax.devices())},
        "table": table,
    }
    if args.out:
        io.write_json(args.out, result)
    print(io.json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
