"""Configs: defaults, YAML files, dotted overrides and validation (DESIGN §4).

A config is a nested dict with the sections below. `load` reads a YAML file, merges it
over `DEFAULTS`, applies ``section.key=value`` overrides (values parsed as YAML) and
checks every field, raising `ConfigError` with one line that names the field, its
value and what is allowed. The `system` section holds ``name`` and the system's own
parameters, which `ddm_jax.systems.get` checks.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml

from . import systems

CHOICES = {
    "dtype": ("float32", "float64"),
    "model.connectivity": ("low_rank", "dense"),
    "model.nonlinearity": ("tanh", "softplus", "relu", "identity"),
    "model.noise": ("latent", "gated"),
    "data.method": ("stationary", "box", "mixture"),
    "train.solver": ("svd", "qr"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "simulate.solver": ("euler", "heun"),
}

# Each default's type is the field's type; None marks "int or null".
DEFAULTS: dict = {
    "seed": 0,
    "dtype": "float32",
    "system": {"name": "lorenz"},
    "model": {
        "num_neurons": 512,
        "connectivity": "low_rank",
        "nonlinearity": "tanh",
        "tau": 0.1,
        "noise": "latent",
        "gain": 1.0,
        "bias_spread": 1.0,
        "weight_scale": 0.1,
    },
    "data": {
        "method": "stationary",
        "num_points": 8192,
        "held_out_points": 4096,
        "num_paths": 64,
        "burn_in": 5.0,
        "spacing": 0.05,
        "dt": 0.005,
        "box_fraction": 0.2,
    },
    "train": {
        "solve": True,
        "solver": "svd",
        "rcond": 1.0e-7,
        "ridge": 0.0,
        "optimizer": "adam",
        "learning_rate": 1.0e-3,
        "steps": 0,
        "batch_size": None,
        "chunk_size": 100,
        "diffusion_weight": 1.0,
        "manifold_weight": 1.0,
    },
    "simulate": {
        "solver": "euler",
        "dt": 0.005,
        "t1": 55.0,
        "burn_in": 5.0,
        "num_paths": 64,
        "save_every": 2,
    },
    "evaluate": {
        "lyapunov_dt": 0.01,
        "lyapunov_t1": 200.0,
        "lyapunov_transient": 10.0,
        "lyapunov_paths": 8,
    },
}

POSITIVE = {
    "model.num_neurons", "model.tau", "data.num_points", "data.held_out_points",
    "data.num_paths", "data.spacing", "data.dt", "train.learning_rate",
    "train.chunk_size", "simulate.dt", "simulate.t1", "simulate.num_paths",
    "simulate.save_every", "evaluate.lyapunov_dt", "evaluate.lyapunov_t1",
    "model.gain",
}
NON_NEGATIVE = {
    "data.burn_in", "train.rcond", "train.ridge", "train.steps", "simulate.burn_in",
    "evaluate.lyapunov_transient", "evaluate.lyapunov_paths", "model.bias_spread",
    "model.weight_scale", "train.diffusion_weight", "train.manifold_weight",
    "data.box_fraction",
}


class ConfigError(ValueError):
    """A config file, field or override is not acceptable."""


def load(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """The resolved config: defaults, then the file at `path`, then `overrides`.

    **Raises:** `ConfigError` with one line naming what is wrong.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        user = read_yaml(path)
        merge(cfg, user, prefix="")
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {_problem(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections; got {type(data).__name__}")
    return data


def _problem(e) -> str:
    return str(getattr(e, "problem", None) or e).strip().splitlines()[0]


def merge(cfg: dict, user: dict, prefix: str) -> None:
    """Merge `user` into `cfg`, refusing keys that `cfg` does not have (except under
    `system`, whose keys the system itself checks)."""
    for key, value in user.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings; got {key!r} in {prefix or 'top level'}")
        if prefix == "system.":
            cfg[key] = value
            continue
        if key not in cfg:
            allowed = ", ".join(sorted(cfg))
            raise ConfigError(f"unknown config key `{path}`; allowed: {allowed}")
        if isinstance(cfg[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"`{path}` must be a section (mapping); got {value!r}")
            merge(cfg[key], value, prefix=f"{path}.")
        else:
            cfg[key] = value


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``dotted.path=value`` override (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override `{dotted}`: value {raw!r} is not YAML ({_problem(e)})") from None
    *parents, last = dotted.split(".")
    nested: dict = value
    for name in reversed([*parents, last][1:]):
        nested = {name: nested}
    merge(cfg, {dotted.split(".")[0]: nested}, prefix="")


def validate(cfg: dict) -> None:
    """Check types, ranges, choices and finiteness of every field."""
    _check_section(cfg, DEFAULTS, prefix="")
    for path, allowed in CHOICES.items():
        value = get(cfg, path)
        if value not in allowed:
            raise ConfigError(f"`{path}` must be one of {', '.join(allowed)}; got {value!r}")
    for path in POSITIVE | NON_NEGATIVE:
        value = get(cfg, path)
        if value is None:
            continue
        if path in POSITIVE and not value > 0:
            raise ConfigError(f"`{path}` must be > 0; got {value}")
        if path in NON_NEGATIVE and not value >= 0:
            raise ConfigError(f"`{path}` must be ≥ 0; got {value}")
    if cfg["data"]["box_fraction"] > 1:
        raise ConfigError(f"`data.box_fraction` must be in [0, 1]; got {cfg['data']['box_fraction']}")
    batch = cfg["train"]["batch_size"]
    if batch is not None and batch < 1:
        raise ConfigError(f"`train.batch_size` must be ≥ 1 or null; got {batch}")
    if cfg["simulate"]["burn_in"] >= cfg["simulate"]["t1"]:
        raise ConfigError(
            f"`simulate.burn_in` ({cfg['simulate']['burn_in']}) must be < `simulate.t1` "
            f"({cfg['simulate']['t1']})"
        )
    name = cfg["system"].get("name")
    if name not in systems.names():
        raise ConfigError(f"`system.name` must be one of {', '.join(systems.names())}; got {name!r}")
    _check_finite(cfg["system"], "system")


def _check_section(cfg, defaults, prefix):
    for key, default in defaults.items():
        path = f"{prefix}{key}"
        value = cfg[key]
        if isinstance(default, dict):
            if path != "system":
                _check_section(value, default, f"{path}.")
            continue
        if default is None:
            if value is not None and not _is_int(value):
                raise ConfigError(f"`{path}` must be an integer or null; got {value!r}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"`{path}` must be true or false; got {value!r}")
        elif isinstance(default, int):
            if not _is_int(value):
                raise ConfigError(f"`{path}` must be an integer; got {value!r}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"`{path}` must be a number; got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"`{path}` must be a finite number; got {value!r}")
            cfg[key] = float(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"`{path}` must be a string; got {value!r}")


def _check_finite(value, path):
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{path}[{i}]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        if path != "system.name" and isinstance(value, str):
            raise ConfigError(f"`{path}` must be a number or a list of numbers; got {value!r}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise ConfigError(f"`{path}` must be finite; got {value}")
    else:
        raise ConfigError(f"`{path}` has an unsupported value {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def get(cfg: dict, dotted: str):
    node = cfg
    for name in dotted.split("."):
        node = node[name]
    return node


def system_from(cfg: dict):
    """The target system the config names, with its parameters.

    **Raises:** `ConfigError` for an unknown parameter or a bad value.
    """
    params = {k: v for k, v in cfg["system"].items() if k != "name"}
    try:
        return systems.get(cfg["system"]["name"], **params)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
