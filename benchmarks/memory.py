"""Memory tasks: the sequential task's scores for target, network, equilibrium control
and the Hopfield baseline, and cued recall of the associative task; prints JSON.

Run: ``python benchmarks/memory.py [--num-neurons 512] [--out results.json]``.

- Sequential (`sequence_wells`, four wells on the unit circle, noise 0.6): the target
  with ω = 1 and its ω = 0 control, each simulated (Euler–Maruyama, Δt = 0.005,
  `--paths` paths of `--time` time units after 5 of burn-in, saved every 0.05), and a
  network of N neurons matched to each (closed-form readout on 8192 points uniform
  in the box), simulated in full the same way. Scores (`ddm_jax.memory`, wells of
  radius 0.3): sequence fidelity, transitions, mean dwell, and the entropy production
  rate from the stationary Fokker–Planck grid (96², `ddm_jax.fokker_planck`).
  The Hopfield baseline (`memory.Hopfield`, 64 neurons, noise 0.8, where it switches
  at all) through the same scores.
- Associative (`cued_wells`, noise 0.3): a network of 2 N neurons matched over
  (z, u) pairs (`memory.cue_pairs`), `--trials` cued trials per pattern from well 0,
  cue on [0.5, 1.5), held 50 τ: recall, persistence, latency; the target the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax.numpy as jnp
import jax.random as jr
import numpy as np

import ddm_jax
from ddm_jax import inputs, memory, systems
from ddm_jax.fokker_planck import stationary_fokker_planck

CORE = 0.3
DT = 0.005
SAVE = 10


def _scores(system, zs) -> dict:
    labels = memory.well_labels(zs, system.patterns, CORE)
    counts, matrix = memory.transition_matrix(labels, system.patterns.shape[0])
    dwell = memory.dwell_times(labels, DT * SAVE)
    return {
        "sequence_fidelity": memory.sequence_fidelity(labels, system.patterns.shape[0]),
        "transitions": int(counts.sum()),
        "transition_matrix": np.round(matrix, 3).tolist(),
        "mean_dwell": float(dwell.mean()) if dwell.size else None,
    }


def _entropy_production(drift, diffusion, system) -> float:
    lower, upper = system.box
    sol = stationary_fokker_planck(
        drift, diffusion, lower=lower, upper=upper, num_cells=96
    )
    return sol.entropy_production


def sequential(num_neurons: int, paths: int, duration: float, omega: float) -> dict:
    system = systems.get("sequence_wells", omega=omega)
    lower, upper = system.box
    points = jr.uniform(jr.key(1), (8192, 2), minval=lower, maxval=upper)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(2),
        system=system,
        num_neurons=num_neurons,
        tau=0.05,
        points=points,
        gain=1.0,
    )
    model = ddm_jax.solve_readout(model, system, points)
    run = {"t1": duration + 5.0, "dt": DT, "save_every": SAVE, "num_paths": paths}
    burn = int(round(5.0 / (DT * SAVE)))
    _, z_tgt = ddm_jax.simulate_sde(system, key=jr.key(3), z0=system.z0, **run)
    _, z_net = ddm_jax.simulate_rnn(model, key=jr.key(4), z0=system.z0, **run)

    return {
        "omega": omega,
        "drift_rel_error": float(
            ddm_jax.relative_errors(model, system, points)["drift"]
        ),
        "target": _scores(system, z_tgt[:, burn:])
        | {
            "entropy_production": _entropy_production(
                system.drift, system.diffusion_matrix, system
            )
        },
        "network": _scores(system, z_net[:, burn:])
        | {
            "entropy_production": _entropy_production(
                model.latent_drift, model.latent_diffusion, system
            )
        },
    }


def hopfield(paths: int, duration: float) -> dict:
    system = systems.get("sequence_wells")
    net = memory.Hopfield.init(
        key=jr.key(0), patterns=system.patterns, num_neurons=64, noise=0.8
    )
    _, zs = net.simulate(
        key=jr.key(1), start=0, num_paths=paths, t1=duration, dt=DT, save_every=SAVE
    )
    return {"num_neurons": 64, "noise": 0.8} | _scores(system, zs)


def associative(num_neurons: int, trials: int) -> dict:
    system = systems.get("cued_wells", noise=0.3)
    z, u = memory.cue_pairs(system, key=jr.key(4), num_points=8192)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(5),
        system=system,
        num_neurons=num_neurons,
        tau=0.05,
        points=z,
        gain=1.0,
    )
    model = ddm_jax.solve_readout(model, system, z, args=u)
    cued = np.repeat(np.arange(4), trials)
    schedule = inputs.stack([inputs.pulse(0.5, 1.5, np.eye(4)[m]) for m in cued])
    z0 = jnp.broadcast_to(system.z0, (cued.size, 2))
    run = {"z0": z0, "t1": 4.0, "dt": DT, "args": schedule}
    ts, z_net = ddm_jax.simulate_rnn(model, key=jr.key(6), **run)
    _, z_tgt = ddm_jax.simulate_sde(system, key=jr.key(7), **run)
    options = {"cue_on": 0.5, "cue_off": 1.5, "hold": 2.5, "core_radius": CORE}
    return {
        "num_neurons": num_neurons,
        "trials": int(cued.size),
        "network": memory.recall_scores(z_net, ts, system.patterns, cued, **options),
        "target": memory.recall_scores(z_tgt, ts, system.patterns, cued, **options),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-neurons", type=int, default=512)
    parser.add_argument("--paths", type=int, default=16)
    parser.add_argument("--time", type=float, default=200.0)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = {
        "sequential": sequential(args.num_neurons, args.paths, args.time, 1.0),
        "control": sequential(args.num_neurons, args.paths, args.time, 0.0),
        "hopfield": hopfield(args.paths, args.time),
        "associative": associative(2 * args.num_neurons, args.trials),
    }
    report["seconds"] = time.perf_counter() - start
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
