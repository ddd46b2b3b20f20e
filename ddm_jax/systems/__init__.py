"""Registry of target systems: ``get(name, **params)`` and ``names()``."""

from __future__ import annotations

import inspect

from .base import SDE, FunctionSDE
from .builtin import GBM, OU, DoubleWell, Lorenz, StuartLandau

_REGISTRY: dict[str, type[SDE]] = {
    "ou": OU,
    "double_well": DoubleWell,
    "stuart_landau": StuartLandau,
    "lorenz": Lorenz,
    "gbm": GBM,
}


def names() -> list[str]:
    """Names of the registered systems."""
    return sorted(_REGISTRY)


def parameters(name: str) -> dict:
    """Default parameters of system `name`."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items() if k != "self"}


def get(name: str, **params) -> SDE:
    """The system `name` with `params` overriding its defaults.

    **Raises:** `ValueError` naming the unknown system or parameter and what is allowed.
    """
    cls = _lookup(name)
    allowed = parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter `system.{unknown[0]}` for system {name!r}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return cls(**params)


def _lookup(name: str) -> type[SDE]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown system {name!r}; allowed: {', '.join(names())}")
    return _REGISTRY[name]


__all__ = ["SDE", "FunctionSDE", "get", "names", "parameters"]
