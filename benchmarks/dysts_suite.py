"""Every continuous dysts flow embedded in a rate network with one default config.

Run: ``python benchmarks/dysts_suite.py [--num-neurons 1024] [--subset 10 | --subset
Lorenz,Rossler] [--out results.json]`` (needs ``pip install ddm_jax[dysts]``).

Per flow (deterministic target, noise 0), with T the flow's published period:

- points: M = 8 N from four dysts trajectories (2 N each, 20 points per period after
  10 periods, each from its own jittered start), held-out points (2 N) from an
  independent fifth one; `drift_rel_error` is DESIGN's squared ratio on the held-out
  points.
- one rule for all flows: τ = T / 20 (a neuron is fast against the flow), embedding
  gain 0.5 and bias spread 1 on the points' own mean and spread (`LatentRNN.init`),
  an SVD solve with cutoff rcond = 1e-7 relative (float32, PITFALLS 7).
- `lyapunov_max`: `metrics.lyapunov_max` on f_θ and on f, same starts, step T/50,
  transient 5 T, 60 T measured, renormalised every T/2 (step T/250 or T/1250
  where T/50 is not finite: stiff flows); beside dysts's published value. Periodic
  coordinates are wrapped (`DystsSDE.wrap`) before f_θ is evaluated, so the
  network's field is used only where it was trained.
- the network's deterministic latent path (100 T, 20 points per period, Tsit5 at
  T/60): mean, std and (if `ddm_jax.reconstruction.correlation_dimension` exists)
  correlation dimension, beside dysts's published values and those of the target's
  own held-out trajectory.

The summary gives the share of flows with drift_rel_error ≤ 1e-3 (of those completed,
and of all, failures counted as misses) and, of the flows with a published
λ_max > 0.01, the shares whose network λ_max is within 20 % of the published value, of
the target's own λ_max by the same method, and whose target λ_max is within 20 % of the
published value.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ddm_jax
from ddm_jax import systems
from ddm_jax.metrics import lyapunov_max
from ddm_jax.systems import dysts_adapter

try:
    from ddm_jax.reconstruction import correlation_dimension
except ImportError:
    correlation_dimension = None

PTS_PER_PERIOD = 20


def rule(period: float, num_neurons: int) -> dict:
    """The one config rule, in units of the flow's period T."""
    return {
        "tau": period / 20,
        "gain": 0.5,
        "bias_spread": 1.0,
        "num_points": 8 * num_neurons,
        "trajectories": 4,
        "rcond": 1e-7,
        "lyapunov": {
            "dt": period / 50,
            "t1": 60 * period,
            "transient": 5 * period,
            "renorm_every": period / 2,
        },
        "path_periods": 100,
    }


@eqx.filter_jit
def _latent_path(model, z0, dt, wrap_fn, num_saved, steps_per_save):
    """The network's deterministic latent flow f_θ from z0, Tsit5 with step dt."""

    def field(t, z, args):
        return model.latent_drift(t, wrap_fn(z), args)

    def save(z, _):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            0.0,
            steps_per_save * dt,
            dt,
            z,
            max_steps=steps_per_save + 2,
        )
        z = sol.ys[-1]
        return z, z

    _, zs = jax.lax.scan(save, z0, None, length=num_saved)
    return zs


def _lyapunov(drift, z0, key, lya):
    """`lyapunov_max` at step dt, retried at dt/5 and dt/25 where a fixed-step run of
    a stiff flow is not finite; (λ per start, the step used)."""
    for refine in (1, 5, 25):
        dt = lya["dt"] / refine
        lam = lyapunov_max(drift, z0, key=key, **(lya | {"dt": dt}))
        if bool(jnp.all(jnp.isfinite(lam))):
            break
    return lam, dt


def run_flow(name: str, num_neurons: int, seed: int) -> dict:
    start = time.perf_counter()
    timing = {}
    system = systems.get(dysts_adapter.PREFIX + name)
    timing["build"] = time.perf_counter() - start
    period = system.period
    cfg = rule(period, num_neurons)
    ref = system.reference()

    tick = time.perf_counter()
    per_run = cfg["num_points"] // cfg["trajectories"]
    points = jnp.asarray(
        np.concatenate(
            [
                system.trajectory(per_run, seed=100 * seed + 1 + i)
                for i in range(cfg["trajectories"])
            ]
        ),
        jnp.float32,
    )
    held = system.trajectory(cfg["num_points"] // 4, seed=100 * seed)
    held_out = jnp.asarray(held, jnp.float32)
    timing["dysts_trajectories"] = time.perf_counter() - tick

    tick = time.perf_counter()
    key = jax.random.key(seed)
    model = ddm_jax.LatentRNN.init(
        key=key,
        system=system,
        num_neurons=num_neurons,
        tau=cfg["tau"],
        points=points,
        gain=cfg["gain"],
        bias_spread=cfg["bias_spread"],
    )
    model = ddm_jax.solve_readout(
        model, system, points, rcond=cfg["rcond"], noise=False
    )
    drift_err = float(ddm_jax.relative_errors(model, system, held_out)["drift"])
    timing["solve"] = time.perf_counter() - tick

    tick = time.perf_counter()
    lya = cfg["lyapunov"]
    z0 = held_out[np.linspace(0, held_out.shape[0] - 1, 4).astype(int)]

    def net_drift(t, z, args):
        return model.latent_drift(t, system.wrap(z), args)

    lam_net, dt_net = _lyapunov(net_drift, z0, key, lya)
    lam_tgt, dt_tgt = _lyapunov(system.drift, z0, key, lya)
    timing["lyapunov"] = time.perf_counter() - tick

    tick = time.perf_counter()
    num_saved = cfg["path_periods"] * PTS_PER_PERIOD
    path = _latent_path(
        model,
        held_out[0],
        jnp.asarray(period / (3 * PTS_PER_PERIOD), jnp.float32),
        system.wrap,
        num_saved,
        3,
    )
    path = np.asarray(system.wrap(path), np.float64)
    finite = bool(np.all(np.isfinite(path)))
    net_stats = {"mean": path.mean(0).tolist(), "std": path.std(0).tolist()}
    tgt_stats = {"mean": held.mean(0).tolist(), "std": held.std(0).tolist()}
    if correlation_dimension is not None and finite:
        net_stats["correlation_dimension"] = float(correlation_dimension(path))
        tgt_stats["correlation_dimension"] = float(correlation_dimension(held))
    timing["statistics"] = time.perf_counter() - tick

    published_lam = ref.get("lyapunov_max")
    return {
        "flow": name,
        "latent_dim": system.latent_dim,
        "drift_path": system.drift_path,
        "periodic": [list(p) for p in system.periodic],
        "period": period,
        "tau": cfg["tau"],
        "drift_rel_error": drift_err,
        "lyapunov_max": {
            "network": float(jnp.mean(lam_net)),
            "target": float(jnp.mean(lam_tgt)),
            "published": published_lam,
            "step": {"network": dt_net, "target": dt_tgt},
        },
        "network": net_stats,
        "target_trajectory": tgt_stats,
        "published": {k: ref.get(k) for k in ("mean", "std", "correlation_dimension")},
        "network_path_finite": finite,
        "seconds": time.perf_counter() - start,
        "timing": timing,
    }


def summary(results: list[dict]) -> dict:
    ok = [r for r in results if "error" not in r]
    accurate = [r for r in ok if r["drift_rel_error"] <= 1e-3]
    chaotic = [
        r
        for r in ok
        if (r["lyapunov_max"]["published"] or 0.0) > 0.01
        and math.isfinite(r["lyapunov_max"]["network"])
    ]
    chaotic_all = [r for r in ok if (r["lyapunov_max"]["published"] or 0.0) > 0.01]
    within = [
        r
        for r in chaotic
        if abs(r["lyapunov_max"]["network"] - r["lyapunov_max"]["published"])
        <= 0.2 * r["lyapunov_max"]["published"]
    ]
    measured = [
        r
        for r in chaotic_all
        if math.isfinite(r["lyapunov_max"]["network"])
        and math.isfinite(r["lyapunov_max"]["target"])
    ]

    def close(r, a, b):
        lam = r["lyapunov_max"]
        return abs(lam[a] - lam[b]) <= 0.2 * abs(lam[b])

    return {
        "flows": len(results),
        "failed": [r["flow"] for r in results if "error" in r],
        "share_drift_rel_error_le_1e-3": len(accurate) / max(1, len(ok)),
        "share_drift_rel_error_le_1e-3_failures_counted": len(accurate)
        / max(1, len(results)),
        "share_lyapunov_within_20pct": len(within) / max(1, len(chaotic_all)),
        # Same method on both sides: f_θ against f, and f against dysts's value.
        "share_lyapunov_network_within_20pct_of_target": sum(
            close(r, "network", "target") for r in measured
        )
        / max(1, len(chaotic_all)),
        "share_lyapunov_target_within_20pct_of_published": sum(
            math.isfinite(r["lyapunov_max"]["target"])
            and close(r, "target", "published")
            for r in chaotic_all
        )
        / max(1, len(chaotic_all)),
        "flows_with_published_lyapunov_gt_0.01": len(chaotic_all),
        "callback_flows": [r["flow"] for r in ok if r["drift_path"] == "callback"],
        "total_seconds": sum(r.get("seconds", 0.0) for r in results),
    }


def _number(x) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.3f}" if 1e-2 <= abs(x) < 1e3 else f"{x:.1e}"


def markdown(report: dict) -> str:
    """The per-flow table of benchmarks/RESULTS.md from a report of this script."""
    lines = [
        "| flow | K | drift_rel_error | λ_max network | λ_max target (same method) "
        "| λ_max published | D₂ network | D₂ published | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(
                f"| {r['flow']} | – | {r['error'].split(':')[0]} |" + " – |" * 6
            )
            continue
        lam = r["lyapunov_max"]
        cells = [
            r["flow"],
            str(r["latent_dim"]),
            _number(r["drift_rel_error"]),
            _number(lam["network"]),
            _number(lam["target"]),
            _number(lam["published"]),
            _number(r["network"].get("correlation_dimension")),
            _number(r["published"].get("correlation_dimension")),
            f"{r['seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-neurons", type=int, default=1024)
    parser.add_argument(
        "--subset", default=None, help="NAME,NAME,… or a count (evenly spaced flows)"
    )
    parser.add_argument("--out", default=None, help="write the JSON here too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--markdown",
        metavar="JSON",
        default=None,
        help="print the per-flow table of an earlier run's JSON and exit",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    warnings.simplefilter("ignore", UserWarning)

    flows = dysts_adapter.names()
    if args.subset:
        if args.subset.isdigit():
            count = min(int(args.subset), len(flows))
            flows = [
                flows[i] for i in np.linspace(0, len(flows) - 1, count).astype(int)
            ]
        else:
            flows = args.subset.split(",")
    results = []
    for name in flows:
        try:
            result = run_flow(name, args.num_neurons, args.seed)
        except (NotImplementedError, RuntimeError, ValueError) as e:
            result = {"flow": name, "error": f"{type(e).__name__}: {e}"}
        results.append(result)
        brief = {k: result.get(k) for k in ("drift_rel_error", "seconds", "error")} | {
            "lyapunov_max": result.get("lyapunov_max")
        }
        print(name, json.dumps(brief), file=sys.stderr, flush=True)
    report = {"results": results, "summary": summary(results)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
