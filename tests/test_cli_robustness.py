"""The `ddm` command under hostile conditions: nothing lost, one line, the right code.

Parallel runs into the same default folder, SIGTERM mid-run, configs that would
overflow or recurse, running out of memory, corrupt run-folder files, stale results
after a one-step command, non-finite metrics, and private-noise models on disk. Most
checks replace the steps by stand-ins (`_fake_steps`); one tiny real run with private
noise and the Heun solver (16 neurons, a few short paths, no Lyapunov run) is shared
by the module.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from test_cli import OU, _assert_one_line_naming, _ddm, _fake_steps, _tree, workdir

from ddm_jax import LatentRNN, cli, io, pipeline, systems
from ddm_jax.config import load

__all__ = ["workdir"]  # the fixture, imported from test_cli

TINY = [
    "model.num_neurons=16",
    "data.num_points=256",
    "data.held_out_points=128",
    "simulate.t1=3",
    "simulate.burn_in=1",
    "simulate.num_paths=2",
    "evaluate.lyapunov_paths=0",
]
BIG = "1" + "0" * 400  # a 401-digit integer: beyond float64, and beyond int64


# --- 1. parallel runs, 8. parents of a failed run


def test_default_folder_names_differ_by_microseconds():
    name = cli._default_folder("ou").name
    assert re.fullmatch(r"ou-\d{8}-\d{6}-\d{6}", name), name


def test_runs_given_the_same_default_folder_never_overwrite_each_other(
    workdir, monkeypatch, capsys
):
    # Four runs started in the same microsecond, as `ddm run ... &` four times can.
    _fake_steps(monkeypatch, fail_in_plot=False)
    monkeypatch.setattr(cli, "_default_folder", lambda stem: Path("runs") / "ou-same")
    for seed in range(4):
        code, _, err = _ddm(capsys, "run", OU, f"seed={seed}")
        assert code == 0, err
    names = sorted(p.name for p in (workdir / "runs").iterdir())
    assert names == ["earlier", "ou-same", "ou-same-2", "ou-same-3", "ou-same-4"]
    seeds = {
        (workdir / "runs" / n / "config.yaml").read_text().split("\n")[0]
        for n in names[1:]
    }
    assert seeds == {f"seed: {s}" for s in range(4)}
    assert "run folder: runs/ou-same-4" in err


def test_an_output_filled_by_another_run_meanwhile_is_not_replaced(
    workdir, monkeypatch, capsys
):
    _fake_steps(monkeypatch, fail_in_plot=False)
    out = workdir / "runs" / "mine"
    train = pipeline.train

    def train_while_another_run_finishes(folder, cfg, **kw):
        out.mkdir()
        (out / "model.eqx").write_text("the other run's model")
        return train(folder, cfg, **kw)

    monkeypatch.setattr(pipeline, "train", train_while_another_run_finishes)
    code, _, err = _ddm(capsys, "run", OU, "-o", out)
    assert code == cli.EXIT_BAD_INPUT
    _assert_one_line_naming(err.splitlines(keepends=True)[-1], "runs/mine", "--force")
    assert (out / "model.eqx").read_text() == "the other run's model"
    assert sorted(p.name for p in out.parent.iterdir()) == ["earlier", "mine"]


def test_a_failed_run_removes_the_parent_folders_it_made(workdir, monkeypatch):
    _fake_steps(monkeypatch, fail_in_plot=True)
    before = _tree(workdir)
    with pytest.raises(RuntimeError, match="plot failed"):
        cli.main(["run", OU, "-o", "deep/a/b"])
    assert _tree(workdir) == before


# --- 2. SIGTERM

# A `ddm run` whose train step writes a file and then waits, to be terminated.
SLOW_RUN = """
import sys, time
from ddm_jax import cli, pipeline

def train(folder, cfg, **kw):
    (folder / "model.eqx").write_text("half a run")
    time.sleep(120)

pipeline.train = train
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_mid_run_removes_the_staging_folder(workdir):
    before = _tree(workdir)
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN, "run", OU, "-o", "runs/new"],
        cwd=workdir,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = workdir / "runs" / f".new.partial-{proc.pid}" / "model.eqx"
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never started its train step"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.endswith("ddm: terminated; nothing was written over\n"), err
    assert "Traceback" not in err
    assert _tree(workdir) == before


def test_main_restores_the_sigterm_handler(workdir, capsys):
    previous = signal.getsignal(signal.SIGTERM)
    _ddm(capsys, "run", OU, "model.tau=-1")
    assert signal.getsignal(signal.SIGTERM) is previous


# --- 3., 9. configs that used to end in a traceback

DEEP = "[" * 5000 + "]" * 5000
BAD_CONFIGS = {
    "huge_integer_override": (["model.tau=" + BIG], None, ["`model.tau`", "401-digit"]),
    "huge_integer_for_an_int_field": (
        ["simulate.save_every=" + BIG],
        None,
        ["`simulate.save_every`", "401-digit"],
    ),
    "huge_system_parameter_in_yaml": (
        [],
        f"system:\n  name: ou\n  g: {BIG}\n",
        ["`system.g`", "too large to be a float", "401-digit"],
    ),
    "recursive_alias_in_yaml": (
        [],
        "system: {name: ou, A: &a [*a]}\n",
        ["`system.A`", "refers to itself"],
    ),
    "recursive_alias_override": (
        ["system.A=&a [*a]"],
        None,
        ["`system.A`", "refers to itself"],
    ),
    "deep_nesting_in_yaml": (
        [],
        f"system: {{name: ou}}\nmodel:\n  tau: {DEEP}\n",
        ["nests too deeply", "line 3"],
    ),
    "deep_nesting_override": (["system.A=" + DEEP], None, ["nests too deeply"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_configs_that_overflow_or_recurse_stop_with_one_line(workdir, capsys, case):
    overrides, text, names = BAD_CONFIGS[case]
    config = OU
    if text is not None:
        config = workdir / "bad.yaml"
        config.write_text(text)
    before = _tree(workdir)
    code, _, err = _ddm(capsys, "run", config, *overrides)
    assert code == cli.EXIT_BAD_INPUT
    _assert_one_line_naming(err, *names)
    assert len(err) < 400
    assert _tree(workdir) == before


def test_a_config_that_is_not_a_regular_file_is_named_so(workdir, capsys):
    os.mkfifo(workdir / "fifo.yaml")
    for config in ("/dev/null", "fifo.yaml"):
        code, _, err = _ddm(capsys, "run", config)
        assert code == cli.EXIT_BAD_INPUT
        _assert_one_line_naming(err, config, "is not a regular file")


# --- 4. out of memory


def test_out_of_memory_is_one_line_naming_the_sizes(workdir, monkeypatch, capsys):
    _fake_steps(monkeypatch, fail_in_plot=False)

    def simulate(folder, cfg):
        raise jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4.0e11 bytes."
        )

    monkeypatch.setattr(pipeline, "simulate", simulate)
    before = _tree(workdir)
    code, _, err = _ddm(capsys, "run", OU, "-o", "runs/new/deep")
    assert code == cli.EXIT_FAILED
    last = err.splitlines(keepends=True)[-1]
    _assert_one_line_naming(
        last, "out of memory", "simulate step", "`model.num_neurons`", "`simulate.t1`"
    )
    assert "Traceback" not in err
    assert _tree(workdir) == before


def test_other_runtime_errors_are_not_called_out_of_memory(workdir, monkeypatch):
    _fake_steps(monkeypatch, fail_in_plot=False)

    def simulate(folder, cfg):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(pipeline, "simulate", simulate)
    with pytest.raises(jax.errors.JaxRuntimeError, match="something else"):
        cli.main(["run", OU])


# --- 7. non-finite results


def test_non_finite_metrics_keep_the_folder_and_exit_1(workdir, monkeypatch, capsys):
    _fake_steps(monkeypatch, fail_in_plot=True)  # blown-up runs are not plotted
    monkeypatch.setattr(
        pipeline,
        "evaluate_run",
        lambda folder, cfg: {"drift_rel_error": math.inf, "diffusion_rel_error": 0.0},
    )
    code, _, err = _ddm(capsys, "run", OU, "-o", "runs/new")
    assert code == cli.EXIT_FAILED
    _assert_one_line_naming(
        err.splitlines(keepends=True)[-1], "drift_rel_error", "not finite", "model.tau"
    )
    assert (workdir / "runs" / "new" / "model.eqx").read_text() == "new model"


def test_metrics_json_is_strict_json(tmp_path):
    metrics = {"a": math.nan, "b": [1.0, -math.inf], "c": {"d": math.inf}, "e": 2}
    io.write_json(tmp_path / "m.json", metrics)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}, "e": 2}


# --- 10. private noise on disk, and one real run with it


def _model(noise: str, connectivity: str = "low_rank") -> LatentRNN:
    return LatentRNN.init(
        key=jax.random.key(0),
        system=systems.get("ou"),
        num_neurons=16,
        noise=noise,
        connectivity=connectivity,
    )


@pytest.mark.parametrize(
    "noise, connectivity",
    [("latent", "low_rank"), ("gated", "dense"), ("private", "low_rank")],
)
def test_save_and_load_give_the_same_model_bit_for_bit(tmp_path, noise, connectivity):
    model = _model(noise, connectivity)
    io.save_model(tmp_path / "model.eqx", model)
    loaded = io.load_model(tmp_path / "model.eqx")
    leaves, tree = jax.tree.flatten(eqx.filter(model, eqx.is_array))
    loaded_leaves, loaded_tree = jax.tree.flatten(eqx.filter(loaded, eqx.is_array))
    assert tree == loaded_tree
    for a, b in zip(leaves, loaded_leaves, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert loaded.noise_dim == model.noise_dim


def test_export_npz_holds_sigma_for_private_noise(tmp_path):
    model = _model("private")
    io.export_npz(tmp_path / "model.npz", model)
    with np.load(tmp_path / "model.npz") as data:
        assert np.array_equal(data["sigma"], np.asarray(model.sigma))
        assert data["G0"].shape == (2, 0)


def test_heun_is_allowed_for_private_noise_but_not_gated():
    pipeline.build(load(OU, ["model.noise=private", "simulate.solver=heun"]))
    with pytest.raises(ValueError, match="`simulate.solver` heun"):
        pipeline.build(load(OU, ["model.noise=gated", "simulate.solver=heun"]))


@pytest.fixture(scope="module")
def private_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "private"
    argv = ["run", OU, "-o", str(out), *TINY, "model.noise=private"]
    assert cli.main([*argv, "simulate.solver=heun"]) == 0
    return out


def test_a_private_noise_run_writes_a_complete_folder(private_run):
    files = {p.name for p in private_run.iterdir()}
    assert {"model.eqx", "model.npz", "paths.npz", "metrics.json"} <= files
    assert io.load_model(private_run / "model.eqx").noise == "private"
    metrics = json.loads((private_run / "metrics.json").read_text())
    assert metrics["num_neurons"] == 16
    # Closed-form readout of a linear drift: far below 1 %; guards the pipeline only.
    assert metrics["drift_rel_error"] < 1e-2


@pytest.fixture
def run_copy(private_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(private_run, copy)
    return copy


# --- 5. corrupt run-folder files


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _paths_of_another_system(path: Path) -> None:
    # Arrays with K = 3 (a Lorenz run's), where the run has K = 2.
    with np.load(path) as data:
        paths = {k: data[k] for k in data.files}
    for name in ("points", "network", "target"):
        paths[name] = np.concatenate([paths[name], paths[name][..., :1]], axis=-1)
    with open(path, "wb") as f:
        np.savez(f, **paths)


def _not_a_number_in_history(path: Path) -> None:
    path.write_text("step,loss\n0,1.0\n1,abc\n")


def _folder_for_model(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("kept")


CORRUPT = {
    "truncated_paths": ("evaluate", "paths.npz", _truncate, ["readable"]),
    "paths_of_another_system": (
        "evaluate",
        "paths.npz",
        _paths_of_another_system,
        ["`points`", "K=2"],
    ),
    "empty_train_json": (
        "evaluate",
        "train.json",
        lambda p: p.write_text("{}"),
        ["`train_seconds`"],
    ),
    "history_not_a_number": (
        "plot",
        "history.csv",
        _not_a_number_in_history,
        ["line 3", "'abc'"],
    ),
    "model_is_a_folder": ("train", "model.eqx", _folder_for_model, ["folder"]),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_run_files_stop_with_one_line_naming_the_file(run_copy, capsys, case):
    command, name, spoil, names = CORRUPT[case]
    spoil(run_copy / name)
    assert {p.name for p in run_copy.glob("*.png")}, "the figures must be there"
    before = _tree(run_copy)
    code, out, err = _ddm(capsys, command, run_copy)
    assert code == cli.EXIT_BAD_INPUT
    _assert_one_line_naming(err, name, *names)
    assert _tree(run_copy) == before


def test_a_paths_file_that_is_not_a_zip_is_refused(tmp_path):
    (tmp_path / "paths.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="paths.npz is not a readable"):
        pipeline.load_paths(tmp_path, 2)
    assert not zipfile.is_zipfile(tmp_path / "paths.npz")


# --- 6. stale results after a one-step command


@pytest.mark.parametrize(
    "command, gone, kept",
    [
        ("train", {"paths.npz", "metrics.json"}, {"model.eqx", "config.yaml"}),
        ("simulate", {"metrics.json"}, {"model.eqx", "paths.npz", "config.yaml"}),
    ],
)
def test_a_one_step_command_removes_the_files_it_made_stale(
    run_copy, monkeypatch, capsys, command, gone, kept
):
    # The steps themselves are stand-ins: what is checked is what the CLI removes.
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: {"diverged_at_step": None})
    monkeypatch.setattr(pipeline, "simulate", lambda folder, cfg: None)
    assert list(run_copy.glob("*.png"))
    code, _, err = _ddm(capsys, command, run_copy)
    assert code == 0, err
    files = {p.name for p in run_copy.iterdir()}
    assert not files & gone
    assert not list(run_copy.glob("*.png"))
    assert kept <= files
    line = err.splitlines()[-1]
    assert line.startswith("ddm: removed ") and "figures" in line
    assert f"ddm evaluate {run_copy} && ddm plot {run_copy}" in line
    assert (f"ddm simulate {run_copy}" in line) == (command == "train")


def test_retraining_with_another_size_removes_the_old_models_results(run_copy, capsys):
    code, _, err = _ddm(capsys, "train", run_copy, "model.num_neurons=24")
    assert code == 0, err
    assert io.load_model(run_copy / "model.eqx").num_neurons == 24
    assert not (run_copy / "paths.npz").exists()
    assert not (run_copy / "metrics.json").exists()
    assert not list(run_copy.glob("*.png"))
    # `ddm evaluate` cannot mix the new model with the old paths any more.
    code, _, err = _ddm(capsys, "evaluate", run_copy)
    assert code == cli.EXIT_BAD_INPUT
    _assert_one_line_naming(err, "paths.npz", "ddm simulate")
