"""Low-rank networks of millions of neurons: 1,000 Euler–Maruyama steps of the full
N-dimensional state, wall time and peak memory; prints JSON.

Run: ``python benchmarks/scale.py [--sizes 1000000,10000000] [--out FILE]``.

Each size runs in a fresh Python process, so its peak resident memory (the
process's maximum RSS, which includes JAX and its compiled code) is its own; on a
GPU the device's ``peak_bytes_in_use`` is reported too. The network embeds
stochastic Lorenz (K = 3) with `LatentRNN.init`'s random low-rank weights (no solve:
a least-squares readout over 10⁷ features is not the point here); `simulate_rnn`
with Δt = 0.001 for 1,000 steps, one path, the 3-dimensional readout saved every 10
steps: the N-dimensional state is never stored per step. The first call compiles;
the second is timed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

STEPS = 1000
DT = 0.001


def one(n: int) -> dict:
    import jax
    import jax.random as jr

    import ddm_jax
    from ddm_jax import systems

    system = systems.get("lorenz")
    start = time.perf_counter()
    model = ddm_jax.LatentRNN.init(key=jr.key(0), system=system, num_neurons=n)
    jax.block_until_ready(model)
    init_seconds = time.perf_counter() - start

    def run(key):
        _, zs = ddm_jax.simulate_rnn(
            model, key=key, z0=system.z0, t1=STEPS * DT, dt=DT, save_every=10
        )
        return zs.block_until_ready()

    start = time.perf_counter()
    run(jr.key(1))
    first = time.perf_counter() - start
    start = time.perf_counter()
    zs = run(jr.key(2))
    seconds = time.perf_counter() - start
    row = {
        "num_neurons": n,
        "steps": STEPS,
        "init_seconds": init_seconds,
        "first_call_seconds": first,
        "seconds": seconds,
        "neuron_steps_per_s": n * STEPS / seconds,
        "saved_shape": list(zs.shape),
        "finite": bool(jax.numpy.all(jax.numpy.isfinite(zs))),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "backend": jax.default_backend(),
    }
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        row["peak_device_gb"] = stats["peak_bytes_in_use"] / 2**30
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one)))
        return 0
    from ddm_jax import io

    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(n)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            rows.append({"num_neurons": n, "error": tail[0]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(io.json_text(rows[-1]), file=sys.stderr, flush=True)
    report = {"steps": STEPS, "dt": DT, "rows": rows}
    return io.print_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
