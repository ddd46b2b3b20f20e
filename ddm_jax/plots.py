"""Figures for a run folder, drawn with matplotlib's object API.

- `attractor`: network and target trajectories z(t), pairwise (a histogram if K = 1).
- `timeseries`: one trajectory of each, one row per latent dimension.
- `loss_curve`: the training history against gradient step, on a log axis.
- `drift_error`: relative drift error ``|f_net − f_target|² / mean |f_target|²``.
- `raster`: firing rates φ(x) of the first neurons over time.
- `eigenvalues`: the spectrum of the connectivity W in the complex plane.

Each takes array-likes and an output `path`, writes one PNG atomically and returns its
`Path`. Figures are `Figure` objects rendered by the Agg canvas, never pyplot, so no
global backend state is touched at import or at call time.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from jaxtyping import ArrayLike, Float, Shaped
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 110
NETWORK_COLOUR = "tab:blue"
TARGET_COLOUR = "tab:orange"


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` to `path` (whose folder must exist) as a PNG, atomically.

    On any error the temporary file is removed, `path` is untouched and the error is
    re-raised.
    """
    path = Path(path)
    FigureCanvasAgg(fig)
    # Same folder, so `os.replace` is an atomic rename on one file system and readers
    # never see a half-written PNG.
    handle = tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False)
    try:
        with handle:
            fig.savefig(handle, format="png", dpi=DPI)
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes files 0600.
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def figure_axes(figsize: tuple[float, float], rows: int = 1, cols: int = 1, **kwargs):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs).reshape(-1)


def _columns(z: ArrayLike) -> np.ndarray:
    """A (T,) or (T, K) array as (T, K)."""
    z = np.asarray(z, dtype=float)
    return z[:, None] if z.ndim == 1 else z


def _thin(z: np.ndarray, max_points: int) -> np.ndarray:
    """(B, T, K) trajectories as at most `max_points` rows of K, strided in time."""
    num_paths, num_times, num_dims = z.shape
    stride = max(1, math.ceil(num_paths * num_times / max_points))
    return z[:max_points, ::stride].reshape(-1, num_dims)[:max_points]


def attractor(
    z_network: Float[ArrayLike, "B T K"],
    z_target: Float[ArrayLike, "B T K"],
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    max_points: int = 20000,
) -> Path:
    """Network and target trajectories overlaid, one panel per pair of latents.

    **Arguments:**

    - `z_network`, `z_target`: latent trajectories of shape ``(B, T, K)``.
    - `path`: output PNG.
    - `labels`: K axis names; ``z1, z2, …`` by default.
    - `max_points`: each set is thinned (strided in time) to at most this many points.

    **Returns:** `path`. For K = 1 a density histogram of both sets; for K ≥ 2 one
    panel per pair i < j, the first three pairs only.

    **Raises:** `ValueError` for shapes other than two ``(B, T, K)`` or bad `labels`.
    """
    z_net, z_tgt = np.asarray(z_network, float), np.asarray(z_target, float)
    if z_net.ndim != 3 or z_tgt.ndim != 3 or z_net.shape[-1] != z_tgt.shape[-1]:
        raise ValueError(
            "`z_network` and `z_target` must have shape (B, T, K) with equal K; got "
            f"{z_net.shape} and {z_tgt.shape}"
        )
    num_dims = z_net.shape[-1]
    names = [f"z{k + 1}" for k in range(num_dims)] if labels is None else list(labels)
    if len(names) != num_dims:
        raise ValueError(f"`labels` must have K = {num_dims} entries; got {len(names)}")
    sets = (
        (_thin(z_net, max_points), "network", NETWORK_COLOUR),
        (_thin(z_tgt, max_points), "target", TARGET_COLOUR),
    )

    if num_dims == 1:
        fig, (ax,) = figure_axes((5, 3.5))
        bins = np.histogram_bin_edges(np.concatenate([z[:, 0] for z, *_ in sets]), 60)
        for z, name, colour in sets:
            ax.hist(
                z[:, 0], bins, density=True, histtype="step", color=colour, label=name
            )
        ax.set(xlabel=names[0], ylabel="density")
        ax.legend()
        return save_figure(fig, path)

    # Single-pixel markers, target underneath: anti-aliased discs over 20000 points
    # made PNGs of over 300 kB, while pixels compress to about half that.
    pairs = [(i, j) for i in range(num_dims) for j in range(i + 1, num_dims)][:3]
    fig, axes = figure_axes((4 * len(pairs), 4), 1, len(pairs))
    for ax, (i, j) in zip(axes, pairs, strict=True):
        for z, _, colour in sets[::-1]:
            ax.plot(z[:, i], z[:, j], ",", ls="none", alpha=0.5, color=colour)
        ax.set(xlabel=names[i], ylabel=names[j])
    handles = [Line2D([], [], ls="none", marker="o", color=c) for *_, c in sets]
    axes[0].legend(handles, [name for _, name, _ in sets])
    return save_figure(fig, path)


def timeseries(
    t: Float[ArrayLike, " T"],
    z_network: Float[ArrayLike, "T K"],
    z_target: Float[ArrayLike, "T K"],
    path: str | os.PathLike,
    *,
    max_time: float | None = None,
) -> Path:
    """One network and one target trajectory against time, a row per latent.

    **Arguments:**

    - `t`, `z_network`, `z_target`: times ``(T,)`` and trajectories ``(T, K)``.
    - `path`: output PNG.
    - `max_time`: if given, only times ``t ≤ max_time`` are drawn.

    **Returns:** `path`.

    **Raises:** `ValueError` if the shapes disagree.
    """
    t, z_net, z_tgt = np.asarray(t, float), _columns(z_network), _columns(z_target)
    if z_net.shape != z_tgt.shape or z_net.ndim != 2 or len(z_net) != len(t):
        raise ValueError(
            f"`z_network` and `z_target` must have shape (T = {len(t)}, K); got "
            f"{z_net.shape} and {z_tgt.shape}"
        )
    if max_time is not None:
        keep = t <= max_time
        t, z_net, z_tgt = t[keep], z_net[keep], z_tgt[keep]

    num_dims = z_net.shape[1]
    fig, axes = figure_axes((7, 1.2 + 1.4 * num_dims), num_dims, 1, sharex=True)
    for k, ax in enumerate(axes):
        ax.plot(t, z_net[:, k], lw=0.8, color=NETWORK_COLOUR, label="network")
        ax.plot(t, z_tgt[:, k], lw=0.8, color=TARGET_COLOUR, label="target")
        ax.set_ylabel(f"z{k + 1}")
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("t")
    return save_figure(fig, path)


def loss_curve(history: Mapping[str, ArrayLike], path: str | os.PathLike) -> Path:
    """Training curves against gradient step, on a log y axis.

    **Arguments:**

    - `history`: equal-length sequences; ``"step"`` is the x axis, every other numeric
      entry a curve, drawn where positive and finite.
    - `path`: output PNG.

    **Returns:** `path`. With no or an empty ``"step"`` the figure says that no
    gradient steps were taken (a closed-form solve).
    """
    fig, (ax,) = figure_axes((6, 4))
    steps = np.asarray(history.get("step", []), dtype=float).reshape(-1)
    if steps.size == 0:
        message = "no gradient steps (closed-form solve only)"
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return save_figure(fig, path)

    for name, values in history.items():
        values = np.asarray(values)
        numeric = np.issubdtype(values.dtype, np.number)
        if name == "step" or not numeric or values.shape != steps.shape:
            continue
        values = values.astype(float)
        keep = np.isfinite(values) & (values > 0)
        if keep.any():
            ax.plot(steps[keep], values[keep], lw=1.0, label=name)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="value")
    if ax.lines:
        ax.legend()
    return save_figure(fig, path)


def drift_error(
    points: Float[ArrayLike, "M K"],
    f_network: Float[ArrayLike, "M K"],
    f_target: Float[ArrayLike, "M K"],
    path: str | os.PathLike,
) -> Path:
    """Per-point relative drift error ``|f_net − f_target|² / mean |f_target|²``.

    **Arguments:**

    - `points`, `f_network`, `f_target`: points z and the two drifts there, ``(M, K)``.
    - `path`: output PNG.

    **Returns:** `path`. The points, coloured by log10 error, in their first two
    coordinates; for K = 1, the error against z on a log axis.

    **Raises:** `ValueError` if the shapes disagree.
    """
    z, f_net, f_tgt = _columns(points), _columns(f_network), _columns(f_target)
    if z.ndim != 2 or f_net.shape != z.shape or f_tgt.shape != z.shape:
        raise ValueError(
            "`points`, `f_network` and `f_target` must share one shape (M, K); got "
            f"{z.shape}, {f_net.shape} and {f_tgt.shape}"
        )
    # Guards: a target drift that is zero everywhere would divide by zero, and an
    # exact match would have no logarithm.
    tiny = np.finfo(float).tiny
    scale = max(float(np.mean(np.sum(f_tgt**2, axis=1))), tiny)
    error = np.maximum(np.sum((f_net - f_tgt) ** 2, axis=1) / scale, tiny)

    fig, (ax,) = figure_axes((5.5, 4.5))
    y, ylabel = (error, "relative error") if z.shape[1] == 1 else (z[:, 1], "z2")
    image = ax.scatter(z[:, 0], y, c=np.log10(error), s=6, lw=0, cmap="viridis")
    if z.shape[1] == 1:
        ax.set_yscale("log")
    ax.set(xlabel="z1", ylabel=ylabel, title="drift error")
    fig.colorbar(image, ax=ax, label="log10 relative error")
    return save_figure(fig, path)


def raster(
    t: Float[ArrayLike, " T"],
    rates: Float[ArrayLike, "T N"],
    path: str | os.PathLike,
    *,
    max_neurons: int = 100,
) -> Path:
    """Firing rates φ(x) of the first `max_neurons` neurons as an image over time.

    **Arguments:**

    - `t`, `rates`: times ``(T,)`` and rates ``(T, N)``.
    - `path`: output PNG.
    - `max_neurons`: how many neurons, from the first, to show.

    **Returns:** `path`.

    **Raises:** `ValueError` if the shapes disagree.
    """
    t, rates = np.asarray(t, dtype=float), np.asarray(rates, dtype=float)
    if rates.ndim != 2 or len(rates) != len(t):
        raise ValueError(
            f"`rates` must have shape (T = {len(t)}, N); got {rates.shape}"
        )
    rates = rates[:, :max_neurons]

    fig, (ax,) = figure_axes((7, 4))
    extent = (t[0], t[-1], 0.5, rates.shape[1] + 0.5) if t.size else None
    image = ax.imshow(
        rates.T, aspect="auto", origin="lower", extent=extent, interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, label="rate φ(x)")
    ax.set(xlabel="t", ylabel="neuron")
    return save_figure(fig, path)


def eigenvalues(
    eigs: Shaped[ArrayLike, " N"],
    path: str | os.PathLike,
    *,
    tau: float | None = None,
) -> Path:
    """Eigenvalues λ of the connectivity W in the complex plane.

    **Arguments:**

    - `eigs`: eigenvalues, complex or real, of shape ``(N,)``.
    - `path`: output PNG.
    - `tau`: the time constant; if given, the line Re λ = 1 is drawn, where the
      linearisation τ dx/dt = (−I + W) x loses stability whatever τ is.

    **Returns:** `path`.
    """
    eigs = np.asarray(eigs).astype(complex).reshape(-1)
    fig, (ax,) = figure_axes((4.5, 4.5))
    ax.axhline(0.0, color="0.8", lw=0.5)
    ax.scatter(eigs.real, eigs.imag, s=8, lw=0, color=NETWORK_COLOUR)
    if tau is not None:
        ax.axvline(1.0, color="tab:red", lw=1.0, ls="--", label="Re λ = 1")
        ax.legend(loc="upper left")
    ax.set(xlabel="Re λ", ylabel="Im λ", title="connectivity eigenvalues")
    return save_figure(fig, path)


# --- decompositions (`ddm decompose`) ----------------------------------------------


def _density_background(ax, solution, title: str):
    x, y = solution.axes
    p = np.asarray(solution.density).T  # imshow wants rows = y
    extent = (x[0], x[-1], y[0], y[-1])
    ax.imshow(p, origin="lower", extent=extent, aspect="auto", cmap="Greys")
    ax.set(xlabel="z₁", ylabel="z₂", title=title)
    return x, y


def irreversibility_flows(solution, path: str | os.PathLike, *, title: str) -> Path:
    """Stream lines of the reversible and irreversible drifts over the stationary
    density p (grey), from a K = 2 `fokker_planck.StationarySolution`.

    **Returns:** `path`.
    """
    fig, axes = figure_axes((9.0, 4.2), cols=2)
    for ax, name, label in zip(
        axes,
        ("f_rev", "f_irr"),
        ("reversible f_rev", "irreversible f_irr = J/p"),
        strict=True,
    ):
        x, y = _density_background(ax, solution, f"{title}: {label}")
        field = np.asarray(getattr(solution, name))
        speed = np.hypot(field[..., 0], field[..., 1]).T
        ax.streamplot(
            x,
            y,
            field[..., 0].T,
            field[..., 1].T,
            color=speed,
            cmap="viridis",
            density=1.1,
            linewidth=0.8,
        )
        ax.set(xlim=(x[0], x[-1]), ylim=(y[0], y[-1]))
    return save_figure(fig, path)


def current_loops(solutions: Mapping, path: str | os.PathLike) -> Path:
    """The probability current J over p for each K = 2 solution (network, target),
    line width in proportion to |J|: closed loops are the nonequilibrium cycles.

    **Returns:** `path`.
    """
    fig, axes = figure_axes((4.5 * len(solutions), 4.2), cols=len(solutions))
    axes = np.atleast_1d(axes)
    for ax, (name, solution) in zip(axes, solutions.items(), strict=True):
        x, y = _density_background(ax, solution, f"{name}: current J")
        J = np.asarray(solution.current)
        size = np.hypot(J[..., 0], J[..., 1]).T
        width = 0.3 + 2.5 * size / max(float(size.max()), 1e-300)
        ax.streamplot(
            x, y, J[..., 0].T, J[..., 1].T, color=NETWORK_COLOUR, linewidth=width
        )
        ax.set(xlim=(x[0], x[-1]), ylim=(y[0], y[-1]))
    return save_figure(fig, path)


def connectivity_spectra(conn: Mapping, path: str | os.PathLike) -> Path:
    """Eigenvalues of W (complex plane), of W_S (real) and of W_A (imaginary), from
    `decompose.connectivity`.

    **Returns:** `path`.
    """
    fig, axes = figure_axes((12.0, 3.8), cols=3)
    eig_W = np.asarray(conn["eigenvalues_W"], float).reshape(-1, 2)
    axes[0].scatter(eig_W[:, 0], eig_W[:, 1], s=10, lw=0, color=NETWORK_COLOUR)
    axes[0].set(xlabel="Re λ", ylabel="Im λ", title="W")
    for ax, key, name, axis in (
        (axes[1], "eigenvalues_S", "W_S = (W + Wᵀ)/2: real", "Re λ"),
        (axes[2], "eigenvalues_A", "W_A = (W − Wᵀ)/2: imaginary", "Im λ"),
    ):
        values = np.asarray(conn[key], float)
        ax.scatter(values, np.zeros_like(values), s=12, lw=0, color=NETWORK_COLOUR)
        ax.set(xlabel=axis, yticks=[], title=name)
    fig.suptitle(f"asymmetry ‖W_A‖²/‖W‖² = {conn['asymmetry']:.3f}")
    return save_figure(fig, path)
