"""Frozen, validated view of a recipe. Paths are absolute; `raw` is the plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

# How each source format reaches the float model: "onnx" (prepared, then converted by our
# converter), "tf" (traced by TensorFlow), "tflite" (shipped as it is). A PyTorch model is
# exported to ONNX first.
PIPELINES = {
    "onnx": "onnx",
    "pytorch": "onnx",
    "saved_model": "tf",
    "keras": "tf",
    "tf1": "tf",
    "darknet": "tf",
    "tflite": "tflite",
}


def not_onnx_graph(source: Any) -> str | None:
    """The format of a raw `source:` mapping whose pipeline has no ONNX graph to edit or cut, else None."""
    formats = [k for k, pipeline in PIPELINES.items() if pipeline != "onnx"]
    return next((k for k in formats if isinstance(source, dict) and k in source), None)


@dataclass(frozen=True)
class Source:
    format: str  # a key of PIPELINES
    path: Path  # absolute; the model file, a SavedModel directory, a darknet cfg, a TF1 graph or checkpoint prefix
    written: str  # the path exactly as the recipe wrote it
    sha256: str | None = None
    # further named files of the source (darknet weights), and the format's own settings
    # (TF1 tensor names, a PyTorch factory): both enter the fetch key
    parts: tuple[tuple[str, Path], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def onnx_graph(self) -> bool:
        """The pipeline works on an ONNX graph: the source, or the model exported from it."""
        return PIPELINES[self.format] == "onnx"

    @property
    def exported(self) -> bool:
        """An `export` stage writes the ONNX model the pipeline starts from."""
        return self.format == "pytorch"

    @property
    def traced(self) -> bool:
        return PIPELINES[self.format] == "tf"

    @property
    def default_batch(self) -> int | None:
        """The batch a model with an open one is built at when the recipe sets none: a Darknet
        cfg's [net] batch is a training setting, and Darknet detects one image at a time."""
        return 1 if self.format == "darknet" else None

    def part(self, name: str) -> Path | None:
        return dict(self.parts).get(name)

    def required_part(self, name: str) -> Path:
        """A part the schema requires of the source's format (darknet's weights)."""
        return dict(self.parts)[name]

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class InputSource:
    """Where the samples of one model input come from."""

    kind: str  # "images" | "npy" | "npz" | "zeros"
    pattern: str  # absolute path or absolute glob pattern (images); "" for zeros
    written: str  # as the recipe wrote it
    key: str | None = None  # npz array name; default: the input name
    resize: tuple[int, int] | None = None  # (height, width)
    color: str = "rgb"  # "rgb" | "bgr" | "gray"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str | None = None  # "nchw" | "nhwc"; None: the source format's default

    @property
    def reads_files(self) -> bool:
        """`zeros: true` reads nothing: its samples take the model input's shape, known after convert."""
        return self.kind != "zeros"

    def params(self) -> dict[str, Any]:
        """The fields that shape the data, without the location of the files."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "images":
            out.update(
                resize=list(self.resize) if self.resize else None,
                color=self.color,
                scale=self.scale,
                mean=list(self.mean),
                std=list(self.std),
                layout=self.layout,
            )
        if self.kind == "npz":
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class Calibration:
    samples: int
    seed: int
    inputs: dict[str, InputSource]


@dataclass(frozen=True)
class Validate:
    samples: int
    seed: int
    thresholds: dict[str, float]  # keys of stages.metrics.THRESHOLDS
    inputs: dict[str, InputSource] | None = None  # default: the calibration inputs
    task: str | None = None  # "classification" adds top-5 agreement
    labels: Path | None = None  # .npy of class ids, one per sample of the validation source


@dataclass(frozen=True)
class Replacement:
    """One `replacements:` entry as written, with the recipe lines of its keys for problems."""

    index: int
    data: dict[str, Any]
    line: int | None = None  # of the entry
    lines: dict[tuple, int] = field(default_factory=dict)  # key path inside the entry -> line

    @property
    def selector(self) -> str:
        return next(k for k in ("node", "match", "input", "output") if k in self.data)

    @property
    def action(self) -> str:
        return next(k for k in ("attributes", "inputs", "rewrite", "keep_layout", "output_layout") if k in self.data)

    @property
    def edits_graph(self) -> bool:
        """Layout choices steer the converter; everything else changes the prepared model."""
        return self.action in ("attributes", "inputs", "rewrite")

    def line_of(self, *path: Any) -> int | None:
        """The line of a key path inside the entry, or of the nearest enclosing key, or the entry's."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.line


# The device settings a recipe target may override (devices.overrides applies them).
OVERRIDES = ("input_type", "output_type", "per_channel", "activations", "on_unsupported", "quantization")


@dataclass(frozen=True)
class Target:
    device: str  # a built-in profile name, or a profile file path as written
    name: str  # default: see default_target_name; unique within a recipe
    overrides: dict[str, Any] = field(default_factory=dict)  # input_type, per_channel, ...


def lock_path(recipe: Recipe) -> Path:
    """The lockfile committed next to the recipe."""
    return recipe.path.with_suffix(".lock")


def default_target_name(device: str) -> str:
    """A target is named after its device: the profile name, or a profile file's stem."""
    if device.endswith((".yaml", ".yml")):
        return PurePosixPath(device).stem
    return device


@dataclass(frozen=True)
class Recipe:
    path: Path  # absolute path of the recipe file
    name: str
    source: Source
    targets: tuple[Target, ...]
    validate: Validate
    output: Path  # absolute build directory of this recipe
    digest: str  # sha256 of the canonical JSON of the data: blind to comments and key order
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    batch: int | None = None
    outputs: tuple[str, ...] = ()  # tensors to cut the ONNX model at; () keeps its outputs
    calibration: Calibration | None = None
    replacements: tuple[Replacement, ...] = ()

    @property
    def base(self) -> Path:
        """Directory that relative paths in the recipe resolve against."""
        return self.path.parent
