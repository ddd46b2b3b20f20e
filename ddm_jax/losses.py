"""The drift–diffusion matching losses (DESIGN §1), pure and jit/vmap/grad-able.

With expectations over the points z ~ ρ:

    L_drift = E‖f_θ − f‖² / E‖f‖²
    L_diff  = E‖D_θ − D‖_F² / E‖D‖_F²
    L_⊥     = E‖F_⊥‖² / E‖f‖²
    L       = L_drift + λ_D L_diff + λ_⊥ L_⊥

The same ratios, on held-out points, are the headline metrics `drift_rel_error`,
`diffusion_rel_error` and `manifold_rel_error`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _fields(model, system, z, args):
    def one(zi):
        return (
            model.latent_drift(0.0, zi, args),
            system.drift(0.0, zi, args),
            model.latent_diffusion(0.0, zi, args),
            system.diffusion_matrix(0.0, zi, args),
            model.manifold_drift(0.0, zi, args),
        )

    return jax.vmap(one)(z)


def _ratio(num, den):
    # A target that vanishes everywhere (zero noise) makes the ratio 0/0: report the
    # absolute error instead, so a perfect match still reads 0.
    den = jnp.where(den > 0, den, 1.0)
    return num / den


@eqx.filter_jit
def relative_errors(
    model, system, z: Float[Array, "M K"], args=None
) -> dict[str, Float[Array, ""]]:
    """The three squared error ratios at the points `z`.

    **Returns:** a dict with ``drift``, ``diffusion`` and ``manifold``.
    """
    f_net, f, D_net, D, F_perp = _fields(model, system, z, args)
    f_power = jnp.mean(jnp.sum(f**2, -1))
    return {
        "drift": _ratio(jnp.mean(jnp.sum((f_net - f) ** 2, -1)), f_power),
        "diffusion": _ratio(
            jnp.mean(jnp.sum((D_net - D) ** 2, (-2, -1))),
            jnp.mean(jnp.sum(D**2, (-2, -1))),
        ),
        "manifold": _ratio(jnp.mean(jnp.sum(F_perp**2, -1)), f_power),
    }


def matching_loss(
    model,
    system,
    z: Float[Array, "M K"],
    args=None,
    *,
    diffusion_weight: float = 1.0,
    manifold_weight: float = 1.0,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """L = L_drift + λ_D L_diff + λ_⊥ L_⊥ (L_⊥ only for dense connectivity, where it
    is not identically zero).

    **Returns:** ``(loss, parts)``; `parts` holds the three ratios.
    """
    parts = relative_errors(model, system, z, args)
    loss = parts["drift"] + diffusion_weight * parts["diffusion"]
    if model.connectivity == "dense":
        loss = loss + manifold_weight * parts["manifold"]
    return loss, parts
