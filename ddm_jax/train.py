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

    def loss_fn(params, static, z):
        model = eqx.combine(params, static)
        if system is None:
            return data_matching_loss(
                model,
                *z,
                args,
                diffusion_weight=diffusion_weight,
                manifold_weight=manifold_weight,
            )
        return matching_loss(
            model,
            system,
            z,
            args,
            diffusion_weight=diffusion_weight,
            manifold_weight=manifold_weight,
        )

    def step(model, opt_state, points: Float[Array, "M K"], key: PRNGKeyArray):
        if batch_size is not None:
            # Rows drawn together from every array (z, dz, dt for data).
            rows = jax.tree_util.tree_leaves(points)[0].shape[0]
            idx = jr.randint(key, (batch_size,), 0, rows)
            points = jax.tree_util.tree_map(lambda a: a[idx], points)
        params, static = eqx.partition(model, eqx.is_inexact_array)
        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, static, points
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return eqx.combine(params, static), opt_state, loss, parts

    return step


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
):
    """Train `model` for `steps` optax steps, `chunk_size` steps per compiled scan.

    **Arguments:** as `make_train_step`, plus
    - `data`: recorded increments ``(z, dz, dt)`` (`ddm_jax.data.increments`) to match
      instead of a system: call ``fit(model, None, None, data=(z, dz, dt), …)``; the
      history's ``drift``/``diffusion``/``manifold`` are then the data ratios of
      `losses.data_relative_errors`.
    - `key`: PRNG key for the mini-batches.
    - `steps`: number of steps (0 returns the model unchanged).
    - `chunk_size`: steps per `lax.scan` chunk between host visits.
    - `progress`: show a tqdm bar.
    - `checkpoint`: a file to resume from (if present) and to write, atomically, after
      every chunk: model, optimizer state and step count.

    **Returns:** ``(model, history)``; `history` maps ``step``, ``loss``, ``drift``,
    ``diffusion`` and ``manifold`` to NumPy arrays, one entry a step.

    **Raises:** `DivergenceError` (carrying the last good model and history) when the
    loss or a parameter stops being finite; the checkpoint keeps the last good chunk.
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
    step_fn = make_train_step(
        system,
        optimizer,
        batch_size=batch_size,
        diffusion_weight=diffusion_weight,
        manifold_weight=manifold_weight,
        args=args,
    )
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    history = {name: [] for name in ("step", *HISTORY_KEYS)}
    done = 0
    if checkpoint is not None and Path(checkpoint).exists():
        model, opt_state, done, history = io.load_checkpoint(
            checkpoint, model, opt_state
        )
        logger.info("resumed from %s at step %d", checkpoint, done)

    @eqx.filter_jit
    def run_chunk(model, opt_state, keys):
        params, static = eqx.partition(model, eqx.is_inexact_array)

        def body(carry, k):
            params, opt_state = carry
            m, opt_state, loss, parts = step_fn(
                eqx.combine(params, static), opt_state, points, k
            )
            new_params = eqx.filter(m, eqx.is_inexact_array)
            return (new_params, opt_state), (loss, parts)

        (params, opt_state), (loss, parts) = jax.lax.scan(
            body, (params, opt_state), keys
        )
        return eqx.combine(params, static), opt_state, loss, parts

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=min(done, steps), desc="train")
    keys = jr.split(key, max(steps, 1))
    while done < steps:
        n = min(chunk_size, steps - done)
        new_model, new_state, loss, parts = run_chunk(
            model, opt_state, keys[done : done + n]
        )
        loss = np.asarray(loss)
        if not (np.all(np.isfinite(loss)) and _all_finite(new_model)):
            # The first step whose loss is not finite (1-based), else the chunk's end.
            bad = done + 1 + int(np.argmin(np.isfinite(loss)))
            bad = bad if not np.isfinite(loss[bad - done - 1]) else done + n
            if bar is not None:
                bar.close()
            raise DivergenceError(
                f"training diverged at step {bad}: the loss or a parameter is not "
                "finite; lower `train.learning_rate` or check the target",
                model=model,
                history=_as_arrays(history),
                step=bad,
            )
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
            bar.set_postfix(loss=f"{loss[-1]:.3e}")
    if bar is not None:
        bar.close()
    return model, _as_arrays(history)


def _all_finite(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)


def _as_arrays(history):
    return {k: np.asarray(v) for k, v in history.items()}
