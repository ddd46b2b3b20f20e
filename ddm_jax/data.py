"""Sampling measures ρ for the matching losses (DESIGN §1 "Drift–diffusion matching").

- ``stationary``: states of the target itself, simulated from its default start past a
  burn-in and taken every `spacing` time units along many independent paths.
- ``box``: uniform in the system's sampling box.
- ``mixture``: a fraction `box_fraction` from the box, the rest stationary.

Held-out points for evaluation are drawn by calling `sample_points` again with an
independent key: an independent run of the target, never a split of the training set.

Recorded trajectories (DESIGN §1 "Matching from data"): `load_trajectories` reads and
checks samples z_n at times t_n from a file, `increments` pools (z_n, Δz_n, Δt_n) with
Δz_n = z_{n+1} − z_n and Δt_n = t_{n+1} − t_n, and `split_trials` keeps the last part
of the data apart for evaluation.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .simulate import simulate_sde

METHODS = ("stationary", "box", "mixture")


def sample_points(
    system,
    *,
    key: PRNGKeyArray,
    num_points: int,
    method: str = "stationary",
    num_paths: int = 64,
    burn_in: float = 10.0,
    spacing: float = 0.1,
    dt: float = 0.01,
    box_fraction: float = 0.2,
    args=None,
) -> Float[Array, "M K"]:
    """Latent points z drawn from the sampling measure ρ.

    **Arguments:**

    - `system`: the target.
    - `key`: PRNG key.
    - `num_points`: M.
    - `method`: ``"stationary"``, ``"box"`` or ``"mixture"``.
    - `num_paths`, `burn_in`, `spacing`, `dt`: the stationary run (Euler–Maruyama, as
      in `simulate_sde`): `num_paths` paths from the default start, jittered, kept
      after `burn_in`, one point every `spacing`.
    - `box_fraction`: share of box points in a mixture.
    - `args`: input u for the stationary run.

    **Returns:** an array of shape ``(M, K)``.

    **Raises:** `ValueError` naming the bad argument.
    """
    if method not in METHODS:
        raise ValueError(f"`data.method` must be one of {METHODS}; got {method!r}")
    if int(num_points) < 1:
        raise ValueError(f"`data.num_points` must be ≥ 1; got {num_points}")
    if not 0.0 <= box_fraction <= 1.0:
        raise ValueError(f"`data.box_fraction` must be in [0, 1]; got {box_fraction}")
    num_points = int(num_points)
    box_key, run_key = jr.split(key)
    if method == "box":
        return box_points(system, key=box_key, num_points=num_points)
    num_box = int(round(box_fraction * num_points)) if method == "mixture" else 0
    z = stationary_points(
        system,
        key=run_key,
        num_points=num_points - num_box,
        num_paths=num_paths,
        burn_in=burn_in,
        spacing=spacing,
        dt=dt,
        args=args,
    )
    if num_box:
        z = jnp.concatenate([z, box_points(system, key=box_key, num_points=num_box)])
    return z


def box_points(system, *, key: PRNGKeyArray, num_points: int) -> Float[Array, "M K"]:
    """Uniform points in the system's box."""
    lower, upper = system.box
    u = jr.uniform(key, (num_points, system.latent_dim))
    return lower + (upper - lower) * u


def stationary_points(
    system,
    *,
    key: PRNGKeyArray,
    num_points: int,
    num_paths: int,
    burn_in: float,
    spacing: float,
    dt: float,
    args=None,
) -> Float[Array, "M K"]:
    """Points along `num_paths` stationary paths of the target (see `sample_points`)."""
    if not spacing >= dt > 0:
        raise ValueError(
            f"`data.spacing` ({spacing}) must be ≥ `data.dt` ({dt}) and dt > 0"
        )
    if burn_in < 0:
        raise ValueError(f"`data.burn_in` must be ≥ 0; got {burn_in}")
    if hasattr(system, "stationary_sample"):  # a system with its own sampler (dysts)
        return system.stationary_sample(num_points=num_points, key=key)
    num_paths = max(1, min(int(num_paths), num_points))
    per_path = math.ceil(num_points / num_paths)
    every = max(1, int(round(spacing / dt)))
    start_key, run_key = jr.split(key)
    lower, upper = system.box
    jitter = (
        0.05 * (upper - lower) * jr.normal(start_key, (num_paths, system.latent_dim))
    )
    # Jittered starts stay in the box: outside it a flow may have no attractor to
    # fall into (Rössler escapes from w < 0).
    z0 = jnp.clip(system.z0 + jitter, lower, upper)
    t_first = every * dt * math.ceil(burn_in / (every * dt))
    t1 = t_first + every * dt * (per_path - 1)
    ts, zs = simulate_sde(
        system, key=run_key, z0=z0, t1=t1, dt=dt, save_every=every, args=args
    )
    kept = zs[:, ts.shape[0] - per_path :]
    return kept.reshape(-1, system.latent_dim)[:num_points]


# --- recorded trajectories ----------------------------------------------------------

FORMATS = (
    ".npz with arrays t (T,) or (R, T) and z (T, K) or (R, T, K), or t_0, z_0, t_1, "
    "z_1, … for trials of different lengths; .npy with an array (T, 1+K) or "
    "(R, T, 1+K) whose first column is time; .csv with a header t,z0,z1,… and an "
    "optional trial column"
)
_TRIAL_KEY = re.compile(r"^([tz])_(\d+)$")


class Trial(NamedTuple):
    """One recorded trajectory: times ``t`` (T,) and samples ``z`` (T, K), float64."""

    t: np.ndarray
    z: np.ndarray


def load_trajectories(path: str | Path) -> list[Trial]:
    """Trajectories z_n at times t_n from a ``.npz``, ``.npy`` or ``.csv`` file.

    Steps may be uneven and trials of different lengths. Arrays are read with
    ``allow_pickle=False``: a file holding pickled objects is refused, never run.

    **Arguments:**

    - `path`: the file; its suffix picks the format (see `FORMATS`):
      ``.npz`` with ``t`` and ``z`` (z (T, K) or (R, T, K); t (T,), shared, or
      (R, T)) or with ``t_0, z_0, t_1, z_1, …``; ``.npy`` with an array (T, 1+K) or
      (R, T, 1+K), time first; ``.csv`` with a header ``t,z0,z1,…`` (any names for
      the latent columns, kept in order) and an optional ``trial`` column whose rows
      need not be contiguous.

    **Returns:** a list of `Trial` ``(t, z)``, float64, one per trial.

    **Raises:** `ValueError` with one line naming the file, the problem and what is
    allowed: an unknown suffix, an unreadable or corrupt file, pickled or
    non-numeric data, missing arrays, wrong shapes, mismatched lengths, fewer than 2
    samples in a trial, K = 0, values that are not finite, or times that do not
    strictly increase (naming the trial and index).
    """
    path = Path(path)
    name = str(path)
    readers = {".npz": _read_npz, ".npy": _read_npy, ".csv": _read_csv}
    suffix = path.suffix.lower()
    if suffix not in readers:
        raise ValueError(
            f"trajectory file {name!r} has suffix {path.suffix!r}; allowed: .npz, "
            ".npy, .csv"
        )
    if not path.is_file():
        raise ValueError(f"trajectory file {name!r} does not exist or is not a file")
    try:
        raw = readers[suffix](path)
    except _Bad as e:
        raise ValueError(f"trajectory file {name!r}: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise ValueError(
            f"trajectory file {name!r} cannot be read as {suffix} ({_first_line(e)}); "
            f"allowed: {FORMATS}"
        ) from None
    except ValueError as e:
        # NumPy's own refusals: pickled object arrays, a bad header, a short file.
        problem = _first_line(e)
        if "allow_pickle" in problem or "Object arrays" in problem:
            problem = "it holds pickled Python objects, which are never loaded"
        raise ValueError(
            f"trajectory file {name!r} cannot be read as {suffix}: {problem}; "
            f"allowed: {FORMATS}"
        ) from None
    try:
        return _check_trials(raw)
    except _Bad as e:
        raise ValueError(f"trajectory file {name!r}: {e}") from None


class _Bad(Exception):
    """A problem with a trajectory file's content; `load_trajectories` adds the name."""


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _numeric(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise _Bad(f"{what} must hold real numbers; got dtype {array.dtype}")
    return np.asarray(array, np.float64)


def _read_npz(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        names = sorted(data.files)
        arrays = {k: data[k] for k in names}
    if not names:
        raise _Bad("the archive holds no arrays; expected t and z (or t_0, z_0, …)")
    if {"t", "z"} <= set(names):
        extra = sorted(set(names) - {"t", "z"})
        if extra:
            raise _Bad(f"unexpected arrays {extra} beside t and z; remove them")
        t, z = _numeric(arrays["t"], "t"), _numeric(arrays["z"], "z")
        if z.ndim == 2:
            if t.ndim != 1:
                raise _Bad(
                    f"t must have shape (T,) for z of shape (T, K); got {t.shape}"
                )
            return [("0", t, z)]
        if z.ndim != 3:
            raise _Bad(
                f"z must have shape (T, K) or (R, T, K); got {z.ndim}-D {z.shape}"
            )
        if t.ndim == 1:
            t = np.broadcast_to(t, z.shape[:2])
        if t.ndim != 2 or t.shape[0] != z.shape[0]:
            raise _Bad(
                f"t must have shape (T,) or (R, T) = ({z.shape[0]}, T) for z of shape "
                f"{z.shape}; got {t.shape}"
            )
        return [(str(i), t[i], z[i]) for i in range(z.shape[0])]
    found = {}
    for key in names:
        match = _TRIAL_KEY.match(key)
        if match is None:
            raise _Bad(
                f"unexpected array {key!r} (arrays: {names}); expected t and z, or "
                "t_0, z_0, t_1, z_1, …"
            )
        found.setdefault(int(match.group(2)), {})[match.group(1)] = arrays[key]
    trials = []
    for index in sorted(found):
        pair = found[index]
        for letter in "tz":
            if letter not in pair:
                raise _Bad(f"array {letter}_{index} is missing (its pair is there)")
        t = _numeric(pair["t"], f"t_{index}")
        z = _numeric(pair["z"], f"z_{index}")
        if z.ndim != 2 or t.ndim != 1:
            raise _Bad(
                f"t_{index} must have shape (T,) and z_{index} (T, K); got {t.shape} "
                f"and {z.shape}"
            )
        trials.append((str(index), t, z))
    return trials


def _read_npy(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    data = _numeric(np.load(path, allow_pickle=False), "the array")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise _Bad(
            f"the array must have shape (T, 1+K) or (R, T, 1+K), time first; got "
            f"{data.ndim}-D {data.shape}"
        )
    if data.shape[-1] < 2:
        raise _Bad(
            f"the array has {data.shape[-1]} column(s): time and at least one latent "
            "coordinate (K ≥ 1) are needed"
        )
    return [(str(i), d[:, 0], d[:, 1:]) for i, d in enumerate(data)]


def _read_csv(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if r]
    if not rows:
        raise _Bad("the file is empty; expected a header t,z0,z1,… and rows")
    header = [h.strip() for h in rows[0][1]]
    if "t" not in header:
        raise _Bad(f"the header {header} has no column t; expected t,z0,z1,…")
    if len(set(header)) != len(header) or "" in header:
        raise _Bad(f"the header {header} has empty or repeated column names")
    t_col = header.index("t")
    trial_col = header.index("trial") if "trial" in header else None
    z_cols = [i for i, h in enumerate(header) if h not in ("t", "trial")]
    if not z_cols:
        raise _Bad("the header has no latent columns (K = 0); expected t,z0,z1,…")
    groups: dict[str, list[list[float]]] = {}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise _Bad(
                f"line {line} has {len(row)} fields; the header has {len(header)}"
            )
        label = row[trial_col].strip() if trial_col is not None else "0"
        values = []
        for i in (t_col, *z_cols):
            try:
                values.append(float(row[i]))
            except ValueError:
                raise _Bad(
                    f"line {line}, column {header[i]!r}: {row[i]!r} is not a number"
                ) from None
        groups.setdefault(label, []).append(values)
    if not groups:
        raise _Bad("the file has a header but no rows")
    trials = []
    for label, values in groups.items():
        v = np.asarray(values, np.float64)
        trials.append((label, v[:, 0], v[:, 1:]))
    return trials


def _check_trials(raw) -> list[Trial]:
    trials, k = [], None
    for label, t, z in raw:
        where = f"trial {label}" if len(raw) > 1 else "the trajectory"
        if z.ndim != 2 or z.shape[1] == 0:
            raise _Bad(f"{where} has z of shape {z.shape}; K ≥ 1 latent columns needed")
        if t.shape != (z.shape[0],):
            raise _Bad(
                f"{where} has {t.shape[0] if t.ndim else 0} times but {z.shape[0]} "
                "samples; they must match"
            )
        if z.shape[0] < 2:
            raise _Bad(f"{where} has {z.shape[0]} sample(s); at least 2 are needed")
        if k is not None and z.shape[1] != k:
            raise _Bad(f"{where} has K = {z.shape[1]} but an earlier trial has K = {k}")
        k = z.shape[1]
        for what, a in (("times", t), ("samples", z)):
            bad = np.argwhere(~np.isfinite(a))
            if bad.size:
                raise _Bad(
                    f"{where} has a value that is not finite among its {what} (at "
                    f"index {tuple(int(i) for i in bad[0])}); all must be finite"
                )
        steps = np.diff(t)
        if np.any(steps <= 0):
            i = int(np.argmax(steps <= 0)) + 1
            raise _Bad(
                f"times are not strictly increasing in {where} at index {i} "
                f"(t[{i}] = {t[i]:g} after t[{i - 1}] = {t[i - 1]:g})"
            )
        trials.append(Trial(np.array(t, np.float64), np.array(z, np.float64)))
    return trials


def increments(trials: list[Trial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pooled increments of every trial: ``(z, dz, dt)`` with z_n (M, K),
    Δz_n = z_{n+1} − z_n (M, K) and Δt_n = t_{n+1} − t_n (M,), float64 NumPy arrays
    (M = Σ (T_r − 1)); no increment crosses from one trial to the next."""
    if not trials:
        raise ValueError("`trials` is empty; at least one trial is needed")
    z = np.concatenate([tr.z[:-1] for tr in trials])
    dz = np.concatenate([np.diff(tr.z, axis=0) for tr in trials])
    dt = np.concatenate([np.diff(tr.t) for tr in trials])
    return z, dz, dt


def split_trials(
    trials: list[Trial], held_out: float = 0.2
) -> tuple[list[Trial], list[Trial]]:
    """Fitting and held-out parts of recorded trajectories.

    With 5 trials or more the last ``ceil(held_out · R)`` trials are held out whole;
    with fewer, the last ``held_out`` share of each trial's samples (at least 2). No
    increment joins the two parts: the sample at the cut starts the held-out part and
    does not end the fitting part.

    **Returns:** ``(fit, held)``.

    **Raises:** `ValueError` when a part would have fewer than 2 samples.
    """
    if not 0 < held_out < 1:
        raise ValueError(f"`held_out` must be in (0, 1); got {held_out}")
    if len(trials) >= 5:
        cut = len(trials) - math.ceil(held_out * len(trials))
        return list(trials[:cut]), list(trials[cut:])
    fit, held = [], []
    for i, tr in enumerate(trials):
        n = tr.t.shape[0]
        cut = n - max(2, math.ceil(held_out * n))
        if cut < 2:
            raise ValueError(
                f"trial {i} has {n} samples, too few to hold out the last "
                f"{held_out:.0%} (each part needs ≥ 2); record longer trials"
            )
        fit.append(Trial(tr.t[:cut], tr.z[:cut]))
        held.append(Trial(tr.t[cut:], tr.z[cut:]))
    return fit, held
