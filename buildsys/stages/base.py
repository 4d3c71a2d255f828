"""What a stage is: declared inputs, params and outputs, and a `run` that makes them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from buildsys.devices import Device
from buildsys.errors import BuildsysError, StageError, UsageError
from buildsys.hashing import FileHasher
from buildsys.recipe.model import Recipe, Target
from buildsys.remote.config import RemoteConfig
from buildsys.workspace import Workspace, relpath

# what a verdict raises reading a damaged, partial or foreign output file
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError)


@dataclass(frozen=True)
class Input:
    """Files a stage reads under one role.

    With `base`, each file enters the key under its path relative to `base` (a
    SavedModel directory, an image glob's folder): names and order matter there.
    Without it the role is one file whose name is irrelevant, so two recipes
    sharing a model under different names share cache entries.
    """

    role: str
    files: tuple[Path, ...]
    base: Path | None = None

    def named(self) -> list[tuple[str, Path]]:
        if self.base is None:
            return [("", f) for f in self.files]
        return [(f.relative_to(self.base).as_posix(), f) for f in self.files]


@dataclass(frozen=True)
class RecipePaths:
    """Where a recipe's stages write; one place so stages agree on it."""

    recipe: Recipe

    @property
    def common(self) -> Path:
        # '_' cannot start a target name, so this never collides with a target dir
        return self.recipe.output / "_common"

    def target_dir(self, target: Target) -> Path:
        return self.recipe.output / target.name

    def target(self, target: Target, device: Device) -> TargetPaths:
        return TargetPaths(self.target_dir(target), device.artifact_name)

    # -- the files the targets share ------------------------------------------------
    @property
    def source_record(self) -> Path:
        """What fetch found: the source's digest and size."""
        return self.common / "source.json"

    @property
    def exported(self) -> Path:
        return self.common / "exported.onnx"

    @property
    def export_record(self) -> Path:
        return self.common / "export.json"

    @property
    def prepared(self) -> Path:
        return self.common / "prepared.onnx"

    @property
    def signature(self) -> Path:
        return self.common / "signature.json"

    @property
    def float_model(self) -> Path:
        return self.common / "float.pb"

    @property
    def float_qat(self) -> Path:
        """The fake-quant float model of a pre-quantized (QDQ) source."""
        return self.common / "float_qat.pb"

    def samples(self, role: str) -> Path:
        """A sample set: "calib" for quantization, "val" for validation."""
        return self.common / f"{role}.npz"

    @property
    def calib(self) -> Path:
        return self.samples("calib")

    @property
    def val(self) -> Path:
        return self.samples("val")

    @property
    def val_index(self) -> Path:
        return self.common / "val.index.json"

    @property
    def ranges(self) -> Path:
        return self.common / "ranges.json"

    @property
    def calibrated(self) -> Path:
        return self.common / "calibrated.npz"


@dataclass(frozen=True)
class TargetPaths:
    """Where one target's stages write: its folder, and the device's artifact in it."""

    dir: Path
    artifact_name: str  # the device's: model.tflite, or model.onnx for toolchains that take ONNX

    @property
    def model(self) -> Path:
        return self.dir / self.artifact_name

    @property
    def tflite(self) -> Path:
        """The TFLite artifact the compilers take, named so whatever the device's format."""
        return self.dir / "model.tflite"

    def compiled(self, suffix: str) -> Path:
        return self.dir / f"model_{suffix}.tflite"

    @property
    def compat(self) -> Path:
        return self.dir / "compat.json"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def compile_summary(self) -> Path:
        return self.dir / "compile.json"

    @property
    def compile_log(self) -> Path:
        return self.dir / "compile.log"

    @property
    def report_md(self) -> Path:
        return self.dir / "report.md"

    @property
    def report_html(self) -> Path:
        return self.dir / "report.html"


@dataclass
class StageEnv:
    """Per-build facts every stage sees; picklable for doit's process pool."""

    ws: Workspace
    tools: dict[str, str]
    remote: RemoteConfig | None = None  # the shared cache, if this build uses one
    build_id: str = ""  # tells this build's stages apart from another's (the remote-down marker)
    _stat_cache: FileHasher | None = field(default=None, init=False, repr=False, compare=False)
    _remote_store: tuple[int, Any] | None = field(default=None, init=False, repr=False, compare=False)

    def stat_cache(self) -> FileHasher:
        """One stat cache for the scheduler's up-to-date checks, loaded on first use:
        loading it once per stage would cost a no-op build seconds."""
        if self._stat_cache is None:
            self._stat_cache = FileHasher(self.ws.hash_db)
        return self._stat_cache

    def remote_store(self) -> Any:
        """One connection to the remote per process: opening one (an S3 session, its
        credentials, its event loop) costs more than restoring a small stage. Keyed by
        process, since a forked worker must not use its parent's event loop."""
        from buildsys.remote.store import RemoteStore

        if self._remote_store is None or self._remote_store[0] != os.getpid():
            self._remote_store = (os.getpid(), RemoteStore(self.shared_cache()))
        return self._remote_store[1]

    def shared_cache(self) -> RemoteConfig:
        """The remote this build uses, for the code that runs only when it uses one."""
        if self.remote is None:
            raise UsageError("this build uses no remote cache", hint="name one with --remote URL or BUILDSYS_REMOTE")
        return self.remote

    def __getstate__(self) -> dict[str, Any]:
        # workers hash with their own FileHasher; the scheduler's entries stay home
        return {**self.__dict__, "_stat_cache": None, "_remote_store": None}


class Stage:
    kind: ClassVar[str]
    VERSION: ClassVar[int] = 1
    TOOLS: ClassVar[tuple[str, ...]] = ()
    # outputs whose bytes are not a function of the key (e.g. timings): not content-pinned
    VOLATILE: ClassVar[tuple[str, ...]] = ()

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.paths = RecipePaths(recipe)

    # -- identity -------------------------------------------------------------
    @property
    def target_name(self) -> str | None:
        """The target the stage builds for; None for a stage the recipe's targets share."""
        return None

    @property
    def local_id(self) -> str:
        return self.kind

    @property
    def task_name(self) -> str:
        return f"{self.recipe.name}/{self.local_id}"

    # -- declarations (override) ------------------------------------------------
    def inputs(self) -> list[Input]:
        return []

    def params(self) -> dict[str, Any]:
        return {}

    def outputs(self) -> dict[str, Path]:
        raise NotImplementedError

    def run(self, ctx: RunContext) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Cheap plan-time checks of the stage's own inputs (missing files, empty globs)."""

    def verdict(self, outputs: dict[str, Path]) -> BuildsysError | None:
        """Why the target fails, judged from committed outputs (e.g. a missed threshold).

        Read after every build, fresh, restored or up-to-date, like `notes`, so a
        cached failure never turns into a pass. The stage itself succeeds: later
        stages still run and the report shows the failure.
        """
        return None

    def judged(self) -> BuildsysError | None:
        """The verdict of the outputs on disk; None while they are missing (not built
        yet: the next build makes them). Unreadable outputs fail the target: a damaged
        or partial file must never turn a failure into a pass."""
        outputs = self.outputs()
        if not all(p.is_file() for p in outputs.values()):
            return None
        try:
            return self.verdict(outputs)
        except UNREADABLE as exc:
            return self._unreadable(outputs, exc)

    def _unreadable(self, outputs: dict[str, Path], exc: Exception) -> StageError:
        cwd = os.getcwd()
        files = [relpath(p, cwd) for p in outputs.values()]
        recipe = relpath(self.recipe.path, cwd)
        return StageError(
            f"{', '.join(files)} {'is' if len(files) == 1 else 'are'} unreadable, so {self.task_name} "
            f"cannot be judged ({type(exc).__name__}: {exc})",
            hint=f"rebuild: `buildsys clean {recipe}` then `buildsys build {recipe}`",
            path=files[0],
        )

    def notes(self, outputs: dict[str, Path]) -> list[str]:
        """Warnings read from committed outputs, shown after every build, fresh or cached."""
        return []

    def tools_used(self) -> tuple[str, ...]:
        """The tools whose version enters the key: TOOLS, and more where the recipe calls for them."""
        return self.TOOLS

    def lock_facts(self, outputs: dict[str, Path]) -> dict[str, Any]:
        """Facts of the committed outputs the lockfile records beside their digests."""
        return {}

    # -- derived ------------------------------------------------------------------
    def input_files(self) -> list[Path]:
        return [f for inp in self.inputs() for f in inp.files]


class TargetStage(Stage):
    """A stage of one target: what it builds is for that target's device."""

    def __init__(self, recipe: Recipe, target: Target, device: Device):
        super().__init__(recipe)
        self.target = target
        self.device = device
        self.target_paths = self.paths.target(target, device)

    @property
    def target_name(self) -> str:
        return self.target.name

    @property
    def local_id(self) -> str:
        return f"{self.target.name}/{self.kind}"


@dataclass
class RunContext:
    stage: Stage
    env: StageEnv
    out: dict[str, Path]  # temp paths to write; committed atomically after run()
    hasher: FileHasher  # the one the key was made with: its entries are fresh

    def input(self, role: str) -> Path:
        for inp in self.stage.inputs():
            if inp.role == role:
                return inp.files[0]
        raise KeyError(role)

    def inputs(self, role: str) -> tuple[Path, ...]:
        for inp in self.stage.inputs():
            if inp.role == role:
                return inp.files
        return ()
