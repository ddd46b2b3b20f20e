"""Drift-matching training steps per second: `ddm_jax.fit` against an eager PyTorch
implementation of the same loss and Adam, side by side in one run; prints JSON.

Run: ``python benchmarks/train_step.py [--sizes 512,2048,8192] [--out FILE]``
(needs the `peers` extra: ``pip install torch==2.13.0`` first, then
``pip install -e ".[peers]"``).

Target: stochastic Lorenz (K = 3, noise 1), 8192 stationary points; each step draws a
batch of 1024 points with replacement and takes one Adam step (learning rate 1e-3) on
L = L_drift + L_diff (+ L_⊥ for dense W), the ratios of `ddm_jax.losses`. Both sides
start from the same parameters (`LatentRNN.init`), use float32 and all cores.

- ddm_jax: `fit` as a user calls it, `chunk_size` steps per compiled `lax.scan`;
  the rate is taken from the difference of two runs (n and 2n steps), so the
  compilation, paid once per call, cancels.
- PyTorch: eager autograd, `torch.optim.Adam`, the same formulas as ddm_jax's loss:
  for low rank f_θ = (Vᵀφ(E z + b) − z)/τ and D_θ = G0 G0ᵀ (E⁺E = I), for dense
  E⁺ by `torch.linalg.pinv`, f_θ = E⁺F, D_θ = E⁺ (E G0)(E G0)ᵀ E⁺ᵀ and F_⊥; timed
  after three warm-up steps.

- hand: a minimal jitted `lax.scan` of the same low-rank loss and optax Adam, no
  library around it (low rank only): the reference for what JAX reaches here.

Each side also reports its loss after the timed steps from the same start, as a check
that both train the same thing.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.random as jr
import numpy as np
import optax

import ddm_jax
from ddm_jax import io, systems

BATCH = 1024
POINTS = 8192
LEARNING_RATE = 1e-3
TAU = 0.1
MIN_SECONDS = 2.0


def _points():
    system = systems.get("lorenz")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=POINTS)
    return system, points


def _model(system, points, n: int, connectivity: str):
    return ddm_jax.LatentRNN.init(
        key=jr.key(1),
        system=system,
        num_neurons=n,
        connectivity=connectivity,
        tau=TAU,
        points=points,
    )


def jax_rate(system, points, model, steps: int) -> tuple[float, float]:
    """Steps per second of `fit` (n and 2n steps, one chunk each) and the loss."""
    optimizer = optax.adam(LEARNING_RATE)

    def run(n):
        start = time.perf_counter()
        trained, history = ddm_jax.fit(
            model,
            system,
            points,
            key=jr.key(2),
            optimizer=optimizer,
            steps=n,
            batch_size=BATCH,
            chunk_size=n,
        )
        jax.block_until_ready(trained)
        return time.perf_counter() - start, float(history["loss"][-1])

    run(2)  # imports and the first compilation of shared pieces
    t1, _ = run(steps)
    t2, loss = run(2 * steps)
    return steps / max(t2 - t1, 1e-9), loss


def hand_rate(system, points, model, steps: int) -> float | None:
    """Steps per second of a minimal hand-written jitted `lax.scan` of the same
    low-rank loss and optax Adam: what JAX itself reaches here (low rank only)."""
    if model.connectivity != "low_rank":
        return None
    import jax.numpy as jnp

    params = {"E": model.E, "b": model.b, "V": model.V, "G0": model.G0}
    drift = jax.vmap(lambda z: system.drift(0.0, z, None))(points)
    D = system.noise**2 * jnp.eye(3)
    optimizer = optax.adam(LEARNING_RATE)

    def loss(p, z, f):
        rates = jnp.tanh(z @ p["E"].T + p["b"])
        f_net = (rates @ p["V"] - z) / TAU
        D_net = p["G0"] @ p["G0"].T
        drift_part = ((f_net - f) ** 2).sum(-1).mean() / (f**2).sum(-1).mean()
        return drift_part + ((D_net - D) ** 2).sum() / (D**2).sum()

    @jax.jit
    def run(params, state, key):
        def body(carry, k):
            p, s = carry
            idx = jr.randint(k, (BATCH,), 0, points.shape[0])
            value, grads = jax.value_and_grad(loss)(p, points[idx], drift[idx])
            updates, s = optimizer.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), value

        return jax.lax.scan(body, (params, state), jr.split(key, steps))

    state = optimizer.init(params)
    jax.block_until_ready(run(params, state, jr.key(2)))
    start = time.perf_counter()
    jax.block_until_ready(run(params, state, jr.key(3)))
    return steps / (time.perf_counter() - start)


def torch_rate(system, points, model, steps: int) -> tuple[float, float]:
    import torch

    def tensor(a):
        return torch.tensor(np.asarray(a), dtype=torch.float32)

    E = tensor(model.E).requires_grad_()
    b = tensor(model.b).requires_grad_()
    G0 = tensor(model.G0).requires_grad_()
    dense = model.connectivity == "dense"
    R = tensor(model.W if dense else model.V).requires_grad_()
    params = [E, b, R, G0]
    opt = torch.optim.Adam(params, lr=LEARNING_RATE)
    pts = tensor(points)
    s, r, beta, noise = (
        float(v) for v in (system.sigma, system.rho, system.beta, system.noise)
    )
    D = noise**2 * torch.eye(3)
    gen = torch.Generator().manual_seed(0)

    def loss_fn(z):
        x, y, w = z.unbind(-1)
        f = torch.stack([s * (y - x), x * (r - w) - y, x * y - beta * w], -1)
        xc = z @ E.T
        rates = torch.tanh(xc + b)
        if dense:
            E_pinv = torch.linalg.pinv(E)
            F = (-xc + rates @ R.T) / TAU
            f_net = F @ E_pinv.T
            S = E_pinv @ (E @ G0)
            D_net = S @ S.T
        else:  # E⁺E = I: f_θ = (Vᵀφ − z)/τ and D_θ = G Gᵀ, as ddm_jax computes them
            f_net = (rates @ R - z) / TAU
            D_net = G0 @ G0.T
        power = (f**2).sum(-1).mean()
        loss = ((f_net - f) ** 2).sum(-1).mean() / power
        loss = loss + ((D_net - D) ** 2).sum() / (D**2).sum()
        if dense:
            F_perp = F - f_net @ E.T
            loss = loss + (F_perp**2).sum(-1).mean() / power
        return loss

    def step():
        idx = torch.randint(0, pts.shape[0], (BATCH,), generator=gen)
        opt.zero_grad()
        loss = loss_fn(pts[idx])
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return steps / (time.perf_counter() - start), float(loss)


def _steps_for(rate_guess: float) -> int:
    return int(max(3, min(2000, rate_guess * MIN_SECONDS)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,2048,8192")
    parser.add_argument("--connectivity", default="low_rank,dense")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    system, points = _points()
    rows = []
    for connectivity in args.connectivity.split(","):
        for n in (int(v) for v in args.sizes.split(",")):
            model = _model(system, points, n, connectivity)
            # A short probe of each side sets the step counts for ~2 s of timing.
            probe_torch, _ = torch_rate(system, points, model, 3)
            torch_steps, loss_torch = torch_rate(
                system, points, model, _steps_for(probe_torch)
            )
            jax_steps, loss_jax = jax_rate(
                system, points, model, _steps_for(probe_torch * 3)
            )
            hand = hand_rate(system, points, model, _steps_for(probe_torch * 3))
            row = {
                "connectivity": connectivity,
                "num_neurons": n,
                "ddm_jax_steps_per_s": jax_steps,
                "hand_jax_steps_per_s": hand,
                "torch_steps_per_s": torch_steps,
                "ratio": jax_steps / torch_steps,
                "loss_ddm_jax": loss_jax,
                "loss_torch": loss_torch,
            }
            print(io.json_text(row), file=sys.stderr, flush=True)
            rows.append(row)
    report = {
        "batch": BATCH,
        "rows": rows,
    }
    return io.print_report(report, args.out, peers=("torch",))


if __name__ == "__main__":
    sys.exit(main())
