"""The steps of a run on a run folder: train, simulate, evaluate, plot (DESIGN §2, §4).

Data flows one way: config → system → sampled points → model init → readout solve →
training → simulation → evaluation → figures. Each step reads what the earlier ones
left in the folder and writes its own files atomically, so a failed step leaves the
earlier files as they were. Keys come from the config's `seed`, one named subkey per
step, so a step repeated on the same config gives the same result.
"""

from __future__ import annotations

import csv
import errno
import io as _io
import json
import math
import time
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from . import io, memory, memory_plots, plots
from .config import system_from
from .data import sample_points
from .losses import data_relative_errors
from .metrics import evaluate, simulate_pair
from .rnn import LatentRNN
from .simulate import simulate_rnn
from .solve import solve_readout
from .train import DivergenceError, fit

STEP_KEYS = ("data", "init", "train", "simulate", "evaluate")
WHO = ("network", "target")
PATHS_FILE = "paths.npz"
FIGURES = ("attractor", "timeseries", "loss", "drift_error", "raster", "eigenvalues")
HISTORY_FILE = "history.csv"
TRAIN_FILE = "train.json"
METRICS_FILE = "metrics.json"
DECOMPOSITION_FILE = "decomposition.json"
TRAIN_OUTPUTS = (io.MODEL_FILE, "model.npz", HISTORY_FILE, TRAIN_FILE)
# What each step's files are made from: a new model makes the simulated paths, the
# metrics and the figures stale; new paths, the metrics and the figures (every PNG of
# the folder is a figure of the run).
DEPENDENTS = {
    "train": (PATHS_FILE, METRICS_FILE, DECOMPOSITION_FILE, "*.png"),
    "simulate": (METRICS_FILE, DECOMPOSITION_FILE, "*.png"),
}


def check_writable(folder: Path, names) -> None:
    """Refuse, before a step does any work, a folder standing where a file goes.

    **Raises:** `IsADirectoryError` naming the path.
    """
    for name in names:
        if (folder / name).is_dir():
            raise IsADirectoryError(
                errno.EISDIR, "a folder is in the place of the file", str(folder / name)
            )


def remove_stale(folder: Path, step: str) -> list[str]:
    """Delete the files of `folder` made from what `step` has just replaced.

    **Returns:** the names removed, sorted.
    """
    removed = []
    for pattern in DEPENDENTS.get(step, ()):
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                path.unlink()
                removed.append(path.name)
    return removed


def keys(cfg: dict) -> dict:
    """One PRNG key per step, from `seed`."""
    return dict(
        zip(STEP_KEYS, jr.split(jr.key(cfg["seed"]), len(STEP_KEYS)), strict=True)
    )


def _data_options(cfg: dict) -> dict:
    d = cfg["data"]
    return {
        "method": d["method"],
        "num_paths": d["num_paths"],
        "burn_in": d["burn_in"],
        "spacing": d["spacing"],
        "dt": d["dt"],
        "box_fraction": d["box_fraction"],
    }


def _optimizer(train: dict) -> optax.GradientTransformation:
    make = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd}
    return make[train["optimizer"]](train["learning_rate"])


def build(cfg: dict):
    """The config's target system, after the checks that need it; cheap, so the CLI
    calls it before any folder is made.

    **Raises:** `ConfigError` / `ValueError` naming the field: N < K, system
    parameters of the wrong shape, or the Heun solver with state-dependent noise
    (gated noise, or a target whose g depends on the state).
    """
    if "file" in cfg["system"]:
        from . import data_pipeline

        return data_pipeline.build(cfg)
    system = system_from(cfg)
    if system.input_dim > 0:
        _check_cues(cfg)
    if system.input_dim > 0 and cfg["train"]["steps"] > 0:
        if cfg["train"]["batch_size"] is not None:
            raise ValueError(
                f"system {system.name!r} takes inputs, matched as one (z, u) pair per "
                "point: `train.batch_size` must be null (all points each step); got "
                f"{cfg['train']['batch_size']}"
            )
    m = cfg["model"]
    if m["num_neurons"] < system.latent_dim:
        raise ValueError(
            f"`model.num_neurons` must be ≥ latent_dim ({system.latent_dim}) of "
            f"system {system.name!r}; got {m['num_neurons']}"
        )
    _probe(system, cfg["system"])
    if cfg["simulate"]["solver"] == "heun":
        # Heun converges to the Stratonovich solution, which is the Itô one only
        # when g does not depend on the state.
        if m["noise"] == "gated":  # latent (E G0) and private (diag σ) are additive
            raise ValueError(
                "`simulate.solver` heun needs additive noise; use euler with "
                f"`model.noise` {m['noise']!r}, or `model.noise` latent or private"
            )
        if not _additive_noise(system):
            raise ValueError(
                "`simulate.solver` heun needs additive noise; use euler for system "
                f"{system.name!r}, whose noise depends on the state"
            )
    return system


def _check_cues(cfg: dict) -> None:
    """Cued trials the simulation can resolve: a cue the network was matched for
    (amplitude ≤ 1), a cue and a hold each at least one saving step long, and cue
    times that float32 tells apart."""
    c, s = cfg["cues"], cfg["simulate"]
    if c["amplitude"] > 1:
        raise ValueError(
            "`cues.amplitude` must be in (0, 1]: the network is matched for cue "
            f"amplitudes in [0, 1]; got {c['amplitude']}"
        )
    saved = s["dt"] * s["save_every"]
    for key in ("duration", "hold"):
        if c[key] < saved:
            raise ValueError(
                f"`cues.{key}` ({c[key]:g}) must be ≥ the saving step `simulate.dt` × "
                f"`simulate.save_every` ({saved:g}), or the trials are not resolved"
            )
    on, off = np.float32(c["onset"]), np.float32(c["onset"] + c["duration"])
    if not off - on > 0.5 * c["duration"]:
        raise ValueError(
            f"`cues.onset` ({c['onset']:g}) is too large for `cues.duration` "
            f"({c['duration']:g}): float32 times cannot tell the cue's start from its "
            "end"
        )


def _probe(system, section: dict) -> None:
    """Evaluate f and g once at z0, so that parameters of the wrong shape fail here,
    naming the parameters, rather than deep inside the first simulation."""
    k, c = system.latent_dim, system.noise_dim
    given = ", ".join(f"{name}={v!r}" for name, v in section.items() if name != "name")
    try:
        f = system.drift(0.0, jnp.asarray(system.z0), None)
        g = system.diffusion(0.0, jnp.asarray(system.z0), None)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"`system` parameters of {system.name!r} ({given}) do not fit: "
            f"{str(e).splitlines()[0]}"
        ) from None
    if f.shape != (k,) or g.shape != (k, c):
        raise ValueError(
            f"`system` parameters of {system.name!r} ({given}) give a drift of shape "
            f"{f.shape} and a noise matrix of shape {g.shape}; expected ({k},) and "
            f"({k}, {c})"
        )


def _additive_noise(system) -> bool:
    """Whether g is the same at two distinct states (z0 and the box's upper corner)."""
    z_a = jnp.asarray(system.z0)
    z_b = jnp.asarray(system.box[1]) + 1.0
    g_a, g_b = system.diffusion(0.0, z_a, None), system.diffusion(0.0, z_b, None)
    return bool(jnp.allclose(g_a, g_b))


def _load_model(folder: Path, cfg: dict, system) -> LatentRNN:
    """The run's model, checked against the config that will describe it."""
    model = io.load_model(folder / io.MODEL_FILE)
    n = cfg["model"]["num_neurons"]
    if (model.num_neurons, model.latent_dim) != (n, system.latent_dim):
        raise ValueError(
            f"{folder / io.MODEL_FILE} has N={model.num_neurons}, "
            f"K={model.latent_dim} but the config has `model.num_neurons` {n} and "
            f"system {system.name!r} with K={system.latent_dim}; run `ddm train` first"
        )
    return model


def train(folder: Path, cfg: dict, *, progress: bool = False, log=print) -> dict:
    """Sample points, initialise, solve and train; write the model files and history.

    **Returns:** the training summary written to ``train.json``.

    **Raises:** `IsADirectoryError` before any work when a folder stands where one of
    the step's files goes.
    """
    check_writable(folder, TRAIN_OUTPUTS)
    if "file" in cfg["system"]:
        from . import data_pipeline

        return data_pipeline.train(folder, cfg, progress=progress, log=log)
    system = build(cfg)
    k = keys(cfg)
    t = cfg["train"]
    start = time.perf_counter()
    points = sample_points(
        system,
        key=k["data"],
        num_points=cfg["data"]["num_points"],
        **_data_options(cfg),
    )
    if not bool(jnp.all(jnp.isfinite(points))):
        raise ValueError(
            f"the target {system.name!r} diverged while sampling (points not finite); "
            "check the `system` parameters and `data.dt`"
        )
    model = init_model(cfg, system, points)
    args = _point_inputs(system, k["data"], points.shape[0])
    if t["solve"]:
        model = solve_readout(
            model,
            system,
            points,
            args=args,
            rcond=t["rcond"],
            ridge=t["ridge"],
            method=t["solver"],
        )
        jax.block_until_ready(model)
        pairs = "(z, u) pairs" if args is not None else "points"
        log(f"closed-form readout solved on {points.shape[0]} {pairs}")
    summary = {"diverged_at_step": None}
    return finish_training(
        folder,
        cfg,
        model,
        summary,
        start,
        system,
        points,
        args=args,
        progress=progress,
        log=log,
    )


def _point_inputs(system, key, num_points: int):
    """One input per point for a target that takes inputs (`memory.cue_inputs`, on
    a key of its own), None for one that does not."""
    if system.input_dim == 0:
        return None
    return memory.cue_inputs(jr.fold_in(key, 1), num_points, system.input_dim)


def init_model(cfg: dict, system, points) -> LatentRNN:
    """The `model` section's network for `system`, placed on `points` (DESIGN §1),
    with the config's init key; shared by system and trajectory-file runs."""
    m = cfg["model"]
    return LatentRNN.init(
        key=keys(cfg)["init"],
        system=system,
        num_neurons=m["num_neurons"],
        connectivity=m["connectivity"],
        noise=m["noise"],
        nonlinearity=m["nonlinearity"],
        tau=m["tau"],
        points=points,
        gain=m["gain"],
        bias_spread=m["bias_spread"],
        weight_scale=m["weight_scale"],
    )


def finish_training(
    folder: Path,
    cfg: dict,
    model,
    summary: dict,
    start: float,
    system,
    points,
    *,
    data=None,
    args=None,
    progress: bool = False,
    log=print,
) -> dict:
    """Gradient steps after the solve (`train.steps`), then the model files, history
    and ``train.json``; shared by system and trajectory-file runs (`data` holds the
    increments of the latter, `system` and `points` are then None).

    **Returns:** `summary` with the divergence step, the steps and the wall time.
    """
    t = cfg["train"]
    history = {"step": np.zeros(0)}
    if t["steps"] > 0:
        try:
            model, history = fit(
                model,
                system,
                points,
                data=data,
                args=args,
                key=keys(cfg)["train"],
                optimizer=_optimizer(t),
                steps=t["steps"],
                batch_size=t["batch_size"],
                chunk_size=t["chunk_size"],
                diffusion_weight=t["diffusion_weight"],
                manifold_weight=t["manifold_weight"],
                progress=progress,
            )
        except DivergenceError as e:
            model, history = e.model, e.history
            summary["diverged_at_step"] = e.step
            log(f"warning: {e}; keeping the last good model")
    jax.block_until_ready(model)
    summary["train_seconds"] = time.perf_counter() - start
    summary["steps"] = int(len(history.get("step", ())))
    io.save_model(folder / io.MODEL_FILE, model)
    io.export_npz(folder / "model.npz", model)
    write_history(folder / HISTORY_FILE, history)
    io.write_json(folder / TRAIN_FILE, summary)
    return summary


def write_history(path: Path, history: dict) -> None:
    names = ["step", *(k for k in history if k != "step")]
    buf = _io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(names)
    for row in zip(*(np.asarray(history.get(n, [])) for n in names), strict=True):
        writer.writerow([f"{v:.9g}" for v in row])
    with io.atomic_write(path, "w") as f:
        f.write(buf.getvalue())


def read_history(path: Path) -> dict:
    """The columns of a history CSV ({} when there is none).

    **Raises:** `ValueError` naming the file, the row and the problem.
    """
    if not path.is_file():
        return {}
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path} is not a readable CSV file ({e})") from None
    if not rows:
        return {}
    names = rows[0]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names):
            raise ValueError(
                f"{path} line {line} has {len(row)} values for {len(names)} columns; "
                "run `ddm train` again"
            )
        for value in row:
            try:
                float(value)
            except ValueError:
                raise ValueError(
                    f"{path} line {line} holds {value[:40]!r}, not a number; run "
                    "`ddm train` again"
                ) from None
    values = np.asarray(rows[1:], dtype=float).reshape(-1, len(names))
    return {n: values[:, i] for i, n in enumerate(names)}


def _sim_options(cfg: dict) -> dict:
    s = cfg["simulate"]
    import diffrax

    solver = {"euler": diffrax.Euler, "heun": diffrax.Heun}[s["solver"]]()
    return {
        "num_points": cfg["data"]["held_out_points"],
        "data_options": _data_options(cfg),
        "dt": s["dt"],
        "t1": s["t1"],
        "burn_in": s["burn_in"],
        "num_paths": s["num_paths"],
        "save_every": s["save_every"],
        "solver": solver,
    }


def simulate(folder: Path, cfg: dict) -> dict:
    """Held-out points and the network/target stationary runs, saved to paths.npz."""
    check_writable(folder, (PATHS_FILE,))
    if "file" in cfg["system"]:
        from . import data_pipeline

        return data_pipeline.simulate(folder, cfg)
    system = build(cfg)
    model = _load_model(folder, cfg, system)
    key = keys(cfg)["simulate"]
    options = _sim_options(cfg)
    paths = simulate_pair(model, system, key=key, **options)
    if system.input_dim > 0:
        held_out = paths["points"].shape[0]
        paths["point_inputs"] = np.asarray(_point_inputs(system, key, held_out))
        paths |= memory.cued_trials(
            model,
            system,
            key=jr.fold_in(key, 2),
            **cfg["cues"],
            dt=options["dt"],
            save_every=options["save_every"],
            solver=options["solver"],
        )
    with io.atomic_write(folder / PATHS_FILE) as f:
        np.savez(f, **paths)
    return paths


# The arrays of paths.npz and their dimensions (K: latent, "?" any); data runs add
# the held-out increments and their time steps.
PATHS_SHAPES = {
    "points": ("?", "K"),
    "ts": ("T",),
    "network": ("?", "T", "K"),
    "target": ("?", "?", "K"),
    "dt": (),
    "simulate_seconds": (),
}
DATA_PATHS_SHAPES = {
    **PATHS_SHAPES,
    "target": (1, "?", "K"),
    "increments": ("M", "K"),
    "steps": ("M",),
    "points": ("M", "K"),
}


# Added for a target that takes inputs: the held-out points' inputs and the cued
# trials (`memory.cued_trials`).
CUED_PATHS_SHAPES = {
    **PATHS_SHAPES,
    "points": ("M", "K"),
    "point_inputs": ("M", "P"),
    "cue_ts": ("S",),
    "cue_network": ("C", "S", "K"),
    "cue_target": ("C", "S", "K"),
    "cued": ("C",),
    "cue_start": ("C",),
}


def load_paths(
    folder: Path, latent_dim: int, *, data: bool = False, input_dim: int = 0
) -> dict:
    """The arrays of the folder's paths.npz, checked against the run's K.

    **Raises:** `FileNotFoundError` when there is none; `ValueError` naming the file
    and the problem when it is unreadable, lacks an array or has the wrong shapes
    (a file from another run, say).
    """
    file = folder / PATHS_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"{folder} has no {PATHS_FILE}; run `ddm simulate` first"
        )
    again = "run `ddm simulate` again"
    with open(file, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # every .npz is a zip archive
            raise ValueError(f"{file} is not an .npz (zip) file; {again}")
    try:
        with np.load(file) as npz:
            paths = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"{file} is not a readable .npz file ({problem}); {again}"
        ) from None
    expected = DATA_PATHS_SHAPES if data else PATHS_SHAPES
    if input_dim > 0:
        expected = CUED_PATHS_SHAPES
    missing = sorted(set(expected) - set(paths))
    if missing:
        raise ValueError(f"{file} lacks the arrays {', '.join(missing)}; {again}")
    foreign = sorted((set(CUED_PATHS_SHAPES) - set(PATHS_SHAPES)) & set(paths))
    if input_dim == 0 and not data and foreign:
        raise ValueError(
            f"{file} holds cued trials ({', '.join(foreign)}), which a target without "
            f"inputs has not: it is from another run; {again}"
        )
    sizes = {"K": latent_dim, "P": input_dim}
    for name, dims in expected.items():
        shape = paths[name].shape
        ok = len(shape) == len(dims) and np.issubdtype(paths[name].dtype, np.number)
        for dim, size in zip(dims, shape, strict=False):
            if not ok:
                break
            if isinstance(dim, int) or dim in ("K", "P"):
                ok = size == sizes.get(dim, dim)
            elif dim != "?":
                ok = sizes.setdefault(dim, size) == size
        if not ok:
            want = ", ".join(str(sizes.get(d, d)) for d in dims)
            raise ValueError(
                f"{file}: `{name}` has shape {shape} ({paths[name].dtype}), expected "
                f"({want}) for this run (K={latent_dim}): it is from another run; "
                f"{again}"
            )
    return paths


def _train_seconds(folder: Path) -> float | None:
    """`train_seconds` of the folder's train.json (None when there is no file).

    **Raises:** `ValueError` naming the file when it is not JSON or lacks the number.
    """
    file = folder / TRAIN_FILE
    if not file.is_file():
        return None
    try:
        summary = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{file} is not JSON ({e}); run `ddm train` again") from None
    seconds = summary.get("train_seconds") if isinstance(summary, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(
            f"{file} has no number `train_seconds`; got {seconds!r}; run `ddm train` "
            "again"
        )
    return float(seconds)


def evaluate_run(folder: Path, cfg: dict) -> dict:
    """metrics.json from the saved paths, the model and the Lyapunov exponents.

    Every input file is read and checked before the metrics are computed.
    """
    check_writable(folder, (METRICS_FILE,))
    seconds = _train_seconds(folder)
    if "file" in cfg["system"]:
        from . import data_pipeline

        target = data_pipeline.build(cfg)
        paths = load_paths(folder, target.latent_dim, data=True)
        if not np.all(np.isfinite(paths["network"])):
            model = data_pipeline._load_model(folder, cfg, target.latent_dim)
            z, dz, dt = (
                jnp.asarray(paths[k], model.E.dtype)
                for k in ("points", "increments", "steps")
            )
            errors = data_relative_errors(model, z, dz, dt)
            metrics = _blown_up(model, target.name, errors, prefix="data_")
        else:
            metrics = data_pipeline.evaluate(folder, cfg, paths)
        return _finish_metrics(folder, metrics, seconds)
    system = build(cfg)
    model = _load_model(folder, cfg, system)
    # A blown-up simulation is reported by `evaluate` itself (`paths_finite`).
    paths = _load_run_paths(folder, cfg, system)
    e = cfg["evaluate"]
    metrics = evaluate(
        model,
        system,
        key=keys(cfg)["evaluate"],
        paths=paths,
        lyapunov={
            "dt": e["lyapunov_dt"],
            "t1": e["lyapunov_t1"],
            "transient": e["lyapunov_transient"],
            "num_paths": e["lyapunov_paths"],
        },
    )
    if system.input_dim > 0:
        metrics["cued_recall"] = cued_recall(paths, system, cfg["cues"])
    return _finish_metrics(folder, metrics, seconds)


def _load_run_paths(folder: Path, cfg: dict, system) -> dict:
    """paths.npz, checked against the run's K and, for a cued target, its cues."""
    paths = load_paths(folder, system.latent_dim, input_dim=system.input_dim)
    if system.input_dim > 0:
        _check_cued_paths(paths, system, cfg["cues"], folder / PATHS_FILE)
    return paths


def _check_cued_paths(paths: dict, system, cues: dict, file: Path) -> None:
    """The saved cued trials fit this run's `cues` and patterns.

    **Raises:** `ValueError` naming the file and the problem.
    """
    again = f"{file}: {{}}; run `ddm simulate` again"
    ts, cued, start = paths["cue_ts"], paths["cued"], paths["cue_start"]
    num = system.input_dim
    end = cues["onset"] + cues["duration"] + cues["hold"]
    # The grid stops at the last whole saving step at or before the trial's end.
    step = ts[1] - ts[0] if ts.size > 1 else 0.0
    ends = ts.size > 1 and end - step - 1e-6 <= ts[-1] <= end + 1e-6
    if not (ends and np.all(np.diff(ts) > 0)):
        raise ValueError(
            again.format(
                f"`cue_ts` is not an increasing grid ending at cues.onset + "
                f"cues.duration + cues.hold = {end:g}"
            )
        )
    for name, labels in (("cued", cued), ("cue_start", start)):
        if not (
            np.issubdtype(labels.dtype, np.integer)
            and np.all((labels >= 0) & (labels < num))
        ):
            raise ValueError(
                again.format(f"`{name}` must hold pattern numbers 0…{num - 1}")
            )
    if cued.size != num * cues["trials_per_pattern"]:
        raise ValueError(
            again.format(
                f"it has {cued.size} cued trials, the config {num} × "
                f"cues.trials_per_pattern = {num * cues['trials_per_pattern']}"
            )
        )


def cued_recall(paths: dict, system, cues: dict) -> dict:
    """`memory.recall_scores` of the saved cued trials, network and target, and the
    number of trials; a side whose trials are not finite reads ``{"finite": false}``.
    """
    out = {"trials": int(paths["cued"].size)}
    for who in ("network", "target"):
        z = paths[f"cue_{who}"]
        if not np.all(np.isfinite(z)):
            out[who] = {"finite": False}
            continue
        out[who] = memory.recall_scores(
            z,
            paths["cue_ts"],
            system.patterns,
            paths["cued"],
            cue_on=cues["onset"],
            cue_off=cues["onset"] + cues["duration"],
            hold=cues["hold"],
            core_radius=system.core_radius,
        )
    return out


def _blown_up(model, name: str, errors: dict, prefix: str = "") -> dict:
    """The metrics that remain for a network whose simulated paths are not finite:
    the field errors at the held-out points, which need no simulation, and
    ``network_paths_finite`` false; the statistics of the paths are left out."""
    metrics = {
        "system": name,
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "network_paths_finite": False,
    }
    for field in ("drift", "diffusion", "manifold"):
        metrics[f"{prefix}{field}_rel_error"] = float(errors[field])
    return metrics


def _finish_metrics(folder: Path, metrics: dict, seconds: float | None) -> dict:
    if seconds is not None:
        metrics["train_seconds"] = seconds
    io.write_json(folder / METRICS_FILE, metrics)
    return metrics


HEADLINE = (
    "drift_rel_error",
    "diffusion_rel_error",
    "manifold_rel_error",
    "data_drift_rel_error",
    "data_diffusion_rel_error",
    "data_manifold_rel_error",
)


def non_finite_headline(metrics: dict) -> tuple[str, float] | None:
    """The first headline metric (relative errors, the network's λ_max) that is NaN
    or infinite, as ``(key, value)``; None when all are finite."""
    found = [(key, metrics[key]) for key in HEADLINE if key in metrics]
    lam = metrics.get("lyapunov_max")
    if isinstance(lam, dict) and "network" in lam:
        found.append(("lyapunov_max.network", lam["network"]))
    if metrics.get("network_paths_finite") is False:
        found.append(("simulated paths", math.nan))
    if metrics.get("cued_recall", {}).get("network", {}).get("finite") is False:
        found.append(("cued trials", math.nan))
    for key, value in found:
        if isinstance(value, int | float) and not math.isfinite(value):
            return key, value
    return None


def plot(folder: Path, cfg: dict) -> list[Path]:
    """The run's figures (PNG) from its files, all read and checked before the first
    figure is written."""
    check_writable(folder, [f"{name}.png" for name in FIGURES])
    history = read_history(folder / HISTORY_FILE)
    if "file" in cfg["system"]:
        from . import data_pipeline

        k = data_pipeline.build(cfg).latent_dim
        paths = load_paths(folder, k, data=True)
        return data_pipeline.plot(folder, cfg, paths, history)
    system = build(cfg)
    model = _load_model(folder, cfg, system)
    paths = _load_run_paths(folder, cfg, system)
    z_net, z_tgt, ts = paths["network"], paths["target"], paths["ts"]
    out = [
        plots.attractor(z_net, z_tgt, folder / "attractor.png"),
        plots.timeseries(
            ts, z_net[0], z_tgt[0], folder / "timeseries.png", max_time=ts[0] + 20.0
        ),
        plots.loss_curve(history, folder / "loss.png"),
    ]
    points = jnp.asarray(paths["points"], model.E.dtype)
    f_net = jax.vmap(lambda z: model.latent_drift(0.0, z, None))(points)
    f_tgt = jax.vmap(lambda z: system.drift(0.0, z, None))(points)
    out.append(plots.drift_error(points, f_net, f_tgt, folder / "drift_error.png"))

    # A short noisy run of the full state for the raster of rates.
    s = cfg["simulate"]
    t1 = min(s["t1"], 200 * s["dt"] * s["save_every"])
    t, _, xs = simulate_rnn(
        model,
        key=keys(cfg)["simulate"],
        z0=points[0],
        t1=t1,
        dt=s["dt"],
        save_every=s["save_every"],
        full_state=True,
    )
    rates = model.phi(xs[0])
    out.append(plots.raster(t, rates, folder / "raster.png"))
    out.append(
        plots.eigenvalues(
            connectivity_eigenvalues(model), folder / "eigenvalues.png", tau=model.tau
        )
    )
    return out + memory_figures(folder, cfg, system, paths)


def memory_figures(folder: Path, cfg: dict, system, paths: dict) -> list[Path]:
    """For targets with wells (`multi_well` and the memory targets): the transition
    matrices and dwell times of the stationary runs, and the cued trials of a
    target that takes inputs."""
    if not hasattr(system, "core_radius"):
        return []
    net, tgt = (system.statistics(paths[w], float(paths["dt"])) for w in WHO)
    out = [
        memory_plots.transition_matrices(
            net["transition_matrix"],
            tgt["transition_matrix"],
            folder / "transitions.png",
        ),
        memory_plots.dwell_times(
            *(
                memory.dwell_times(
                    memory.well_labels(paths[w], system.patterns, system.core_radius),
                    float(paths["dt"]),
                )
                for w in WHO
            ),
            folder / "dwell_times.png",
        ),
    ]
    if system.input_dim > 0:
        cues = cfg["cues"]
        out.append(
            memory_plots.cued_trials(
                paths["cue_ts"],
                paths["cue_network"],
                paths["cue_target"],
                paths["cued"],
                system.patterns,
                folder / "cued_trials.png",
                core_radius=system.core_radius,
                onset=cues["onset"],
                duration=cues["duration"],
            )
        )
    return out


def connectivity_eigenvalues(model) -> np.ndarray:
    """Eigenvalues of W; for W = E Vᵀ the nonzero ones are those of Vᵀ E (K×K), the
    other N − K are zero, so the N×N matrix is never formed."""
    if model.connectivity == "low_rank":
        lam = np.linalg.eigvals(np.asarray(model.V.T @ model.E, np.float64))
        return np.concatenate([lam, np.zeros(model.num_neurons - model.latent_dim)])
    return np.linalg.eigvals(np.asarray(model.W, np.float64))
