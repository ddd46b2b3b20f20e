"""The dysts adapter (`systems.get("dysts:<Flow>")`) against dysts's own numbers.

All but the first test need the optional extra (``pip install ddm_jax[dysts]``) and
are skipped without it.
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ddm_jax
from ddm_jax import systems
from ddm_jax.config import ConfigError, load


def test_dysts_name_without_the_extra_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import dysts` raise ImportError, as if the
    # package were not installed.
    for mod in [m for m in sys.modules if m == "dysts" or m.startswith("dysts.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "dysts", None)
    expected = (
        "system 'dysts:Lorenz' needs the optional extra: pip install ddm_jax[dysts]"
    )
    with pytest.raises(ValueError) as info:
        systems.get("dysts:Lorenz")
    assert str(info.value) == expected
    with pytest.raises(ValueError, match=r"pip install ddm_jax\[dysts\]"):
        systems.parameters("dysts:Lorenz")
    assert not any(name.startswith("dysts:") for name in systems.names())
    assert "lorenz" in systems.names()


@pytest.fixture
def dysts():
    """dysts itself; the test is skipped without the optional extra (CI installs
    only `.[test]`)."""
    return pytest.importorskip("dysts")


@pytest.mark.parametrize("flow", ["Lorenz", "Rossler", "Thomas", "Hopfield", "Duffing"])
def test_jax_drift_equals_dysts_rhs_at_random_points(dysts, flow):
    system = systems.get(f"dysts:{flow}")
    assert system.drift_path == "jax"
    rng = np.random.default_rng(0)
    lower, upper = np.asarray(system.box[0]), np.asarray(system.box[1])
    z = lower + (upper - lower) * rng.uniform(size=(64, system.latent_dim))
    f = np.asarray(jax.vmap(lambda zi: system.drift(0.0, zi, None))(jnp.asarray(z)))
    f_ref = np.stack([system.flow.rhs(zi.astype(np.float64), 0.0) for zi in z])
    # float32 evaluation (points and parameters rounded at ~6e-8 relative) of
    # polynomial/trigonometric fields: a few ulp of the field's scale.
    np.testing.assert_allclose(f, f_ref, rtol=1e-4, atol=1e-5 * np.abs(f_ref).max())


def test_non_traceable_flow_falls_back_to_a_callback_with_a_jvp(dysts):
    # Lorenz96's rhs assigns into a NumPy array, which JAX cannot trace.
    system = systems.get("dysts:Lorenz96")
    assert system.drift_path == "callback"
    z = jnp.asarray(system.z0)
    f = system.drift(0.0, z, None)
    np.testing.assert_allclose(
        f, system.flow.rhs(np.asarray(z, np.float64), 0.0), rtol=1e-5
    )
    v = jnp.eye(system.latent_dim)[0]
    _, jv = jax.jvp(lambda zi: system.drift(0.0, zi, None), (z,), (v,))
    # Lorenz96 (K = 4), f_i = (z_{i+1} − z_{i−2}) z_{i−1} − z_i + F: the column
    # ∂f/∂z_0 is (−1, z_2 − z_3, −z_1, z_2). f is quadratic, so the central
    # difference is exact up to float32 rounding over the step ∛ε (~1e-2 here).
    assert system.latent_dim == 4
    z1, z2, z3 = (float(z[i]) for i in (1, 2, 3))
    exact = np.asarray([-1.0, z2 - z3, -z1, z2])
    np.testing.assert_allclose(jv, exact, atol=5e-2)


def test_dysts_lorenz_equals_the_builtin_lorenz(dysts):
    target = systems.get("dysts:Lorenz")
    params = systems.parameters("dysts:Lorenz")
    builtin = systems.get(
        "lorenz", sigma=params["sigma"], rho=params["rho"], beta=params["beta"]
    )
    z = ddm_jax.sample_points(
        builtin, key=jax.random.key(0), num_points=128, method="box"
    )
    f = jax.vmap(lambda zi: target.drift(0.0, zi, None))(z)
    f_builtin = jax.vmap(lambda zi: builtin.drift(0.0, zi, None))(z)
    # The same float32 arithmetic in a different order: a few ulp of |f| ~ 1e3.
    np.testing.assert_allclose(f, f_builtin, rtol=1e-5, atol=1e-3)


def test_reference_lyapunov_is_dysts_published_value(dysts):
    system = systems.get("dysts:Lorenz")
    ref = system.reference()
    assert ref["lyapunov_max"] == system.flow.maximum_lyapunov_estimated
    assert ref["lyapunov_max"] == pytest.approx(0.9, abs=0.05)  # Sprott: 0.9056
    assert {"correlation_dimension", "period", "mean", "std"} <= set(ref)
    # Other parameters: the published numbers no longer apply.
    assert systems.get("dysts:Lorenz", rho=35.0).reference() == {}


def test_unknown_dysts_flow_lists_close_matches(dysts):
    with pytest.raises(ValueError) as info:
        systems.get("dysts:Rosler")
    assert str(info.value).startswith("unknown dysts flow 'Rosler'; did you mean")
    assert "Rossler" in str(info.value)
    with pytest.raises(ValueError, match="unknown parameter `system.foo`"):
        systems.get("dysts:Rossler", foo=1.0)


def test_names_and_config_accept_dysts_flows(dysts):
    names = systems.names()
    assert "dysts:Lorenz" in names and "dysts:Rossler" in names
    assert not any(n in names for n in ("dysts:MackeyGlass", "dysts:Henon"))
    cfg = load(None, ["system.name=dysts:Rossler", "system.noise=0.1"])
    assert cfg["system"]["name"] == "dysts:Rossler"
    with pytest.raises(ConfigError, match="did you mean Rossler"):
        load(None, ["system.name=dysts:Rosler"])


def test_stationary_samples_come_from_independent_dysts_trajectories(dysts):
    system = systems.get("dysts:Rossler")
    a = ddm_jax.sample_points(system, key=jax.random.key(0), num_points=500)
    b = ddm_jax.sample_points(system, key=jax.random.key(1), num_points=500)
    assert a.shape == (500, 3) and not np.allclose(a, b)
    lower, upper = system.box
    assert bool(jnp.all((a >= lower) & (a <= upper)))


def test_small_readout_on_dysts_rossler_has_low_held_out_drift_error(dysts):
    system = systems.get("dysts:Rossler")
    points = ddm_jax.sample_points(system, key=jax.random.key(0), num_points=2048)
    held_out = ddm_jax.sample_points(system, key=jax.random.key(1), num_points=1024)
    model = ddm_jax.LatentRNN.init(
        key=jax.random.key(2),
        system=system,
        num_neurons=256,
        tau=0.5,
        points=points,
    )
    model = ddm_jax.solve_readout(model, system, points, rcond=1e-6)
    error = float(ddm_jax.relative_errors(model, system, held_out)["drift"])
    # 256 tanh features of a quadratic field on the attractor: ~1e-6 seen; 1e-4
    # leaves room for other keys while failing any real mismatch (O(1)).
    assert error <= 1e-4


def test_periodic_coordinates_are_found_with_their_own_period(dysts):
    # BlinkingRotlet's angle is 2π-periodic and its clock drives a protocol
    # sin(2π t / tau) with tau = 3; BickleyJet's x is periodic with 2π / k₁ and its
    # time coordinate enters only through a slow phase drift, which is no period.
    rotlet = systems.get("dysts:BlinkingRotlet")
    assert rotlet.periodic == ((1, pytest.approx(2 * np.pi)), (2, pytest.approx(3.0)))
    jet = systems.get("dysts:BickleyJet")
    k1 = float(np.min(jet.flow.k))
    assert [i for i, _ in jet.periodic] == [1]
    assert jet.periodic[0][1] == pytest.approx(2 * np.pi / k1)
    # Wrapping moves a point by whole periods and leaves dysts's rhs unchanged.
    rng = np.random.default_rng(1)
    z = np.asarray(rotlet.z0) + rng.normal(size=(8, 3)) * [0.1, 5.0, 20.0]
    z[:, 0] = np.abs(z[:, 0]) + 0.2
    wrapped = np.asarray(rotlet.wrap(jnp.asarray(z)), np.float64)
    assert np.all(np.abs(wrapped[:, 2]) <= 1.5)
    np.testing.assert_allclose(
        (z - wrapped)[:, 2] / 3.0, np.round((z - wrapped)[:, 2] / 3.0), atol=1e-5
    )
    f = np.stack([rotlet.flow.rhs(zi, 0.0) for zi in z])
    f_wrapped = np.stack([rotlet.flow.rhs(zi, 0.0) for zi in wrapped])
    np.testing.assert_allclose(f_wrapped, f, rtol=1e-4, atol=1e-5 * np.abs(f).max())


def test_trajectory_retries_a_smaller_jitter_where_dysts_fails(dysts):
    # From a 1 % jitter of its published start SprottJerk's integration does not
    # complete at seed 2 (checked below); a smaller jitter does.
    system = systems.get("dysts:SprottJerk")
    rng = np.random.default_rng(2)
    span = np.asarray(system.upper - system.lower)
    start = np.asarray(system.flow.ic) + 0.01 * span * rng.normal(size=3)
    with pytest.raises(RuntimeError, match="did not complete"):
        system.trajectory(200, seed=2, init=start)
    z = system.trajectory(200, seed=2)
    assert z.shape == (200, 3) and np.all(np.isfinite(z))
