"""Scores of associative and sequential memory (DESIGN §1 "Memory tasks").

Paths are read as visits to wells: a point within `core_radius` of pattern ξ_μ is in
well μ, anything else is in transit and keeps the last well's label (milestoning), so
a crossing that grazes a well's edge and returns is not counted as a switch.

- Sequential memory: `transition_matrix` between successive wells,
  `sequence_fidelity` (the share of transitions μ → μ + 1 mod P), `dwell_times` and
  `cycle_period` (P times the mean dwell).
- `Hopfield`: the classical symmetric baseline, read out through the same wells.
- Associative memory: `recall_scores` of cued trials — the share in the cued well at
  the cue's end (recall), the share still there a hold time later (persistence), and
  the latency from cue onset to entering the cued well.

The scores take NumPy-convertible paths ``(B, T, K)`` (labels and transitions
also ``(T, K)``), work on the host and return plain numbers and arrays.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from . import inputs
from .simulate import save_times, simulate_rnn, simulate_sde, solve_paths


def cue_inputs(
    key: PRNGKeyArray, num_points: int, num_inputs: int
) -> Float[Array, "M P"]:
    """Inputs to pair with states for matching a cued target: no cue (a share
    1/(P + 1) of the points, in expectation) or one cue μ at an amplitude uniform in
    [0, 1].

    The amplitudes in between matter: when a cue switches, the off-manifold state
    B_u u relaxes with τ, so the network's features pass through the cue's fractions,
    and a network matched at u ∈ {0, e_μ} only can leave the box at the switch.
    """
    which_key, amp_key = jr.split(key)
    which = jr.randint(which_key, (num_points,), 0, num_inputs + 1)  # 0: no cue
    return jax.nn.one_hot(which - 1, num_inputs) * jr.uniform(amp_key, (num_points, 1))


def cue_pairs(
    system, *, key: PRNGKeyArray, num_points: int
) -> tuple[Float[Array, "M K"], Float[Array, "M P"]]:
    """(z, u) pairs for matching a cued target: z uniform in the system's box, u from
    `cue_inputs`."""
    z_key, u_key = jr.split(key)
    lower, upper = system.box
    z = jr.uniform(z_key, (num_points, system.latent_dim), minval=lower, maxval=upper)
    return z, cue_inputs(u_key, num_points, system.input_dim)


def well_labels(
    zs: Float[ArrayLike, "*B T K"],
    patterns: Float[ArrayLike, "P K"],
    core_radius: float,
) -> Int[np.ndarray, "*B T"]:
    """The well each point is in (nearest pattern within `core_radius`), −1 in
    transit."""
    zs = np.asarray(zs, np.float64)
    xi = np.asarray(patterns, np.float64)
    d2 = np.sum((zs[..., None, :] - xi) ** 2, axis=-1)
    return np.where(d2.min(-1) < core_radius**2, d2.argmin(-1), -1)


def milestones(labels: Int[ArrayLike, "*B T"]) -> Int[np.ndarray, "*B T"]:
    """Each point's last well visited (−1 before the first)."""
    labels = np.asarray(labels)
    out = np.empty_like(labels)
    flat_in, flat_out = (
        labels.reshape(-1, labels.shape[-1]),
        out.reshape(-1, labels.shape[-1]),
    )
    for row_in, row_out in zip(flat_in, flat_out, strict=True):
        index = np.where(row_in >= 0, np.arange(row_in.size), -1)
        last = np.maximum.accumulate(index)
        row_out[:] = np.where(last >= 0, row_in[np.maximum(last, 0)], -1)
    return out


def _entries(labels) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per path: the wells entered in order and the index of each entry."""
    marks = milestones(labels)
    marks = marks.reshape(-1, marks.shape[-1])
    out = []
    for row in marks:
        change = np.flatnonzero(np.diff(row) != 0) + 1
        starts = np.concatenate([[0], change]) if row[0] >= 0 else change
        wells = row[starts]
        keep = wells >= 0
        out.append((wells[keep], starts[keep]))
    return out


def transition_matrix(
    labels: Int[ArrayLike, "*B T"], num_wells: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``C[μ, ν]`` of transitions from well μ to the next well ν, over all
    paths, and the row-normalised matrix (rows without transitions are zero)."""
    counts = np.zeros((num_wells, num_wells), np.int64)
    for wells, _ in _entries(labels):
        np.add.at(counts, (wells[:-1], wells[1:]), 1)
    rows = counts.sum(1, keepdims=True)
    return counts, np.where(rows > 0, counts / np.maximum(rows, 1), 0.0)


def sequence_fidelity(labels: Int[ArrayLike, "*B T"], num_wells: int) -> float:
    """The share of transitions that go to the successor, μ → μ + 1 mod P (1 for a
    perfect sequence, about ½ for unordered switching between neighbours on a
    circle); NaN without transitions."""
    counts, _ = transition_matrix(labels, num_wells)
    total = counts.sum()
    forward = sum(counts[m, (m + 1) % num_wells] for m in range(num_wells))
    return float(forward / total) if total else float("nan")


def dwell_times(labels: Int[ArrayLike, "*B T"], dt: float) -> np.ndarray:
    """Times between entering a well and entering the next one (complete dwells
    only: the first, which started before the path, and the last, cut by its end,
    are left out)."""
    out = []
    for _, starts in _entries(labels):
        if starts.size >= 3:
            out.append(np.diff(starts[1:]) * dt)
    return np.concatenate(out) if out else np.zeros(0)


def cycle_period(labels: Int[ArrayLike, "*B T"], dt: float, num_wells: int) -> float:
    """P times the mean dwell time: the time of one pass round an ordered cycle."""
    dwell = dwell_times(labels, dt)
    return float(num_wells * dwell.mean()) if dwell.size else float("nan")


def transition_distance(
    a: Float[ArrayLike, "P P"], b: Float[ArrayLike, "P P"]
) -> float:
    """Total variation between two row-normalised transition matrices: the mean over
    wells of ``½ Σ_ν |a[μ, ν] − b[μ, ν]|``, over the wells that either leaves; a
    well that only one of them leaves counts 1 (complete disagreement). NaN when
    neither has a transition.

    **Raises:** `ValueError` for matrices of different or non-square shapes.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(
            f"transition matrices must be square and of one shape; got {a.shape} and "
            f"{b.shape}"
        )
    left_a, left_b = a.sum(1) > 0, b.sum(1) > 0
    rows = left_a | left_b
    if not rows.any():
        return float("nan")
    tv = np.where(left_a & left_b, 0.5 * np.abs(a - b).sum(1), 1.0)
    return float(np.mean(tv[rows]))


def recall_scores(
    zs: Float[ArrayLike, "B T K"],
    ts: Float[ArrayLike, " T"],
    patterns: Float[ArrayLike, "P K"],
    cued: Int[ArrayLike, " B"],
    *,
    cue_on: float,
    cue_off: float,
    hold: float,
    core_radius: float,
) -> dict:
    """Scores of cued trials: trial b is cued to pattern ``cued[b]`` on
    ``[cue_on, cue_off)``.

    **Returns:** ``recall`` (share of trials in the cued well at `cue_off`, by the
    last well visited), ``persistence`` (share still in it at ``cue_off + hold``),
    each also per cued pattern (``recall_per_pattern``, ``persistence_per_pattern``,
    in the order of the patterns cued), ``latency`` (mean time from `cue_on` to the
    first entry into the cued well, over trials that entered it) and ``entered``
    (the share that did).
    """
    ts = np.asarray(ts, np.float64)
    cued = np.asarray(cued)
    marks = milestones(well_labels(zs, patterns, core_radius))
    at = np.searchsorted(ts, [cue_off, cue_off + hold])
    at = np.minimum(at, ts.size - 1)
    recalled, kept = marks[:, at[0]] == cued, marks[:, at[1]] == cued
    patterns_cued = np.unique(cued)
    on = np.searchsorted(ts, cue_on)
    inside = marks[:, on:] == cued[:, None]
    entered = inside.any(1)
    first = np.argmax(inside, axis=1)
    latency = ts[on + first[entered]] - ts[on] if entered.any() else np.zeros(0)
    return {
        "recall": float(recalled.mean()),
        "persistence": float(kept.mean()),
        "recall_per_pattern": [
            float(recalled[cued == m].mean()) for m in patterns_cued
        ],
        "persistence_per_pattern": [
            float(kept[cued == m].mean()) for m in patterns_cued
        ],
        "latency": float(latency.mean()) if latency.size else float("nan"),
        "entered": float(entered.mean()),
    }


def cued_trials(
    model,
    system,
    *,
    key: PRNGKeyArray,
    trials_per_pattern: int,
    onset: float,
    duration: float,
    hold: float,
    amplitude: float = 1.0,
    dt: float,
    save_every: int = 1,
    solver=None,
) -> dict:
    """Cued recall, simulated for the network (full state) and its target alike.

    Trial b starts at pattern ``start[b]``, drawn uniformly among the wells other
    than its cue ``cued[b]`` (each pattern cued `trials_per_pattern` times), so that
    every recall is a switch; the cue ``amplitude · e_μ`` is on over
    ``[onset, onset + duration)`` and the trial ends `hold` after it.

    **Returns:** NumPy arrays ``cue_ts`` (T,), ``cue_network`` and ``cue_target``
    (B, T, K), ``cued`` and ``cue_start`` (B,), ready for `recall_scores`.
    """
    num = system.input_dim
    if num < 1 or int(trials_per_pattern) < 1:
        raise ValueError(
            "cued trials need a target with inputs and `trials_per_pattern` ≥ 1; got "
            f"{num} inputs and {trials_per_pattern}"
        )
    start_key, net_key, target_key = jr.split(key, 3)
    cued = np.repeat(np.arange(num), trials_per_pattern)
    if num > 1:
        shift = np.asarray(jr.randint(start_key, cued.shape, 1, num))
        start = (cued + shift) % num
    else:
        start = cued
    cues = np.eye(num) * amplitude
    schedule = inputs.stack(
        [inputs.pulse(onset, onset + duration, cues[m]) for m in cued]
    )
    run = {
        "z0": jnp.asarray(system.patterns)[start],
        "t1": onset + duration + hold,
        "dt": dt,
        "save_every": save_every,
        "args": schedule,
        "solver": solver,
    }
    ts, z_net = simulate_rnn(model, key=net_key, **run)
    _, z_tgt = simulate_sde(system, key=target_key, **run)
    return {
        "cue_ts": np.asarray(ts),
        "cue_network": np.asarray(z_net),
        "cue_target": np.asarray(z_tgt),
        "cued": cued,
        "cue_start": start,
    }


# --- the classical Hopfield baseline -------------------------------------------------


class Hopfield(eqx.Module):
    """A classical Hopfield network of N rate neurons as the baseline of the memory
    tasks: symmetric Hebbian weights ``W = (1/N) Σ_μ η_μ η_μᵀ`` (zero diagonal) for
    random binary patterns η_μ ∈ {±1}^N, dynamics ``τ dx = (−x + W tanh(β x)) dt +
    σ √τ dB``, and the same latent readout as the tasks: the overlaps
    ``m_μ = η_μ · tanh(β x)/N`` mapped to ``z = Σ_μ m_μ ξ_μ``, so the well scores of
    this module apply unchanged. With symmetric W the noiseless flow has a Lyapunov
    function: it settles into a pattern and cannot cycle.

    Build one with `Hopfield.init`.
    """

    W: Float[Array, "N N"]
    eta: Float[Array, "P N"]
    latent_patterns: Float[Array, "P K"]
    tau: float = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    noise: float = eqx.field(static=True)

    @classmethod
    def init(
        cls,
        *,
        key: PRNGKeyArray,
        patterns: Float[ArrayLike, "P K"],
        num_neurons: int,
        tau: float = 0.05,
        beta: float = 4.0,
        noise: float = 0.1,
    ) -> Hopfield:
        """Random binary neural patterns, one a latent pattern (row of `patterns`)."""
        xi = jnp.asarray(patterns, float)
        eta = jnp.where(jr.bernoulli(key, 0.5, (xi.shape[0], num_neurons)), 1.0, -1.0)
        W = eta.T @ eta / num_neurons
        W = W - jnp.diag(jnp.diag(W))
        return cls(W, eta, xi, float(tau), float(beta), float(noise))

    def rates(self, x: Float[Array, " N"]) -> Float[Array, " N"]:
        return jnp.tanh(self.beta * x)

    def vector_field(self, t, x, args):
        return (-x + self.W @ self.rates(x)) / self.tau

    def noise_matrix(self, t, x, args):
        # σ √τ dB per neuron, scaled by 1/τ with the drift: the rate noise is σ/√τ.
        return lx.DiagonalLinearOperator(
            jnp.full(x.shape, self.noise / jnp.sqrt(self.tau))
        )

    def readout(self, x: Float[Array, "*B N"]) -> Float[Array, "*B K"]:
        """z = Σ_μ m_μ ξ_μ with the overlaps m_μ = η_μ · tanh(β x)/N."""
        overlaps = self.rates(x) @ self.eta.T / self.eta.shape[1]
        return overlaps @ self.latent_patterns

    def simulate(
        self,
        *,
        key: PRNGKeyArray,
        start: int,
        num_paths: int,
        t1: float,
        dt: float,
        save_every: int = 1,
    ) -> tuple[Float[Array, " T"], Float[Array, "B T K"]]:
        """Noisy paths from neural pattern `start`; returns the latent readout."""
        ts = save_times(0.0, t1, dt, save_every)
        x0 = jnp.broadcast_to(self.eta[start], (num_paths, self.eta.shape[1]))
        xs = solve_paths(
            self.vector_field,
            self.noise_matrix,
            x0,
            key=key,
            noise_dim=self.eta.shape[1],
            ts=ts,
            dt=dt,
        )
        return ts, self.readout(xs)
