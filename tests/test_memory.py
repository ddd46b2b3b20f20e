"""Memory scores (`ddm_jax.memory`) on paths with known answers, and the sequential
and associative targets and their embeddings run through them (issue 5 groundwork)."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import ddm_jax
from ddm_jax import inputs, memory, systems
from ddm_jax.fokker_planck import stationary_fokker_planck


def test_scores_of_a_hand_made_path():
    # Wells 0 → 1 → (graze 1's edge, back) → 2 → 0, in transit (−1) in between.
    labels = np.array([0] * 5 + [-1] * 2 + [1] * 4 + [-1] * 3 + [1] + [-1] + [2] * 6)
    labels = np.concatenate([labels, [-1, -1, 0, 0]])
    counts, matrix = memory.transition_matrix(labels, 3)
    np.testing.assert_array_equal(counts, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(matrix, counts)  # one transition out of each well
    assert memory.sequence_fidelity(labels, 3) == 1.0
    # Entries at 0 (well 0), 7 (well 1), 16 (well 2), 24 (well 0): the complete dwells
    # are 1's (16 − 7) and 2's (24 − 16); the first and the last are cut.
    np.testing.assert_allclose(memory.dwell_times(labels, 0.5), [4.5, 4.0])
    assert memory.cycle_period(labels, 0.5, 3) == pytest.approx(3 * 4.25)
    backwards = labels[::-1].copy()
    assert memory.sequence_fidelity(backwards, 3) == 0.0


def _fidelity(system, zs):
    labels = memory.well_labels(zs, system.patterns, core_radius=0.3)
    return memory.sequence_fidelity(labels, system.patterns.shape[0])


def test_sequence_target_is_ordered_and_its_control_is_not():
    ordered = systems.get("sequence_wells", omega=1.0)
    control = systems.get("sequence_wells", omega=0.0)
    fidelity = {}
    for name, system in (("ordered", ordered), ("control", control)):
        _, zs = ddm_jax.simulate_sde(
            system,
            key=jr.key(0),
            z0=system.z0,
            num_paths=32,
            t1=200.0,
            dt=0.01,
            save_every=5,
        )
        fidelity[name] = _fidelity(system, zs)
    # Measured 0.987 (844 transitions) and 0.508 (132): ±0.1 is 2.3 binomial sd
    # for the control's 132 transitions.
    assert fidelity["ordered"] >= 0.9
    assert fidelity["control"] == pytest.approx(0.5, abs=0.1)


@pytest.fixture(scope="module")
def sequence_network():
    system = systems.get("sequence_wells", omega=1.0)
    lower, upper = system.box
    points = jr.uniform(jr.key(1), (8192, 2), minval=lower, maxval=upper)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(2), system=system, num_neurons=512, tau=0.05, points=points, gain=1.0
    )
    return system, ddm_jax.solve_readout(model, system, points)


def test_network_embedding_keeps_the_sequence_and_its_entropy_production(
    sequence_network,
):
    system, model = sequence_network
    _, zs = ddm_jax.simulate_rnn(
        model,
        key=jr.key(3),
        z0=system.z0,
        num_paths=16,
        t1=100.0,
        dt=0.005,
        save_every=10,
    )
    assert _fidelity(system, zs) >= 0.9  # the full 512-neuron network, simulated

    box = {"lower": system.box[0], "upper": system.box[1], "num_cells": 96}
    phi_target = stationary_fokker_planck(
        system.drift, system.diffusion_matrix, **box
    ).entropy_production
    phi_network = stationary_fokker_planck(
        model.latent_drift, model.latent_diffusion, **box
    ).entropy_production
    assert phi_target > 1.0  # the rotation keeps it far from equilibrium
    assert phi_network == pytest.approx(phi_target, rel=0.2)


def test_cued_network_recalls_and_holds_the_pattern():
    system = systems.get("cued_wells", noise=0.3)
    z, u = memory.cue_pairs(system, key=jr.key(4), num_points=8192)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(5), system=system, num_neurons=1024, tau=0.05, points=z, gain=1.0
    )
    model = ddm_jax.solve_readout(model, system, z, args=u)

    cued = np.repeat(np.arange(4), 8)  # 8 trials a pattern, all from well 0
    schedule = inputs.stack([inputs.pulse(0.5, 1.5, np.eye(4)[m]) for m in cued])
    ts, zs = ddm_jax.simulate_rnn(
        model,
        key=jr.key(6),
        z0=jnp.broadcast_to(system.z0, (32, 2)),
        t1=4.0,
        dt=0.005,
        args=schedule,
    )
    scores = memory.recall_scores(
        zs,
        ts,
        system.patterns,
        cued,
        cue_on=0.5,
        cue_off=1.5,
        hold=2.5,
        core_radius=0.3,
    )
    # 50 τ = 2.5 after the cue; escapes over a barrier of depth ~1 at noise 0.3 take
    # far longer than the run.
    assert scores["recall"] >= 0.95 and scores["persistence"] >= 0.95
    assert 0 <= scores["latency"] < 1.0


def test_hopfield_baseline_retrieves_but_switches_without_order():
    patterns = systems.get("sequence_wells").patterns
    # Low noise: a Hebbian network started in pattern 2 stays in well 2.
    quiet = memory.Hopfield.init(
        key=jr.key(7), patterns=patterns, num_neurons=256, noise=0.1
    )
    _, zs = quiet.simulate(key=jr.key(8), start=2, num_paths=4, t1=20.0, dt=0.005)
    labels = memory.well_labels(zs, patterns, core_radius=0.3)
    assert np.all(labels[:, -100:] == 2)
    # Noise that makes a 64-neuron network switch: hundreds of transitions, in no
    # order (measured 516, fidelity 0.50): symmetric W has a Lyapunov function.
    noisy = memory.Hopfield.init(
        key=jr.key(0), patterns=patterns, num_neurons=64, noise=0.8
    )
    _, zs = noisy.simulate(
        key=jr.key(1), start=0, num_paths=8, t1=200.0, dt=0.005, save_every=10
    )
    labels = memory.well_labels(zs, patterns, core_radius=0.4)
    counts, _ = memory.transition_matrix(labels, 4)
    assert counts.sum() >= 100
    assert memory.sequence_fidelity(labels, 4) == pytest.approx(0.5, abs=0.1)


def test_sequential_memory_config_reports_fidelity_for_network_and_target(tmp_path):
    import json
    from pathlib import Path

    from ddm_jax import cli

    config = Path(__file__).parents[1] / "configs" / "sequential_memory.yaml"
    out = tmp_path / "seq"
    cheap = ["simulate.t1=105", "simulate.num_paths=8", "data.num_points=4096"]
    assert cli.main(["run", str(config), "-o", str(out), *cheap]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    fidelity = metrics["sequence_fidelity"]
    # 8 paths × 100 time units: about 100 transitions each (full config, 16 × 200:
    # network 0.987 of 464, target 0.982 of 381).
    assert metrics["transitions"]["network"] >= 50
    assert fidelity["network"] >= 0.9 and fidelity["target"] >= 0.9
