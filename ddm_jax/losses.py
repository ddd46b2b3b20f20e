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

from .inputs import input_at, over_points


def _fields(model, system, z, args, manifold=True):
    E_pinv = model.E_pinv

    def one(zi, ui):
        # F once; f_θ = E⁺F and F_⊥ = F − E E⁺F from it (for dense, F costs an
        # N×N product a point).
        F = model.full_drift(0.0, zi, ui)
        f_net = E_pinv @ F
        return (
            f_net,
            system.drift(0.0, zi, ui),
            model.latent_diffusion(0.0, zi, ui),
            system.diffusion_matrix(0.0, zi, ui),
            F - f_net @ model.E.T if manifold else jnp.zeros(()),
        )

    return over_points(one, z, args)


def _low_rank_fields(model, system, z, args):
    """`_fields` for low rank with latent or gated noise, without E⁺: at
    x = E z + b + B_u u, F = E (Vᵀφ(x) − z)/τ (E⁺B_u = 0), so f_θ = (Vᵀφ(x) − z)/τ
    exactly, F_⊥ = 0 and D_θ = G(φ) G(φ)ᵀ. The same values as `_fields` up to
    rounding (E⁺E = I), at two fewer passes over the (M, N) drives and no SVD in
    the gradient."""
    gated = model.noise == "gated"

    def one(zi, ui):
        u = input_at(ui, 0.0)
        rates = model.phi(model.embed(zi, u))
        gain = model.gain_matrix(None, rates if gated else None)
        return (
            (model.V.T @ rates - zi) / model.tau,
            system.drift(0.0, zi, ui),
            gain @ gain.T,
            system.diffusion_matrix(0.0, zi, ui),
            jnp.zeros(()),
        )

    return over_points(one, z, args)


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
    return _ratios(*_fields(model, system, z, args))


def _ratios(f_net, f, D_net, D, F_perp):
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

    **Returns:** ``(loss, parts)``; `parts` holds the three ratios. For low rank
    ``parts["manifold"]`` is 0 without computing F_⊥ (W = E Vᵀ keeps the manifold
    invariant; `relative_errors` measures its rounding level).
    """
    dense = model.connectivity == "dense"
    if dense or model.noise == "private":
        f_net, f, D_net, D, F_perp = _fields(model, system, z, args, manifold=dense)
    else:
        f_net, f, D_net, D, F_perp = _low_rank_fields(model, system, z, args)
    parts = _ratios(f_net, f, D_net, D, F_perp)
    loss = parts["drift"] + diffusion_weight * parts["diffusion"]
    if dense:
        loss = loss + manifold_weight * parts["manifold"]
    return loss, parts


# --- matching from recorded increments (DESIGN §1 "Matching from data") -------------


@eqx.filter_jit
def data_relative_errors(
    model,
    z: Float[Array, "M K"],
    dz: Float[Array, "M K"],
    dt: Float[Array, " M"],
    args=None,
) -> dict[str, Float[Array, ""]]:
    """The data losses as ratios, at increments ``(z_n, Δz_n, Δt_n)``.

    With y_n = Δz_n/Δt_n and r_n = Δz_n − f_θ(z_n) Δt_n (no gradient through f_θ):

        drift     = E‖f_θ(z_n) − y_n‖² / E‖y_n‖²
        diffusion = E‖D_θ(z_n) − r_n r_nᵀ/Δt_n‖_F² / E‖r_n r_nᵀ/Δt_n‖_F²
        manifold  = E‖F_⊥(z_n)‖² / E‖y_n‖²

    Their minimisers are those of the function-matching losses up to O(Δt)
    (Kramers–Moyal), but the values are not: y_n carries noise of covariance D/Δt_n,
    so even the true drift leaves ``drift`` at the noise floor
    E[tr D/Δt]/E‖y‖² (close to 1 for small Δt), and the true D leaves ``diffusion``
    near ((tr D)² + tr D²)/((tr D)² + 2 tr D²) for Gaussian increments. Compare
    values on the same data only; `data_noise_floor` gives the drift floor.

    **Returns:** a dict with ``drift``, ``diffusion`` and ``manifold``.
    """

    def one(zi):
        return (
            model.latent_drift(0.0, zi, args),
            model.latent_diffusion(0.0, zi, args),
            model.manifold_drift(0.0, zi, args),
        )

    f_net, D_net, F_perp = jax.vmap(one)(z)
    y = dz / dt[:, None]
    r = dz - jax.lax.stop_gradient(f_net) * dt[:, None]
    D_hat = r[:, :, None] * r[:, None, :] / dt[:, None, None]
    y_power = jnp.mean(jnp.sum(y**2, -1))
    return {
        "drift": _ratio(jnp.mean(jnp.sum((f_net - y) ** 2, -1)), y_power),
        "diffusion": _ratio(
            jnp.mean(jnp.sum((D_net - D_hat) ** 2, (-2, -1))),
            jnp.mean(jnp.sum(D_hat**2, (-2, -1))),
        ),
        "manifold": _ratio(jnp.mean(jnp.sum(F_perp**2, -1)), y_power),
    }


def data_matching_loss(
    model,
    z: Float[Array, "M K"],
    dz: Float[Array, "M K"],
    dt: Float[Array, " M"],
    args=None,
    *,
    diffusion_weight: float = 1.0,
    manifold_weight: float = 1.0,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """L = drift + λ_D diffusion (+ λ_⊥ manifold for dense connectivity) of
    `data_relative_errors`: the data counterpart of `matching_loss`.

    **Returns:** ``(loss, parts)``.
    """
    parts = data_relative_errors(model, z, dz, dt, args)
    loss = parts["drift"] + diffusion_weight * parts["diffusion"]
    if model.connectivity == "dense":
        loss = loss + manifold_weight * parts["manifold"]
    return loss, parts


@eqx.filter_jit
def data_noise_floor(
    model, z: Float[Array, "M K"], dz: Float[Array, "M K"], dt: Float[Array, " M"]
) -> Float[Array, ""]:
    """E[tr D_θ(z_n)/Δt_n] / E‖y_n‖²: the value of the data drift ratio that a
    perfect drift would reach if D_θ were the true diffusion."""
    tr_D = jax.vmap(lambda zi: jnp.trace(model.latent_diffusion(0.0, zi, None)))(z)
    y_power = jnp.mean(jnp.sum((dz / dt[:, None]) ** 2, -1))
    return _ratio(jnp.mean(tr_D / dt), y_power)
