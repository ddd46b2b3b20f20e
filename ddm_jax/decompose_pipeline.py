"""`ddm decompose RUN`: take a trained run apart (DESIGN §1 "Decompositions").

Writes ``decomposition.json`` and the figures ``spectra.png`` (W, W_S, W_A),
``flows_network.png`` / ``flows_target.png`` (f_rev and f_irr over p) and
``currents.png`` (J over p) into the run folder. Sections of the JSON:

- ``connectivity``: `decompose.connectivity` and the drift parts' sizes
  (`decompose.drift_part_shares` on held-out points).
- ``fokker_planck`` (K = 2 or 3, diagonal diffusion): the stationary solution of
  the network's latent SDE (f_θ, D_θ) and of the target's on the target's box, each
  ``entropy_production``, and their relative difference.
- ``linear``: `decompose.ou_theory` for linear targets, and `decompose.linearise` of
  the network (and target) at the fixed point nearest the mean of the held-out
  points, where there is a stable one.
- ``paths`` (from paths.npz): `decompose.lagged_asymmetry` of the network's and the
  target's paths and, for additive noise, the Stratonovich entropy production, each
  with its standard error over paths.
- ``split``: `decompose.split_by_irreversibility` with the network's own f_rev and
  f_irr (interpolated from its grid solution).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import decompose, io, plots
from .fokker_planck import interpolate, stationary_fokker_planck
from .pipeline import (
    DECOMPOSITION_FILE,
    _additive_noise,
    _load_model,
    build,
    check_writable,
    load_paths,
)

FIGURES = ("spectra", "flows_network", "flows_target", "currents")


def _target_diffusion(system):
    def D(t, z, args):
        g = system.diffusion(t, z, args)
        return g @ g.T

    return D


def _is_diagonal(D_fn, points) -> bool:
    D = np.asarray(jax.vmap(lambda z: D_fn(0.0, z, None))(points), np.float64)
    off = D - np.einsum("mkk->mk", D)[..., None] * np.eye(D.shape[-1])
    return bool(np.max(np.abs(off)) <= 1e-6 * max(np.max(np.abs(D)), 1e-300))


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("inf") if a else 0.0


def _grid_section(model, system, cfg, points):
    """Both stationary solutions, or a reason why none was computed."""
    k = system.latent_dim
    if k not in (2, 3):
        return None, {"skipped": f"the grid solver needs K = 2 or 3; K = {k}"}
    D_tgt = _target_diffusion(system)
    if not (
        _is_diagonal(D_tgt, points) and _is_diagonal(model.latent_diffusion, points)
    ):
        return None, {"skipped": "the grid solver needs a diagonal diffusion matrix"}
    d = cfg["decompose"]
    cells = d["grid_cells"] if k == 2 else d["grid_cells_3d"]
    lower, upper = (np.asarray(b, np.float64) for b in system.box)
    solutions = {
        "network": stationary_fokker_planck(
            model.latent_drift,
            model.latent_diffusion,
            lower=lower,
            upper=upper,
            num_cells=cells,
        ),
        "target": stationary_fokker_planck(
            system.drift, D_tgt, lower=lower, upper=upper, num_cells=cells
        ),
    }
    phi = {name: s.entropy_production for name, s in solutions.items()}
    section = {
        "num_cells": cells,
        "lower": lower.tolist(),
        "upper": upper.tolist(),
        "entropy_production": phi,
        "entropy_production_rel_diff": _relative(phi["network"], phi["target"]),
        "peclet": {name: s.peclet for name, s in solutions.items()},
    }
    return solutions, section


def _linear_section(model, system, points):
    out = {}
    if hasattr(system, "A") and hasattr(system, "g"):  # the OU family
        g = np.asarray(system.g, np.float64)
        theory = decompose.ou_theory(system.A, g @ g.T)
        out["target_theory"] = _lists(theory)
    start = jnp.mean(points, axis=0)
    for name, drift, D in (
        ("network", model.latent_drift, model.latent_diffusion),
        ("target", system.drift, _target_diffusion(system)),
    ):
        try:
            out[name] = _lists(decompose.linearise(drift, D, start))
        except ValueError as e:
            out[name] = {"skipped": str(e)}
    return out


def _paths_section(model, system, paths, lag_time):
    dt = float(paths["dt"])
    lag = max(1, int(round(lag_time / dt)))
    out = {"lag": lag * dt}
    additive = model.noise == "latent" and _additive_noise(system)
    g = np.asarray(system.diffusion(0.0, jnp.asarray(system.z0), None), np.float64)
    for name, drift in (("network", model.latent_drift), ("target", system.drift)):
        zs = np.asarray(paths[name], np.float64)
        entry = {}
        if zs.shape[-1] >= 2 and lag < zs.shape[1]:
            entry["lagged_asymmetry"] = _brief(decompose.lagged_asymmetry(zs, lag))
        if additive:
            entry["stratonovich_entropy_production"] = _brief(
                decompose.stratonovich_entropy_production(
                    drift, g @ g.T, jnp.asarray(zs, model.E.dtype), dt
                )
            )
        out[name] = entry
    return out


def _split_section(model, solution, points, num_points):
    grid_lo = np.asarray([a[0] for a in solution.axes])
    grid_hi = np.asarray([a[-1] for a in solution.axes])
    pts = np.asarray(points, np.float64)
    inside = np.all((pts >= grid_lo) & (pts <= grid_hi), axis=1)
    pts = pts[inside][:num_points]
    f_rev = interpolate(solution, solution.f_rev, pts)
    f_irr = interpolate(solution, solution.f_irr, pts)
    pts = jnp.asarray(pts, model.E.dtype)
    out = decompose.split_by_irreversibility(model, pts, f_rev, f_irr)
    out["num_points"] = int(pts.shape[0])
    return out


def _brief(estimate: dict) -> dict:
    return {k: v for k, v in estimate.items() if k != "per_path"}


def _lists(obj):
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray | jax.Array):
        return np.asarray(obj).tolist()
    return obj


def decompose_run(folder: Path, cfg: dict) -> dict:
    """The decomposition of a run folder's model; writes decomposition.json and the
    figures, all computed before the first file is written.

    **Raises:** `NotImplementedError` for trajectory-file runs (no target drift to
    compare with); `FileNotFoundError` without paths.npz (run `ddm simulate`).
    """
    if "file" in cfg["system"]:
        raise NotImplementedError(
            "`ddm decompose` needs a target system; runs on trajectory files "
            "(`system.file`) are not supported yet"
        )
    names = [DECOMPOSITION_FILE] + [f"{name}.png" for name in FIGURES]
    check_writable(folder, names)
    system = build(cfg)
    model = _load_model(folder, cfg, system)
    paths = load_paths(folder, system.latent_dim)
    points = jnp.asarray(paths["points"], model.E.dtype)

    conn = decompose.connectivity(model)
    result = {
        "system": system.name,
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "connectivity": conn
        | {"drift_shares": decompose.drift_part_shares(model, points)},
    }
    solutions, result["fokker_planck"] = _grid_section(model, system, cfg, points)
    result["linear"] = _linear_section(model, system, points)
    result["paths"] = _paths_section(model, system, paths, cfg["decompose"]["lag"])
    if solutions is not None:
        result["split"] = _split_section(
            model, solutions["network"], points, cfg["decompose"]["fit_points"]
        )

    # The files: every number is known, so nothing is half-written on failure.
    figures = [plots.connectivity_spectra(conn, folder / "spectra.png")]
    if solutions is not None and system.latent_dim == 2:
        for name, solution in solutions.items():
            figures.append(
                plots.irreversibility_flows(
                    solution, folder / f"flows_{name}.png", title=name
                )
            )
        figures.append(plots.current_loops(solutions, folder / "currents.png"))
    io.write_json(folder / DECOMPOSITION_FILE, result)
    result["figures"] = [p.name for p in figures]
    return result


def headline(result: dict) -> str:
    """One line for the terminal."""
    parts = [f"asymmetry {result['connectivity']['asymmetry']:.3f}"]
    phi = result["fokker_planck"].get("entropy_production")
    if phi:
        parts.append(
            f"entropy production network {phi['network']:.4g} / target "
            f"{phi['target']:.4g}"
        )
    return ", ".join(parts)
