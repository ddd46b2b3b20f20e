"""Dynamical-systems reconstruction statistics: network vs target trajectories.

`metrics.evaluate` compares the simulated latent paths of the network (a) with those of
the target (b), both of shape ``(B, T, K)`` saved every ``dt``:

- `state_space_divergence`: D_KL(p_b ‖ p_a) = Σ_cells p_b log(p_b / p_a) between the
  occupation histograms of the two samples on one grid spanning the target's range
  (Koppe et al. 2019, PLoS Comput. Biol. 15:e1007263; Brenner et al. 2022, ICML). For
  K > 3 a full grid is too sparse and the sum of the K one-dimensional marginal
  divergences is used instead.
- `power_spectrum_hellinger`: the mean over coordinates of the Hellinger distance
  H(p, q) = √(1 − Σ_f √(p(f) q(f))) between normalised power spectra: Hann-tapered
  periodograms averaged over paths, smoothed by a Gaussian kernel (Mikhaeil et al.
  2022, NeurIPS, "On the difficulty of learning chaotic dynamics with RNNs").
- `autocorrelation_error`: ‖ρ_a − ρ_b‖² / ‖ρ_b‖² over lags 0 … `max_lag` and all
  coordinates, ρ the autocorrelation function; a squared ratio like DESIGN §1's
  headline errors.
- `correlation_dimension`: the Grassberger–Procaccia estimate (Grassberger &
  Procaccia 1983, Physica D 9:189), the slope of log C(r) vs log r, where the
  correlation sum C(r) is the fraction of point pairs closer than r, pairs close in
  time excluded (Theiler 1986, Phys. Rev. A 34:2427).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float


def _flat(z, name: str) -> np.ndarray:
    z = np.asarray(z, np.float64)
    if z.ndim < 2:
        raise ValueError(f"`{name}` must have shape (..., K); got {z.shape}")
    return z.reshape(-1, z.shape[-1])


def _paths(z, name: str) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3:
        raise ValueError(f"`{name}` must have shape (B, T, K) or (T, K); got {z.shape}")
    return z


def _same_shape(a, b) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            "`z_a` and `z_b` must have the same path length and dimension (T, K); "
            f"got {a.shape} and {b.shape}"
        )


# --- State space.


def state_space_divergence(
    z_a: Float[ArrayLike, "... K"],
    z_b: Float[ArrayLike, "... K"],
    *,
    bins: int = 30,
    smoothing: float = 1e-6,
) -> float:
    """D_KL(p_b ‖ p_a) between the occupation histograms of two samples, in nats.

    Both samples are binned on one grid of `bins` cells per coordinate spanning the
    range of `z_b` (the reference). Points of `z_a` outside it count in its total but
    in no cell, so mass the network puts where the target never goes raises the
    divergence. Then `smoothing` is added to every cell's probability and both
    histograms are renormalised, so p_a > 0 wherever p_b > 0: a cell the target
    visits and the network misses contributes at most p_b log(p_b / smoothing).

    For K ≤ 3 the grid is the full product grid (bins^K cells). For K > 3 the result
    is the sum of the K one-dimensional divergences of the marginals: exact when the
    coordinates are independent, blind to how they depend on each other otherwise.

    **Arguments:**

    - `z_a`, `z_b`: samples ``(..., K)`` (paths are flattened); `z_b` is the target.
    - `bins`: cells per coordinate.
    - `smoothing`: probability added to each cell before renormalising.

    **Returns:** the divergence, ≥ 0, and exactly 0 for identical samples.
    """
    a, b = _flat(z_a, "z_a"), _flat(z_b, "z_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"`z_a` and `z_b` must have the same K; got {a.shape[1]} and {b.shape[1]}"
        )
    if int(bins) < 1:
        raise ValueError(f"`bins` must be ≥ 1; got {bins}")
    lo, hi = b.min(0), b.max(0)
    # A coordinate the target holds constant still gets a cell of positive width.
    hi = np.where(hi > lo, hi, lo + 1.0)
    if a.shape[1] > 3:
        return float(
            sum(
                _kl_histogram(a[:, [k]], b[:, [k]], bins, lo[[k]], hi[[k]], smoothing)
                for k in range(a.shape[1])
            )
        )
    return _kl_histogram(a, b, bins, lo, hi, smoothing)


def _kl_histogram(a, b, bins, lo, hi, smoothing) -> float:
    grid = [(lo_k, hi_k) for lo_k, hi_k in zip(lo, hi, strict=True)]
    p_a = np.histogramdd(a, bins=bins, range=grid)[0].ravel() / len(a)
    p_b = np.histogramdd(b, bins=bins, range=grid)[0].ravel() / len(b)
    # Divide by 1 + smoothing·cells, not by the sum: the mass of `a` outside the
    # grid stays missing, as if in an extra cell where p_b = 0.
    p_a = (p_a + smoothing) / (1.0 + smoothing * p_a.size)
    p_b = (p_b + smoothing) / (1.0 + smoothing * p_b.size)
    return float(np.sum(p_b * np.log(p_b / p_a)))


# --- Power spectra.


def power_spectrum(
    z: Float[ArrayLike, "B T K"], dt: float, *, smoothing: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised, smoothed power spectrum of each coordinate.

    Each coordinate loses its mean over the whole sample (not per path, which would
    empty the lowest frequencies of a slow process), every path is tapered with a Hann
    window, and |FFT|² is averaged over paths. The result is convolved with a Gaussian
    of standard deviation `smoothing` frequency bins (a bin is 1/(T dt)), the ends
    mirrored because the spectrum of a real signal is even about 0 and the Nyquist
    frequency, and normalised to sum 1 over the frequencies 0 … 1/(2 dt).

    **Arguments:**

    - `z`: paths ``(B, T, K)`` (or one path ``(T, K)``) saved every `dt`.
    - `smoothing`: kernel standard deviation in frequency bins; 0 leaves it raw.

    **Returns:** ``(freqs, spectra)``: frequencies ``(F,)`` in cycles per time unit
    and spectra ``(F, K)``, each column summing to 1 (a constant coordinate has no
    spectrum and gives a column of zeros).
    """
    z = _paths(z, "z")
    x = jnp.asarray(z, jnp.float32)
    x = x - jnp.mean(x, axis=(0, 1))
    t = x.shape[1]
    window = jnp.sin(jnp.pi * jnp.arange(t) / t) ** 2
    power = jnp.mean(jnp.abs(jnp.fft.rfft(x * window[:, None], axis=1)) ** 2, axis=0)
    power = np.asarray(power, np.float64)
    if smoothing > 0:
        power = _gaussian_smooth(power, smoothing)
    total = power.sum(0)
    spectra = power / np.where(total > 0, total, 1.0)
    return np.fft.rfftfreq(t, dt), spectra


def _gaussian_smooth(power: np.ndarray, sigma: float) -> np.ndarray:
    # Four sigma each side, but no wider than the spectrum can be reflected.
    half = min(max(1, int(math.ceil(4 * sigma))), power.shape[0] - 1)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    # Reflect without repeating the edge bin: S(-f) = S(f) about 0 and about Nyquist.
    padded = np.pad(power, ((half, half), (0, 0)), mode="reflect")
    return np.stack(
        [
            np.convolve(padded[:, k], kernel, mode="valid")
            for k in range(power.shape[1])
        ],
        axis=1,
    )


def hellinger(p: Float[ArrayLike, "F K"], q: Float[ArrayLike, "F K"]) -> np.ndarray:
    """Hellinger distance between the columns of two normalised spectra.

    Computed as √(½ Σ_f (√p − √q)²), equal to √(1 − Σ_f √(p q)) for normalised
    columns but exactly 0 for equal ones (the second form leaves √ε ≈ 1e-8).
    """
    diff = np.sqrt(np.asarray(p, np.float64)) - np.sqrt(np.asarray(q, np.float64))
    return np.sqrt(0.5 * np.sum(diff**2, axis=0))


def power_spectrum_hellinger(
    z_a: Float[ArrayLike, "B T K"],
    z_b: Float[ArrayLike, "B T K"],
    dt: float,
    *,
    smoothing: float = 2.0,
) -> float:
    """Mean over coordinates of the Hellinger distance between power spectra.

    **Arguments:**

    - `z_a`, `z_b`: paths ``(B, T, K)`` saved every `dt`; B may differ, T and K not.
    - `smoothing`: Gaussian kernel standard deviation in frequency bins, see
      `power_spectrum`.

    **Returns:** a number in [0, 1]: 0 for equal spectra, 1 for disjoint ones.
    """
    a, b = _paths(z_a, "z_a"), _paths(z_b, "z_b")
    _same_shape(a, b)
    _, p = power_spectrum(a, dt, smoothing=smoothing)
    _, q = power_spectrum(b, dt, smoothing=smoothing)
    return float(np.mean(hellinger(p, q)))


# --- Autocorrelation.


def autocorrelation(
    z: Float[ArrayLike, "B T K"], dt: float, *, max_lag: float
) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation function ρ(τ) = C(τ) / C(0) of each coordinate.

    C(τ) is the mean of (z_t − m)(z_{t+τ} − m) over all pairs of saved points τ
    apart within a path (the unbiased, pair-counting estimator), m the mean of the
    whole sample; the sums come from a zero-padded FFT.

    **Arguments:**

    - `z`: paths ``(B, T, K)`` (or one path ``(T, K)``) saved every `dt`.
    - `max_lag`: the largest lag, in time units; rounded to whole steps.

    **Returns:** ``(lags, rho)``: lags ``(L + 1,)`` in time units and ρ ``(L + 1, K)``
    with ρ(0) = 1.

    **Raises:** `ValueError` when `max_lag` is not between one step and the path.
    """
    z = _paths(z, "z")
    t = z.shape[1]
    num_lags = int(round(max_lag / dt))
    if not 1 <= num_lags < t:
        raise ValueError(
            f"`max_lag` must be between dt ({dt}) and the path length "
            f"({(t - 1) * dt}); got {max_lag}"
        )
    x = jnp.asarray(z, jnp.float32)
    x = x - jnp.mean(x, axis=(0, 1))
    # Padding to 2T makes the circular correlation of the FFT a linear one.
    spec = jnp.abs(jnp.fft.rfft(x, n=2 * t, axis=1)) ** 2
    sums = jnp.sum(jnp.fft.irfft(spec, n=2 * t, axis=1)[:, : num_lags + 1], axis=0)
    sums = np.asarray(sums, np.float64)
    cov = sums / (z.shape[0] * (t - np.arange(num_lags + 1)))[:, None]
    rho = cov / np.where(cov[0] > 0, cov[0], 1.0)
    return dt * np.arange(num_lags + 1), rho


def autocorrelation_error(
    z_a: Float[ArrayLike, "B T K"],
    z_b: Float[ArrayLike, "B T K"],
    dt: float,
    *,
    max_lag: float,
) -> float:
    """‖ρ_a − ρ_b‖² / ‖ρ_b‖², summed over lags 0 … `max_lag` and coordinates.

    **Arguments:**

    - `z_a`, `z_b`: paths ``(B, T, K)`` saved every `dt`; `z_b` is the target.
    - `max_lag`: the largest lag, in time units, see `autocorrelation`.

    **Returns:** the squared relative error (0 for identical samples).
    """
    a, b = _paths(z_a, "z_a"), _paths(z_b, "z_b")
    _same_shape(a, b)
    _, rho_a = autocorrelation(a, dt, max_lag=max_lag)
    _, rho_b = autocorrelation(b, dt, max_lag=max_lag)
    return float(np.sum((rho_a - rho_b) ** 2) / np.sum(rho_b**2))


# --- Correlation dimension.


@functools.partial(jax.jit, static_argnames=("chunk", "num_edges"))
def _pair_histogram(points, path, step, log_edges, theiler, chunk, num_edges):
    """Counts of log pair distances between `log_edges` over pairs i < j that are
    not within `theiler` steps of each other on the same path."""
    m = points.shape[0]
    num_chunks = -(-m // chunk)
    pad = num_chunks * chunk - m
    rows = jnp.pad(points, ((0, pad), (0, 0)))
    row_path = jnp.pad(path, (0, pad))
    row_step = jnp.pad(step, (0, pad))
    j = jnp.arange(m)

    def body(counts, c):
        start = c * chunk
        i = start + jnp.arange(chunk)
        r = jax.lax.dynamic_slice_in_dim(rows, start, chunk)
        rp = jax.lax.dynamic_slice_in_dim(row_path, start, chunk)
        rs = jax.lax.dynamic_slice_in_dim(row_step, start, chunk)
        d2 = jnp.sum((r[:, None, :] - points[None, :, :]) ** 2, axis=-1)
        close_in_time = (rp[:, None] == path[None, :]) & (
            jnp.abs(rs[:, None] - step[None, :]) <= theiler
        )
        valid = (j[None, :] > i[:, None]) & (i[:, None] < m) & ~close_in_time
        # log d = log(d²)/2; d = 0 goes to -inf, below every edge.
        idx = jnp.searchsorted(log_edges, 0.5 * jnp.log(d2))
        counts = counts + jnp.bincount(
            idx.ravel(), weights=valid.ravel().astype(jnp.int32), length=num_edges + 1
        )
        return counts, None

    counts = jnp.zeros(num_edges + 1, jnp.int32)
    counts, _ = jax.lax.scan(body, counts, jnp.arange(num_chunks))
    return counts


def correlation_sum(
    z: Float[ArrayLike, "*B T K"],
    *,
    num_points: int = 2000,
    theiler: int = 10,
    per_decade: int = 20,
    decades: float = 5.0,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Grassberger–Procaccia correlation sum C(r) on log-spaced radii.

    `num_points` points evenly spaced along the flattened paths (all of them when
    fewer) are compared pairwise, `chunk` rows at a time, and pairs on the same path
    at most `theiler` saved steps apart are left out (Theiler window). The radii run
    from the diameter of the sample's bounding box down `decades` decades.

    **Returns:** ``(r, C, num_pairs)``: radii ``(R,)``, C(r) = fraction of the
    counted pairs closer than r, and how many pairs were counted.
    """
    z = np.asarray(z, np.float32)
    if z.ndim == 2:
        z = z[None]
    if z.ndim != 3:
        raise ValueError(f"`z` must have shape (B, T, K) or (T, K); got {z.shape}")
    num_paths, t, _ = z.shape
    total = num_paths * t
    idx = np.unique(np.linspace(0, total - 1, min(num_points, total)).astype(np.int64))
    points = z.reshape(total, -1)[idx]
    diameter = float(np.linalg.norm(points.max(0) - points.min(0)))
    if not diameter > 0:
        raise ValueError("`z` has no two distinct points: no correlation sum")
    num_edges = int(round(decades * per_decade)) + 1
    log_edges = np.log(diameter) - np.log(10.0) * np.linspace(decades, 0.0, num_edges)
    counts = _pair_histogram(
        jnp.asarray(points),
        jnp.asarray(idx // t, jnp.int32),
        jnp.asarray(idx % t, jnp.int32),
        jnp.asarray(log_edges, jnp.float32),
        int(theiler),
        min(int(chunk), len(points)),
        num_edges,
    )
    # counts[e] holds log d in (log_edges[e-1], log_edges[e]]; the last is the rest.
    below = np.cumsum(np.asarray(counts, np.int64))[:num_edges]
    num_pairs = int(np.asarray(counts, np.int64).sum())
    return np.exp(log_edges), below / max(num_pairs, 1), num_pairs


def correlation_dimension(
    z: Float[ArrayLike, "*B T K"],
    *,
    num_points: int = 2000,
    theiler: int = 10,
    min_pairs: int = 3000,
    max_fraction: float = 0.1,
    window: float = 1.0,
    per_decade: int = 20,
) -> float:
    """Correlation dimension ν, the slope of log C(r) against log r.

    The scaling range is chosen automatically: among radii where at least
    `min_pairs` pairs are closer than r (fewer leave C with counting noise of a few
    per cent and more) and C(r) ≤
    `max_fraction` (above that the sample's finite size bends the curve), every
    window `window` decades wide is fitted by least squares, and the slope of the
    window with the smallest RMS residual (the straightest stretch) is returned. When
    the usable radii span less than `window`, all of them are fitted.

    **Arguments:**

    - `z`: paths ``(B, T, K)`` or points ``(T, K)``; see `correlation_sum` for
      `num_points` (subsample) and `theiler` (in saved steps).
    - `min_pairs`, `max_fraction`, `window`: the scaling-range rule above.
    - `per_decade`: radii per decade of r.

    **Returns:** ν; NaN when fewer than three radii are usable.
    """
    r, c, num_pairs = correlation_sum(
        z, num_points=num_points, theiler=theiler, per_decade=per_decade
    )
    usable = (c * num_pairs >= min_pairs) & (c <= max_fraction)
    x, y = np.log10(r[usable]), np.log10(c[usable])
    if len(x) < 3:
        return float("nan")
    width = max(3, int(round(window * per_decade)) + 1)
    if len(x) <= width:
        return float(np.polyfit(x, y, 1)[0])
    best = (np.inf, np.nan)
    for start in range(len(x) - width + 1):
        xs, ys = x[start : start + width], y[start : start + width]
        coef, res, *_ = np.polyfit(xs, ys, 1, full=True)
        rms = math.sqrt(float(res[0]) / width) if len(res) else 0.0
        best = min(best, (rms, float(coef[0])))
    return best[1]


def reconstruction_statistics(
    z_network: Float[ArrayLike, "B T K"],
    z_target: Float[ArrayLike, "B T K"],
    dt: float,
    *,
    bins: int = 30,
    smoothing: float = 2.0,
    max_lag: float | None = None,
    num_points: int = 2000,
) -> dict:
    """The four statistics above, network vs target, as `metrics.json` entries.

    **Arguments:**

    - `z_network`, `z_target`: paths ``(B, T, K)`` saved every `dt`.
    - `bins`: see `state_space_divergence` (its default smoothing).
    - `smoothing`: see `power_spectrum_hellinger`.
    - `max_lag`: see `autocorrelation_error`; a tenth of the saved path duration
      (at least one step) when None.
    - `num_points`: the subsample of each run for `correlation_dimension`.

    **Returns:** ``state_space_divergence``, ``power_spectrum_hellinger`` and
    ``autocorrelation_error`` (numbers) and ``correlation_dimension`` (``network``,
    ``target``).
    """
    a, b = _paths(z_network, "z_network"), _paths(z_target, "z_target")
    # A tenth of the path, but at least one step so that short paths still work.
    lag = max(1, round(0.1 * (b.shape[1] - 1))) * dt if max_lag is None else max_lag
    return {
        "state_space_divergence": state_space_divergence(a, b, bins=bins),
        "power_spectrum_hellinger": power_spectrum_hellinger(
            a, b, dt, smoothing=smoothing
        ),
        "autocorrelation_error": autocorrelation_error(a, b, dt, max_lag=lag),
        "correlation_dimension": {
            "network": correlation_dimension(a, num_points=num_points),
            "target": correlation_dimension(b, num_points=num_points),
        },
    }
