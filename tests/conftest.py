"""Shared fixtures for the ddm_jax test suite.

Strict dtype promotion (STYLE: "strict promotion in conftest") is *not* switched on
globally: under ``jax_numpy_dtype_promotion="strict"`` the library's own
`simulate.save_times` (``t0 + dt * int(save_every) * jnp.arange(count)``: a Python
float times an int32 array) raises, and so does `optax.adam` itself (its bias
correction raises a float to an int32 step count), so every simulation and every Adam
fit would fail for reasons unrelated to what the tests check. The strict-promotion
behaviour of the library is tested on its own in ``test_simulate.py``.
"""

import jax
import pytest

import ddm_jax
from ddm_jax import systems


@pytest.fixture(scope="session")
def ou():
    """The default rotating OU target: A = [[1, -1], [1, 1]], g = 0.5 I."""
    return systems.get("ou")


@pytest.fixture(scope="session")
def ou_points(ou):
    """Training points from the OU box (cheap, no simulation)."""
    return ddm_jax.sample_points(
        ou, key=jax.random.key(100), num_points=256, method="box"
    )


@pytest.fixture(scope="session")
def ou_held_out(ou):
    """Held-out points: an independent stationary run of the target (its own key)."""
    return ddm_jax.sample_points(
        ou, key=jax.random.key(101), num_points=256, method="stationary"
    )
