"""Figures of the memory tasks (`ddm_jax.memory`), drawn like `ddm_jax.plots`.

- `cued_trials`: example cued trials, one per pattern: the latent paths over the wells
  and the well each is in over time, with the cue as a bar.
- `transition_matrices`: network and target transition matrices side by side.
- `dwell_times`: histograms of the dwell times in a well, network against target.

Each takes array-likes and an output `path`, writes one PNG atomically and returns
its `Path`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float, Int
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from . import memory
from .plots import NETWORK_COLOUR, TARGET_COLOUR, figure_axes, save_figure


def cued_trials(
    ts: Float[ArrayLike, " T"],
    z_network: Float[ArrayLike, "B T K"],
    z_target: Float[ArrayLike, "B T K"],
    cued: Int[ArrayLike, " B"],
    patterns: Float[ArrayLike, "P K"],
    path: str | os.PathLike,
    *,
    core_radius: float,
    onset: float,
    duration: float,
) -> Path:
    """The first trial cued to each pattern (at most four): on the left the network's
    and the target's latent paths (first two coordinates) over the wells, drawn as
    discs of `core_radius`; on the right, one row per trial, the last well visited
    against time, the cue ``[onset, onset + duration)`` as a shaded bar."""
    ts, cued = np.asarray(ts, float), np.asarray(cued)
    z_net, z_tgt = np.asarray(z_network, float), np.asarray(z_target, float)
    xi = np.asarray(patterns, float)
    shown = [int(np.flatnonzero(cued == m)[0]) for m in np.unique(cued)][:4]
    fig = Figure(figsize=(10, 1.6 * max(len(shown), 3)), layout="constrained")
    rows = [f"trial{i}" for i in range(len(shown))]
    axes = fig.subplot_mosaic([["plane", row] for row in rows])
    plane = axes["plane"]
    if xi.shape[1] >= 2:
        for mu, centre in enumerate(xi):
            plane.add_patch(Circle(centre[:2], core_radius, color="0.85", zorder=0))
            plane.annotate(str(mu), centre[:2], ha="center", va="center")
        coords = lambda path: path[:, :2].T  # noqa: E731
        plane.set(xlabel="z1", ylabel="z2", aspect="equal")
    else:  # K = 1: z against time, the wells as bands
        for centre in xi[:, 0]:
            plane.axhspan(centre - core_radius, centre + core_radius, color="0.85")
        coords = lambda path: (ts, path[:, 0])  # noqa: E731
        plane.set(xlabel="time", ylabel="z1")
    for b in shown:
        for z, colour in ((z_tgt, TARGET_COLOUR), (z_net, NETWORK_COLOUR)):
            plane.plot(*coords(z[b]), color=colour, lw=0.6, alpha=0.8)
    plane.set_title("cued trials")
    for row, b in zip(rows, shown, strict=True):
        ax = axes[row]
        ax.axvspan(onset, onset + duration, color="0.85", zorder=0)
        ax.text(
            onset + duration / 2,
            0.95,
            f"cue {cued[b]}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
        )
        for z, colour in ((z_tgt, TARGET_COLOUR), (z_net, NETWORK_COLOUR)):
            wells = memory.milestones(memory.well_labels(z[b], xi, core_radius))
            ax.step(ts, wells, where="post", color=colour)
        ax.set(ylabel="well", ylim=(-1.5, xi.shape[0] - 0.5))
        ax.set_yticks(range(xi.shape[0]))
    axes[rows[-1]].set_xlabel("time")
    plane.legend(
        [Line2D([], [], color=c) for c in (NETWORK_COLOUR, TARGET_COLOUR)],
        ["network", "target"],
        loc="lower right",
        fontsize=8,
    )
    return save_figure(fig, path)


def transition_matrices(
    network: Float[ArrayLike, "P P"],
    target: Float[ArrayLike, "P P"],
    path: str | os.PathLike,
) -> Path:
    """The row-normalised transition matrices (from well μ, row, to the next well
    ν, column) of network and target, each entry written in its cell."""
    fig, axes = figure_axes((8, 3.8), 1, 2)
    for ax, matrix, name in zip(
        axes, (network, target), ("network", "target"), strict=True
    ):
        matrix = np.asarray(matrix, float)
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
        left = matrix.sum(1) > 0  # a well never left has no row to show
        for (i, j), value in np.ndenumerate(matrix):
            colour = "white" if value > 0.6 else "black"
            text = f"{value:.2f}" if left[i] else "–"
            ax.text(j, i, text, ha="center", va="center", color=colour)
        ax.set(title=name, xlabel="next well", ylabel="from well")
        ax.set_xticks(range(matrix.shape[1]))
        ax.set_yticks(range(matrix.shape[0]))
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="probability")
    return save_figure(fig, path)


def dwell_times(
    network: Float[ArrayLike, " A"],
    target: Float[ArrayLike, " B"],
    path: str | os.PathLike,
) -> Path:
    """Histograms (densities, shared bins) of the dwell times of network and target,
    each mean as a dashed line."""
    sets = [
        (np.asarray(network, float), NETWORK_COLOUR, "network"),
        (np.asarray(target, float), TARGET_COLOUR, "target"),
    ]
    fig, (ax,) = figure_axes((5, 3.5))
    pooled = np.concatenate([d for d, *_ in sets])
    bins = np.histogram_bin_edges(pooled, 30) if pooled.size else 10
    for dwell, colour, name in sets:
        if dwell.size:
            label = f"{name} ({dwell.size}, mean {dwell.mean():.3g})"
            ax.hist(dwell, bins, density=True, histtype="step", color=colour)
            ax.axvline(dwell.mean(), color=colour, ls="--")
        else:
            label = f"{name} (no complete dwells)"
        ax.plot([], [], color=colour, label=label)
    ax.set(xlabel="dwell time", ylabel="density")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
