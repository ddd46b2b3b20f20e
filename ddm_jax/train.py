"""Gradient training of the matching loss with optax (DESIGN §1, §3).

`make_train_step` builds a pure step ``(model, opt_state, points, key) -> (model,
opt_state, loss, parts)`` that a user can call inside their own `jax.jit`, `jax.vmap`
or `jax.grad`. `fit` runs that step many times per `lax.scan` chunk and touches the
host only between chunks: progress bar, history, the divergence check and the
checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, Float, PRNGKeyArray

from . import parallel
from .losses import data_matching_loss, matching_loss

logger = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "drift", "diffusion", "manifold")


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or parameter.

    **Attributes:** `model` and `history` up to the last good chunk, `step` where the
    divergence was seen.
    """

    def __init__(self, message, *, model, history, step):
        super().__init__(message)
        self.model, self.history, self.step = model, history, step


def make_train_step(
    system,
    optimizer: optax.GradientTransformation,
    *,
    batch_size: int | None = None,
    diffusion_weight: float = 1.0,
    manifold_weight: float = 1.0,
    args=None,
    sharding: jax.sharding.NamedSharding | None = None,
):
    """A pure optax step on the matching loss.

    **Arguments:**

    - `system`: the target, or None to match recorded increments: the step then takes
      ``points = (z, dz, dt)`` and trains `losses.data_matching_loss`.
    - `optimizer`: an optax transform.
    - `batch_size`: points per step, drawn with replacement from the key (all points
      when None).
    - `diffusion_weight`, `manifold_weight`: λ_D and λ_⊥.
    - `args`: input u, one ``(P,)`` for all points or ``(M, P)`` one a point (then
      full batches only).
    - `sharding`: a sharding of the batch axis (`ddm_jax.data_sharding`) to split
      each batch over devices, data parallel; None leaves placement to JAX.

    **Returns:** ``step(model, opt_state, points, key) -> (model, opt_state, loss,
    parts)``. Initialise the state with
    ``optimizer.init(eqx.filter(model, eqx.is_inexact_array))``.

    **Raises:** `NotImplementedError` for per-point inputs with a `batch_size`.
    """
    if batch_size is not None and getattr(args, "ndim", 0) == 2:
        raise NotImplementedError(
            "per-point inputs (`args` of shape (M, P)) train on full batches only; "
            "use batch_size=None"
        )
    return TrainStep(
        system,
        optimizer,
        args,
        None if batch_size is None else int(batch_size),
        diffusion_weight,
        manifold_weight,
        sharding,
    )


class TrainStep(eqx.Module):
    """The step `make_train_step` returns: a pytree, so that compiled chunks are
    reused by every `fit` with the same target, optimizer and settings."""

    system: object
    optimizer: optax.GradientTransformation
    args: object
    batch_size: int | None = eqx.field(static=True)
    diffusion_weight: float
    manifold_weight: float
    sharding: jax.sharding.NamedSharding | None = eqx.field(static=True)

    def loss(self, params, static, z):
        model = eqx.combine(params, static)
        weights = dict(
            diffusion_weight=self.diffusion_weight,
            manifold_weight=self.manifold_weight,
        )
        if self.system is None:
            return data_matching_loss(model, *z, self.args, **weights)
        return matching_loss(model, self.system, z, self.args, **weights)

    def __call__(
        self, model, opt_state, points: Float[Array, "M K"], key: PRNGKeyArray
    ):
        if self.batch_size is not None:
            # Rows drawn together from every array (z, dz, dt for data).
            rows = jax.tree_util.tree_leaves(points)[0].shape[0]
            idx = jr.randint(key, (self.batch_size,), 0, rows)
            points = jax.tree_util.tree_map(lambda a: a[idx], points)
        if self.sharding is not None:
            # Data parallel: each device takes its share of the batch; the gradient
            # mean becomes an all-reduce.
            points = jax.lax.with_sharding_constraint(points, self.sharding)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        (loss, parts), grads = jax.value_and_grad(self.loss, has_aux=True)(
            params, static, points
        )
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return eqx.combine(params, static), opt_state, loss, parts


def _chunk(step, model, opt_state, points, keys):
    """`len(keys)` steps in one `lax.scan`; also whether every parameter is finite
    at the end (checked here, not leaf by leaf on the host)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def body(carry, k):
        params, opt_state = carry
        m, opt_state, loss, parts = step(
            eqx.combine(params, static), opt_state, points, k
        )
        return (eqx.filter(m, eqx.is_inexact_array), opt_state), (loss, parts)

    (params, opt_state), (loss, parts) = jax.lax.scan(body, (params, opt_state), keys)
    leaves = jax.tree_util.tree_leaves(params)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
    return eqx.combine(params, static), opt_state, loss, parts, finite


def _donating(chunk):
    """`chunk` compiled with the optimizer state's buffers donated to its result
    (Adam's two moments are twice the parameters: 0.5 GB for dense N = 8192). The
    model is not donated: a diverged chunk hands back the last good one."""

    @eqx.filter_jit(donate="all-except-first")
    def run(rest, opt_state):
        step, model, points, keys = rest
        return chunk(step, model, opt_state, points, keys)

    return lambda step, model, opt_state, points, keys: run(
        (step, model, points, keys), opt_state
    )


# Module level, so that the compiled chunk outlives one `fit` call.
_run_chunk = _donating(_chunk)
# An ensemble: models, optimizer states and keys batched on their leading axis
# (keys: (steps, members)), the points shared.
_run_ensemble_chunk = _donating(
    eqx.filter_vmap(_chunk, in_axes=(None, 0, 0, None, 1), out_axes=0)
)


def fit(
    model,
    system,
    points: Float[Array, "M K"] | None,
    *,
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int | None = None,
    chunk_size: int = 100,
    diffusion_weight: float = 1.0,
    manifold_weight: float = 1.0,
    args=None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
    data: tuple | None = None,
    ensemble: bool = False,
    sharding: jax.sharding.NamedSharding | None = None,
):
    """Train `model` for `steps` optax steps, `chunk_size` steps per compiled scan.

    **Arguments:** as `make_train_step`, plus
    - `data`: recorded increments ``(z, dz, dt)`` (`ddm_jax.data.increments`) to match
      instead of a system: call ``fit(model, None, None, data=(z, dz, dt), …)``; the
      history's ``drift``/``diffusion``/``manifold`` are then the data ratios of
      `losses.data_relative_errors`.
    - `key`: PRNG key for the mini-batches.
    - `steps`: number of steps (0 returns the model unchanged).
    - `chunk_size`: steps per `lax.scan` chunk between host visits. The compiled
      chunk is kept: another `fit` with the same target, optimizer object, settings
      and shapes does not compile again.
    - `progress`: show a tqdm bar.
    - `checkpoint`: a file to resume from (if present) and to write, atomically, after
      every chunk: model, optimizer state and step count.
    - `ensemble`: `model` is a batch of models, every array with a leading member
      axis, as ``eqx.filter_vmap(lambda k: LatentRNN.init(key=k, …))(keys)`` builds
      (seeds, or `gain`, `bias_spread`, `weight_scale` vmapped). All members train
      together in one compiled step, each on its own mini-batches of the shared
      `points`; the history's entries are then ``(steps, members)``.
    - `sharding`: split each batch (and `points`) over devices, data parallel:
      ``ddm_jax.data_sharding()`` for all local devices (`ddm_jax.parallel`). The
      model is replicated.

    **Returns:** ``(model, history)``; `history` maps ``step``, ``loss``, ``drift``,
    ``diffusion`` and ``manifold`` to NumPy arrays, one entry a step.

    **Raises:** `DivergenceError` (carrying the last good model and history) when the
    loss or a parameter stops being finite (of any member); the checkpoint keeps the
    last good chunk. `ValueError` for a batch or point count that the sharding's
    devices do not divide.
    """
    from . import io

    steps, chunk_size = int(steps), max(1, int(chunk_size))
    if data is not None:
        if system is not None or points is not None:
            raise ValueError("give either `system` and `points` or `data`, not both")
        dtype = model.E.dtype
        points = tuple(jnp.asarray(a, dtype) for a in data)
        if len(points) != 3 or points[0].ndim != 2 or points[2].ndim != 1:
            raise ValueError("`data` must be (z (M, K), dz (M, K), dt (M,))")
    elif system is None:
        raise ValueError("`fit` needs a `system` (and `points`) or `data`")
    if steps < 0:
        raise ValueError(f"`train.steps` must be ≥ 0; got {steps}")
    if ensemble:
        members = parallel.members(model)
    else:
        members = None
        parallel.check_single(model)
    if sharding is not None:
        rows = jax.tree_util.tree_leaves(points)[0].shape[0]
        parallel.check_divides(sharding, batch_size=batch_size, number_of_points=rows)
        points = jax.device_put(points, sharding)
        model = parallel.replicate(model, sharding)
    step_fn = make_train_step(
        system,
        optimizer,
        batch_size=batch_size,
        diffusion_weight=diffusion_weight,
        manifold_weight=manifold_weight,
        args=args,
        sharding=sharding,
    )
    init = lambda m: optimizer.init(eqx.filter(m, eqx.is_inexact_array))  # noqa: E731
    opt_state = eqx.filter_vmap(init)(model) if ensemble else init(model)
    history = {name: [] for name in ("step", *HISTORY_KEYS)}
    done = 0
    if checkpoint is not None and Path(checkpoint).exists():
        model, opt_state, done, history = io.load_checkpoint(
            checkpoint, model, opt_state
        )
        logger.info("resumed from %s at step %d", checkpoint, done)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=min(done, steps), desc="train")
    if ensemble:
        keys = jr.split(key, max(steps, 1) * members).reshape(-1, members)
        run_chunk = _run_ensemble_chunk
    else:
        keys = jr.split(key, max(steps, 1))
        run_chunk = _run_chunk
    while done < steps:
        n = min(chunk_size, steps - done)
        new_model, new_state, loss, parts, finite = run_chunk(
            step_fn, model, opt_state, points, keys[done : done + n]
        )
        loss = np.asarray(loss)
        if ensemble:  # (members, n) → (n, members), as history stores steps first
            loss, parts = loss.T, {k: np.asarray(v).T for k, v in parts.items()}
        if not (np.all(np.isfinite(loss)) and np.all(finite)):
            if bar is not None:
                bar.close()
            raise _divergence(loss, done, n, model, history)
        model, opt_state = new_model, new_state
        history["step"].extend(range(done + 1, done + n + 1))
        history["loss"].extend(loss.tolist())
        for name in HISTORY_KEYS[1:]:
            history[name].extend(np.asarray(parts[name]).tolist())
        done += n
        if checkpoint is not None:
            io.save_checkpoint(checkpoint, model, opt_state, done, history)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{np.max(loss[-1]):.3e}")
    if bar is not None:
        bar.close()
    return model, _as_arrays(history)


def _divergence(loss, done, n, model, history) -> DivergenceError:
    """The error for a chunk whose loss or parameters stopped being finite."""
    finite = np.all(np.isfinite(loss.reshape(n, -1)), axis=1)
    # The first step whose loss is not finite (1-based), else the chunk's end.
    bad = done + 1 + int(np.argmin(finite)) if not finite.all() else done + n
    which = ""
    if loss.ndim == 2:
        members = np.flatnonzero(~np.all(np.isfinite(loss), axis=0))
        which = f" (ensemble members {members.tolist()})" if members.size else ""
    return DivergenceError(
        f"training diverged at step {bad}{which}: the loss or a parameter is not "
        "finite; lower `train.learning_rate` or check the target",
        model=model,
        history=_as_arrays(history),
        step=bad,
    )


def _as_arrays(history):
    return {k: np.asarray(v) for k, v in history.items()}
