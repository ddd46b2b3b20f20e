"""`ddm decompose RUN`: decomposition.json and figures of a nonequilibrium OU run,
checked against the closed form Φ = 2 ω²/γ = 2 of configs/ou.yaml
(A = [[1, −1], [1, 1]]: γ = 1, ω = 1; g = 0.5 I)."""

import json
import shutil
from pathlib import Path

import pytest

from ddm_jax import cli, plots

CONFIGS = Path(__file__).parents[1] / "configs"
OU = str(CONFIGS / "ou.yaml")
# configs/ou.yaml made cheaper: 2048 points, 16 paths of 50 time units, no λ_max.
SMALL = [
    "data.num_points=2048",
    "data.held_out_points=1024",
    "simulate.t1=55",
    "simulate.num_paths=16",
    "evaluate.lyapunov_paths=0",
    "decompose.grid_cells=120",
]
PHI = 2.0


@pytest.fixture(scope="module")
def decomposed(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ou"
    assert cli.main(["run", OU, "-o", str(out), *SMALL]) == 0
    assert cli.main(["decompose", str(out)]) == 0
    return out, json.loads((out / "decomposition.json").read_text())


def test_decompose_writes_the_json_and_the_figures(decomposed):
    out, result = decomposed
    for name in ("spectra", "flows_network", "flows_target", "currents"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    assert {"connectivity", "fokker_planck", "linear", "paths", "split"} <= set(result)
    assert 0.0 <= result["connectivity"]["asymmetry"] <= 1.0


def test_network_entropy_production_matches_the_target_and_the_closed_form(
    decomposed,
):
    _, result = decomposed
    phi = result["fokker_planck"]["entropy_production"]
    # Acceptance: the network within 15 % of the target (the closed-form readout
    # matches f to ~1e-8, so the two grid solutions nearly coincide); the grid solver
    # on the target within 2 % of Φ = 2 (120² cells on the OU box).
    assert phi["network"] == pytest.approx(phi["target"], rel=0.15)
    assert phi["target"] == pytest.approx(PHI, rel=0.02)
    linear = result["linear"]
    assert linear["target_theory"]["entropy_production"] == pytest.approx(PHI)
    assert linear["network"]["entropy_production"] == pytest.approx(PHI, rel=0.02)


def test_path_estimates_carry_error_bars(decomposed):
    _, result = decomposed
    for name in ("network", "target"):
        est = result["paths"][name]["stratonovich_entropy_production"]
        # 16 paths × 50 time units: standard error ≈ 0.07; six of them.
        assert est["value"] == pytest.approx(PHI, abs=6 * est["stderr"])
        asym = result["paths"][name]["lagged_asymmetry"]
        assert asym["stderr"] > 0


def test_decompose_refuses_other_steps_overrides_and_bad_grids(decomposed, capsys):
    out, _ = decomposed
    before = (out / "decomposition.json").read_bytes()
    for override, named in (
        ("model.tau=1", "model.tau"),
        ("decompose.grid_cells=2", "decompose.grid_cells"),
    ):
        assert cli.main(["decompose", str(out), override]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ddm: error: ") and named in err
        assert err.count("\n") == 1
    assert (out / "decomposition.json").read_bytes() == before


def test_a_lag_longer_than_the_paths_is_refused(decomposed, capsys):
    out, _ = decomposed
    before = (out / "decomposition.json").read_bytes()
    assert cli.main(["decompose", str(out), "decompose.lag=1e9"]) == 2
    err = capsys.readouterr().err
    assert "decompose.lag" in err and "shorter than the simulated paths" in err
    assert (out / "decomposition.json").read_bytes() == before


def test_a_failure_while_writing_leaves_the_earlier_decomposition(
    decomposed, monkeypatch, capsys
):
    out, _ = decomposed
    names = ["decomposition.json", "spectra.png", "flows_network.png", "currents.png"]
    before = {name: (out / name).read_bytes() for name in names}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "current_loops", full_disk)
    assert cli.main(["decompose", str(out), "decompose.grid_cells=40"]) == 1
    err = capsys.readouterr().err
    assert err == "ddm: error: No space left on device; nothing was written over\n"
    assert {name: (out / name).read_bytes() for name in names} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".decompose-")]
    assert "grid_cells: 40" not in (out / "config.yaml").read_text()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["{run}", "lag=1"], "`lag=1` is not an override: write section.key=value"),
        (["{run}", "extra"], "`extra` is not an override"),
        (["{run}-missing"], "does not exist"),
    ],
)
def test_bad_command_lines_give_one_line(decomposed, capsys, argv, named):
    out, _ = decomposed
    argv = [a.format(run=out) for a in argv]
    assert cli.main(["decompose", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddm: error: ") and named in err and err.count("\n") == 1


def test_a_paths_file_that_is_no_npz_is_named(decomposed, tmp_path, capsys):
    out, _ = decomposed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "paths.npz").write_text("not an archive")
    assert cli.main(["decompose", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "paths.npz is not an .npz (zip) file" in err and "pickle" not in err


def test_a_new_simulation_removes_the_stale_decomposition(decomposed):
    out, _ = decomposed
    assert cli.main(["simulate", str(out)]) == 0
    assert not (out / "decomposition.json").exists()
    assert not (out / "currents.png").exists()


def test_lorenz_decomposes_without_a_grid_it_cannot_resolve(tmp_path, capsys):
    # Lorenz's drift against noise 1 has cell Péclet numbers in the thousands on a
    # 32³ grid of its box: the grid section is skipped with the reason, the rest is
    # written.
    out = tmp_path / "lorenz"
    cheap = [
        "model.num_neurons=64",
        "data.num_points=1024",
        "data.held_out_points=512",
        "simulate.t1=7",
        "simulate.burn_in=2",
        "simulate.num_paths=4",
        "evaluate.lyapunov_paths=0",
    ]
    assert cli.main(["run", str(CONFIGS / "lorenz.yaml"), "-o", str(out), *cheap]) == 0
    assert cli.main(["decompose", str(out)]) == 0
    result = json.loads((out / "decomposition.json").read_text())
    assert "decompose.grid_cells_3d" in result["fokker_planck"]["skipped"]
    assert "skipped" in result["split"]
    assert result["paths"]["target"]["lagged_asymmetry"]["stderr"] > 0
    assert (out / "spectra.png").is_file() and not (out / "currents.png").exists()
