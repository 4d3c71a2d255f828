"""`buildsys` command line: parse, dispatch, turn errors into one-screen messages and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from buildsys import __version__
from buildsys.errors import BuildsysError


def _common(p: argparse.ArgumentParser, default: object) -> None:
    """Options valid before or after the command (`buildsys -q build` = `buildsys build -q`)."""
    p.add_argument("-C", "--directory", default=default, help="run in this workspace directory")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="print errors only")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="also list up-to-date stages, and print an internal error's traceback",
    )


def _paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="recipe files or directories of them (default: recipes/)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="buildsys",
        description="Declarative, incremental builds of edge TFLite models from YAML recipes.",
    )
    top.add_argument("--version", action="version", version=f"buildsys {__version__}")
    _common(top, None)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser("build", help="build recipes, running only stale stages")
    _paths(b)
    b.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="run N stages in parallel")
    b.add_argument("--locked", action="store_true", help="fail if the build would change a lockfile")
    b.add_argument("--json", action="store_true", help="print one JSON document of stage outcomes")
    b.add_argument(
        "--summary", metavar="FILE", help="append a Markdown table of the targets to FILE (CI job summaries)"
    )
    b.add_argument(
        "--shard",
        metavar="I/N",
        help="build a stable I-th of N shares of the targets (CI matrices); a final build without it writes the locks",
    )
    b.add_argument(
        "--remote",
        metavar="URL",
        help="use this shared cache (s3://bucket/prefix, a directory, any fsspec URL) over buildsys.yaml and BUILDSYS_REMOTE",
    )
    b.add_argument(
        "--scheduler",
        metavar="URL",
        help="run the stages on this Dask cluster (tcp://host:8786); needs a read-write remote cache",
    )

    s = sub.add_parser("status", help="show every stage as up-to-date or stale, with the reason")
    _paths(s)
    s.add_argument("--json", action="store_true", help="print JSON")

    g = sub.add_parser("graph", help="print the stage graph")
    _paths(g)
    g.add_argument("--format", choices=("text", "dot", "mermaid"), default="text")

    c = sub.add_parser("check", help="validate recipes without building")
    _paths(c)

    cl = sub.add_parser("clean", help="remove build outputs of recipes")
    _paths(cl)
    cl.add_argument("--cache", action="store_true", help="also remove the cache and all build state (.buildsys/)")

    d = sub.add_parser("devices", help="list device profiles, or show one")
    d.add_argument("name", nargs="?", help="a built-in device name, or a profile file (.yaml) to check and show")
    d.add_argument("--json", action="store_true", help="print JSON: the list, or the resolved profile")

    i = sub.add_parser("inspect", help="show a model's inputs, ops and converter support, with recipe snippets")
    i.add_argument(
        "model",
        metavar="MODEL_OR_RECIPE",
        help="an .onnx, PyTorch (.pt2, .pt, .pth), TF1 (.pb, .meta) or Darknet (.cfg) file, or a recipe (.yaml)",
    )
    i.add_argument("--op", action="append", metavar="TYPE", help="list the nodes of this op type (repeatable)")
    i.add_argument("--json", action="store_true", help="print one JSON document")
    r = sub.add_parser("report", help="show where each target's report.html is, with its status, and the index")
    _paths(r)
    r.add_argument("--open", action="store_true", help="open build/index.html in the web browser")
    k = sub.add_parser("cache", help="the local and remote cache: status, push, pull, gc")
    k.add_argument(
        "action",
        choices=("status", "push", "pull", "gc"),
        help="status: sizes; push: upload local entries; pull: fetch the entries the lockfiles name; "
        "gc: drop unused entries",
    )
    _paths(k)
    k.add_argument("--remote", metavar="URL", help="the remote cache, over buildsys.yaml and BUILDSYS_REMOTE")
    k.add_argument("--older-than", metavar="AGE", help="gc: also drop entries unused for AGE (30d, 12h, 2w)")
    k.add_argument("--remote-store", action="store_true", help="gc: collect the remote store instead of the local one")
    k.add_argument("--json", action="store_true", help="status: print JSON")
    for command in (b, s, g, c, cl, d, i, r, k):
        _common(command, argparse.SUPPRESS)  # SUPPRESS: an absent flag keeps the global value
    return top


def commands() -> dict[str, Callable[[Any, Any], int]]:
    # imported lazily: `buildsys devices` should not pay for doit
    from buildsys.commands import build, cache, check, clean, devices, graph, inspect, report, status

    return {
        "build": build.run,
        "status": status.run,
        "graph": graph.run,
        "check": check.run,
        "clean": clean.run,
        "devices": devices.run,
        "inspect": inspect.run,
        "report": report.run,
        "cache": cache.run,
    }


def quiet_tensorflow() -> None:
    """TensorFlow's C++ logging goes straight to fd 2; it must be told before it loads.

    The environment reaches every process buildsys starts. Some lines (oneDNN, absl's
    "before InitializeLog") ignore it, so the import itself is filtered too; setting
    TF_ENABLE_ONEDNN_OPTS=0 instead would change kernels, numerics and artifact bytes."""
    from buildsys.tflow.quiet import filter_tensorflow_import

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    filter_tensorflow_import()


def main(argv: list[str] | None = None) -> int:
    from buildsys.ui import Ui

    quiet_tensorflow()

    args = parser().parse_args(argv)
    if getattr(args, "jobs", 1) < 1:
        parser().error("-j/--jobs must be at least 1")
    ui = Ui(quiet=bool(args.quiet), json_mode=getattr(args, "json", False), verbose=bool(args.verbose))
    try:
        return commands()[args.command](args, ui)
    except BuildsysError as exc:
        ui.error(exc)
        return exc.exit_code
    except OSError as exc:
        # outside the stages (the build folder marker, the index, lockfiles) a full or
        # read-only disk is just as much the machine's state as inside them
        from buildsys.diskerrors import disk_error, is_disk_error
        from buildsys.workspace import Workspace

        if not is_disk_error(exc):
            raise
        error = disk_error(Workspace.at(args.directory), exc, Path(os.fsdecode(exc.filename or ".")))
        ui.error(error)
        return error.exit_code
    except KeyboardInterrupt:
        ui.stop_progress()
        ui.err.print("interrupted: finished stages are kept; run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
