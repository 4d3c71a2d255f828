"""calibration: deterministic sample sets, calib.npz for quantization and val.npz for validation.

Validation samples are drawn with their own seed. Which samples were drawn is
written next to val.npz (val.index.json): positions in the validation source,
which `validate.labels` are indexed by, and the image files themselves. With `validate.inputs` they
do not depend on the calibration seed, so changing it leaves val.npz
byte-identical and targets that do not calibrate stay up to date by early
cutoff. Without them, validation holds out the calibration files that were not
drawn for calibration (a model is not judged on the data it was calibrated
with), and reuses them only when calibration took every file.

An input fed `zeros: true` is not written here: its samples take the model
input's shape, which is known only after convert, so `check_fit` (run by
quantize and validate on the sets they read) adds them.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

from buildsys.documents.yamlmarks import yaml_text
from buildsys.errors import InputError
from buildsys.recipe.model import InputSource, Recipe
from buildsys.signature import TensorEntry
from buildsys.stages import datasets
from buildsys.stages.base import Input, RunContext, Stage
from buildsys.stages.sources import recipe_at

# input names written into a recipe line as they are; others are quoted (JSON is YAML)
SAFE_FILE = re.compile(r"[^A-Za-z0-9_.-]")


class Calibration(Stage):
    kind = "calibration"
    VERSION = 4
    TOOLS = ("tensorflow", "numpy")

    @cached_property
    def sets(self) -> dict[str, tuple[dict[str, InputSource], int, int]]:
        """{output role: (sources by input name, samples, seed)}."""
        r = self.recipe
        out = {}
        if r.calibration:
            out["calib"] = (r.calibration.inputs, r.calibration.samples, r.calibration.seed)
        val_sources = r.validate.inputs or (r.calibration.inputs if r.calibration else None)
        if val_sources:
            out["val"] = (val_sources, r.validate.samples, r.validate.seed)
        return out

    def check(self) -> None:
        for role, (sources, _, _) in self.sets.items():
            for name, src in sources.items():
                datasets.check_source(src, (*sources_key(self.recipe, role), name), self.recipe.path)

    @cached_property
    def _inputs(self) -> list[Input]:
        seen: dict[str, Input] = {}
        for role, (sources, _, _) in self.sets.items():
            for name, src in sorted(_with_files(sources).items()):
                seen[f"{role}.{name}"] = Input(f"{role}.{name}", datasets.source_files(src), datasets.glob_base(src))
        return list(seen.values())

    def inputs(self) -> list[Input]:
        return self._inputs

    def params(self) -> dict[str, Any]:
        return {
            role: {
                "samples": samples,
                "seed": seed,
                "inputs": {name: self._source_params(src) for name, src in sorted(sources.items())},
            }
            for role, (sources, samples, seed) in sorted(self.sets.items())
        }

    def image_layout(self, src: InputSource) -> str:
        # ONNX models come from PyTorch and take channels first; TF models channels last
        return src.layout or ("nchw" if self.recipe.source.onnx_graph else "nhwc")

    def _source_params(self, src: InputSource) -> dict[str, Any]:
        params = src.params()
        if src.kind == "images":
            params["layout"] = self.image_layout(src)
        return params

    def outputs(self) -> dict[str, Path]:
        out = {role: self.paths.samples(role) for role in self.sets}
        if "val" in self.sets:
            out["val_index"] = self.paths.val_index
        return out

    @property
    def held_out(self) -> bool:
        """Validation draws from the calibration files, minus those calibration used."""
        return "calib" in self.sets and "val" in self.sets and self.recipe.validate.inputs is None

    def run(self, ctx: RunContext) -> None:
        taken = None
        for role, (all_sources, samples, seed) in sorted(self.sets.items()):  # calib before val
            sources = _with_files(all_sources)
            layouts = {name: self.image_layout(src) for name, src in sources.items()}
            # only zeros: `samples` identical samples, nothing to hold out
            exclude = taken if role == "val" and self.held_out and sources else None
            available = _available(sources) if sources else samples
            indices = _indices(available, samples, seed, exclude)
            _check_memory(self.recipe, role, sources, len(indices))
            taken = indices if role == "calib" else taken
            arrays = {name: datasets.materialise(src, name, indices, layouts[name]) for name, src in sources.items()}
            datasets.write_npz(ctx.out[role], arrays)
            if role == "val":
                index = datasets.index_doc(sources, indices, available)
                ctx.out["val_index"].write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", "utf-8")


def check_fit(recipe: Recipe, role: str, samples: dict[str, Any], entries: list[TensorEntry]) -> None:
    """Samples of a set ("calib" or "val") must fit the model's inputs (signature.json entries);
    a misfit names its data source and both shapes in the source model's own layout. The
    inputs fed `zeros: true` are added to `samples` here, where the model's shapes are known."""
    from buildsys.tflow.samples import misfits

    calibration = recipe.calibration.inputs if recipe.calibration else {}  # a check of "calib" has a section
    sources = calibration if role == "calib" else (recipe.validate.inputs or calibration)
    _check_names(recipe, role, sources, entries)
    _add_zeros(recipe, role, sources, samples, entries)
    for name, shape, want in misfits(samples, entries):
        src = sources[name]
        key = (*sources_key(recipe, role), name)
        raise InputError(
            f"{recipe_at(recipe.path, key + (src.kind,))}: '{src.written}' {_gives(src, shape, recipe.path, key)};"
            f" input '{name}' of the model takes samples of shape {datasets.shape_text(want)},"
            f" an array {datasets.shape_text(['N', *want])}{_layout(recipe, entries, name)}",
            hint=_fit_hint(src),
        )


def _check_names(recipe: Recipe, role: str, sources: dict[str, InputSource], entries: list[TensorEntry]) -> None:
    """Every model input has a source, and every source a model input (a typo is not a new input)."""
    from buildsys.documents.problems import did_you_mean

    key = sources_key(recipe, role)
    names = [e.name for e in entries]
    shown = ", ".join(f"'{n}'" for n in names)
    for name in sorted(set(sources) - set(names)):
        hint = did_you_mean(name, names) or f"name the sources by the model's inputs: {shown}"
        raise InputError(f"{recipe_at(recipe.path, (*key, name))}: the model has no input '{name}'", hint=hint)
    if missing := [e for e in entries if e.name not in sources]:
        plural = "s" if len(missing) > 1 else ""
        raise InputError(
            f"{recipe_at(recipe.path, key)}: no data for the model's input{plural}"
            f" {', '.join(repr(e.name) for e in missing)} (it takes {shown}); add under {'.'.join(key)}:\n"
            + "\n".join(_source_line(e) for e in missing),
            hint="every input needs a source; `zeros: true` feeds all-zero samples (a streaming model's"
            " initial state), `npy:` an (N, ...) array of samples in the input's shape",
        )


def _source_line(entry: TensorEntry) -> str:
    """A recipe line that feeds one input, to paste: the array a `.npy` would hold, as a comment."""
    from buildsys.tflow.samples import source_shape

    name = entry.name
    key = yaml_text(name)
    array = datasets.shape_text(["N", *source_shape(entry)[1:]])
    return f"    {key}: {{zeros: true}}   # or {{npy: {SAFE_FILE.sub('_', name)}.npy}} holding an array {array}"


def _add_zeros(
    recipe: Recipe, role: str, sources: dict[str, InputSource], samples: dict[str, Any], entries: list[TensorEntry]
) -> None:
    """All-zero samples of the model input's own shape and dtype, one per sample of the set."""
    import numpy as np

    from buildsys.tflow.samples import source_shape

    count = len(next(iter(samples.values()))) if samples else _set_size(recipe, role)
    for entry in entries:
        name = entry.name
        if sources[name].kind != "zeros":
            continue
        shape = source_shape(entry)[1:]
        if None in shape:
            raise InputError(
                f"{recipe_at(recipe.path, (*sources_key(recipe, role), name, 'zeros'))}: input '{name}' has"
                f" dynamic dims ({datasets.shape_text(source_shape(entry))}): zeros need a static shape",
                hint=f"fix its size with `shapes:` ({name}: [...]) in the recipe, or give it an `npy:` source",
            )
        samples[name] = np.zeros((count, *shape), dtype=entry.dtype)


def _set_size(recipe: Recipe, role: str) -> int:
    """Samples in a set none of whose inputs has files: the role's `samples:` (see Calibration.run)."""
    return recipe.calibration.samples if role == "calib" and recipe.calibration else recipe.validate.samples


def _with_files(sources: dict[str, InputSource]) -> dict[str, InputSource]:
    return {name: src for name, src in sources.items() if src.reads_files}


def _gives(src: InputSource, drawn: tuple, recipe_file: Path, key: tuple[str, ...]) -> str:
    """What a source holds, as the user made it: the whole file's array, not the drawn rows."""
    each = f"samples of shape {datasets.shape_text(drawn[1:])}" if len(drawn) > 1 else "one number per sample"
    if src.kind == "images":
        return f"gives {each}"
    return f"holds an array {datasets.shape_text(datasets.data_header(src, recipe_file, key)[1])}: {each}"


def _layout(recipe: Recipe, entries: list[TensorEntry], name: str) -> str:
    # the model runs channels-last inside, but data is given as the ONNX model takes it
    perm = next((e.perm for e in entries if e.name == name), None)
    if recipe.source.onnx_graph and perm and perm != sorted(perm):
        return ", channels first as the ONNX model takes it (NCHW)"
    return ""


def _fit_hint(src: InputSource) -> str:
    if src.kind == "images":
        return "check `resize:` ([height, width]), `color:` and `layout:` of this source"
    return "save one sample per row, each in the shape the model input takes (its own layout), with numpy.save"


def sources_key(recipe: Recipe, role: str) -> tuple[str, str]:
    """Where the recipe names the sources of a sample set ("calib" or "val"); validation
    without its own inputs holds out calibration files."""
    if role == "val" and recipe.validate.inputs is not None:
        return ("validate", "inputs")
    return ("calibration", "inputs")


def _indices(available: int, samples: int, seed: int, exclude) -> Any:
    """Seeded sample positions; drawn from those not in `exclude` when any are left."""
    import numpy as np

    if exclude is None or len(exclude) >= available:
        return datasets.choose(available, samples, seed)
    rest = np.setdiff1d(np.arange(available), exclude)
    return rest[datasets.choose(len(rest), samples, seed)]


def _available(sources: dict[str, InputSource]) -> int:
    counts = {name: datasets.count(src, name) for name, src in sources.items()}
    available = min(counts.values())
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{n}: {c}" for n, c in sorted(counts.items()))
        raise InputError(
            f"inputs have different numbers of samples ({listing})",
            hint="samples are paired across inputs by position; give every input the same count",
        )
    return available


def _check_memory(recipe: Recipe, role: str, sources: dict[str, InputSource], count: int) -> None:
    """A set is built in memory as float32 (and copied on the way into the npz): refuse one
    the machine cannot hold before decoding a single file."""
    from buildsys.limits import ACTIVATION_FACTOR, memory_problem

    where = sources_key(recipe, role)
    shapes = {name: sample_shape(src, recipe, (*where, name)) for name, src in sorted(sources.items())}
    sized = [(f"{role}.npz:{name}", [count, *shape], 4) for name, shape in shapes.items() if shape is not None]
    if problem := memory_problem(sized, ACTIVATION_FACTOR):
        key = ("calibration", "samples") if role == "calib" else ("validate", "samples")
        what = "calibration" if role == "calib" else "validation"
        raise InputError(
            f"{recipe_at(recipe.path, key)}: the {what} set of {count} samples {problem}",
            hint="lower `samples:`, or `resize:` the images smaller",
        )


def sample_shape(src: InputSource, recipe: Recipe, key: tuple[str, ...]) -> tuple[int, ...] | None:
    """The shape of one sample, read from headers only; None where that is not cheap to know."""
    if src.kind == "images":
        channels = 1 if src.color == "gray" else 3
        if src.resize:
            return (*src.resize, channels)
        size = _png_size(_first_file(src))
        return (*size, channels) if size else None
    try:
        return tuple(datasets.data_header(src, recipe.path, key)[1][1:])
    except InputError:
        return None  # unreadable files get their own error when loaded


def _first_file(src: InputSource) -> Path | None:
    files = datasets.source_files(src)
    return files[0] if files else None


def _png_size(path: Path | None) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk; None for other formats."""
    if path is None:
        return None
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
