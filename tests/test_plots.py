"""Every figure in `ddm_jax.plots` writes one PNG atomically and nothing else."""

from pathlib import Path

import numpy as np
import pytest

from ddm_jax import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The brief for run folders: each figure well under 300 kB.
MAX_BYTES = 300_000


def _assert_only_png(folder: Path, written: Path) -> None:
    assert isinstance(written, Path)
    assert sorted(folder.iterdir()) == [written]
    data = written.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < MAX_BYTES


@pytest.mark.parametrize("num_dims", [1, 2, 3, 4])
def test_attractor_writes_one_png(tmp_path, num_dims):
    rng = np.random.default_rng(0)
    z_net = rng.normal(size=(8, 400, num_dims))
    z_tgt = rng.normal(size=(8, 400, num_dims))
    path = tmp_path / "attractor.png"
    written = plots.attractor(z_net, z_tgt, path, max_points=2000)
    assert written == path
    _assert_only_png(tmp_path, written)


def test_attractor_accepts_labels_and_str_path(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 50, 2))
    written = plots.attractor(z, z + 0.1, str(tmp_path / "a.png"), labels=["x", "v"])
    _assert_only_png(tmp_path, written)


def test_attractor_rejects_wrong_number_of_labels(tmp_path):
    z = np.random.default_rng(0).normal(size=(2, 10, 2))
    with pytest.raises(ValueError, match="labels"):
        plots.attractor(z, z, tmp_path / "a.png", labels=["x"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("max_time", [None, 2.0])
def test_timeseries_writes_one_png(tmp_path, max_time):
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 5.0, 200)
    z_net, z_tgt = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    written = plots.timeseries(t, z_net, z_tgt, tmp_path / "ts.png", max_time=max_time)
    _assert_only_png(tmp_path, written)


def test_loss_curve_writes_one_png(tmp_path):
    rng = np.random.default_rng(0)
    history = {
        "step": list(range(50)),
        "loss": rng.uniform(0.1, 1.0, size=50),
        # Non-positive values cannot sit on a log axis and are skipped.
        "val_loss": np.concatenate([np.zeros(5), rng.uniform(0.1, 1.0, size=45)]),
        "note": ["x"] * 50,
    }
    written = plots.loss_curve(history, tmp_path / "loss.png")
    _assert_only_png(tmp_path, written)


@pytest.mark.parametrize("history", [{}, {"step": [], "loss": []}])
def test_loss_curve_without_steps_still_writes_png(tmp_path, history):
    written = plots.loss_curve(history, tmp_path / "loss.png")
    _assert_only_png(tmp_path, written)


@pytest.mark.parametrize("num_dims", [1, 2, 3])
def test_drift_error_writes_one_png(tmp_path, num_dims):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300, num_dims))
    f_tgt = -points
    f_net = f_tgt + 0.1 * rng.normal(size=points.shape)
    # An exact point has zero error; it must still be drawable on a log scale.
    f_net[0] = f_tgt[0]
    written = plots.drift_error(points, f_net, f_tgt, tmp_path / "drift.png")
    _assert_only_png(tmp_path, written)


def test_raster_writes_one_png(tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 10.0, 300)
    rates = np.tanh(rng.normal(size=(300, 150)))
    written = plots.raster(t, rates, tmp_path / "raster.png", max_neurons=100)
    _assert_only_png(tmp_path, written)


@pytest.mark.parametrize("tau", [None, 0.1])
def test_eigenvalues_writes_one_png(tmp_path, tau):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(60, 60)) / np.sqrt(60)
    written = plots.eigenvalues(np.linalg.eigvals(W), tmp_path / "eigs.png", tau=tau)
    _assert_only_png(tmp_path, written)


def test_failed_save_raises_and_leaves_no_temporary_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "missing" / "eigs.png"
    with pytest.raises(OSError):
        plots.eigenvalues(rng.normal(size=10), path)
    assert list(tmp_path.iterdir()) == []


def test_error_while_rendering_removes_temporary_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(plots.Figure, "savefig", fail)
    with pytest.raises(RuntimeError, match="render failed"):
        plots.eigenvalues(np.ones(3), tmp_path / "eigs.png")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced(tmp_path):
    path = tmp_path / "eigs.png"
    path.write_bytes(b"old")
    written = plots.eigenvalues(np.array([0.5 + 0.5j, 0.5 - 0.5j]), path)
    _assert_only_png(tmp_path, written)


def test_attractor_png_stays_small_at_max_points(tmp_path):
    # A dense cloud of 20000 points per set is the worst case the size limit allows.
    rng = np.random.default_rng(0)
    z = np.cumsum(0.1 * rng.normal(size=(20, 3000, 3)), axis=1)
    written = plots.attractor(z, z + 0.5 * rng.normal(size=z.shape), tmp_path / "a.png")
    _assert_only_png(tmp_path, written)
