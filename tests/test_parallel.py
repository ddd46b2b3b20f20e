"""Ensembles (a batch of models trained and simulated together) and data-parallel
sharding over devices (forced host CPU devices in a subprocess)."""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import ddm_jax
from ddm_jax import systems


def _ensemble(system, points, count, num_neurons=32):
    def init(key, gain):
        return ddm_jax.LatentRNN.init(
            key=key, system=system, num_neurons=num_neurons, points=points, gain=gain
        )

    keys = jr.split(jr.key(1), count)
    gains = jnp.linspace(0.8, 1.6, count)
    return init, keys, gains, eqx.filter_vmap(init)(keys, gains)


def test_ensemble_fit_matches_members_trained_one_by_one():
    # Full batches: no sampling, so member i of the ensemble must follow exactly
    # the path of fitting model i alone (a second computation of the same thing).
    system = systems.get("van_der_pol")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=256)
    init, keys, gains, models = _ensemble(system, points, 3)
    optimizer = optax.adam(1e-3)
    options = dict(optimizer=optimizer, steps=30, chunk_size=10, key=jr.key(2))
    trained, history = ddm_jax.fit(models, system, points, ensemble=True, **options)
    assert history["loss"].shape == (30, 3)
    assert history["drift"].shape == (30, 3)
    for i in range(3):
        alone, hist = ddm_jax.fit(init(keys[i], gains[i]), system, points, **options)
        np.testing.assert_allclose(history["loss"][:, i], hist["loss"], rtol=2e-4)
        np.testing.assert_allclose(trained.V[i], alone.V, rtol=1e-3, atol=1e-6)
    # Training helped every member.
    assert np.all(history["loss"][-1] < history["loss"][0])


def test_ensemble_simulation_matches_members():
    system = systems.get("van_der_pol")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=256)
    init, keys, gains, models = _ensemble(system, points, 2)
    z0 = points[:4]
    options = dict(z0=z0, t1=1.0, dt=0.01, save_every=10, noise=False)
    ts, zs = ddm_jax.simulate_rnn(models, key=jr.key(3), ensemble=True, **options)
    assert zs.shape == (2, 4, len(ts), 2)
    for i in range(2):
        _, alone = ddm_jax.simulate_rnn(
            init(keys[i], gains[i]), key=jr.key(3), **options
        )
        np.testing.assert_allclose(zs[i], alone, rtol=1e-5, atol=1e-5)
    # With noise, members get different Brownian paths.
    _, noisy = ddm_jax.simulate_rnn(
        models, key=jr.key(3), ensemble=True, **{**options, "noise": True}
    )
    assert not np.allclose(noisy[0], noisy[1])


def test_ensemble_needs_a_member_axis():
    system = systems.get("van_der_pol")
    model = ddm_jax.LatentRNN.init(key=jr.key(0), system=system, num_neurons=16)
    with pytest.raises(ValueError, match="leading member axis"):
        ddm_jax.fit(
            model,
            system,
            jnp.zeros((8, 2)),
            key=jr.key(0),
            optimizer=optax.adam(1e-3),
            steps=1,
            ensemble=True,
        )


SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.random as jr, optax, numpy as np
    import ddm_jax
    from ddm_jax import systems

    assert len(jax.devices()) == 4, jax.devices()
    system = systems.get("lorenz")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=512)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(1), system=system, num_neurons=64, points=points, tau=0.1
    )
    model = ddm_jax.solve_readout(model, system, points)
    sharding = ddm_jax.data_sharding()
    options = dict(
        key=jr.key(2), optimizer=optax.adam(1e-3), steps=20, batch_size=128,
        chunk_size=10,
    )
    one, h1 = ddm_jax.fit(model, system, points, **options)
    four, h4 = ddm_jax.fit(model, system, points, sharding=sharding, **options)
    sim = dict(z0=points[:8], t1=0.5, dt=0.005, save_every=10)
    _, z1 = ddm_jax.simulate_rnn(model, key=jr.key(3), **sim)
    _, z4 = ddm_jax.simulate_rnn(model, key=jr.key(3), sharding=sharding, **sim)
    try:
        ddm_jax.fit(model, system, points, **{**options, "batch_size": 126},
                    sharding=sharding)
        message = None
    except ValueError as error:
        message = str(error)
    print(json.dumps({
        "loss_one": h1["loss"].tolist(), "loss_four": h4["loss"].tolist(),
        "V_diff": float(np.max(np.abs(one.V - four.V))),
        "V_scale": float(np.max(np.abs(one.V))),
        "sim_diff": float(np.max(np.abs(z1 - z4))),
        "sim_scale": float(np.max(np.abs(z1))),
        "devices_of_path": len(z4.sharding.device_set),
        "message": message,
    }))
    """
)


def test_four_host_devices_give_the_one_device_result():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Same batches, same steps: only the order of the float32 sums differs.
    np.testing.assert_allclose(result["loss_four"], result["loss_one"], rtol=1e-4)
    assert result["V_diff"] <= 1e-4 * result["V_scale"]
    assert result["sim_diff"] <= 1e-4 * result["sim_scale"]
    assert result["devices_of_path"] == 4
    assert "multiple of the 4 devices" in result["message"]


def test_ensemble_mistakes_get_one_clear_message():
    system = systems.get("ou")
    points = ddm_jax.sample_points(system, key=jr.key(0), num_points=64)
    # N = K: every array of one model shares its leading size, still not an ensemble.
    single = ddm_jax.LatentRNN.init(key=jr.key(0), system=system, num_neurons=2)
    options = dict(key=jr.key(0), optimizer=optax.adam(1e-3), steps=1)
    with pytest.raises(ValueError, match="leading member axis"):
        ddm_jax.fit(single, system, points, ensemble=True, **options)
    models = eqx.filter_vmap(
        lambda k: ddm_jax.LatentRNN.init(key=k, system=system, num_neurons=8)
    )(jr.split(jr.key(1), 3))
    with pytest.raises(ValueError, match="pass ensemble=True"):
        ddm_jax.fit(models, system, points, **options)
    with pytest.raises(ValueError, match="pass ensemble=True"):
        ddm_jax.simulate_rnn(models, key=jr.key(0), z0=points[:2], t1=0.1, dt=0.01)
