"""The run steps for a config whose `system` is a trajectory file (DESIGN §1
"Matching from data", §4).

``system: {file: traj.npz}`` replaces the target system by recorded samples z_n at
times t_n. The file is split once (`ddm_jax.data.split_trials`: the last 20 % of the
trials, or of each trial when there are fewer than 5), the first part is fitted
(closed form `solve_readout_data`, then optional gradient steps on the data loss) and
the held-out part is used only for evaluation: the data loss ratios
(`data_drift_rel_error`, …) on its increments, and the network's stationary
statistics against the held-out samples themselves. With ``truth: NAME`` and that
system's parameters, `drift_rel_error` and `diffusion_rel_error` are measured
against the true fields at the held-out samples.
"""

from __future__ import annotations

import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from . import io, plots
from .config import system_from
from .data import increments, load_trajectories, split_trials
from .losses import data_noise_floor, data_relative_errors, relative_errors
from .metrics import lyapunov_max, stationary_statistics, transverse_max_real
from .rnn import LatentRNN
from .simulate import simulate_rnn
from .solve import solve_readout_data


def is_data(cfg: dict) -> bool:
    return "file" in cfg["system"]


def split(cfg: dict):
    """``(fit, held)`` trials of the config's file.

    **Raises:** `ValueError` naming the file and the problem.
    """
    trials = load_trajectories(cfg["system"]["file"])
    try:
        return split_trials(trials)
    except ValueError as e:
        raise ValueError(f"trajectory file {cfg['system']['file']!r}: {e}") from None


def build(cfg: dict):
    """Load and check the file (and the `truth` system) before any folder is made.

    **Returns:** a stand-in target with ``latent_dim``, ``noise_dim``, ``input_dim``,
    ``name`` and the ``truth`` system (or None).
    """
    fit_trials, _ = split(cfg)
    k = fit_trials[0].z.shape[1]
    truth = system_from(cfg)
    name = Path(cfg["system"]["file"]).name
    if truth is not None and truth.latent_dim != k:
        raise ValueError(
            f"`system.truth` {truth.name!r} has K = {truth.latent_dim} but the "
            f"trajectory file {name!r} has K = {k}"
        )
    n = cfg["model"]["num_neurons"]
    if n < k:
        raise ValueError(
            f"`model.num_neurons` must be ≥ latent_dim ({k}) of the trajectory file "
            f"{name!r}; got {n}"
        )
    return types.SimpleNamespace(
        latent_dim=k, noise_dim=k, input_dim=0, name=name, truth=truth
    )


def train(folder: Path, cfg: dict, *, progress: bool = False, log=print) -> dict:
    """Fit the network to the fitting part of the file; write the model files."""
    from . import pipeline

    target = build(cfg)
    fit_trials, _ = split(cfg)
    z, dz, dt = increments(fit_trials)
    t = cfg["train"]
    start = time.perf_counter()
    model = pipeline.init_model(cfg, target, jnp.asarray(z))
    summary = {"diverged_at_step": None, "fit_increments": int(z.shape[0])}
    if t["solve"]:
        model, info = solve_readout_data(
            model,
            z,
            dz,
            dt,
            rcond=t["rcond"],
            ridge=t["data_ridge"],
            correction=t["correction"],
            return_info=True,
        )
        summary["ridge"] = info["ridge"]
        summary["effective_parameters"] = info["dof"]
        summary["diffusion"] = np.asarray(info["diffusion"]).tolist()
        log(
            f"closed-form readout solved on {z.shape[0]} increments (ridge "
            f"{info['ridge']:.3g}, {info['dof']:.1f} effective parameters)"
        )
    return pipeline.finish_training(
        folder,
        cfg,
        model,
        summary,
        start,
        None,
        None,
        data=(z, dz, dt),
        progress=progress,
        log=log,
    )


def _load_model(folder: Path, cfg: dict, k: int) -> LatentRNN:
    model = io.load_model(folder / io.MODEL_FILE)
    n = cfg["model"]["num_neurons"]
    if (model.num_neurons, model.latent_dim) != (n, k):
        raise ValueError(
            f"{folder / io.MODEL_FILE} has N={model.num_neurons}, K={model.latent_dim}"
            f" but the config has `model.num_neurons` {n} and a file with K={k}; run "
            "`ddm train` first"
        )
    return model


def simulate(folder: Path, cfg: dict) -> dict:
    """The network's stationary run from held-out samples; paths.npz holds it beside
    the held-out samples and increments."""
    from .pipeline import PATHS_FILE, _sim_options, keys

    target = build(cfg)
    model = _load_model(folder, cfg, target.latent_dim)
    _, held = split(cfg)
    z, dz, dt = increments(held)
    opts = _sim_options(cfg)
    idx = np.linspace(0, z.shape[0] - 1, opts["num_paths"]).astype(int)
    start = time.perf_counter()
    ts, z_net = simulate_rnn(
        model,
        key=keys(cfg)["simulate"],
        z0=jnp.asarray(z[idx], model.E.dtype),
        t1=opts["t1"],
        dt=opts["dt"],
        save_every=opts["save_every"],
        solver=opts["solver"],
    )
    z_net.block_until_ready()
    seconds = time.perf_counter() - start
    keep = np.asarray(ts) >= opts["burn_in"]
    samples = np.concatenate([tr.z for tr in held])
    paths = {
        "points": z,
        "increments": dz,
        "steps": dt,
        "ts": np.asarray(ts)[keep],
        "network": np.asarray(z_net)[:, keep],
        "target": samples[None],
        "dt": np.asarray(opts["dt"] * opts["save_every"]),
        "simulate_seconds": np.asarray(seconds),
    }
    with io.atomic_write(folder / PATHS_FILE) as f:
        np.savez(f, **paths)
    return paths


def evaluate(folder: Path, cfg: dict, paths: dict) -> dict:
    """metrics.json for a data run (see the module docstring for the keys)."""
    from .pipeline import keys

    target = build(cfg)
    model = _load_model(folder, cfg, target.latent_dim)
    dtype = model.E.dtype
    z, dz, dt = (
        jnp.asarray(paths[k], dtype) for k in ("points", "increments", "steps")
    )
    ratios = data_relative_errors(model, z, dz, dt)
    sw_key, lya_key = jr.split(keys(cfg)["evaluate"])
    metrics = {
        "system": target.truth.name if target.truth is not None else "data",
        "data_file": cfg["system"]["file"],
        "held_out_increments": int(z.shape[0]),
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "data_drift_rel_error": float(ratios["drift"]),
        "data_drift_noise_floor": float(data_noise_floor(model, z, dz, dt)),
        "data_diffusion_rel_error": float(ratios["diffusion"]),
        "data_manifold_rel_error": float(ratios["manifold"]),
        "transverse_max_real": transverse_max_real(model, z),
        "stationary": stationary_statistics(
            paths["network"], paths["target"], key=sw_key
        ),
        "simulate_seconds": float(paths["simulate_seconds"]),
    }
    if target.truth is not None:
        truth = relative_errors(model, target.truth, z)
        for name in ("drift", "diffusion", "manifold"):
            metrics[f"{name}_rel_error"] = float(truth[name])
    e = cfg["evaluate"]
    if e["lyapunov_paths"] > 0:
        z0 = z[np.linspace(0, z.shape[0] - 1, e["lyapunov_paths"]).astype(int)]
        opts = {
            "key": lya_key,
            "dt": e["lyapunov_dt"],
            "t1": e["lyapunov_t1"],
            "transient": e["lyapunov_transient"],
        }
        lam = {"network": float(jnp.mean(lyapunov_max(model.latent_drift, z0, **opts)))}
        if target.truth is not None:
            lam["target"] = float(
                jnp.mean(lyapunov_max(target.truth.drift, z0, **opts))
            )
        metrics["lyapunov_max"] = lam
    return metrics


def plot(folder: Path, cfg: dict, paths: dict, history: dict) -> list[Path]:
    """Attractor (network vs held-out data), loss, rates and eigenvalues; the drift
    error map when a `truth` system is given."""
    from .pipeline import connectivity_eigenvalues, keys

    target = build(cfg)
    model = _load_model(folder, cfg, target.latent_dim)
    out = [
        plots.attractor(
            paths["network"],
            paths["target"],
            folder / "attractor.png",
        ),
        plots.loss_curve(history, folder / "loss.png"),
    ]
    points = jnp.asarray(paths["points"], model.E.dtype)
    if target.truth is not None:
        f_net = jax.vmap(lambda z: model.latent_drift(0.0, z, None))(points)
        f_tgt = jax.vmap(lambda z: target.truth.drift(0.0, z, None))(points)
        out.append(plots.drift_error(points, f_net, f_tgt, folder / "drift_error.png"))
    s = cfg["simulate"]
    t, _, xs = simulate_rnn(
        model,
        key=keys(cfg)["simulate"],
        z0=points[0],
        t1=min(s["t1"], 200 * s["dt"] * s["save_every"]),
        dt=s["dt"],
        save_every=s["save_every"],
        full_state=True,
    )
    out.append(plots.raster(t, model.phi(xs[0]), folder / "raster.png"))
    out.append(
        plots.eigenvalues(
            connectivity_eigenvalues(model), folder / "eigenvalues.png", tau=model.tau
        )
    )
    return out
