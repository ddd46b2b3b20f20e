"""Batched diffrax integration of target systems and networks (DESIGN §2 `simulate`).

Both simulators integrate the Itô SDE ``dy = a(y) dt + s(y) dB`` with diffrax, one
Brownian path per trajectory (PITFALLS 1), the noise matrix contracted with a vector
Brownian increment of shape ``(C,)`` (PITFALLS 2) and Euler–Maruyama by default, which
converges to the Itô solution the targets are written in (PITFALLS 3). The steps are
diffrax's step-by-step interface (`solver.step`) under a `lax.scan` of fixed steps,
checkpointed at the saved times, so `jax.grad` goes through a run with either
Brownian path: ``UnsafeBrownianPath`` (PITFALLS 4, the default; each step draws
its increment from the key and the step's start time, the same in the forward and
the backward pass) or, with ``brownian="tree"``, a ``VirtualBrownianTree`` with
tolerance dt/2 (PITFALLS 4), one path consistent at every resolution.

- `simulate_sde` integrates a target ``dz = f(z, u) dt + g(z) dB`` in its K dimensions.
- `simulate_rnn` integrates the network's full N-dimensional state
  ``dx = F(x, u) dt + Σ(x) dB`` from ``x0 = E z0 + b`` and returns the readout
  ``z = E⁺ (x − b)`` (and the full state on request). Private noise (C = N) is the
  diagonal Σ = diag(|σ|) as a `lineax.DiagonalLinearOperator`: O(N) a step, never an
  N×N matrix.
"""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from . import parallel
from .inputs import Schedule, input_at

BROWNIAN = ("unsafe", "tree")


def save_times(t0: float, t1: float, dt: float, save_every: int) -> Float[Array, " T"]:
    """The grid ``t0, t0 + s dt, …`` (s = `save_every`) up to `t1`, on whole steps.

    **Raises:** `ValueError` when `dt`, `save_every` or the interval are not positive.
    """
    return jnp.asarray(_grid(t0, t1, dt, save_every), dtype=jnp.result_type(float))


def _grid(t0: float, t1: float, dt: float, save_every: int) -> np.ndarray:
    """`save_times` as a host float64 array: a constant even under a user's jit, and
    no Python float meets an integer array (strict dtype promotion)."""
    if not dt > 0:
        raise ValueError(f"`simulate.dt` must be > 0; got {dt}")
    if int(save_every) < 1:
        raise ValueError(f"`simulate.save_every` must be ≥ 1; got {save_every}")
    if not t1 > t0:
        raise ValueError(f"`simulate.t1` must be > t0 ({t0}); got {t1}")
    num_steps = int(math.floor((t1 - t0) / dt + 1e-9))
    count = num_steps // int(save_every) + 1
    if count < 2:
        raise ValueError(
            f"the run from t0 = {t0} to `simulate.t1` = {t1} is shorter than one "
            f"saving interval (`simulate.save_every` {save_every} × `simulate.dt` "
            f"{dt}): nothing would be integrated"
        )
    return t0 + dt * int(save_every) * np.arange(count, dtype=np.float64)


def _batch_z0(z0, k: int, num_paths: int | None) -> Float[Array, "B K"]:
    z0 = jnp.asarray(z0)
    if z0.ndim == 1:
        z0 = jnp.broadcast_to(z0, (num_paths or 1, z0.shape[0]))
    if z0.ndim != 2 or z0.shape[1] != k:
        raise ValueError(
            f"`z0` must have shape ({k},) or (B, {k}) for this system; got {z0.shape}"
        )
    if num_paths is not None and z0.shape[0] != num_paths:
        raise ValueError(
            f"`num_paths` ({num_paths}) disagrees with the {z0.shape[0]} rows of `z0`"
        )
    return z0


def _args_axis(args, num_paths: int) -> int | None:
    """The vmap axis of `args` over paths: 0 for a batched `Schedule` (one schedule
    a path), None for an input shared by all paths.

    **Raises:** `ValueError` when a batched schedule has another number of paths.
    """
    if not (isinstance(args, Schedule) and args.batched):
        return None
    if len(args.times) != num_paths:
        raise ValueError(
            "a batched input schedule needs one schedule a path: it has "
            f"{len(args.times)}, the run {num_paths} paths"
        )
    return 0


def solve_paths(
    drift,
    noise,
    y0: Float[Array, "B Y"],
    *,
    key: PRNGKeyArray,
    noise_dim: int,
    ts: Float[Array, " T"] | Float[np.ndarray, " T"],
    dt: float,
    args=None,
    solver: diffrax.AbstractSolver | None = None,
    brownian: str = "unsafe",
    save=None,
    increment=None,
) -> Float[Array, "B T Y"]:
    """Integrate ``dy = drift(t, y, args) dt + noise(t, y, args) dB`` for every row of
    `y0`, each with its own Brownian path, saving at `ts` (``ts[0]`` is the start).

    `drift` and `noise` follow diffrax's ``(t, y, args)`` signature; `noise` returns
    a matrix ``(Y, C)`` or a `lineax` operator from R^C to R^Y (a diagonal one for
    independent channels: a bare vector would be one scalar noise, PITFALLS 2). Pass
    ``noise=None`` for an ODE. `brownian` is ``"unsafe"`` (fast) or ``"tree"`` (one
    path consistent at every step size); both differentiate in either mode. `save`,
    a function ``(t, y, args) -> array`` (a pytree, such as an equinox module, to
    avoid recompiling), is stored at `ts` instead of y: only what it returns is kept.
    `increment`, a function ``(t, y, args, dt, dW) -> drift·dt + noise·dW`` for one
    row, is the same step computed in one pass (`LatentRNN.fused_increment`); the
    default Euler–Maruyama uses it, any other `solver` the separate `drift` and
    `noise`.
    """
    plan = _plan(ts, dt, solver, brownian, noise is not None)
    return _solve_paths(
        drift,
        noise,
        y0,
        key,
        noise_dim,
        args,
        _args_axis(args, len(y0)),
        plan,
        save,
        increment if plan.default else None,  # the fused step is Euler–Maruyama's
    )


class _Plan(eqx.Module):
    """How a run steps: the solver, the saved times, the step, the whole number of
    steps between saves, the Brownian path, and whether the solver is the default
    Euler–Maruyama."""

    solver: diffrax.AbstractSolver
    ts: Float[Array, " T"]
    dt: float = eqx.field(static=True)
    steps_per_save: int = eqx.field(static=True)
    brownian: str = eqx.field(static=True)
    default: bool = eqx.field(static=True)


def _plan(ts, dt, solver, brownian, noise=True) -> _Plan:
    """The `_Plan` of a run saving at `ts` (Euler–Maruyama for `solver` None).

    **Raises:** `ValueError` for an unknown `brownian`, a solver that is not an SDE
    solver (with noise) or uneven `ts`.
    """
    if brownian not in BROWNIAN:
        raise ValueError(
            f"`simulate.brownian` must be one of {BROWNIAN}; got {brownian!r}"
        )
    default = solver is None
    solver = diffrax.Euler() if default else solver
    if noise and not isinstance(
        solver, diffrax.AbstractItoSolver | diffrax.AbstractStratonovichSolver
    ):
        raise ValueError(
            f"`solver` {type(solver).__name__} is not an SDE solver; use an Itô one "
            "(diffrax.Euler, ItoMilstein) or a Stratonovich one (Heun, EulerHeun, "
            "SRA1, …), or noise=False"
        )
    # The step count needs concrete times: `ts` must not be traced (see `_grid`).
    ts = np.asarray(ts, np.float64)
    gaps = np.diff(ts) / dt if len(ts) > 1 else np.ones(1)
    steps_per_save = int(np.rint(gaps[0]))
    # (within 5 % of a step: float32 times at t ~ 10³ are off by ~10⁻⁴)
    if steps_per_save < 1 or np.any(np.abs(gaps - steps_per_save) > 0.05):
        raise ValueError(
            "`ts` must be evenly spaced, a whole number (≥ 1) of steps `dt` apart "
            "(see `save_times`)"
        )
    ts = jnp.asarray(ts, dtype=jnp.result_type(float))
    return _Plan(solver, ts, float(dt), steps_per_save, brownian, default)


@eqx.filter_jit
def _solve_paths(
    drift, noise, y0, key, noise_dim, args, args_axis, plan, save, increment
):
    # The paths are one (B, Y) state, not a vmap of B solves: each row sees only its
    # own input and Brownian increment, and the batch meets the weights as one
    # matrix product.
    solver, ts, steps_per_save = plan.solver, plan.ts, plan.steps_per_save
    t0, t1 = ts[0], ts[-1]

    def rows(fn):  # fn(t, y_b, u_b) for every row, vmapped when called
        return lambda t, y, args: jax.vmap(fn, in_axes=(None, 0, args_axis))(t, y, args)

    terms = diffrax.ODETerm(rows(drift))
    if noise is not None:
        shape = (y0.shape[0], noise_dim)
        if plan.brownian == "unsafe":
            bm = diffrax.UnsafeBrownianPath(shape=shape, key=key)
        else:
            bm = diffrax.VirtualBrownianTree(
                t0, t1, tol=plan.dt / 2, shape=shape, key=key
            )
        control = jax.ShapeDtypeStruct(shape, y0.dtype)

        def noise_rows(t, y, args):
            # g(t, y_b, u_b) dW_b for every row, applied lazily: an input-free g
            # (latent noise) then meets the batch as one matrix product, and the
            # B copies of g are never formed.
            def mv(dw):
                def one(y_b, args_b, dw_b):
                    g = noise(t, y_b, args_b)
                    return (
                        g.mv(dw_b)
                        if isinstance(g, lx.AbstractLinearOperator)
                        else g @ dw_b
                    )

                return jax.vmap(one, in_axes=(0, args_axis, 0))(y, args, dw)

            return lx.FunctionLinearOperator(mv, control)

        terms = diffrax.MultiTerm(terms, diffrax.ControlTerm(noise_rows, bm))
        if increment is not None:
            terms = _FusedTerm(terms, _RowsIncrement(increment, args_axis))
    saved = rows(save or _state)
    dt = jnp.asarray(plan.dt, y0.dtype)

    @jax.checkpoint  # reverse mode stores the state at saved times only
    def segment(carry, interval):
        # diffrax's step-by-step interface (`solver.step`) under a plain scan of
        # fixed steps from one saved time to the next. `diffeqsolve`'s adaptive
        # while loop carried and selected extra copies of the state each step: 4×
        # the step itself at N = 10⁷, and its SaveAt(ts) checked for saves inside
        # every step.
        y, state = carry
        t_start, t_end = interval

        def step(carry, j):
            y, state = carry
            ta = t_start + j.astype(dt.dtype) * dt
            tb = jnp.where(j == steps_per_save - 1, t_end, ta + dt)
            y, _, _, state, _ = solver.step(terms, ta, tb, y, args, state, False)
            return (y, state), None

        (y, state), _ = jax.lax.scan(step, (y, state), jnp.arange(steps_per_save))
        return (y, state), saved(t_end, y, args)

    state = solver.init(terms, t0, ts[min(1, len(ts) - 1)], y0, args)
    _, ys = jax.lax.scan(segment, (y0, state), jnp.stack([ts[:-1], ts[1:]], axis=1))
    first = saved(t0, y0, args)
    ys = jax.tree_util.tree_map(
        lambda a, b: jnp.concatenate([a[None], b], axis=0), first, ys
    )
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), ys)


class _FusedTerm(diffrax.AbstractTerm):
    """A drift-and-noise `MultiTerm` whose ``vf_prod`` (all that Euler calls) is
    one fused increment; ``vf``, ``contr`` and ``prod`` are the MultiTerm's."""

    terms: diffrax.MultiTerm
    increment: object

    def vf(self, t, y, args):
        return self.terms.vf(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return self.terms.contr(t0, t1, **kwargs)

    def prod(self, vf, control):
        return self.terms.prod(vf, control)

    def vf_prod(self, t, y, args, control):
        dt, dw = control
        return self.increment(t, y, args, dt, dw)


class _RowsIncrement(eqx.Module):
    """`increment` for every row, each with its own input and Brownian increment."""

    increment: object
    args_axis: int | None = eqx.field(static=True)

    def __call__(self, t, y, args, dt, dw):
        one = lambda y_b, a_b, dw_b: self.increment(t, y_b, a_b, dt, dw_b)  # noqa: E731
        return jax.vmap(one, in_axes=(0, self.args_axis, 0))(y, args, dw)


def _state(t, y, args):
    return y


class _Readout(eqx.Module):
    """z = E⁺ (x − b), saved instead of x: E⁺ once, not an SVD a save."""

    E_pinv: Float[Array, "K N"]
    b: Float[Array, " N"]

    def __call__(self, t, x, args):
        return self.E_pinv @ (x - self.b)


def simulate_sde(
    system,
    *,
    key: PRNGKeyArray,
    z0=None,
    t1: float,
    dt: float,
    num_paths: int | None = None,
    t0: float = 0.0,
    save_every: int = 1,
    args=None,
    solver: diffrax.AbstractSolver | None = None,
    noise: bool = True,
    brownian: str = "unsafe",
) -> tuple[Float[Array, " T"], Float[Array, "B T K"]]:
    """Batched paths of a target system.

    **Arguments:**

    - `system`: a `ddm_jax.systems.SDE`.
    - `key`: PRNG key; every path gets its own subkey.
    - `z0`: start, shape ``(K,)`` (broadcast to `num_paths`) or ``(B, K)``; the
      system's default when omitted.
    - `t1`, `dt`, `t0`: interval and fixed step.
    - `save_every`: keep every this many steps.
    - `args`: the input, passed to the vector fields: a constant u ``(P,)``, a
      `ddm_jax.inputs.Schedule` u(t), or a batched one (one schedule a path).
    - `solver`: a diffrax solver; Euler–Maruyama (Itô) by default.
    - `noise`: ``False`` integrates the deterministic flow ``dz = f dt``.
    - `brownian`: ``"unsafe"`` (fast) or ``"tree"``, see `solve_paths`.

    **Returns:** ``(ts, zs)`` with ``zs`` of shape ``(B, T, K)``.
    """
    k = system.latent_dim
    z0 = _batch_z0(system.z0 if z0 is None else z0, k, num_paths)
    ts = _grid(t0, t1, dt, save_every)
    zs = solve_paths(
        system.drift,
        system.diffusion if noise else None,
        z0,
        key=key,
        noise_dim=system.noise_dim,
        ts=ts,
        dt=dt,
        args=args,
        solver=solver,
        brownian=brownian,
    )
    return jnp.asarray(ts, dtype=zs.dtype), zs


def simulate_rnn(
    model,
    *,
    key: PRNGKeyArray,
    z0,
    t1: float,
    dt: float,
    num_paths: int | None = None,
    t0: float = 0.0,
    save_every: int = 1,
    args=None,
    solver: diffrax.AbstractSolver | None = None,
    noise: bool = True,
    full_state: bool = False,
    x0=None,
    brownian: str = "unsafe",
    ensemble: bool = False,
    sharding: jax.sharding.NamedSharding | None = None,
):
    """Batched paths of the full N-dimensional network, read out on the manifold.

    The state starts on the manifold, ``x0 = E z0 + b + B_u u``, unless `x0` (shape
    ``(N,)`` or ``(B, N)``) is given; the whole state evolves under
    ``F(x, u) dt + Σ(x) dB``, so any off-manifold motion is simulated, not assumed
    away.

    **Arguments:** as `simulate_sde`, plus `full_state` (also return x), `x0`, and

    - `ensemble`: `model` is a batch of models (a leading member axis on every
      array, see `ddm_jax.parallel`); each member runs the same paths' starts with
      its own noise, and every output gains a leading member axis.
    - `sharding`: split the paths over devices (``ddm_jax.data_sharding()``); the
      number of paths must be a multiple of the device count.

    **Returns:** ``(ts, zs)``, or ``(ts, zs, xs)`` with ``xs`` of shape ``(B, T, N)``
    when `full_state`.
    """
    if ensemble:
        count = parallel.members(model)
        options = dict(
            z0=z0, t1=t1, dt=dt, num_paths=num_paths, t0=t0, save_every=save_every,
            args=args, solver=solver, noise=noise, full_state=full_state, x0=x0,
            brownian=brownian, sharding=sharding,
        )  # fmt: skip
        out = eqx.filter_vmap(lambda m, k: simulate_rnn(m, key=k, **options))(
            model, jr.split(key, count)
        )
        return (out[0][0], *out[1:])
    parallel.check_single(model)
    k, n = model.latent_dim, model.num_neurons
    if x0 is None:
        z0 = _batch_z0(z0, k, num_paths)
        rows = len(z0)
    else:
        if z0 is not None:
            raise ValueError("give the start as `z0` or as `x0`, not both")
        x0 = jnp.asarray(x0)
        if x0.ndim not in (1, 2) or x0.shape[-1] != n:
            raise ValueError(f"`x0` must have shape ({n},) or (B, {n}); got {x0.shape}")
        x0 = jnp.broadcast_to(x0, (num_paths or 1, n)) if x0.ndim == 1 else x0
        if num_paths is not None and len(x0) != num_paths:
            raise ValueError(
                f"`num_paths` ({num_paths}) disagrees with the {len(x0)} rows of `x0`"
            )
        rows = len(x0)
    if sharding is not None:
        parallel.check_divides(sharding, number_of_paths=rows)
        z0, x0 = (None if a is None else jax.device_put(a, sharding) for a in (z0, x0))
        model = parallel.replicate(model, sharding)
    grid = _grid(t0, t1, dt, save_every)
    plan = _plan(grid, dt, solver, brownian, noise)
    xs = _network_paths(
        model, z0, x0, key, args, _args_axis(args, rows), plan, noise, full_state
    )
    if not full_state:
        return jnp.asarray(grid, dtype=xs.dtype), xs
    zs = readout_paths(model, xs)
    return jnp.asarray(grid, dtype=zs.dtype), zs, xs


@eqx.filter_jit
def _network_paths(model, z0, x0, key, args, args_axis, plan, noise, full_state):
    """`simulate_rnn`'s solve, with everything it derives from the model (the start,
    E⁺, the fused step's layout) computed once inside the same compiled call."""
    if x0 is None:
        x0 = jax.vmap(
            lambda z, a: model.embed(z, input_at(a, plan.ts[0])), in_axes=(0, args_axis)
        )(z0, args)
    # Without `full_state` only the K-dimensional readout is stored at each saved
    # time, never the N-dimensional state (at N = 10⁷ one saved state is 40 MB).
    # The default Euler–Maruyama takes the fused step (one pass over E); another
    # solver gets F and Σ dB as E (G dB), or |σ| ∘ dB for private noise.
    return _solve_paths(
        model.vector_field,
        model.noise_operator if noise else None,
        x0,
        key,
        model.noise_dim,
        args,
        args_axis,
        plan,
        None if full_state else _Readout(model.E_pinv, model.b),
        model.fused_increment() if plan.default and noise else None,
    )


@eqx.filter_jit
def readout_paths(model, xs: Float[Array, "B T N"]) -> Float[Array, "B T K"]:
    """z = E⁺ (x − b) along every saved state."""
    return (xs - model.b) @ model.E_pinv.T
