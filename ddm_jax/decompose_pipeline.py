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

import contextlib
import errno
import math
import os
import shutil
import tempfile
from pathlib import Path

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


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("inf") if a else 0.0


def _grid_section(model, system, cfg):
    """Both stationary solutions, or None and the reason none was computed."""
    k = system.latent_dim
    if k not in (2, 3):
        return None, {"skipped": f"the grid solver needs K = 2 or 3; K = {k}"}
    key = "grid_cells" if k == 2 else "grid_cells_3d"
    cells = cfg["decompose"][key]
    lower, upper = (np.asarray(b, np.float64) for b in system.box)
    solutions = {}
    for name, drift, D in (
        ("network", model.latent_drift, model.latent_diffusion),
        ("target", system.drift, system.diffusion_matrix),
    ):
        try:
            solutions[name] = stationary_fokker_planck(
                drift, D, lower=lower, upper=upper, num_cells=cells
            )
        except (ValueError, NotImplementedError) as e:  # unresolved, non-diagonal D
            reason = (
                f"{name}'s latent SDE on {cells}^{k} cells (`decompose.{key}`): {e}"
            )
            return None, {"skipped": reason}
    phi = {name: s.entropy_production for name, s in solutions.items()}
    section = {
        "num_cells": cells,
        "lower": lower.tolist(),
        "upper": upper.tolist(),
        "entropy_production": phi,
        "entropy_production_rel_diff": _relative(phi["network"], phi["target"]),
        "peclet": {name: s.peclet for name, s in solutions.items()},
    }
    coarse = [name for name, s in solutions.items() if s.peclet > 2]
    if coarse:
        section["warning"] = (
            f"typical cell Péclet number above 2 for the {' and '.join(coarse)}: the "
            f"grid smears p across the flow and biases Φ; raise `decompose.{key}`"
        )
    if model.noise == "private":
        section["note"] = (
            "private noise: the grid solves the latent SDE (f_θ, D_θ); the "
            "off-manifold noise that reaches the readout in a simulation is not in "
            "it (see ddm_jax.rnn.private_noise_drift_bias)"
        )
    return solutions, section


def _linear_section(model, system, points):
    out = {}
    if hasattr(system, "A") and hasattr(system, "g"):  # the OU family
        D = system.diffusion_matrix(0.0, jnp.asarray(system.z0), None)
        out["target_theory"] = decompose.ou_theory(system.A, D)
    start = jnp.mean(points, axis=0)
    for name, drift, D in (
        ("network", model.latent_drift, model.latent_diffusion),
        ("target", system.drift, system.diffusion_matrix),
    ):
        try:
            out[name] = decompose.linearise(drift, D, start)
        except ValueError as e:
            out[name] = {"skipped": f"no stable fixed point near the mean: {e}"}
    return out


def _lag_steps(paths, lag_time: float) -> int:
    """The lag in saving steps (at least one).

    **Raises:** `ValueError` if it does not fit in the paths.
    """
    dt = float(paths["dt"])
    steps = max(1, int(round(lag_time / dt)))
    length = paths["network"].shape[1]
    if steps >= length:
        raise ValueError(
            f"`decompose.lag` ({lag_time:g}) must be shorter than the simulated paths "
            f"({(length - 1) * dt:g} time units after burn-in)"
        )
    return steps


def _paths_section(model, system, paths, lag):
    dt = float(paths["dt"])
    out = {"lag": lag * dt}
    additive = {
        "network": (model.noise == "latent", f"`model.noise` is {model.noise}"),
        "target": (_additive_noise(system), "the target's noise depends on z"),
    }
    D = np.asarray(system.diffusion_matrix(0.0, jnp.asarray(system.z0), None))
    for name, drift in (("network", model.latent_drift), ("target", system.drift)):
        zs = np.asarray(paths[name], np.float64)
        entry = {}
        if not np.all(np.isfinite(zs)):
            out[name] = {"skipped": f"the {name}'s simulated paths are not finite"}
            continue
        if zs.shape[-1] >= 2:
            entry["lagged_asymmetry"] = _brief(decompose.lagged_asymmetry(zs, lag))
        else:
            entry["lagged_asymmetry"] = {"skipped": "K = 1: no asymmetry to measure"}
        ok, why = additive[name]
        if ok:
            entry["stratonovich_entropy_production"] = _brief(
                decompose.stratonovich_entropy_production(
                    drift, D, jnp.asarray(zs, model.E.dtype), dt
                )
            )
        else:
            entry["stratonovich_entropy_production"] = {
                "skipped": f"the estimator needs additive noise; {why}"
            }
        out[name] = entry
    return out


def _split_section(model, solution, points, num_points):
    grid_lo = np.asarray([a[0] for a in solution.axes])
    grid_hi = np.asarray([a[-1] for a in solution.axes])
    pts = np.asarray(points, np.float64)
    inside = np.all((pts >= grid_lo) & (pts <= grid_hi), axis=1)
    pts = pts[inside][:num_points]
    if pts.shape[0] < model.num_neurons:
        return {
            "skipped": f"{pts.shape[0]} held-out points inside the grid (at most "
            f"`decompose.fit_points`); the readouts of N = {model.num_neurons} "
            "neurons need at least N"
        }
    f_rev = interpolate(solution, solution.f_rev, pts)
    f_irr = interpolate(solution, solution.f_irr, pts)
    pts = jnp.asarray(pts, model.E.dtype)
    out = decompose.split_by_irreversibility(model, pts, f_rev, f_irr)
    out["num_points"] = int(pts.shape[0])
    return out


def _brief(estimate: dict) -> dict:
    return {k: v for k, v in estimate.items() if k != "per_path"}


def _check_paths(paths) -> None:
    dt = float(paths["dt"])
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(
            f"paths.npz: the saving step `dt` is {dt}; it must be a positive number "
            "(run `ddm simulate` again)"
        )
    points = np.asarray(paths["points"])
    if points.shape[0] == 0 or not np.all(np.isfinite(points)):
        raise ValueError(
            "paths.npz: the held-out `points` are empty or not finite (run `ddm "
            "simulate` again)"
        )


@contextlib.contextmanager
def _staging(folder: Path):
    """A hidden folder inside the run folder for the new files; they are moved into
    place only when all exist, and it is removed whatever happens."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".decompose-"))
    except OSError as e:
        raise PermissionError(
            e.errno or errno.EACCES,
            f"cannot write in the run folder ({e.strerror})",
            str(folder),
        ) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decompose_run(folder: Path, cfg: dict) -> dict:
    """The decomposition of a run folder's model: decomposition.json and figures.

    Everything is computed and drawn into a staging folder first; the files replace
    the folder's earlier decomposition only when all of them exist.

    **Raises:** `NotImplementedError` for trajectory-file runs (no target drift to
    compare with); `FileNotFoundError` without paths.npz (run `ddm simulate`);
    `ValueError` for a lag longer than the paths or a paths.npz with a bad step.
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
    paths = load_paths(folder, system.latent_dim, input_dim=system.input_dim)
    _check_paths(paths)
    lag = _lag_steps(paths, cfg["decompose"]["lag"])
    points = jnp.asarray(paths["points"], model.E.dtype)

    with _staging(folder) as tmp:
        conn = decompose.connectivity(model)
        shares = decompose.drift_part_shares(model, points)
        result = {
            "system": system.name,
            "num_neurons": model.num_neurons,
            "latent_dim": model.latent_dim,
            "connectivity": conn | {"drift_shares": shares},
        }
        solutions, result["fokker_planck"] = _grid_section(model, system, cfg)
        result["linear"] = _linear_section(model, system, points)
        result["paths"] = _paths_section(model, system, paths, lag)
        if solutions is not None:
            fit_points = cfg["decompose"]["fit_points"]
            result["split"] = _split_section(
                model, solutions["network"], points, fit_points
            )
        else:
            result["split"] = {"skipped": "needs the grid solution (`fokker_planck`)"}

        made = [plots.connectivity_spectra(conn, tmp / "spectra.png")]
        if solutions is not None and system.latent_dim == 2:
            for name, solution in solutions.items():
                made.append(
                    plots.irreversibility_flows(
                        solution, tmp / f"flows_{name}.png", title=name
                    )
                )
            made.append(plots.current_loops(solutions, tmp / "currents.png"))
        io.write_json(tmp / DECOMPOSITION_FILE, result)

        # All files exist: replace the earlier decomposition, JSON last.
        for stale in names:
            if not (tmp / stale).exists():
                (folder / stale).unlink(missing_ok=True)
        for path in made:
            os.replace(path, folder / path.name)
        os.replace(tmp / DECOMPOSITION_FILE, folder / DECOMPOSITION_FILE)
    result["figures"] = [p.name for p in made]
    return result


def headline(result: dict) -> str:
    """One line for the terminal."""
    parts = [f"asymmetry ‖W_A‖²/‖W‖² {result['connectivity']['asymmetry']:.3f}"]
    grid = result["fokker_planck"]
    phi = grid.get("entropy_production")
    if phi:
        parts.append(
            f"entropy production network {phi['network']:.4g} / target "
            f"{phi['target']:.4g}"
        )
    if "warning" in grid:
        parts.append("coarse grid (see fokker_planck.warning)")
    elif "skipped" in grid:
        parts.append(f"no grid solution: {grid['skipped']}")
    return ", ".join(parts)
