"""Parse a Darknet `.cfg` into sections, refusing what buildsys cannot build.

Darknet itself drops every whitespace character of a line and reads numbers
with atoi/atof (so a typo silently becomes 0); here a bad number is an error
at its line, and every unsupported section, option or activation is listed in
one message so a user sees the whole gap at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from buildsys.errors import InputError

LAYER_TYPES = (
    "convolutional",
    "maxpool",
    "avgpool",
    "route",
    "shortcut",
    "upsample",
    "connected",
    "softmax",
    "dropout",
    "yolo",
)
ACTIVATIONS = ("leaky", "mish", "swish", "logistic", "relu", "linear")
# Darknet's own short names for sections
_ALIASES = {
    "network": "net",
    "conv": "convolutional",
    "max": "maxpool",
    "avg": "avgpool",
    "conn": "connected",
    "soft": "softmax",
    "drop": "dropout",
}
# checked at parse time so a typo is reported at its line, not as a wrong shape later
_INTS = {
    "net": ("height", "width", "channels"),
    "convolutional": ("filters", "size", "stride", "pad", "padding", "groups", "batch_normalize"),
    "maxpool": ("size", "stride", "padding"),
    "route": ("groups", "group_id"),
    "upsample": ("stride",),
    "connected": ("output", "batch_normalize"),
    "softmax": ("groups",),
}
_INT_LISTS = {"route": ("layers",), "shortcut": ("from",)}
_FLOATS = {"upsample": ("scale",), "dropout": ("probability",), "softmax": ("temperature",)}
_WITH_ACTIVATION = ("convolutional", "connected", "shortcut")
# Options that change what a layer computes, with the one value that leaves it supported
# (None: any value is unsupported).
_UNSUPPORTED_OPTIONS: dict[str, dict[str, str | None]] = {
    "convolutional": {
        "dilation": "1",
        "antialiasing": "0",
        "binary": "0",
        "xnor": "0",
        "deform": "0",
        "coordconv": "0",
        "flipped": "0",
        "share_index": None,
        "stride_x": None,
        "stride_y": None,
    },
    "maxpool": {"maxpool_depth": "0", "antialiasing": "0", "stride_x": None, "stride_y": None},
    "shortcut": {"weights_type": "none"},
    "softmax": {"groups": "1", "temperature": "1", "tree": None},
}


@dataclass(frozen=True)
class Section:
    """One `[type]` block; `index` counts layers as Darknet does ([net] is -1)."""

    type: str
    options: dict[str, str]
    line: int
    file: str = "cfg"
    index: int = -1
    option_lines: dict[str, int] = field(default_factory=dict)

    def label(self) -> str:
        layer = f" (layer {self.index})" if self.index >= 0 else ""
        return f"{self.file}:{self.line} [{self.type}]{layer}"

    def error(self, message: str, hint: str | None = None) -> InputError:
        return InputError(f"{self.label()}: {message}", hint=hint, path=self.file)

    def get_str(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def get_int(self, key: str, default: int) -> int:
        return _int(self.options[key], self, key) if key in self.options else default

    def get_ints(self, key: str) -> list[int]:
        return _ints(self.options.get(key, ""), self, key)

    def get_float(self, key: str, default: float) -> float:
        return _float(self.options[key], self, key) if key in self.options else default


def parse(path: Path) -> list[Section]:
    """Sections of the cfg at `path` ([net] first); InputError on bad or unsupported content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read Darknet cfg {path}: {exc.strerror or exc}", path=str(path)) from None
    return parse_text(text, str(path))


def parse_text(text: str, file: str = "cfg") -> list[Section]:
    sections = _read_sections(text, file)
    _check_net(sections, file)
    for section in sections:
        _check_numbers(section)
    unsupported = [row for s in sections for row in _unsupported(s)]
    if unsupported:
        raise _unsupported_error(unsupported, file)
    return sections


def _read_sections(text: str, file: str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"\s+", "", re.split(r"[#;]", raw, maxsplit=1)[0])
        if not line:
            continue
        if line.startswith("["):
            sections.append(_header(line, number, file, len(sections) - 1))
            continue
        if not sections:
            raise InputError(
                f"{file}:{number}: option {line!r} before the first [section]",
                hint="a Darknet cfg starts with [net]",
                path=file,
            )
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise InputError(
                f"{file}:{number}: expected key=value, found {raw.strip()!r}",
                hint="each line of a section is key=value; comments start with # or ;",
                path=file,
            )
        # Darknet reads the first occurrence of a key; keep that one
        sections[-1].options.setdefault(key, value)
        sections[-1].option_lines.setdefault(key, number)
    return sections


def _header(line: str, number: int, file: str, index: int) -> Section:
    if not line.endswith("]") or len(line) < 3:
        raise InputError(f"{file}:{number}: malformed section header {line!r}", hint="write it as [name]", path=file)
    name = line[1:-1]
    name = _ALIASES.get(name, name)
    return Section(name, {}, number, file, index)


def _check_net(sections: list[Section], file: str) -> None:
    if not sections or sections[0].type != "net":
        raise InputError(
            f"{file}: not a Darknet cfg: the first section must be [net]",
            hint="pass the model's .cfg file (it starts with [net] holding width, height, channels)",
            path=file,
        )
    for extra in sections[1:]:
        if extra.type == "net":
            raise extra.error("a second [net] section", hint="a cfg has exactly one [net], at the top")
    net = sections[0]
    for key in ("height", "width", "channels"):
        if net.get_int(key, 3 if key == "channels" else 0) < 1:
            raise net.error(f"{key} must be a positive integer", hint="set height=, width= (and channels=) in [net]")


def _check_numbers(section: Section) -> None:
    for key in _INTS.get(section.type, ()):
        section.get_int(key, 0)
    for key in _INT_LISTS.get(section.type, ()):
        if key in section.options:
            section.get_ints(key)
    for key in _FLOATS.get(section.type, ()):
        section.get_float(key, 0.0)


def _unsupported(section: Section) -> list[tuple[Section, str]]:
    if section.type != "net" and section.type not in LAYER_TYPES:
        return [(section, "unknown section type")]
    rows = []
    for key, fine in _UNSUPPORTED_OPTIONS.get(section.type, {}).items():
        value = section.options.get(key)
        if value is not None and (fine is None or not _same(value, fine)):
            rows.append((section, f"option {key}={value}"))
    if section.type in _WITH_ACTIVATION:
        activation = section.get_str("activation", default_activation(section.type))
        if activation not in ACTIVATIONS:
            rows.append((section, f"activation={activation}"))
    return rows


def default_activation(layer_type: str) -> str:
    """Darknet's defaults: logistic for convolutional and connected, linear for shortcut."""
    return "linear" if layer_type == "shortcut" else "logistic"


def _same(value: str, fine: str) -> bool:
    try:
        return float(value) == float(fine)
    except ValueError:
        return value.lower() == fine


def _unsupported_error(rows: list[tuple[Section, str]], file: str) -> InputError:
    labels = [s.label() for s, _ in rows]
    width = max(map(len, labels))
    table = "\n".join(f"  {label.ljust(width)}  {what}" for label, (_, what) in zip(labels, rows))
    noun = "part" if len(rows) == 1 else "parts"
    layers = ", ".join(f"[{t}]" for t in ("net", *LAYER_TYPES))
    return InputError(
        f"{file}: {len(rows)} unsupported {noun} of this Darknet cfg:\n{table}",
        hint=f"buildsys builds the sections {layers} with activations {', '.join(ACTIVATIONS)};"
        " export the model another way (e.g. to ONNX) if it needs more",
        path=file,
    )


def _int(value: str, section: Section, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _bad_number(section, key, value, "an integer") from None


def _ints(value: str, section: Section, key: str) -> list[int]:
    try:
        return [int(item) for item in value.split(",") if item]
    except ValueError:
        raise _bad_number(section, key, value, "a comma-separated list of integers") from None


def _float(value: str, section: Section, key: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise _bad_number(section, key, value, "a number") from None


def _bad_number(section: Section, key: str, value: str, kind: str) -> InputError:
    line = section.option_lines.get(key, section.line)
    return InputError(
        f"{section.file}:{line}: {key}={value!r} in [{section.type}] is not {kind}",
        hint=f"fix the value of {key} at line {line}",
        path=section.file,
    )
