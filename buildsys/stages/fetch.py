"""fetch: verify the source model (existence, sha256 pin, format) and fingerprint it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from buildsys.errors import InputError
from buildsys.hashing import digest_tree
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import check_exists, check_format, model_files, source_input


class Fetch(Stage):
    kind = "fetch"
    VERSION = 1

    def inputs(self) -> list[Input]:
        return [source_input(self.recipe.source)]

    def check(self) -> None:
        check_exists(self.recipe.source, self.recipe.path)

    def params(self) -> dict[str, Any]:
        src = self.recipe.source
        params = {"format": src.format, "sha256": src.sha256}
        # only where set: the keys of the first formats stay as they were
        # the code folder is a path of this machine: its files enter the key by content instead
        options = {k: v for k, v in src.options if k != "code"}
        return {**params, "options": options} if options else params

    def outputs(self) -> dict[str, Path]:
        return {"source": self.paths.source_record}

    def run(self, ctx: RunContext) -> None:
        src = self.recipe.source
        model = set(model_files(src))  # the pin covers the model, not a factory's code
        named = [(name or src.path.name, f) for name, f in self.inputs()[0].named()]
        files = {name: ctx.hasher.digest(f) for name, f in named if f in model}
        sha = digest_tree(files) if src.path.is_dir() or len(files) > 1 else next(iter(files.values()))
        if src.sha256 and src.sha256 != sha:
            raise InputError(
                f"sha256 mismatch for {ctx.env.ws.show(src.path)}\n  recipe pins: {src.sha256}\n  file has:    {sha}",
                hint=f"if the model changed on purpose, set source.sha256 in {self.recipe.path.name} to the new digest",
            )
        check_format(src)
        size = sum(f.stat().st_size for f in self.inputs()[0].files)
        info = {"format": src.format, "sha256": sha, "size": size, "files": len(files)}
        ctx.out["source"].write_text(json.dumps(info, sort_keys=True, indent=2) + "\n", "utf-8")
