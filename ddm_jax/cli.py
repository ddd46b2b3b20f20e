"""The ``ddm`` command (DESIGN §4).

``ddm run CONFIG [-o OUTDIR] [--force] [key=value ...]`` trains, simulates, evaluates
and plots into a new run folder; ``ddm train|simulate|evaluate|plot RUN`` repeat one
step on a run folder; ``ddm systems`` lists the targets. Bad input exits with code 2
and one line on stderr; a run folder is built under a temporary name and renamed into
place only when every step has succeeded, so nothing half-written is left behind and
an earlier run is never touched unless ``--force`` replaces it whole.
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


def _keys_help() -> str:
    lines = ["config keys (section.key: default — meaning):"]
    for path, text in DOCS.items():
        node = DEFAULTS
        for name in path.split("."):
            node = node.get(name) if isinstance(node, dict) else None
        default = "" if isinstance(node, dict) else f" [{node!r}]"
        lines.append(f"  {path}{default}: {text}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    run.add_argument("overrides", nargs="*", help="section.key=value (YAML value)")
    run.add_argument("--progress", action="store_true", help="show a training bar")
    for name, text in (
        ("train", "sample, solve and train again in a run folder"),
        ("simulate", "simulate the network and the target of a run folder"),
        ("evaluate", "write metrics.json of a run folder"),
        ("plot", "draw the figures of a run folder"),
    ):
        step = sub.add_parser(name, help=text)
        step.add_argument("run", help="run folder made by `ddm run`")
        step.add_argument("overrides", nargs="*", help="section.key=value (YAML value)")
        if name == "train":
            step.add_argument("--progress", action="store_true")
    sub.add_parser("systems", help="list the target systems and their parameters")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"ddm: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ddm: interrupted; nothing was written over", file=sys.stderr)
        return 130


def _dispatch(args) -> int:
    if args.command == "systems":
        from . import systems

        for name in systems.names():
            params = ", ".join(f"{k}={v!r}" for k, v in systems.parameters(name).items())
            print(f"{name}: {params}")
        return 0
    if args.command == "run":
        cfg = load(args.config, args.overrides)
        _set_dtype(cfg)
        from . import pipeline

        pipeline.build(cfg)
        stem = Path(args.config).stem
        out = Path(args.output) if args.output else _default_folder(stem)
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
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(
            f"output folder {str(out)!r} is not empty; choose another -o or pass --force"
        )


@contextlib.contextmanager
def _staging(out: Path):
    """A temporary sibling folder, renamed onto `out` only if the body succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
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
    for key in ("drift_rel_error", "diffusion_rel_error", "manifold_rel_error"):
        print(f"{key}: {metrics[key]:.3e}", file=sys.stderr)
    if "lyapunov_max" in metrics:
        lam = metrics["lyapunov_max"]
        print(
            f"lyapunov_max: network {lam['network']:.4f}, target {lam['target']:.4f}",
            file=sys.stderr,
        )


def _one_step(args) -> int:
    from . import pipeline

    folder = Path(args.run)
    config_file = folder / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{str(folder)!r} is not a run folder: no config.yaml")
    cfg = load(config_file, args.overrides)
    _set_dtype(cfg)
    pipeline.build(cfg)
    if args.command != "train" and not (folder / "model.eqx").is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no model.eqx; run `ddm train` first")
    status = 0
    if args.command == "train":
        summary = _stage("train", pipeline.train, folder, cfg, progress=args.progress,
                         log=_log)
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


if __name__ == "__main__":
    sys.exit(main())
