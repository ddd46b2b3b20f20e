"""Memory scores (`ddm_jax.memory`) on paths with known answers, and the sequential
and associative targets, their embeddings and their configs run through them."""

import json
from pathlib import Path

import jax.random as jr
import numpy as np
import pytest

import ddm_jax
from ddm_jax import cli, memory, memory_plots, pipeline, systems
from ddm_jax.fokker_planck import stationary_fokker_planck

CONFIGS = Path(__file__).parents[1] / "configs"


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
        key=jr.key(2), system=system, num_neurons=512, tau=0.05, points=points, gain=3.0
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
    # Measured 1.1002 against 1.1029 (gain 3; with gain 1, features wider than the
    # wells, 0.977).
    assert phi_network == pytest.approx(phi_target, rel=0.02)


def test_transition_distance_by_hand():
    a = np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])
    # Row 0: ½(0.2 + 0.2) = 0.2; row 1: ½(0.5 + 0.5) = 0.5; row 2 is left only in
    # `b`: 1.
    assert memory.transition_distance(a, b) == pytest.approx((0.2 + 0.5 + 1) / 3)
    assert memory.transition_distance(a[:2, :2], a[:2, :2]) == 0.0
    assert np.isnan(memory.transition_distance(np.zeros((2, 2)), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="one shape"):
        memory.transition_distance(a, np.eye(2))


def test_wells_report_their_switching_on_a_hand_made_path():
    system = systems.get("multi_well")  # the four unit vectors of the plane
    assert system.core_radius == pytest.approx(np.sqrt(2) / 3)
    xi = np.asarray(system.patterns)
    mid = 0.5 * (xi[0] + xi[1])  # between wells: in transit
    # Well 0 (3 samples), transit, well 1 (4), transit, well 0 (2), well 3 (3).
    zs = np.stack([xi[0]] * 3 + [mid] + [xi[1]] * 4 + [mid] + [xi[0]] * 2 + [xi[3]] * 3)
    stats = system.statistics(zs[None], 0.5)
    assert stats["transitions"] == 3
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[0, 3] = 0.5  # from 0: once to 1, once to 3
    expected[1, 0] = 1.0
    np.testing.assert_array_equal(stats["transition_matrix"], expected)
    # Entries at samples 0, 4, 9, 11: the complete dwells are 1's (9 − 4) and 0's
    # (11 − 9), times 0.5.
    assert stats["mean_dwell"] == pytest.approx(0.5 * (5 + 2) / 2)


def test_cued_trials_recall_and_hold_every_pattern():
    system = systems.get("cued_wells", noise=0.3)
    z, u = memory.cue_pairs(system, key=jr.key(4), num_points=8192)
    model = ddm_jax.LatentRNN.init(
        key=jr.key(5), system=system, num_neurons=1024, tau=0.05, points=z, gain=3.0
    )
    model = ddm_jax.solve_readout(model, system, z, args=u)
    trials = memory.cued_trials(
        model,
        system,
        key=jr.key(6),
        trials_per_pattern=8,
        onset=0.5,
        duration=1.0,
        hold=2.5,
        dt=0.01,
    )
    np.testing.assert_array_equal(np.bincount(trials["cued"]), [8] * 4)
    # Every trial starts in another well than its cue, so every recall is a switch.
    assert np.all(trials["cue_start"] != trials["cued"])
    np.testing.assert_allclose(
        trials["cue_network"][:, 0], system.patterns[trials["cue_start"]], atol=1e-5
    )
    for who in ("network", "target"):
        scores = memory.recall_scores(
            trials[f"cue_{who}"],
            trials["cue_ts"],
            system.patterns,
            trials["cued"],
            cue_on=0.5,
            cue_off=1.5,
            hold=2.5,
            core_radius=system.core_radius,
        )
        # 50 τ = 2.5 after the cue; escapes over a barrier of depth ~1 at noise 0.3
        # take far longer than the run (mean dwell ≈ 100 already at noise 0.55).
        assert min(scores["recall_per_pattern"]) == 1.0, who
        assert min(scores["persistence_per_pattern"]) == 1.0, who
        assert 0 < scores["latency"] < 1.0


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
    config = CONFIGS / "sequential_memory.yaml"
    out = tmp_path / "seq"
    cheap = ["simulate.t1=105", "simulate.num_paths=8", "data.num_points=4096"]
    assert cli.main(["run", str(config), "-o", str(out), *cheap]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    fidelity = metrics["sequence_fidelity"]
    # 8 paths × 100 time units: about 100 transitions each (full config, 16 × 200:
    # network 0.987 of 464, target 0.982 of 381).
    assert metrics["transitions"]["network"] >= 50
    assert fidelity["network"] >= 0.9 and fidelity["target"] >= 0.9


def test_associative_memory_config_recalls_and_switches_like_its_target(tmp_path):
    config = CONFIGS / "associative_memory.yaml"
    out = tmp_path / "assoc"
    cheap = [
        "model.num_neurons=512",
        "model.gain=2",
        "data.num_points=4096",
        "data.held_out_points=512",
        "simulate.t1=105",
        "simulate.num_paths=8",
        "cues.trials_per_pattern=10",
    ]
    assert cli.main(["run", str(config), "-o", str(out), *cheap]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Matched over (z, u) pairs: the held-out error has the cues in it too.
    assert metrics["drift_rel_error"] < 1e-3
    recall = metrics["cued_recall"]
    assert recall["trials"] == 40
    for who in ("network", "target"):
        # Full config (1024 neurons, 200 trials a pattern): network recall 0.999,
        # persistence 0.985; target 1.0 and 0.978.
        assert recall[who]["recall"] >= 0.9 and recall[who]["persistence"] >= 0.85
    assert 0 <= metrics["transition_distance"] <= 1
    for name in ("cued_trials", "transitions", "dwell_times"):
        assert (out / f"{name}.png").stat().st_size > 0
    # `ddm simulate` makes the cued trials, so it takes `cues.*`.
    assert cli.main(["simulate", str(out), "cues.trials_per_pattern=3"]) == 0
    with np.load(out / "paths.npz") as npz:
        paths = dict(npz)
    assert paths["cue_network"].shape == paths["cue_target"].shape
    assert paths["cue_network"].shape[0] == 12
    # A target without inputs refuses a file with cued trials (from another run).
    with pytest.raises(ValueError, match="cued trials"):
        pipeline.load_paths(out, 2, input_dim=0)
    # Cued trials that do not fit the run's cues, or are missing, are refused.
    broken = {
        "patterns out of range": paths | {"cued": paths["cued"] + 7},
        "another trial length": paths | {"cue_ts": paths["cue_ts"] * 2},
        "no cued trials": {k: v for k, v in paths.items() if not k.startswith("cue")},
    }
    for arrays in broken.values():
        with open(out / "paths.npz", "wb") as f:
            np.savez(f, **arrays)
        assert cli.main(["evaluate", str(out)]) == 2


def test_memory_figures_for_one_dimension_and_missing_switches(tmp_path):
    ts = np.linspace(0, 4, 81)
    z = np.where(ts < 1, -1.0, 1.0)[None, :, None] * np.ones((2, 1, 1))
    path = memory_plots.cued_trials(
        ts,
        z,
        z,
        np.array([0, 1]),
        np.array([[-1.0], [1.0]]),
        tmp_path / "cued.png",
        core_radius=0.3,
        onset=0.5,
        duration=1.0,
    )
    assert path.stat().st_size > 0
    never_left = np.zeros((3, 3))
    never_left[0, 1] = 1.0
    assert memory_plots.transition_matrices(never_left, never_left, tmp_path / "t.png")
    assert memory_plots.dwell_times(np.zeros(0), np.ones(3), tmp_path / "d.png")
