"""Registry of target systems: ``get(name, **params)`` and ``names()``."""

from __future__ import annotations

import inspect

from .base import SDE, FunctionSDE
from .builtin import GBM, OU, DoubleWell, Lorenz, StuartLandau
from .library import CIR, Hopf, MayLeonard, MultiWell, NoneqOU, Rossler, VanDerPol
from .memory_targets import CuedWells, SequenceWells

_REGISTRY: dict[str, type[SDE]] = {
    "ou": OU,
    "double_well": DoubleWell,
    "stuart_landau": StuartLandau,
    "lorenz": Lorenz,
    "gbm": GBM,
    "noneq_ou": NoneqOU,
    "multi_well": MultiWell,
    "van_der_pol": VanDerPol,
    "rossler": Rossler,
    "may_leonard": MayLeonard,
    "cir": CIR,
    "hopf": Hopf,
    "cued_wells": CuedWells,
    "sequence_wells": SequenceWells,
}


def names() -> list[str]:
    """Names of the registered systems, then ``dysts:<Flow>`` for every continuous
    flow of dysts when the optional extra is installed."""
    from . import dysts_adapter

    if not dysts_adapter.available():
        return sorted(_REGISTRY)
    extra = [dysts_adapter.PREFIX + flow for flow in dysts_adapter.names()]
    return sorted(_REGISTRY) + extra


def parameters(name: str) -> dict:
    """Default parameters of system `name`."""
    cls = _lookup(name)
    if name.startswith("dysts:"):
        from . import dysts_adapter

        return dysts_adapter.parameters(name.removeprefix(dysts_adapter.PREFIX))
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
    if name.startswith("dysts:"):
        from . import dysts_adapter

        return dysts_adapter.get(name.removeprefix(dysts_adapter.PREFIX), **params)
    return cls(**params)


def _lookup(name: str) -> type[SDE]:
    if name.startswith("dysts:"):
        from . import dysts_adapter

        if not dysts_adapter.available():
            raise ValueError(dysts_adapter.EXTRA_MESSAGE.format(name=name))
        dysts_adapter.check_name(name.removeprefix(dysts_adapter.PREFIX))
        return dysts_adapter.DystsSDE
    if name not in _REGISTRY:
        extra = (
            ", dysts:<Flow> (`ddm systems` lists all)"
            if len(names()) > len(_REGISTRY)
            else ""
        )
        raise ValueError(
            f"unknown system {name!r}; allowed: {', '.join(sorted(_REGISTRY))}{extra}"
        )
    return _REGISTRY[name]


__all__ = ["SDE", "FunctionSDE", "get", "names", "parameters"]
