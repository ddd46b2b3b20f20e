"""Every continuous chaotic flow of the `dysts` library as a target (optional extra).

``get(name, **params)`` wraps dysts's flow class `name` as an `SDE`
``dz = f(z) dt + noise · dB`` (DESIGN §1 "Target system"): K is the flow's dimension
and f is dysts's own right-hand side, never re-typed. Two ways to evaluate f:

- ``"jax"``: the flow's undecorated Python function (``_rhs``, or a class's own
  ``rhs`` method; ``.py_func`` where numba compiled it) rebuilt with a copy of its
  globals in which ``np`` is `jax.numpy`, so f is jit/vmap/grad-able and as fast as
  hand-written JAX. It is called as dysts calls it, ``_rhs(*z, t, *params)`` with the
  parameters in sorted order, or ``rhs(self, z, t)`` with ``self`` a stand-in whose
  attributes are the parameters and the class's other methods, rebuilt the same way.
  At construction the result is compared with dysts's numeric rhs in float64 at
  points of a trajectory.
- ``"callback"``: where that fails (code that assigns into arrays or branches on
  values), `jax.pure_callback` around dysts's rhs, with a central-difference
  Jacobian-vector product so `metrics.lyapunov_max` still works; not reverse-mode
  differentiable, and the parameters are fixed at construction.

`DystsSDE.drift_path` records which was taken. Stationary points come from dysts's own
integrator (`make_trajectory`, explicit DOP853 rather than its default implicit Radau
at rtol 1e-12, which is about a hundred times slower in pure Python), sampled
`pts_per_period` times per published period after a transient. Coordinates that
dysts lists as unbounded (phases of forced flows, angles, the clocks of blinking
transport flows) are wrapped into [−L/2, L/2) where f is L-periodic in them (`wrap`),
so samples and the box stay bounded. L is found numerically: the smallest of 2π and the
lengths the flow's own parameters suggest (p, 2p, 2π/p for each parameter value p) by
which a shift leaves f unchanged at points of a trajectory.
Flows whose rhs depends on t explicitly, and delay equations, are not supported.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import inspect
import json
import logging
import math
import types
import warnings
from importlib import resources

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .base import SDE

logger = logging.getLogger(__name__)

PREFIX = "dysts:"
EXTRA_MESSAGE = "system {name!r} needs the optional extra: pip install ddm_jax[dysts]"
# Published statistics copied into `reference()` (dysts's metadata field names).
_REFERENCE_FIELDS = {
    "maximum_lyapunov_estimated": "lyapunov_max",
    "lyapunov_spectrum_estimated": "lyapunov_spectrum",
    "correlation_dimension": "correlation_dimension",
    "kaplan_yorke_dimension": "kaplan_yorke_dimension",
    "pesin_entropy": "pesin_entropy",
    "multiscale_entropy": "multiscale_entropy",
    "period": "period",
    "mean": "mean",
    "std": "std",
}
_INTEGRATOR = {"method": "DOP853", "rtol": 1e-9, "atol": 1e-9}


def available() -> bool:
    """Whether dysts can be imported."""
    try:
        return importlib.util.find_spec("dysts") is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _catalogue() -> dict:
    """dysts's metadata of its continuous flows, delay equations left out (their
    state is a function, not a point of R^K)."""
    import dysts  # noqa: F401  (fails clearly when the extra is missing)

    path = resources.files("dysts").joinpath("data/chaotic_attractors.json")
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if not v.get("delay", False)}


def names() -> list[str]:
    """Names of dysts's continuous flows (without the ``dysts:`` prefix)."""
    return sorted(_catalogue())


def check_name(name: str) -> None:
    """**Raises:** `ValueError` for a name that is not a dysts continuous flow,
    listing close matches."""
    if name in _catalogue():
        return
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown dysts flow {name!r}{hint} (`ddm systems` lists all)")


def parameters(name: str) -> dict:
    """Default parameters of dysts flow `name`: its published ones and ``noise``."""
    check_name(name)
    params = {k: _plain(v) for k, v in _catalogue()[name]["parameters"].items()}
    return {**dict(sorted(params.items())), "noise": 0.0}


def _plain(value):
    arr = np.asarray(value, dtype=float)
    return float(arr) if arr.ndim == 0 else arr.tolist()


def get(name: str, **params) -> DystsSDE:
    """The dysts flow `name` with `params` overriding its published parameters.

    **Raises:** `ValueError` naming an unknown flow or parameter;
    `NotImplementedError` for a flow whose rhs depends on t explicitly.
    """
    allowed = parameters(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter `system.{unknown[0]}` for system {PREFIX + name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    noise = float(params.pop("noise", 0.0))
    merged = {k: params.get(k, v) for k, v in allowed.items() if k != "noise"}
    key = json.dumps(merged, sort_keys=True)
    return DystsSDE(*_build(name, key), noise=noise)


@functools.lru_cache(maxsize=256)
def _build(name: str, params_json: str):
    """The parts of a `DystsSDE` that cost an integration and a compile; cached per
    flow and parameters."""
    params = json.loads(params_json)
    flow = _flow(name, params)
    k = int(flow.dimension)

    # A reference trajectory: the box, the start, and points to check f at.
    traj = _integrate(flow, 1000, init=np.asarray(flow.ic, float), pts_per_period=20)
    pts = traj[np.linspace(0, len(traj) - 1, 16).astype(int)]
    f_np = np.stack([np.asarray(flow.rhs(z, 0.0), float) for z in pts])
    f_t = np.stack([np.asarray(flow.rhs(z, 1.37), float) for z in pts])
    if not np.allclose(f_np, f_t, rtol=1e-12, atol=1e-12, equal_nan=True):
        raise NotImplementedError(
            f"dysts flow {name!r} depends on time explicitly; only autonomous flows "
            "(forced ones carry their phase as a state) can be targets"
        )
    periodic = tuple(
        (int(i), length)
        for i in flow.metadata.get("unbounded_indices", [])
        if (length := _period_of(flow, pts, int(i), f_np, np.ptp(traj[:, int(i)])))
        is not None
    )
    traj = _wrap_np(traj, periodic)
    lower, upper = traj.min(0), traj.max(0)
    pad = 0.1 * np.maximum(upper - lower, 1e-6)

    order = sorted(flow.params)
    param_values = tuple(np.asarray(flow.params[p], float) for p in order)
    fn, path, reason = _jax_rhs(flow, order, k, pts, f_np, param_values)
    if fn is None:
        logger.info("dysts flow %s: drift through pure_callback (%s)", name, reason)
        fn = _callback_rhs(flow)
    return (
        name,
        flow,
        fn,
        path,
        tuple(order),
        param_values,
        np.asarray(flow.ic, float),
        lower - pad,
        upper + pad,
        periodic,
    )


def _flow(name: str, params: dict):
    with warnings.catch_warnings():  # dysts warns at import when numba is absent
        warnings.simplefilter("ignore", UserWarning)
        import dysts.flows

    cls = getattr(dysts.flows, name)
    arrays = {k: np.asarray(v, float) if np.ndim(v) else v for k, v in params.items()}
    return cls(parameters=arrays)


def _integrate(flow, num, *, init, pts_per_period, transient=10, seed=0):
    """`num` points of dysts's own trajectory from `init`, `pts_per_period` per
    published period, after `transient` periods."""
    skip = transient * pts_per_period
    with warnings.catch_warnings():  # scipy: DOP853 ignores dysts's Jacobian
        warnings.simplefilter("ignore", UserWarning)
        out = flow.make_trajectory(
            skip + num,
            init_cond=init,
            pts_per_period=pts_per_period,
            postprocess=False,
            random_seed=seed,
            **_INTEGRATOR,
        )
    if out is None or not np.all(np.isfinite(out)):
        raise RuntimeError(
            f"dysts flow {flow.name!r}: the trajectory from {init} did not complete"
        )
    return np.asarray(out, float).reshape(skip + num, -1)[skip:]


def _candidate_periods(flow) -> list[float]:
    """2π and the lengths the flow's parameters suggest, ascending."""
    values = [
        abs(float(v))
        for p in flow.params.values()
        for v in np.ravel(np.asarray(p, float))
        if np.isfinite(v) and abs(float(v)) > 1e-12
    ]
    lengths = {2 * math.pi}
    for v in values:
        lengths.update((v, 2 * v, 2 * math.pi / v))
    return sorted(length for length in lengths if 1e-3 < length < 1e6)


def _period_of(flow, pts, i, f0, span) -> float | None:
    """The smallest candidate L with f(z + L e_i) = f(z) at `pts`, or None.

    "Equal" is to 1e-4 of each component's scale at L and 2L (dysts rounds some
    wavenumbers: BickleyJet's x is periodic to 1.6e-5), and to 1e-3 at the multiple
    of L that covers `span`, the coordinate's range on a trajectory: a shift that f
    barely notices (a slow clock) is no period when it accumulates over the flow's
    range (BickleyJet's time coordinate)."""

    def unchanged(length, tol):
        shifted = pts.copy()
        shifted[:, i] += length
        f1 = np.stack([np.asarray(flow.rhs(z, 0.0), float) for z in shifted])
        # per component: a clock's dt/dt = 1 sets no scale for the other components
        return np.allclose(f0, f1, rtol=tol, atol=tol * np.abs(f0).max(0))

    for length in _candidate_periods(flow):
        far = max(3, math.ceil(span / length)) * length
        if (
            unchanged(length, 1e-4)
            and unchanged(2 * length, 1e-4)
            and unchanged(far, 1e-3)
        ):
            return float(length)
    return None


def _wrap_np(z, periodic):
    z = np.array(z, float)
    for i, length in periodic:
        z[..., i] = np.mod(z[..., i] + length / 2, length) - length / 2
    return z


# --- the drift ----------------------------------------------------------------------


def _jaxify(fn):
    """`fn` (its pure-Python original if numba compiled it) with `numpy` replaced by
    `jax.numpy` in a copy of its globals."""
    fn = getattr(fn, "py_func", fn)
    scope = dict(fn.__globals__)
    for name, value in fn.__globals__.items():
        if value is np:
            scope[name] = jnp
    new = types.FunctionType(
        fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__
    )
    new.__kwdefaults__ = fn.__kwdefaults__
    return new


class _Self:
    """Stands in for a dysts flow inside its own ``rhs`` method: parameters come from
    `params` (traced arrays), methods are rebuilt with `_jaxify`, anything else is
    the flow's own attribute."""

    def __init__(self, flow, params: dict):
        self._flow = flow
        self._params = params

    def __getattr__(self, name):
        if name in self._params:
            return self._params[name]
        try:
            attr = inspect.getattr_static(type(self._flow), name)
        except AttributeError:
            return getattr(self._flow, name)
        if isinstance(attr, staticmethod):
            return _jaxify(attr.__func__)
        if isinstance(attr, types.FunctionType) or hasattr(attr, "py_func"):
            return types.MethodType(_jaxify(attr), self)
        return getattr(self._flow, name)


def _rhs_owner(flow) -> str:
    """``"rhs"`` if the flow's class overrides `DynSys.rhs`, else ``"_rhs"``."""
    from dysts.base import DynSys

    for cls in type(flow).__mro__:
        if "rhs" in cls.__dict__:
            return "_rhs" if cls is DynSys else "rhs"
    return "_rhs"


def _make_jax_rhs(flow, order, k):
    """``f(z, t, params) -> (K,)`` from the flow's Python source."""
    if _rhs_owner(flow) == "_rhs":
        raw = _jaxify(inspect.getattr_static(type(flow), "_rhs").__func__)

        def call(z, t, params):
            return raw(*[z[i] for i in range(k)], t, *params)

    else:
        raw = _jaxify(inspect.getattr_static(type(flow), "rhs"))

        def call(z, t, params):
            return raw(_Self(flow, dict(zip(order, params, strict=True))), z, t)

    def f(z, t, params):
        out = call(z, t, params)
        parts = [jnp.broadcast_to(jnp.asarray(o, z.dtype), ()) for o in out]
        return jnp.stack(parts)

    return f


def _jax_rhs(flow, order, k, pts, f_np, param_values):
    """The traced rhs and ``"jax"``, or ``None``, ``"callback"`` and why."""
    try:
        f = _make_jax_rhs(flow, order, k)
        with jax.enable_x64(True):
            params = tuple(jnp.asarray(p, jnp.float64) for p in param_values)
            batched = jax.jit(jax.vmap(lambda z: f(z, 0.0, params)))
            f_jax = np.asarray(batched(jnp.asarray(pts, jnp.float64)))
            # grad-ability: a Jacobian-vector product traces through the same code.
            jax.jvp(lambda z: f(z, 0.0, params), (pts[0],), (pts[0],))
    except Exception as e:  # noqa: BLE001 (any failure to trace means: fall back)
        return None, "callback", f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    scale = 1.0 + np.nanmax(np.abs(f_np))
    if f_jax.shape != f_np.shape or not np.allclose(
        f_jax, f_np, rtol=1e-9, atol=1e-9 * scale, equal_nan=True
    ):
        return None, "callback", "traced rhs disagrees with dysts's rhs"
    return f, "jax", ""


def _callback_rhs(flow):
    """dysts's numeric rhs behind `jax.pure_callback`, with a central-difference
    JVP (step ∛ε relative to the scale of z, the usual balance of truncation and
    rounding error)."""

    def host(z, t):
        out = np.asarray(flow.rhs(np.asarray(z, np.float64), float(t)), np.float64)
        return out.reshape(np.shape(z)).astype(z.dtype)

    @jax.custom_jvp
    def f(z, t):
        shape = jax.ShapeDtypeStruct(z.shape, z.dtype)
        return jax.pure_callback(host, shape, z, t, vmap_method="sequential")

    @f.defjvp
    def _(primals, tangents):
        z, t = primals
        v = tangents[0]
        eps = jnp.finfo(z.dtype).eps
        h = eps ** (1 / 3) * (1 + jnp.linalg.norm(z)) / (jnp.linalg.norm(v) + eps)
        return f(z, t), (f(z + h * v, t) - f(z - h * v, t)) / (2 * h)

    def rhs(z, t, params):
        del params  # fixed in the flow object
        return f(z, jnp.asarray(t, z.dtype))

    return rhs


# --- the system ---------------------------------------------------------------------


class DystsSDE(SDE):
    """A dysts flow with additive noise, ``dz = f(z) dt + noise · dB`` (see module
    docstring).

    **Arguments:** the output of `_build` and `noise`; use `get`.
    """

    flow_name: str = eqx.field(static=True)
    flow: object = eqx.field(static=True)
    rhs: object = eqx.field(static=True)
    drift_path: str = eqx.field(static=True)
    param_names: tuple = eqx.field(static=True)
    params: tuple
    initial: Float[Array, " K"]
    lower: Float[Array, " K"]
    upper: Float[Array, " K"]
    periodic: tuple = eqx.field(static=True)  # ((index, period), ...)
    noise: Float[Array, ""]

    def __init__(
        self,
        flow_name,
        flow,
        rhs,
        drift_path,
        param_names,
        params,
        z0,
        lower,
        upper,
        periodic,
        *,
        noise,
    ):
        self.flow_name = flow_name
        self.flow = flow
        self.rhs = rhs
        self.drift_path = drift_path
        self.param_names = param_names
        self.params = tuple(jnp.asarray(p, dtype=float) for p in params)
        self.initial = jnp.asarray(_wrap_np(z0, periodic), dtype=float)
        self.lower = jnp.asarray(lower, dtype=float)
        self.upper = jnp.asarray(upper, dtype=float)
        self.periodic = tuple(periodic)
        self.noise = jnp.asarray(noise, dtype=float)

    @property
    def latent_dim(self):
        return self.initial.shape[0]

    @property
    def noise_dim(self):
        return self.latent_dim

    @property
    def name(self):
        return PREFIX + self.flow_name

    def drift(self, t, z, args):
        return self.rhs(z, t, self.params).astype(z.dtype)

    def diffusion(self, t, z, args):
        return self.noise * jnp.eye(self.latent_dim, dtype=z.dtype)

    @property
    def z0(self):
        return self.initial

    @property
    def box(self):
        return self.lower, self.upper

    @property
    def period(self) -> float:
        """dysts's published period (its dominant Fourier time scale)."""
        return float(self.flow.period)

    def wrap(self, z: Float[Array, "... K"]) -> Float[Array, "... K"]:
        """z with each periodic coordinate i (period L) mapped into [−L/2, L/2);
        f(wrap(z)) = f(z)."""
        for i, length in self.periodic:
            z = z.at[..., i].set(jnp.mod(z[..., i] + length / 2, length) - length / 2)
        return z

    def trajectory(
        self,
        num_points: int,
        *,
        seed: int,
        pts_per_period: int = 20,
        transient: int = 10,
        init=None,
    ) -> np.ndarray:
        """`num_points` of a dysts trajectory (NumPy, float64, wrapped), started from
        the published start jittered by 1% of the box (seeded; 0.1% or 0.01% if dysts's
        integration fails from there) or from `init`, after
        `transient` periods, `pts_per_period` points per period. Deterministic: the
        noise is not simulated."""

        def run(start):
            return _integrate(
                self.flow,
                int(num_points),
                init=np.asarray(start, float),
                pts_per_period=pts_per_period,
                transient=transient,
                seed=seed,
            )

        if init is not None:
            return _wrap_np(run(init), self.periodic)
        rng = np.random.default_rng(seed)
        span = np.asarray(self.upper - self.lower)
        published = np.asarray(self.flow.ic, float)
        direction = rng.normal(size=published.shape)
        # Some flows (SprottJerk, SprottQ) leave the attractor from a 1 % jitter.
        for jitter in (1e-2, 1e-3, 1e-4):
            try:
                return _wrap_np(
                    run(published + jitter * span * direction), self.periodic
                )
            except RuntimeError:
                continue
        raise RuntimeError(
            f"dysts flow {self.flow_name!r}: no trajectory completed from the "
            "published start jittered by 1 %, 0.1 % or 0.01 % of the box"
        )

    def stationary_sample(
        self, *, num_points: int, key: PRNGKeyArray, pts_per_period: int = 20, **_
    ) -> Float[Array, "M K"]:
        """Points of one dysts trajectory seeded from `key` (see `trajectory`); the
        sampling run's other options (`dt`, `spacing`, …) do not apply. Noise is not
        simulated: the samples are from the deterministic attractor."""
        seed = int(jr.randint(key, (), 0, 2**31 - 1))
        z = self.trajectory(num_points, seed=seed, pts_per_period=pts_per_period)
        return jnp.asarray(z, dtype=self.initial.dtype)

    def reference(self) -> dict:
        """dysts's published statistics of the deterministic flow at its published
        parameters (none when the parameters differ): ``lyapunov_max``,
        ``lyapunov_spectrum``, ``correlation_dimension``, ``kaplan_yorke_dimension``,
        ``pesin_entropy``, ``multiscale_entropy``, ``period``, ``mean``, ``std``.
        ``mean`` and ``std`` are dysts's, in its raw coordinates."""
        meta = _catalogue()[self.flow_name]
        for name, value in zip(self.param_names, self.params, strict=True):
            published = np.asarray(meta["parameters"][name], float)
            # float32 parameters round the published values by ~6e-8.
            if not np.allclose(np.asarray(value), published, rtol=1e-6):
                return {}
        out = {}
        for field, key in _REFERENCE_FIELDS.items():
            value = meta.get(field)
            if value is not None:
                out[key] = value
        return out
