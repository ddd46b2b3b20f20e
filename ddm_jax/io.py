"""Files: models, checkpoints, run folders (DESIGN §3, §4).

Every file is written atomically: to a temporary file in the same folder, flushed,
then renamed over the target, so a crash leaves either the old file or the new one.
Models are stored as one JSON line of hyperparameters followed by equinox's leaf
serialisation of the parameters (never pickle); `export_npz` writes plain arrays for
use outside JAX.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .rnn import LatentRNN

MODEL_FILE = "model.eqx"
FORMAT = "ddm_jax.model/1"


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Open a temporary file beside `path`; rename it onto `path` on success only.

    **Raises:** `IsADirectoryError` naming `path` when a folder is in its place,
    before anything is written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, "a folder is in the place of the file", str(path)
        )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_text(obj) -> str:
    """`obj` as strict JSON text: NaN and ±inf, which JSON has no words for, become
    null, so that every JSON reader accepts it; NumPy and JAX arrays become
    (nested) lists."""
    return json.dumps(_finite_or_null(obj), indent=2, sort_keys=True, allow_nan=False)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as `json_text`, atomically."""
    with atomic_write(path, "w") as f:
        f.write(json_text(obj) + "\n")


def machine(*peers: str) -> dict:
    """What a benchmark ran on: the JAX backend, its devices and version, and the
    versions of the peer packages named (with torch's thread count)."""
    import importlib
    import platform

    import jax

    out = {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "processor": platform.processor() or platform.machine(),
    }
    for name in peers:
        module = importlib.import_module(name)
        out[name] = module.__version__
        if name == "torch":
            out["torch_threads"] = module.get_num_threads()
    return out


def print_report(report, out=None, peers: tuple[str, ...] = ()) -> int:
    """A benchmark's report, with `machine(*peers)` under ``"machine"``: printed as
    `json_text` and, when `out` names a file, written there too.

    **Returns:** 0, the exit status.
    """
    report = {"machine": machine(*peers), **report}
    print(json_text(report))
    if out:
        write_json(out, report)
    return 0


def _finite_or_null(obj):
    if isinstance(obj, np.ndarray | np.generic) or hasattr(obj, "__jax_array__"):
        obj = np.asarray(obj).tolist()
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def hyperparameters(model: LatentRNN) -> dict:
    """What is needed to rebuild the model's structure."""
    return {
        "format": FORMAT,
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "noise_dim": model.noise_dim,
        "input_dim": model.input_dim,
        "connectivity": model.connectivity,
        "noise": model.noise,
        "nonlinearity": model.nonlinearity,
        "tau": model.tau,
        "dtype": str(model.E.dtype),
    }


def skeleton(hp: dict) -> LatentRNN:
    """A zero model with the structure that `hp` describes."""
    n, k, c, p = (
        int(hp[key]) for key in ("num_neurons", "latent_dim", "noise_dim", "input_dim")
    )
    dtype = jnp.dtype(hp["dtype"])
    zeros = lambda *shape: jnp.zeros(shape, dtype)  # noqa: E731
    dense = hp["connectivity"] == "dense"
    # Private noise has C = N channels, carried by `sigma` (N); G0 is then K×0.
    private = hp["noise"] == "private"
    return LatentRNN(
        zeros(n, k),
        zeros(n),
        None if dense else zeros(n, k),
        zeros(n, n) if dense else None,
        zeros(k, 0) if private else zeros(k, c),
        zeros(n, k, c) if hp["noise"] == "gated" else None,
        zeros(n, p),
        float(hp["tau"]),
        hp["nonlinearity"],
        hp["connectivity"],
        hp["noise"],
        zeros(n) if private else None,
    )


def save_model(path: str | Path, model: LatentRNN) -> None:
    """Write the model (JSON header line + equinox leaves) atomically."""
    with atomic_write(path) as f:
        f.write((json.dumps(hyperparameters(model)) + "\n").encode())
        eqx.tree_serialise_leaves(f, model)


def load_model(path: str | Path) -> LatentRNN:
    """Read a model written by `save_model`.

    **Raises:** `ValueError` when the file is not a ddm_jax model.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            hp = json.loads(f.readline().decode())
            if hp.get("format") != FORMAT:
                raise ValueError
            like = skeleton(hp)
            return eqx.tree_deserialise_leaves(f, like)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RuntimeError) as e:
            raise ValueError(
                f"{path} is not a readable ddm_jax model file ({e})"
            ) from e


def export_npz(path: str | Path, model: LatentRNN) -> None:
    """The weights as plain arrays (E, E_pinv, b, W or V, G0, A or sigma, B) plus
    tau."""
    arrays = {
        name: np.asarray(getattr(model, name))
        for name in ("E", "b", "V", "W", "G0", "A", "sigma", "B")
        if getattr(model, name) is not None
    }
    arrays["E_pinv"] = np.asarray(model.E_pinv)
    arrays["tau"] = np.asarray(model.tau)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def save_checkpoint(path, model, opt_state, step: int, history: dict) -> None:
    """Model, optimizer state, step count and history, atomically."""
    header = {"step": int(step), "history": {k: list(v) for k, v in history.items()}}
    with atomic_write(path) as f:
        f.write((json.dumps(header) + "\n").encode())
        eqx.tree_serialise_leaves(f, (model, opt_state))


def load_checkpoint(path, model, opt_state):
    """Inverse of `save_checkpoint`, given a model and state of the same structure.

    **Returns:** ``(model, opt_state, step, history)``.
    """
    with open(path, "rb") as f:
        header = json.loads(f.readline().decode())
        model, opt_state = eqx.tree_deserialise_leaves(f, (model, opt_state))
    return model, opt_state, header["step"], header["history"]


class Run(NamedTuple):
    """A run folder's contents."""

    config: dict
    model: LatentRNN
    metrics: dict | None


def load_run(path: str | Path) -> Run:
    """Config, model and metrics of a run folder (metrics None if not evaluated yet).

    **Raises:** `FileNotFoundError` naming the missing file.
    """
    import yaml

    path = Path(path)
    for name in ("config.yaml", MODEL_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path} is not a run folder: no {name}")
    config = yaml.safe_load((path / "config.yaml").read_text())
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    return Run(config, load_model(path / MODEL_FILE), metrics)
