"""The ``ddm`` command (DESIGN §4).

``ddm run CONFIG [-o OUTDIR] [--force] [key=value ...]`` trains, simulates, evaluates
and plots into a new run folder; ``ddm train|simulate|evaluate|plot RUN`` repeat one
step on a run folder, taking overrides only of that step's own keys (`STEP_OVERRIDES`)
so that config.yaml keeps describing the files already there; ``ddm systems`` lists
the targets. Bad input, usage errors included, exits with code 2 and one line on
stderr; a run folder is built under a temporary name and renamed into place only when
every step has succeeded, so nothing half-written is left behind and an earlier run
is never touched unless ``--force`` replaces it whole.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import sys
import time
from pathlib import Path

from .config import DEFAULTS, ConfigError, dump, load
from .config_docs import DOCS

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

# The overrides a one-step command accepts: those of its own step, which the files
# of the earlier steps do not depend on, so config.yaml keeps describing the folder.
STEP_OVERRIDES = {
    "train": ("",),
    "simulate": ("simulate.", "data.held_out_points"),
    "evaluate": ("evaluate.",),
    "plot": (),
}


class _UsageError(Exception):
    """A command line that argparse cannot parse."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is raised so that `main` reports it in one line."""

    def error(self, message):
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _keys_help() -> str:
    lines = [
        "config keys (section.key [default]: meaning); override any as "
        "section.key=value, system parameters as system.NAME=value (`ddm systems`):"
    ]
    for path, text in DOCS.items():
        node = DEFAULTS
        for name in path.split("."):
            node = node.get(name) if isinstance(node, dict) else None
        default = "" if isinstance(node, dict) else f" [{node!r}]"
        lines.append(f"  {path}{default}: {text}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ddm",
        description="Drift–diffusion matching: embed an SDE in a rate network.",
        epilog=_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="train, simulate, evaluate and plot a config")
    run.add_argument("config", help="YAML config file")
    run.add_argument("-o", "--output", help="run folder (default runs/<name>-<time>)")
    run.add_argument("--force", action="store_true", help="replace a non-empty folder")
    run.add_argument(
        "overrides", nargs="*", default=[], help="section.key=value (YAML value)"
    )
    run.add_argument("--progress", action="store_true", help="show a training bar")
    for name, text in (
        ("train", "sample, solve and train again in a run folder"),
        ("simulate", "simulate the network and the target of a run folder"),
        ("evaluate", "write metrics.json of a run folder"),
        ("plot", "draw the figures of a run folder"),
    ):
        step = sub.add_parser(name, help=text)
        step.add_argument("run", help="run folder made by `ddm run`")
        step.add_argument(
            "overrides",
            nargs="*",
            default=[],
            help=f"section.key=value (YAML value): {_allowed_overrides(name)}",
        )
        if name == "train":
            step.add_argument("--progress", action="store_true")
    sub.add_parser("systems", help="list the target systems and their parameters")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as e:  # --help prints and exits through argparse
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    except _UsageError as e:
        print(f"ddm: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return _dispatch(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        lines = str(e).splitlines() or [type(e).__name__]
        print(f"ddm: error: {lines[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ddm: interrupted; nothing was written over", file=sys.stderr)
        return 130


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; overrides may also follow the options.

    argparse gives a ``nargs="*"`` positional only the words before the first option,
    so in ``ddm run CONFIG -o OUT key=value`` the override comes back unrecognised;
    such words (``key=value``, not starting with ``-``) are appended in order.
    """
    p = parser()
    args, extra = p.parse_known_args(argv)
    misplaced = [a for a in extra if a.startswith("-") or "=" not in a]
    if misplaced or (extra and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(misplaced or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _dispatch(args) -> int:
    if args.command == "systems":
        from . import systems

        for name in systems.names():
            params = ", ".join(
                f"{k}={v!r}" for k, v in systems.parameters(name).items()
            )
            print(f"{name}: {params}")
        return 0
    if args.command == "run":
        cfg = load(args.config, args.overrides)
        _set_dtype(cfg)
        from . import pipeline

        pipeline.build(cfg)
        stem = Path(args.config).stem
        out = Path(args.output) if args.output is not None else _default_folder(stem)
        _check_output(out, args.force)
        with _staging(out) as folder:
            _write_config(folder, cfg)
            status = _all_steps(folder, cfg, progress=args.progress)
        print(f"run folder: {out}", file=sys.stderr)
        return status
    return _one_step(args)


def _set_dtype(cfg: dict) -> None:
    import jax

    jax.config.update("jax_enable_x64", cfg["dtype"] == "float64")


def _default_folder(stem: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stem}-{stamp}"


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {str(out)!r} exists and is not a folder")
    here = Path.cwd().resolve()
    if out.resolve() in (here, *here.parents):
        raise ConfigError(
            f"output folder {str(out)!r} holds the current folder; choose a new -o"
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(
            f"output folder {str(out)!r} is not empty; choose another -o or pass "
            "--force"
        )


@contextlib.contextmanager
def _staging(out: Path):
    """A temporary sibling folder, renamed onto `out` only if the body succeeds."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise ConfigError(
            f"output folder {str(out)!r} cannot be made: {e.strerror or e}"
        ) from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_config(folder: Path, cfg: dict) -> None:
    from .io import atomic_write

    with atomic_write(folder / "config.yaml", "w") as f:
        f.write(dump(cfg))


def _stage(name: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return result


def _all_steps(folder: Path, cfg: dict, *, progress: bool) -> int:
    from . import pipeline

    summary = _stage("train", pipeline.train, folder, cfg, progress=progress, log=_log)
    _stage("simulate", pipeline.simulate, folder, cfg)
    metrics = _stage("evaluate", pipeline.evaluate_run, folder, cfg)
    _stage("plot", pipeline.plot, folder, cfg)
    _report(metrics)
    return EXIT_FAILED if summary["diverged_at_step"] is not None else 0


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _report(metrics: dict) -> None:
    for key in (
        "drift_rel_error",
        "diffusion_rel_error",
        "manifold_rel_error",
        "data_drift_rel_error",
        "data_drift_noise_floor",
        "data_diffusion_rel_error",
    ):
        if key in metrics:  # a run from a trajectory file reports the data_* keys
            print(f"{key}: {metrics[key]:.3e}", file=sys.stderr)
    if "lyapunov_max" in metrics:
        lam = metrics["lyapunov_max"]
        parts = ", ".join(f"{who} {value:.4f}" for who, value in lam.items())
        print(f"lyapunov_max: {parts}", file=sys.stderr)


def _one_step(args) -> int:
    from . import pipeline

    folder = Path(args.run)
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a run folder: no config.yaml")
    _check_step_overrides(args.command, folder, args.overrides)
    cfg = load(config_file, args.overrides)
    _set_dtype(cfg)
    pipeline.build(cfg)
    if args.command != "train" and not (folder / "model.eqx").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no model.eqx; run `ddm train` first"
        )
    status = 0
    if args.command == "train":
        summary = _stage(
            "train", pipeline.train, folder, cfg, progress=args.progress, log=_log
        )
        status = EXIT_FAILED if summary["diverged_at_step"] is not None else 0
    elif args.command == "simulate":
        _stage("simulate", pipeline.simulate, folder, cfg)
    elif args.command == "evaluate":
        _report(_stage("evaluate", pipeline.evaluate_run, folder, cfg))
    else:
        _stage("plot", pipeline.plot, folder, cfg)
    # The resolved config is rewritten only once the step it describes has succeeded.
    if args.overrides:
        _write_config(folder, cfg)
    return status


def _allowed_overrides(command: str) -> str:
    allowed = STEP_OVERRIDES[command]
    if allowed == ("",):
        return "any key"
    if not allowed:
        return "none"
    return "only " + ", ".join(f"{a}*" if a.endswith(".") else a for a in allowed)


def _check_step_overrides(command: str, folder: Path, overrides: list[str]) -> None:
    """Refuse overrides of what the folder's earlier files were made with."""
    allowed = STEP_OVERRIDES[command]
    for item in overrides:
        dotted = item.split("=", 1)[0].strip()
        if any(dotted == a or dotted.startswith(a) for a in allowed):
            continue
        takes = f"overrides: {_allowed_overrides(command)}"
        raise ConfigError(
            f"`{dotted}` cannot change in `ddm {command}` ({takes}): the files in "
            f"{str(folder)!r} were made with it; use `ddm train` or `ddm run`"
        )


if __name__ == "__main__":
    sys.exit(main())
