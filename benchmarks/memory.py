"""Memory tasks: the three memory configs run through `ddm run`, their entropy
production from the Fokker–Planck grid, and the classical Hopfield baseline; prints
JSON.

Run: ``python benchmarks/memory.py [--out results.json] [--keep DIR]``.

- configs/sequential_memory.yaml (four wells on the unit circle and the rotation
  ω = 1) and configs/sequential_control.yaml (ω = 0): each `ddm run` reports, for
  the simulated 512-neuron network and for its target, sequence fidelity,
  transitions, mean dwell and the transition matrices; here the entropy production
  rate Φ of both is added, from the stationary Fokker–Planck grid (96² cells,
  `ddm_jax.fokker_planck`) of the network's latent drift and diffusion and of the
  target's.
- configs/associative_memory.yaml: cued recall over 200 trials a pattern (recall,
  persistence 50 τ after the cue, latency) and the spontaneous switching of the
  1024-neuron network against its target (mean dwell, transition distance).
- The Hopfield baseline (`memory.Hopfield`, Hebbian, symmetric) with as many neurons
  as the sequential network, read through the same wells, over a range of noise
  levels: it holds a pattern at low noise, loses every pattern at high noise and
  switches only in a narrow window between.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax.random as jr
import numpy as np

from ddm_jax import cli, config, io, memory, pipeline
from ddm_jax.fokker_planck import stationary_fokker_planck

CONFIGS = Path(__file__).parents[1] / "configs"
RUNS = ("sequential_memory", "sequential_control", "associative_memory")
KEYS = (
    "drift_rel_error",
    "sequence_fidelity",
    "transitions",
    "mean_dwell",
    "transition_matrix",
    "transition_distance",
    "cued_recall",
)
HOPFIELD_NOISE = (0.8, 0.84, 0.86, 0.88, 0.9, 1.0)


def _entropy_production(drift, diffusion, system) -> float:
    lower, upper = system.box
    sol = stationary_fokker_planck(
        drift, diffusion, lower=lower, upper=upper, num_cells=96
    )
    return sol.entropy_production


def run_config(name: str, folder: Path) -> dict:
    """`ddm run` of configs/NAME.yaml into `folder`; its headline metrics and, for
    a target without inputs, Φ of network and target."""
    start = time.perf_counter()
    if cli.main(["run", str(CONFIGS / f"{name}.yaml"), "-o", str(folder)]) != 0:
        raise RuntimeError(f"ddm run configs/{name}.yaml failed")
    seconds = time.perf_counter() - start
    metrics = json.loads((folder / pipeline.METRICS_FILE).read_text())
    out = {key: metrics[key] for key in KEYS if key in metrics}
    out["run_seconds"] = seconds
    cfg = config.load(folder / "config.yaml")
    system = pipeline.build(cfg)
    if system.input_dim == 0:
        model = io.load_model(folder / io.MODEL_FILE)
        out["entropy_production"] = {
            "network": _entropy_production(
                model.latent_drift, model.latent_diffusion, system
            ),
            "target": _entropy_production(
                system.drift, system.diffusion_matrix, system
            ),
        }
    return out


def hopfield(folder: Path, paths: int, duration: float) -> dict:
    """The Hebbian baseline with the sequential run's N and wells, at each noise
    level: transitions, sequence fidelity (1/3 without order: its patterns are all
    equally far apart) and the share of time inside a well."""
    cfg = config.load(folder / "config.yaml")
    system = pipeline.build(cfg)
    num_neurons = cfg["model"]["num_neurons"]
    rows = []
    for noise in HOPFIELD_NOISE:
        net = memory.Hopfield.init(
            key=jr.key(0),
            patterns=system.patterns,
            num_neurons=num_neurons,
            noise=noise,
        )
        _, zs = net.simulate(
            key=jr.key(1),
            start=0,
            num_paths=paths,
            t1=duration,
            dt=0.005,
            save_every=10,
        )
        labels = memory.well_labels(zs, system.patterns, system.core_radius)
        counts, _ = memory.transition_matrix(labels, system.patterns.shape[0])
        rows.append(
            {
                "noise": noise,
                "transitions": int(counts.sum()),
                "sequence_fidelity": memory.sequence_fidelity(
                    labels, system.patterns.shape[0]
                ),
                "in_well": float(np.mean(labels >= 0)),
            }
        )
    return {"num_neurons": num_neurons, "paths": paths, "time": duration, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=16, help="Hopfield paths")
    parser.add_argument("--time", type=float, default=200.0, help="Hopfield time")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--keep", default=None, help="keep the run folders here")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.keep or scratch)
        report = {name: run_config(name, root / name) for name in RUNS}
        report["hopfield"] = hopfield(root / RUNS[0], args.paths, args.time)
    report["seconds"] = time.perf_counter() - start
    return io.print_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
