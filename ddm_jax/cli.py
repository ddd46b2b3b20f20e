"""The ``ddm`` command (DESIGN §4).

``ddm run CONFIG [-o OUTDIR] [--force] [key=value ...]`` trains, simulates, evaluates
and plots into a new run folder; ``ddm train|simulate|evaluate|plot RUN`` repeat one
step on a run folder, taking overrides only of that step's own keys (`STEP_OVERRIDES`)
so that config.yaml keeps describing the files already there; ``ddm systems`` lists
the targets. Bad input, usage errors included, exits with code 2 and one line on
stderr; a run folder is built under a temporary name and renamed into place only when
every step has succeeded, so nothing half-written is left behind (SIGTERM and Ctrl-C
included, and the parent folders a failed run made are removed again) and an earlier
run is never touched unless ``--force`` replaces it whole: the rename itself refuses
a folder that another run filled meanwhile, and the default folder
``runs/<config name>-<date>-<time with microseconds>`` takes a suffix ``-2``, ``-3``,
… when it is taken.

A one-step command removes the files made from what it replaced: ``ddm train`` the
paths.npz, metrics.json and figures of the old model, ``ddm simulate`` metrics.json
and the figures, and says what to run next. A run whose headline metrics are not
finite (the network blew up) keeps its files but exits with code 1 and one line;
running out of memory also exits with code 1 and one line naming the sizes to lower.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .config import DEFAULTS, ConfigError, dump, load
from .config_docs import DOCS

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_TERMINATED = 128 + signal.SIGTERM
# The config fields that set the size of the arrays, named when memory runs out.
SIZE_FIELDS = (
    "model.num_neurons",
    "simulate.t1",
    "simulate.num_paths",
    "data.num_points",
    "cues.trials_per_pattern",
)
DECOMPOSE_SIZE_FIELDS = ("decompose.grid_cells", "decompose.grid_cells_3d")

# The overrides a one-step command accepts: those of its own step, which the files
# of the earlier steps do not depend on, so config.yaml keeps describing the folder.
STEP_OVERRIDES = {
    "train": ("",),
    "simulate": ("simulate.", "data.held_out_points", "cues."),
    "evaluate": ("evaluate.",),
    "plot": (),
    "decompose": ("decompose.",),
}


class _UsageError(Exception):
    """A command line that argparse cannot parse."""


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the staging folder is removed; a
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` keeps it."""


class _FolderTaken(Exception):
    """The output folder was filled by another run while this one ran."""


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
        ("decompose", "take a run's network apart: decomposition.json and figures"),
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
    _CURRENT.clear()
    with _sigterm_raises():
        try:
            return _dispatch(args)
        except (
            ConfigError,
            ValueError,
            FileNotFoundError,
            NotImplementedError,
            _FolderTaken,
        ) as e:
            lines = str(e).splitlines() or [type(e).__name__]
            print(f"ddm: error: {lines[0]}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
            # A run folder's file that is a folder, or one that cannot be written.
            print(f"ddm: error: {e.filename}: {e.strerror}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as e:
            # A full or read-only disk: every file is written atomically, so the
            # folder holds the earlier files; say so in one line.
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                raise
            where = f"{e.filename}: " if e.filename else ""
            print(
                f"ddm: error: {where}{e.strerror}; nothing was written over",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("ddm: interrupted; nothing was written over", file=sys.stderr)
            return 130
        except _Terminated:
            print("ddm: terminated; nothing was written over", file=sys.stderr)
            return EXIT_TERMINATED
        except Exception as e:
            if not _out_of_memory(e):
                raise
            step = f" in the {_CURRENT[0]} step" if _CURRENT else ""
            sizes = DECOMPOSE_SIZE_FIELDS if _CURRENT == ["decompose"] else SIZE_FIELDS
            fields = ", ".join(f"`{f}`" for f in sizes)
            print(
                f"ddm: error: out of memory{step} (RESOURCE_EXHAUSTED); the run is too "
                f"large for this machine: lower {fields}",
                file=sys.stderr,
            )
            return EXIT_FAILED


@contextlib.contextmanager
def _sigterm_raises():
    """While the command runs, SIGTERM raises `_Terminated` (once; a second SIGTERM
    during the clean-up is ignored); the previous handler is restored afterwards.
    Signal handlers can only be set in the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _out_of_memory(e: BaseException) -> bool:
    """Whether `e` is XLA's out-of-memory error (or Python's MemoryError). Matched by
    class name, JAX's JaxRuntimeError or jaxlib's XlaRuntimeError, so that this
    needs no import of JAX."""
    if isinstance(e, MemoryError):
        return True
    names = {cls.__name__ for cls in type(e).__mro__}
    if not names & {"JaxRuntimeError", "XlaRuntimeError"}:
        return False
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


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
        unique = args.output is None
        out = _default_folder(Path(args.config).stem) if unique else Path(args.output)
        # A taken default folder is not an error: `_place` adds a suffix.
        _check_output(out, args.force or unique)
        with _staging(out, force=args.force, unique=unique) as staged:
            _write_config(staged.folder, cfg)
            status, failure = _all_steps(staged.folder, cfg, progress=args.progress)
        print(f"run folder: {staged.out}", file=sys.stderr)
        if failure is not None:
            print(f"ddm: error: {failure}", file=sys.stderr)
        return status
    return _one_step(args)


def _set_dtype(cfg: dict) -> None:
    import jax

    jax.config.update("jax_enable_x64", cfg["dtype"] == "float64")


def _default_folder(stem: str) -> Path:
    # Microseconds, so that runs started together get different names; `_place`
    # adds a suffix should two still meet.
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
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


class _Staged:
    """The folder a run writes into (`folder`) and, once placed, its name (`out`)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.out: Path | None = None


@contextlib.contextmanager
def _staging(out: Path, *, force: bool = False, unique: bool = False):
    """A temporary sibling folder, renamed onto `out` only if the body succeeds.

    On failure (SIGTERM and Ctrl-C included) the temporary folder is removed, and so
    are the parent folders made for it. The rename never replaces a non-empty folder
    unless `force`; with `unique`, a taken `out` becomes ``out-2``, ``out-3``, …
    """
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    made = _missing_folders(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        _remove_empty(made)
        raise ConfigError(
            f"output folder {str(out)!r} cannot be made: {e.strerror or e}"
        ) from None
    staged = _Staged(tmp)
    try:
        yield staged
        staged.out = _place(tmp, out, force=force, unique=unique)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)
        raise


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; stop at one that another run filled
        try:
            folder.rmdir()
        except OSError:
            break


def _place(tmp: Path, out: Path, *, force: bool, unique: bool) -> Path:
    """Rename `tmp` onto `out` (see `_staging`); the folder it became.

    Without `force`, `os.rename` itself is the check: on Linux it fails with
    ENOTEMPTY or EEXIST onto a non-empty folder (ENOTDIR onto a file), so a folder
    another run filled after `_check_output` is never replaced.
    """
    if force:
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out
    taken = (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR)
    names = [out, *(out.with_name(f"{out.name}-{i}") for i in range(2, 1000))]
    for target in names if unique else names[:1]:
        try:
            os.rename(tmp, target)
            return target
        except OSError as e:
            if e.errno not in taken:
                raise
    raise _FolderTaken(
        f"output folder {str(out)!r} was filled by another run while this one ran; "
        "nothing was written over, and this run was not kept: choose another -o or "
        "pass --force"
    )


def _write_config(folder: Path, cfg: dict) -> None:
    from .io import atomic_write

    with atomic_write(folder / "config.yaml", "w") as f:
        f.write(dump(cfg))


# The step running now, named when memory runs out.
_CURRENT: list[str] = []


def _stage(name: str, fn, *args, **kwargs):
    start = time.perf_counter()
    _CURRENT[:] = [name]
    result = fn(*args, **kwargs)
    _CURRENT.clear()
    print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return result


def _all_steps(folder: Path, cfg: dict, *, progress: bool) -> tuple[int, str | None]:
    """Every step into `folder`; the exit status and the error line, if any.

    A run whose headline metrics are not finite is kept (its files are real
    results) without figures, which would show nothing, and fails with code 1.
    """
    from . import pipeline

    summary = _stage("train", pipeline.train, folder, cfg, progress=progress, log=_log)
    _stage("simulate", pipeline.simulate, folder, cfg)
    metrics = _stage("evaluate", pipeline.evaluate_run, folder, cfg)
    _report(metrics)
    failure = _non_finite(metrics)
    if failure is not None:
        return EXIT_FAILED, failure
    _stage("plot", pipeline.plot, folder, cfg)
    return (EXIT_FAILED if summary["diverged_at_step"] is not None else 0), None


def _non_finite(metrics: dict) -> str | None:
    """The error line for a headline metric that is NaN or infinite, or None."""
    from .pipeline import non_finite_headline

    found = non_finite_headline(metrics)
    if found is None:
        return None
    key, value = found
    verb = "are" if key.endswith("paths") else "is"
    return (
        f"the network's {key} {verb} not finite ({value}); the simulation or the "
        "solve blew up — check model.tau / train settings"
    )


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
    if not folder.exists():
        raise FileNotFoundError(f"run folder {str(folder)!r} does not exist")
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
    status, failure = 0, None
    if args.command == "train":
        summary = _stage(
            "train", pipeline.train, folder, cfg, progress=args.progress, log=_log
        )
        status = EXIT_FAILED if summary["diverged_at_step"] is not None else 0
    elif args.command == "simulate":
        _stage("simulate", pipeline.simulate, folder, cfg)
    elif args.command == "evaluate":
        metrics = _stage("evaluate", pipeline.evaluate_run, folder, cfg)
        _report(metrics)
        failure = _non_finite(metrics)
    elif args.command == "decompose":
        from . import decompose_pipeline

        result = _stage("decompose", decompose_pipeline.decompose_run, folder, cfg)
        _log(decompose_pipeline.headline(result))
    else:
        _stage("plot", pipeline.plot, folder, cfg)
    if args.command in ("train", "simulate"):
        _remove_stale(folder, args.command)
    # The resolved config is rewritten only once the step it describes has succeeded.
    if args.overrides:
        _write_config(folder, cfg)
    if failure is not None:
        print(f"ddm: error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    return status


def _remove_stale(folder: Path, command: str) -> None:
    """Remove the files made from what `command` replaced, and say what to run."""
    from .pipeline import remove_stale

    removed = remove_stale(folder, command)
    if not removed:
        return
    figures = sum(name.endswith(".png") for name in removed)
    parts = [name for name in removed if not name.endswith(".png")]
    if figures:
        parts.append(f"{figures} figure{'s' * (figures > 1)}")
    what = "model" if command == "train" else "paths"
    steps = (
        ("simulate", "evaluate", "plot") if command == "train" else ("evaluate", "plot")
    )
    if "decomposition.json" in removed:
        steps += ("decompose",)
    run = str(folder)
    next_ = " && ".join(f"ddm {step} {run}" for step in steps)
    listed = ", ".join(parts[:-1]) + " and " * (len(parts) > 1) + parts[-1]
    print(
        f"ddm: removed {listed} (made from the old {what}); next: {next_}",
        file=sys.stderr,
    )


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
        top_level = dotted in DEFAULTS and not isinstance(DEFAULTS[dotted], dict)
        if "=" not in item or not ("." in dotted or top_level):
            raise ConfigError(
                f"`{item}` is not an override: write section.key=value "
                f"(`ddm {command}` takes {_allowed_overrides(command)})"
            )
        if any(dotted == a or dotted.startswith(a) for a in allowed):
            continue
        takes = f"overrides: {_allowed_overrides(command)}"
        raise ConfigError(
            f"`{dotted}` cannot change in `ddm {command}` ({takes}): the files in "
            f"{str(folder)!r} were made with it; use `ddm train` or `ddm run`"
        )


if __name__ == "__main__":
    sys.exit(main())
