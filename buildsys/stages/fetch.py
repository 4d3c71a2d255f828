"""fetch: verify the source model (existence, sha256 pin, format) and fingerprint it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.hashing import digest_tree
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import check_exists, check_format, source_files


class Fetch(Stage):
    kind = "fetch"
    VERSION = 1

    def inputs(self) -> list[Input]:
        src = self.recipe.source
        base = src.path if src.path.is_dir() else None
        return [Input("source", source_files(src), base)]

    def check(self) -> None:
        check_exists(self.recipe.source, self.recipe.path)

    def params(self) -> dict[str, Any]:
        return {"format": self.recipe.source.format, "sha256": self.recipe.source.sha256}

    def outputs(self) -> dict[str, Path]:
        return {"source": self.paths.common / "source.json"}

    def run(self, ctx: RunContext) -> None:
        src = self.recipe.source
        files = {name or src.path.name: ctx.hasher.digest(f) for name, f in self.inputs()[0].named()}
        sha = next(iter(files.values())) if not src.path.is_dir() else digest_tree(files)
        if src.sha256 and src.sha256 != sha:
            raise InputError(
                f"sha256 mismatch for {ctx.env.ws.show(src.path)}\n  recipe pins: {src.sha256}\n  file has:    {sha}",
                hint=f"if the model changed on purpose, set source.sha256 in {self.recipe.path.name} "
                "to the new digest",
            )
        check_format(src)
        size = sum(f.stat().st_size for f in self.inputs()[0].files)
        info = {"format": src.format, "sha256": sha, "size": size, "files": len(files)}
        ctx.out["source"].write_text(json.dumps(info, sort_keys=True, indent=2) + "\n", "utf-8")
