"""Ensembles: 64 networks trained together (`fit(..., ensemble=True)`, one compiled
step over the batch of models) against the same 64 trained one after another (one
`fit` call each, the compiled step reused); prints JSON.

Run: ``python benchmarks/ensemble.py [--members 64] [--neurons 512] [--out FILE]``.

Target: stochastic Lorenz (K = 3), 8192 stationary points; each network is
`LatentRNN.init` with its own seed, τ = 0.1, low-rank, trained with Adam (1e-3) for
`--steps` steps of batch `--batch` drawn from the shared points. Both ways run once
untimed first (compilation), then are timed; the final losses of the two ways are
compared as a check that they train the same networks.
"""

from __future__ import annotations

import argparse
import sys
import time

import equinox as eqx
import jax
import jax.random as jr
import numpy as np
import optax

import ddm_jax
from ddm_jax import io, systems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--neurons", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    system = systems.get("lorenz")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=8192)

    def init(key):
        return ddm_jax.LatentRNN.init(
            key=key, system=system, num_neurons=args.neurons, tau=0.1, points=points
        )

    keys = jr.split(jr.key(1), args.members)
    models = eqx.filter_vmap(init)(keys)
    optimizer = optax.adam(1e-3)
    options = dict(
        optimizer=optimizer,
        steps=args.steps,
        batch_size=args.batch,
        chunk_size=args.steps,
        key=jr.key(2),
    )

    def together():
        trained, history = ddm_jax.fit(models, system, points, ensemble=True, **options)
        jax.block_until_ready(trained)
        return history["loss"][-1]

    def one_by_one():
        losses = []
        for i in range(args.members):
            model = jax.tree_util.tree_map(
                lambda a, i=i: a[i] if eqx.is_array(a) else a, models
            )
            trained, history = ddm_jax.fit(model, system, points, **options)
            jax.block_until_ready(trained)
            losses.append(history["loss"][-1])
        return np.asarray(losses)

    rows = {}
    for label, fn in (("together", together), ("one_by_one", one_by_one)):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        start = time.perf_counter()
        losses = fn()
        rows[label] = {
            "first_call_seconds": first,
            "seconds": time.perf_counter() - start,
            "median_final_loss": float(np.median(losses)),
        }
    report = {
        "members": args.members,
        "num_neurons": args.neurons,
        "steps": args.steps,
        "batch": args.batch,
        **rows,
        "speedup": rows["one_by_one"]["seconds"] / rows["together"]["seconds"],
    }
    return io.print_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
