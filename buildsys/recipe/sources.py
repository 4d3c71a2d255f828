"""The recipe's `source:` mapping -> a Source: one parser per format that names more than a path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from buildsys.recipe.model import PIPELINES, Source


def parse_source(data: dict[str, Any], base: Path) -> Source:
    fmt = next(f for f in PIPELINES if f in data)
    value = data[fmt]
    parse = {"pytorch": _pytorch, "tf1": _tf1, "darknet": _darknet}.get(fmt, _plain)
    return parse(fmt, value, base, data.get("sha256"))


def resolve(base: Path, written: str) -> str:
    # normpath, not resolve(): symlinks are the user's business, and globs must stay globs.
    return os.path.normpath(os.path.join(base, written))


def _plain(fmt: str, written: str, base: Path, sha256: str | None) -> Source:
    return Source(format=fmt, path=Path(resolve(base, written)), written=written, sha256=sha256)


def _darknet(fmt: str, value: dict[str, str], base: Path, sha256: str | None) -> Source:
    weights = Path(resolve(base, value["weights"]))
    cfg = value["cfg"]
    return Source(fmt, Path(resolve(base, cfg)), cfg, sha256, parts=(("weights", weights),))


def _tf1(fmt: str, value: dict[str, Any], base: Path, sha256: str | None) -> Source:
    form = "graph" if "graph" in value else "checkpoint"
    written = value[form]
    options = (("form", form), ("inputs", list(value["inputs"])), ("outputs", list(value["outputs"])))
    return Source(fmt, Path(resolve(base, written)), written, sha256, options=options)


def _pytorch(fmt: str, value: str | dict[str, Any], base: Path, sha256: str | None) -> Source:
    if isinstance(value, str):
        value = {"file": value}
    form = next(f for f in ("file", "module", "factory") if f in value)
    options: dict[str, Any] = {"form": form, "exporter": value.get("exporter", "auto")}
    if form == "factory":
        options.update(factory=value["factory"], kwargs=dict(value.get("kwargs", {})))
    if form != "file":
        options["code"] = resolve(base, value.get("code", "."))
    written = value["weights" if form == "factory" else form]
    return Source(fmt, Path(resolve(base, written)), written, sha256, options=tuple(sorted(options.items())))
