"""Lorenz embedded at equal neuron counts by Nengo (the Neural Engineering Framework)
and by `solve_readout`: decoded drift error and build time, side by side in one run;
prints JSON.

Run: ``python benchmarks/nengo_lorenz.py [--sizes 512,2048] [--out FILE]`` (needs
the `peers` extra for nengo).

Both sides get the same 8192 stationary Lorenz points (noise 1) to fit and the same
4096 held-out points from an independent run, and both use τ = 0.1.

- Nengo: one ensemble of N rate neurons (`--neuron`, LIFRate by default) of radius
  the largest ‖z‖ of the points, a recurrent connection computing z + τ f(z)
  (NEF's third principle) with its eval points at the training points and
  `LstsqL2` regularisation swept from 0.1 down to 1e-4; the decoded drift is
  f̂(z) = (decoded(z) − z)/τ from the activities at the held-out points. Time: the
  build (`nengo.Simulator`, which solves the decoders).
- ddm_jax: `LatentRNN.init` and `solve_readout`, timed at the first call
  (compilation included) and at a second one with another seed (compiled code
  reused); `drift_rel_error` on the held-out points. Nengo needs its sweep (all
  `nengo_sweep_seconds`) to find the regularisation; ddm_jax's SVD cutoff is fixed.

Error, both sides: E‖f̂ − f‖² / E‖f‖² over the held-out points.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.random as jr
import numpy as np

import ddm_jax
from ddm_jax import io, systems

TAU = 0.1
REGULARISATION = (0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)


def _data():
    system = systems.get("lorenz")
    train = ddm_jax.sample_points(system, key=jr.key(0), num_points=8192)
    held_out = ddm_jax.sample_points(system, key=jr.key(1), num_points=4096)
    return system, train, held_out


def lorenz_numpy(system, z):
    s, r, b = (float(v) for v in (system.sigma, system.rho, system.beta))
    x, y, w = z[..., 0], z[..., 1], z[..., 2]
    return np.stack([s * (y - x), x * (r - w) - y, x * y - b * w], -1)


def nengo_row(system, train, held_out, n, reg, neuron) -> dict:
    import nengo
    from nengo.utils.ensemble import tuning_curves

    train, held_out = np.asarray(train, float), np.asarray(held_out, float)
    radius = float(np.linalg.norm(train, axis=1).max())
    with nengo.Network(seed=0) as net:
        ens = nengo.Ensemble(n, 3, radius=radius, neuron_type=getattr(nengo, neuron)())
        conn = nengo.Connection(
            ens,
            ens,
            function=lambda z: z + TAU * lorenz_numpy(system, z),
            synapse=TAU,
            eval_points=train,
            scale_eval_points=False,
            solver=nengo.solvers.LstsqL2(reg=reg),
        )
    start = time.perf_counter()
    with nengo.Simulator(net, progress_bar=False) as sim:
        build = time.perf_counter() - start
        decoders = sim.data[conn].weights  # (3, N)
        _, activities = tuning_curves(ens, sim, inputs=held_out)
    f_hat = (activities @ decoders.T - held_out) / TAU
    f = lorenz_numpy(system, held_out)
    error = np.mean(np.sum((f_hat - f) ** 2, -1)) / np.mean(np.sum(f**2, -1))
    return {"reg": reg, "drift_rel_error": float(error), "build_seconds": build}


def ddm_jax_row(system, train, held_out, n) -> dict:
    """The first call (compilation included) and a second one with another seed
    (compiled code reused, as in any later run in the same process)."""
    out = {}
    for label, seed in (("first_call", 2), ("second_call", 3)):
        start = time.perf_counter()
        model = ddm_jax.LatentRNN.init(
            key=jr.key(seed), system=system, num_neurons=n, tau=TAU, points=train
        )
        model = ddm_jax.solve_readout(model, system, train)
        jax.block_until_ready(model)
        seconds = time.perf_counter() - start
        error = ddm_jax.relative_errors(model, system, held_out)["drift"]
        out[label] = {"drift_rel_error": float(error), "seconds": seconds}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,2048")
    parser.add_argument("--neuron", default="LIFRate")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    system, train, held_out = _data()
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        sweep = [
            nengo_row(system, train, held_out, n, reg, args.neuron)
            for reg in REGULARISATION
        ]
        best = min(sweep, key=lambda r: r["drift_rel_error"])
        ours = ddm_jax_row(system, train, held_out, n)
        row = {
            "num_neurons": n,
            "nengo_sweep": sweep,
            "nengo_best": best,
            "ddm_jax": ours,
            "nengo_sweep_seconds": sum(r["build_seconds"] for r in sweep),
            "error_ratio": best["drift_rel_error"]
            / ours["first_call"]["drift_rel_error"],
            "time_ratio_first_call": ours["first_call"]["seconds"]
            / best["build_seconds"],
            "time_ratio_second_call": ours["second_call"]["seconds"]
            / best["build_seconds"],
        }
        print(io.json_text(row), file=sys.stderr, flush=True)
        rows.append(row)
    report = {
        "neuron": args.neuron,
        "rows": rows,
    }
    return io.print_report(report, args.out, peers=("nengo",))


if __name__ == "__main__":
    sys.exit(main())
