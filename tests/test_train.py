"""Gradient training with `fit` from a random start (no closed-form solve)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import ddm_jax
from ddm_jax import LatentRNN, systems


def _assert_history(history, steps):
    # One entry a step, numbered 1..steps, for every recorded quantity.
    np.testing.assert_array_equal(history["step"], np.arange(1, steps + 1))
    for name in ("loss", "drift", "diffusion", "manifold"):
        assert history[name].shape == (steps,)
        assert np.all(np.isfinite(history[name]))


def test_dense_network_trained_from_random_start_matches_ou(ou, ou_points, ou_held_out):
    model = LatentRNN.init(
        key=jax.random.key(0), system=ou, num_neurons=32, connectivity="dense"
    )
    steps = 1500
    trained, history = ddm_jax.fit(
        model,
        ou,
        ou_points,
        key=jax.random.key(1),
        optimizer=optax.adam(1e-2),
        steps=steps,
        chunk_size=400,  # 400 does not divide 1500: last chunk is short
    )
    _assert_history(history, steps)
    # The random start misses the rotation (L_drift ~0.5) and the noise (L_diff ~0.9).
    assert history["loss"][0] > 0.3
    # Acceptance target: L = L_drift + L_diff + L_perp below 1e-3 (measured ~1e-5).
    assert history["loss"][-1] < 1e-3
    assert history["loss"][-1] < history["loss"][0] / 100
    loss, parts = ddm_jax.matching_loss(trained, ou, ou_held_out)
    # Held-out points from the stationary law lie inside the training box.
    assert float(loss) < 1e-3
    assert float(parts["manifold"]) < 1e-3  # the invariance penalty did its job


def test_gated_noise_trained_from_random_start_matches_gbm():
    # GBM: D(z) = sigma^2 z^2 is state dependent, so constant noise cannot match it.
    gbm = systems.get("gbm")
    points = ddm_jax.sample_points(
        gbm, key=jax.random.key(2), num_points=256, method="box"
    )
    held_out = ddm_jax.sample_points(
        gbm, key=jax.random.key(3), num_points=256, method="box"
    )
    model = LatentRNN.init(
        key=jax.random.key(4), system=gbm, num_neurons=32, noise="gated"
    )
    steps = 1500
    trained, history = ddm_jax.fit(
        model,
        gbm,
        points,
        key=jax.random.key(5),
        optimizer=optax.adam(1e-2),
        steps=steps,
        chunk_size=500,
    )
    _assert_history(history, steps)
    assert history["loss"][0] > 1.0  # random start: drift and diffusion both wrong
    # Acceptance target (measured ~4e-5 after 1500 steps).
    assert history["loss"][-1] < 1e-3
    loss, parts = ddm_jax.matching_loss(trained, gbm, held_out)
    assert float(loss) < 1e-3
    assert float(parts["diffusion"]) < 1e-3
    # Best constant G: G G^T = E[D]; its relative error on uniform z in the box is
    # Var(z^2) / E[z^4] ~ 0.44. Trained gated noise must beat it by far.
    z2 = np.asarray(held_out, np.float64)[:, 0] ** 2
    constant_floor = np.mean((z2 - z2.mean()) ** 2) / np.mean(z2**2)
    assert constant_floor > 0.3
    assert float(parts["diffusion"]) < constant_floor / 100


def test_fit_resumes_from_checkpoint_to_the_same_model(tmp_path, ou, ou_points):
    # Full-batch steps do not depend on the key, so 2 x 50 steps with a checkpoint
    # in between equal 100 uninterrupted ones (Adam state included).
    model = LatentRNN.init(key=jax.random.key(6), system=ou, num_neurons=16)
    options = dict(key=jax.random.key(7), optimizer=optax.adam(1e-2), chunk_size=25)
    straight, h_straight = ddm_jax.fit(model, ou, ou_points, steps=100, **options)
    path = tmp_path / "ckpt.eqx"
    ddm_jax.fit(model, ou, ou_points, steps=50, checkpoint=path, **options)
    resumed, h_resumed = ddm_jax.fit(
        model, ou, ou_points, steps=100, checkpoint=path, **options
    )
    _assert_history(h_resumed, 100)
    # Identical float32 programs on identical inputs: equal up to XLA reassociation.
    np.testing.assert_allclose(h_resumed["loss"], h_straight["loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed.V, straight.V, rtol=1e-4, atol=1e-6)


def test_fit_raises_divergence_error_with_last_good_model(ou, ou_points):
    model = LatentRNN.init(key=jax.random.key(8), system=ou, num_neurons=16)
    with pytest.raises(ddm_jax.DivergenceError) as info:
        ddm_jax.fit(
            model,
            ou,
            ou_points,
            key=jax.random.key(9),
            optimizer=optax.sgd(1e30),
            steps=20,
            chunk_size=5,
        )
    err = info.value
    assert 1 <= err.step <= 20
    # The carried model and history stop at the last chunk whose loss was finite.
    assert len(err.history["loss"]) % 5 == 0 and len(err.history["loss"]) < err.step
    assert np.all(np.isfinite(err.history["loss"]))
    leaves = jax.tree_util.tree_leaves(err.model)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)


def test_fit_with_zero_steps_returns_the_model_unchanged(ou, ou_points):
    model = LatentRNN.init(key=jax.random.key(10), system=ou, num_neurons=8)
    same, history = ddm_jax.fit(
        model,
        ou,
        ou_points,
        key=jax.random.key(11),
        optimizer=optax.adam(1e-2),
        steps=0,
    )
    assert same is model
    assert history["loss"].shape == (0,)
    with pytest.raises(ValueError, match="train.steps"):
        ddm_jax.fit(
            model,
            ou,
            ou_points,
            key=jax.random.key(11),
            optimizer=optax.adam(1e-2),
            steps=-1,
        )


@pytest.mark.parametrize("noise", ["latent", "gated"])
def test_low_rank_loss_equals_the_projected_fields(noise):
    # The training loss uses f_θ = (Vᵀφ − z)/τ and D_θ = G Gᵀ (E⁺E = I); the metrics
    # project the full N-dimensional F and Σ with E⁺. Both must agree.
    from ddm_jax.losses import matching_loss, relative_errors

    system = systems.get("cued_wells")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=256)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(1), system=system, num_neurons=64, noise=noise, weight_scale=0.5
    )
    u = jnp.ones(system.input_dim)
    _, parts = matching_loss(model, system, points, u)
    reference = relative_errors(model, system, points, u)
    for name in ("drift", "diffusion"):
        np.testing.assert_allclose(parts[name], reference[name], rtol=1e-4)
    assert float(parts["manifold"]) == 0.0
    assert float(reference["manifold"]) < 1e-10
