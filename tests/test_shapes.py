"""The jaxtyping shape annotations of the public functions hold at run time.

STYLE asks for shapes in signatures named with DESIGN's letters and checked in tests.
The package is imported under jaxtyping's import hook with beartype in a fresh
interpreter (the hook instruments modules only as they are first imported), then the
public pipeline runs once: any call whose arrays disagree with an annotation, or whose
named dimensions disagree with each other, raises a `TypeCheckError`.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from jaxtyping import TypeCheckError, install_import_hook

    with install_import_hook("ddm_jax", "beartype.beartype"):
        import ddm_jax as dj
        from ddm_jax.solve import lstsq

    import jax.numpy as jnp
    import jax.random as jr
    import optax

    s = dj.systems.get("ou")
    p = dj.sample_points(s, key=jr.key(0), num_points=256, method="mixture")
    m = dj.LatentRNN.init(key=jr.key(1), system=s, num_neurons=32, points=p)
    m = dj.solve_readout(m, s, p)
    dj.relative_errors(m, s, p)
    dj.matching_loss(m, s, p)
    dj.simulate_rnn(m, key=jr.key(2), z0=p[:4], t1=0.5, dt=0.01, full_state=True)
    dj.simulate_sde(s, key=jr.key(2), z0=p[:4], t1=0.5, dt=0.01)
    dj.lyapunov_max(s.drift, p[:2], key=jr.key(3), t1=2.0, transient=1.0)
    dj.fit(m, s, p, key=jr.key(4), optimizer=optax.adam(1e-3), steps=3)
    gated = dj.LatentRNN.init(
        key=jr.key(5), system=s, num_neurons=16, noise="gated", points=p
    )
    dj.solve_readout(gated, s, p)

    # A named dimension that disagrees between arguments is caught: M rows of A
    # against M rows of Y.
    try:
        lstsq(jnp.ones((5, 3)), jnp.ones((4, 2)))
    except TypeCheckError:
        print("mismatch caught")
    """
)


def test_public_functions_obey_their_shape_annotations():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "mismatch caught"
