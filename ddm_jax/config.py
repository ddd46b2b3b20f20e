"""Configs: defaults, YAML files, dotted overrides and validation (DESIGN §4).

A config is a nested dict with the sections below. `load` reads a YAML file, merges it
over `DEFAULTS`, applies ``section.key=value`` overrides (values parsed as YAML) and
checks every field, raising `ConfigError` with one line that names the field, its
value and what is allowed. The `system` section holds ``name`` and the system's own
parameters, which `ddm_jax.systems.get` checks, or ``file`` (recorded trajectories,
`ddm_jax.data.load_trajectories`) with an optional ``truth`` (a system name) and that
system's parameters. A relative ``file`` in a config file is taken from the config
file's folder, one given as an override from the current folder; the resolved config
holds the absolute path.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import yaml

from . import systems

CHOICES = {
    "dtype": ("float32", "float64"),
    "model.connectivity": ("low_rank", "dense"),
    "model.nonlinearity": ("tanh", "softplus", "relu", "identity"),
    "model.noise": ("latent", "gated", "private"),
    "data.method": ("stationary", "box", "mixture"),
    "train.solver": ("svd", "qr"),
    "train.correction": ("none", "ito", "ou"),
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
        "data_ridge": "auto",
        "correction": "none",
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
    "decompose": {
        "grid_cells": 160,
        "grid_cells_3d": 32,
        "lag": 0.2,
        "fit_points": 2048,
    },
    # Cued recall trials, for targets that take inputs (memory.cued_trials).
    "cues": {
        "trials_per_pattern": 200,
        "onset": 0.5,
        "duration": 1.0,
        "hold": 2.5,
        "amplitude": 1.0,
    },
}

POSITIVE = set(
    "model.num_neurons model.tau data.num_points data.held_out_points "
    "data.num_paths data.spacing data.dt train.learning_rate train.chunk_size "
    "simulate.dt simulate.t1 simulate.num_paths simulate.save_every "
    "evaluate.lyapunov_dt evaluate.lyapunov_t1 model.gain decompose.lag "
    "decompose.fit_points cues.trials_per_pattern cues.duration cues.hold "
    "cues.amplitude".split()
)
NON_NEGATIVE = set(
    "data.burn_in train.rcond train.ridge train.steps simulate.burn_in "
    "evaluate.lyapunov_transient evaluate.lyapunov_paths model.bias_spread "
    "model.weight_scale train.diffusion_weight train.manifold_weight "
    "data.box_fraction cues.onset".split()
)


SEED_LIMIT = 2**32
# Integers beyond int64 fit no array and overflow float arithmetic on the way.
INT_LIMIT = 2**63
# Deeper YAML would exhaust Python's recursion in PyYAML's composer; no config needs
# more than a few levels (a matrix inside a section is 4).
MAX_DEPTH = 64


class ConfigError(ValueError):
    """A config file, field or override is not acceptable."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing repeated keys and deep nesting, and reading
    ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``) and ``1e-3`` is a
    string; people write the latter, so it is resolved as a float as in YAML 1.2.
    """

    def compose_node(self, parent, index):
        # The composer recurses once per level: stop at MAX_DEPTH with the line,
        # before Python's recursion limit does with a traceback.
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"config nests too deeply at line {line} (more than {MAX_DEPTH} "
                    "levels)"
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"key `{key}` is repeated at line {line}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, path: str = ""):
    """`text` parsed as YAML by the loader configs use (see `_Loader`).

    **Raises:** `ConfigError` for a repeated key, nesting deeper than `MAX_DEPTH` or
    a container that holds itself (a recursive alias, named by its dotted path under
    `path`); `yaml.YAMLError` or `ValueError` (an integer of over 4300 digits) for
    text that is not YAML.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError("config nests too deeply") from None
    _check_acyclic(data, path, {})
    return data


def _check_acyclic(value, path: str, open_: dict) -> None:
    """Refuse a list or mapping that contains itself (``A: &a [*a]``); shared,
    non-recursive aliases are fine. `open_` maps the ids of the containers being
    walked to their paths; the depth is bounded by `MAX_DEPTH`."""
    if not isinstance(value, list | dict):
        return
    if id(value) in open_:
        where = open_[id(value)] or "the config"
        raise ConfigError(f"`{where}` refers to itself (a recursive YAML alias)")
    open_[id(value)] = path
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(value, dict):
            child = f"{path}.{key}" if path else str(key)
        else:
            child = f"{path}[{key}]"
        _check_acyclic(item, child, open_)
    del open_[id(value)]


def load(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """The resolved config: defaults, then the file at `path`, then `overrides`.

    **Raises:** `ConfigError` with one line naming what is wrong.
    """
    cfg = copy.deepcopy(DEFAULTS)
    named = False
    if path is not None:
        user = read_yaml(path)
        merge(cfg, user, prefix="")
        section = user.get("system")
        named = isinstance(section, dict) and "name" in section
        _resolve_file(cfg, Path(path).parent)
    for item in overrides:
        apply_override(cfg, item)
        named = named or item.split("=", 1)[0].strip() == "system.name"
        _resolve_file(cfg, Path.cwd())
    if "file" in cfg["system"] and not named:
        # A trajectory file replaces the default system; a name given beside it is
        # refused by `validate`.
        cfg["system"].pop("name", None)
    validate(cfg)
    return cfg


def _resolve_file(cfg: dict, folder: Path) -> None:
    """Make a relative `system.file` absolute, from `folder`."""
    file = cfg["system"].get("file")
    if isinstance(file, str) and file and not Path(file).is_absolute():
        cfg["system"]["file"] = str((folder / file).resolve())


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    if path.exists() and not path.is_file():
        # /dev/null, a FIFO, a socket: reading one may block or give nothing.
        raise ConfigError(f"config file {str(path)!r} is not a regular file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {_problem(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file") from None
    except ValueError as e:  # int() refusing a number of over 4300 digits
        raise ConfigError(f"{path} is not valid YAML: {_problem(e)}") from None
    except OSError as e:
        raise ConfigError(
            f"config file {str(path)!r} cannot be read: {e.strerror}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of sections; got {type(data).__name__}"
        )
    return data


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}…({len(text)} chars)"


def _problem(e) -> str:
    return str(getattr(e, "problem", None) or e).strip().splitlines()[0]


def merge(cfg: dict, user: dict, prefix: str) -> None:
    """Merge `user` into `cfg`, refusing keys that `cfg` does not have (except under
    `system`, whose keys the system itself checks)."""
    for key, value in user.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(
                f"config keys must be strings; got {key!r} in {prefix or 'top level'}"
            )
        if prefix == "system.":
            cfg[key] = value
            continue
        if key not in cfg:
            allowed = ", ".join(sorted(cfg))
            raise ConfigError(f"unknown config key `{path}`; allowed: {allowed}")
        if isinstance(cfg[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"`{path}` must be a section (mapping); got {value!r}"
                )
            merge(cfg[key], value, prefix=f"{path}.")
        else:
            cfg[key] = value


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``dotted.path=value`` override (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    dotted, raw = item.split("=", 1)
    dotted = dotted.strip()
    names = dotted.split(".")
    if not all(names):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = parse_yaml(raw, dotted) if raw.strip() else None
    except ConfigError as e:  # a repeated key, deep nesting, a recursive alias
        raise ConfigError(f"override `{dotted}`: {e}") from None
    except (yaml.YAMLError, ValueError) as e:
        raise ConfigError(
            f"override `{dotted}`: value {_shorten(raw)!r} is not YAML ({_problem(e)})"
        ) from None
    nested = value
    for name in reversed(names[1:]):
        nested = {name: nested}
    merge(cfg, {names[0]: nested}, prefix="")


def validate(cfg: dict) -> None:
    """Check types, ranges, choices and finiteness of every field."""
    _check_section(cfg, DEFAULTS, prefix="")
    for path, allowed in CHOICES.items():
        value = get(cfg, path)
        if value not in allowed:
            raise ConfigError(
                f"`{path}` must be one of {', '.join(allowed)}; got {value!r}"
            )
    for path in POSITIVE | NON_NEGATIVE:
        value = get(cfg, path)
        if value is None:
            continue
        if path in POSITIVE and not value > 0:
            raise ConfigError(f"`{path}` must be > 0; got {value}")
        if path in NON_NEGATIVE and not value >= 0:
            raise ConfigError(f"`{path}` must be ≥ 0; got {value}")
    if cfg["data"]["box_fraction"] > 1:
        fraction = cfg["data"]["box_fraction"]
        raise ConfigError(f"`data.box_fraction` must be in [0, 1]; got {fraction}")
    if not 0 <= cfg["seed"] < SEED_LIMIT:
        # JAX's 32-bit mode keeps only the low 32 bits, so larger seeds would collide.
        raise ConfigError(f"`seed` must be in [0, 2**32); got {cfg['seed']}")
    batch = cfg["train"]["batch_size"]
    if batch is not None and batch < 1:
        raise ConfigError(f"`train.batch_size` must be ≥ 1 or null; got {batch}")
    _check_grids(cfg)
    ridge = cfg["train"]["data_ridge"]
    if ridge != "auto" and not (
        isinstance(ridge, int | float)
        and not isinstance(ridge, bool)
        and math.isfinite(_as_float(ridge, "train.data_ridge"))
        and ridge >= 0
    ):
        raise ConfigError(
            f"`train.data_ridge` must be auto or a number ≥ 0; got {ridge!r}"
        )
    if "file" in cfg["system"]:
        _check_data_system(cfg["system"])
        return
    name = cfg["system"].get("name")
    if isinstance(name, str) and name.startswith("dysts:"):
        try:  # the registry's own message: the missing extra or close matches
            systems.parameters(name)
        except ValueError as e:
            raise ConfigError(f"`system.name`: {e}") from None
    elif not isinstance(name, str) or name not in systems.names():
        allowed = ", ".join(systems.names())
        raise ConfigError(f"`system.name` must be one of {allowed}; got {name!r}")
    _check_system_parameters(cfg["system"])


def _check_data_system(section: dict) -> None:
    """A `system` with `file`: a path, no `name`, and an optional `truth` with its
    parameters."""
    file = section["file"]
    if not isinstance(file, str) or not file:
        raise ConfigError(
            f"`system.file` must be a path to a .npz, .npy or .csv; got {file!r}"
        )
    if "name" in section:
        raise ConfigError(
            "`system` takes either `name` (a target system) or `file` (recorded "
            f"trajectories), not both; got name {section['name']!r} and file {file!r}"
        )
    truth = section.get("truth")
    if truth is None:
        extra = sorted(k for k in section if k not in ("file", "truth"))
        if extra:
            raise ConfigError(
                f"`system.{extra[0]}` is a system parameter, allowed only with "
                "`system.truth` (the system that made the file)"
            )
        return
    if not isinstance(truth, str) or truth not in systems.names():
        allowed = ", ".join(systems.names())
        raise ConfigError(f"`system.truth` must be one of {allowed}; got {truth!r}")
    params = {k: v for k, v in section.items() if k not in ("file", "truth")}
    _check_system_parameters({"name": truth, **params})


def _check_grids(cfg: dict) -> None:
    """Time steps that fit the durations they divide, so every run keeps a point."""
    d, s, e = cfg["data"], cfg["simulate"], cfg["evaluate"]
    if d["spacing"] < d["dt"]:
        raise ConfigError(
            f"`data.spacing` ({d['spacing']}) must be ≥ `data.dt` ({d['dt']})"
        )
    if s["burn_in"] >= s["t1"]:
        raise ConfigError(
            f"`simulate.burn_in` ({s['burn_in']}) must be < `simulate.t1` ({s['t1']})"
        )
    saved = s["dt"] * s["save_every"]
    if saved > s["t1"] - s["burn_in"]:
        raise ConfigError(
            f"`simulate.save_every` × `simulate.dt` ({saved:g}) must be ≤ "
            f"`simulate.t1` − `simulate.burn_in` ({s['t1'] - s['burn_in']:g}), or no "
            "point is kept"
        )
    # A million cells is a sparse LU of a few GB.
    for key, most in (("grid_cells", 1000), ("grid_cells_3d", 100)):
        cells = cfg["decompose"][key]
        if not 8 <= cells <= most:
            raise ConfigError(
                f"`decompose.{key}` must be between 8 and {most}; got {cells}"
            )
    if e["lyapunov_paths"] > 0 and e["lyapunov_dt"] > e["lyapunov_t1"]:
        raise ConfigError(
            f"`evaluate.lyapunov_dt` ({e['lyapunov_dt']}) must be ≤ "
            f"`evaluate.lyapunov_t1` ({e['lyapunov_t1']})"
        )


def _check_system_parameters(section: dict) -> None:
    """Each system parameter holds finite numbers, not booleans or strings: a number
    or a rectangular list; where the default is a matrix, a number or a matrix; where
    the default is null (`dim`), a positive integer or null. Shapes and unknown names
    are left to the system (`system_from`)."""
    defaults = systems.parameters(section["name"])
    for key, value in section.items():
        if key == "name" or key not in defaults:
            continue
        path, default = f"system.{key}", defaults[key]
        if default is None:
            if value is not None and not (_is_int(value) and value > 0):
                raise ConfigError(
                    f"`{path}` must be a positive integer or null; got {value!r}"
                )
            if value is not None:
                _check_int(value, path)
            continue
        _check_numbers(value, path)
        ndim, got = np.ndim(default), np.shape(value)
        if ndim and len(got) not in (0, ndim):
            raise ConfigError(
                f"`{path}` must be a number or a {ndim}-level list of numbers; "
                f"got shape {got}"
            )


def _check_numbers(value, path: str) -> None:
    """`value` is a finite number or a rectangular nested list of finite numbers."""
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]")
        try:
            np.asarray(value, dtype=float)
        except ValueError:
            raise ConfigError(
                f"`{path}` must have rows of equal length; got {value!r}"
            ) from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"`{path}` must be a number or a list of numbers; got {value!r}"
        )
    elif not math.isfinite(_as_float(value, path)):
        raise ConfigError(f"`{path}` must be finite; got {value}")


def _as_float(value: int | float, path: str) -> float:
    """`value` as a float, refusing integers beyond the float range by their size
    (their digits could fill a screen, or exceed Python's 4300-digit `str` limit)."""
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(
            f"`{path}` is too large to be a float; got a {_digits(value)}-digit integer"
        ) from None


def _check_int(value: int, path: str) -> None:
    if not -INT_LIMIT < value < INT_LIMIT:
        raise ConfigError(
            f"`{path}` must be below 2**63 in size; got a {_digits(value)}-digit "
            "integer"
        )


def _digits(value: int) -> int:
    """The number of decimal digits of `value` (`str` refuses over 4300 digits)."""
    bits = abs(value).bit_length()
    if bits < 10000:
        return len(str(abs(value)))
    return int(bits * math.log10(2)) + 1


def _check_section(cfg, defaults, prefix):
    for key, default in defaults.items():
        path = f"{prefix}{key}"
        value = cfg[key]
        if isinstance(default, dict):
            if path != "system":
                _check_section(value, default, f"{path}.")
            continue
        if path == "train.data_ridge":
            continue  # "auto" or a number, checked in `validate`
        if default is None:
            if value is not None and not _is_int(value):
                raise ConfigError(f"`{path}` must be an integer or null; got {value!r}")
            if value is not None:
                _check_int(value, path)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"`{path}` must be true or false; got {value!r}")
        elif isinstance(default, int):
            if not _is_int(value):
                raise ConfigError(f"`{path}` must be an integer; got {value!r}")
            _check_int(value, path)
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"`{path}` must be a number; got {value!r}")
            value = _as_float(value, path)
            if not math.isfinite(value):
                raise ConfigError(f"`{path}` must be a finite number; got {value!r}")
            cfg[key] = value
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"`{path}` must be a string; got {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def get(cfg: dict, dotted: str):
    node = cfg
    for name in dotted.split("."):
        node = node[name]
    return node


def system_from(cfg: dict):
    """The target system the config names, with its parameters; for a trajectory
    file, its `truth` system, or None when there is none.

    **Raises:** `ConfigError` for an unknown parameter or a bad value.
    """
    if "file" in cfg["system"]:
        name = cfg["system"].get("truth")
        if name is None:
            return None
        drop = ("file", "truth")
    else:
        name, drop = cfg["system"]["name"], ("name",)
    params = {k: v for k, v in cfg["system"].items() if k not in drop}
    try:
        return systems.get(name, **params)
    except (ValueError, TypeError, ArithmeticError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "`" not in message:
            # An error from inside the system (a shape clash, say) names no field.
            given = ", ".join(f"{k}={v!r}" for k, v in params.items())
            message = (
                f"`system` parameters of {name!r} ({given}) are not accepted: {message}"
            )
        raise ConfigError(message) from None


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
