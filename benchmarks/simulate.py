"""Network SDE simulation throughput (neuron·steps per second): `simulate_rnn`
against torchsde's Euler–Maruyama and a raw `lax.scan` Euler–Maruyama loop (what
the hardware allows), side by side in one run; prints JSON.

Run: ``python benchmarks/simulate.py [--sizes 512,4096] [--batches 1,256] [--out F]``
(needs the `peers` extra for torchsde).

The network: a low-rank embedding of stochastic Lorenz (K = 3, three noise channels,
τ = 0.1) solved in closed form; Euler–Maruyama with Δt = 0.005 for `--steps` steps,
the latent readout saved every `--save-every` steps. All three integrate the same
``dx = (−(x − b) + E Vᵀ tanh(x))/τ dt + Σ dB``, Σ = E G0, from the same start:

- ddm_jax: `simulate_rnn` (diffrax Euler, `UnsafeBrownianPath`), as a user calls it;
- raw: one jitted `lax.scan` of the bare update with `jax.random.normal` increments;
- torchsde: `sdeint(method="euler")` of the same drift and noise (general noise,
  Σ as a batch of N×3 matrices), saving the full state at the same times.

Each is timed after a run that compiles (or warms up) it; the best of `--repeats`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import ddm_jax
from ddm_jax import io, systems

DT = 0.005
TAU = 0.1


def _model(n: int):
    system = systems.get("lorenz")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=max(4 * n, 2048))
    model = ddm_jax.LatentRNN.init(
        key=jr.key(1), system=system, num_neurons=n, tau=TAU, points=points
    )
    return system, ddm_jax.solve_readout(model, system, points)


def _best(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ddm_jax_seconds(model, z0, steps, save_every, repeats) -> float:
    def run():
        _, zs = ddm_jax.simulate_rnn(
            model,
            key=jr.key(2),
            z0=z0,
            t1=steps * DT,
            dt=DT,
            save_every=save_every,
        )
        zs.block_until_ready()

    return _best(run, repeats)


def raw_seconds(model, z0, steps, save_every, repeats) -> float:
    E, V, b = model.E, model.V, model.b
    sigma = E @ model.G0  # N × C
    E_pinv = model.E_pinv
    x0 = z0 @ E.T + b

    @jax.jit
    def run(x0, key):
        def inner(x, k):
            dw = jr.normal(k, (x.shape[0], sigma.shape[1])) * math.sqrt(DT)
            drift = (-(x - b) + (jnp.tanh(x) @ V) @ E.T) / TAU
            return x + drift * DT + dw @ sigma.T, None

        def outer(x, k):
            x, _ = jax.lax.scan(inner, x, jr.split(k, save_every))
            return x, (x - b) @ E_pinv.T

        _, zs = jax.lax.scan(outer, x0, jr.split(key, steps // save_every))
        return zs

    return _best(lambda: run(x0, jr.key(3)).block_until_ready(), repeats)


def torchsde_seconds(model, z0, steps, save_every, repeats) -> float:
    import torch
    import torchsde

    def tensor(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    E, V, b = tensor(model.E), tensor(model.V), tensor(model.b)
    sigma = E @ tensor(model.G0)

    class Network(torch.nn.Module):
        noise_type = "general"
        sde_type = "ito"

        def f(self, t, x):
            return (-(x - b) + (torch.tanh(x) @ V) @ E.T) / TAU

        def g(self, t, x):
            return sigma.expand(x.shape[0], *sigma.shape)

    sde = Network()
    x0 = tensor(z0) @ E.T + b
    ts = torch.arange(0, steps + 1, save_every, dtype=torch.float32) * DT

    def run():
        with torch.no_grad():
            torchsde.sdeint(sde, x0, ts, method="euler", dt=DT)

    return _best(run, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,4096")
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        system, model = _model(n)
        for batch in (int(v) for v in args.batches.split(",")):
            z0 = ddm_jax.sample_points(system, key=jr.key(4), num_points=batch)
            work = n * batch * args.steps
            options = (model, z0, args.steps, args.save_every, args.repeats)
            seconds = {
                "ddm_jax": ddm_jax_seconds(*options),
                "raw_scan": raw_seconds(*options),
                "torchsde": torchsde_seconds(*options),
            }
            row = {
                "num_neurons": n,
                "batch": batch,
                "steps": args.steps,
                "seconds": seconds,
                "neuron_steps_per_s": {k: work / v for k, v in seconds.items()},
                "vs_torchsde": seconds["torchsde"] / seconds["ddm_jax"],
                "vs_raw_scan": seconds["raw_scan"] / seconds["ddm_jax"],
                # What any JAX loop could reach against torchsde on this machine.
                "raw_scan_vs_torchsde": seconds["torchsde"] / seconds["raw_scan"],
            }
            print(io.json_text(row), file=sys.stderr, flush=True)
            rows.append(row)
    report = {
        "dt": DT,
        "save_every": args.save_every,
        "rows": rows,
    }
    return io.print_report(report, args.out, peers=("torch", "torchsde"))


if __name__ == "__main__":
    sys.exit(main())
