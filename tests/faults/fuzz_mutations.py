"""The recipe fuzzer's mutations (tests/faults/test_fuzz.py runs them): each takes a seeded
Random, a recipe's text and its data, and returns what it did, the new text and the exit
code it implies (None where it implies none)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

# Placeholders: cases are made at collection time, the directories exist only at run time.
WS, OUTSIDE = "@WS@", "@OUTSIDE@"


# -- YAML out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A scalar written exactly as given (5000-digit integers, .nan): Python cannot always print it."""

    tag: str
    text: str


class FuzzDumper(yaml.SafeDumper):
    pass


FuzzDumper.add_representer(Raw, lambda d, v: d.represent_scalar("tag:yaml.org,2002:" + v.tag, v.text))


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=FuzzDumper, sort_keys=False, allow_unicode=True, width=1 << 20)


# -- paths into the data --------------------------------------------------------------

KeyPath = tuple[Any, ...]


def paths(data: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every node below the root, parents before children."""
    out: list[KeyPath] = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        out.append(prefix + (key,))
        out += paths(value, prefix + (key,))
    return out


def get(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


def put(data: Any, path: KeyPath, value: Any) -> None:
    get(data, path[:-1])[path[-1]] = value


def mappings(data: Any) -> list[KeyPath]:
    return [()] + [p for p in paths(data) if isinstance(get(data, p), dict)]


def key_paths(data: Any, *names: str) -> list[KeyPath]:
    return [p for p in paths(data) if isinstance(p[-1], str) and p[-1] in names]


# -- mutations ------------------------------------------------------------------------
# Each takes (rng, base text, base data) and returns (what, new recipe text or bytes, expected exit or None).

Mutation = tuple[str, "str | bytes", "int | None"]

SCALARS: list[Callable[[random.Random], Any]] = [
    lambda r: r.choice(["", "x", "64", "true", "null", "cpu-int8", "~", "- a", "{a: 1}", "yes", "0x10", "1_000"]),
    lambda r: r.choice([0, 1, -1, 7, 2**31, -(2**63), 2**64 + 1, 10**30]),
    lambda r: r.choice([0.0, -0.0, 0.5, 1.5, -1e-9, 1e308, 5e-324, 64.0]),
    lambda r: r.choice([True, False]),
    lambda r: None,
    lambda r: r.choice([[], [1], ["a", "b"], [[1, 2], [3]], [None], [{}]]),
    lambda r: r.choice([{}, {"a": 1}, {"images": "x"}, {"device": "cpu-int8"}, {"": None}]),
]

NUMBERS = [
    0,
    -1,
    -(10**9),
    1,
    2,
    2**31 - 1,
    2**31,
    2**63,
    2**64 + 1,
    10**30,
    -(2**63),
    0.0,
    -0.0,
    0.5,
    1.5,
    1e-300,
    5e-324,
    1e308,
    -1e308,
    65536,
    10**18,
    3.0,
    1e300,
]
NONFINITE = [".nan", ".NaN", ".NAN", ".inf", "-.inf", "+.Inf", "1.0e+999", "-1.0e+999", "1.0e-999"]
LONG = [
    lambda: "a" * 100_000,
    lambda: "x/" * 20_000,
    lambda: "p" * 300,
    lambda: "../" * 2000,
    lambda: "*" * 5000,
    lambda: "a " * 50_000,
    lambda: "é" * 40_000,
    lambda: "[" * 3000,
]
UNICODE = [
    "形状",
    "😀",
    "\u202emodel.keras",
    "e\u0301",
    "\u200b",
    "ｃｐｕ-ｉｎｔ８",
    "cpu\u2010int8",
    "Ω.yaml",
    "模型/模型.keras",
    "\ufeffcpu-int8",
    "ﬁle.png",
    "\u0130",
    "ß",
    "\U0001f600.yaml",
]
CONTROLS = [
    "a\0b",
    "\0",
    "\x01",
    "\x07bell",
    "\x1b[31mred\x1b[0m",
    "\x7f",
    "a\rb",
    "a\nb",
    "\tx",
    "\x85",
    "\u2028",
    "\ud7ff",
    "\x08\x08\x08",
    "x\x00.yaml",
]
TRAVERSAL = [
    "../../..",
    "../../../../../../../../etc/passwd",
    "/etc/passwd",
    "/etc",
    "/",
    "//",
    ".",
    "..",
    " ",
    "~",
    "~/model.keras",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/proc/self/mem",
    "/proc/self/status",
    "/proc/self/fd",
    "/proc/self/root/etc/passwd",
    "/proc/self/cwd/../x",
    f"{OUTSIDE}",
    f"{OUTSIDE}/file.txt",
    f"{OUTSIDE}/model.keras",
    "model/../../../..",
    "file:///etc/passwd",
    "\\\\server\\share\\x",
    "C:\\model.keras",
    "../ws/recipes/model/model.keras",
    "./././model/model.keras",
    "model//model.keras",
    "model/model.keras/",
    "/nonexistent/x.png",
]
# Files that are not what they are named: FIFOs block a reader forever, /dev/zero never ends.
SPECIAL = [
    "fifo",
    "fifo.yaml",
    "fifo.png",
    "fifo.npy",
    "fifo.keras",
    "zero.yaml",
    "zero.png",
    "zero.npy",
    "zero.keras",
    "loop.yaml",
    "huge.yaml",
    "huge.npy",
    "dir.yaml",
    "profile.yaml",
]
GLOBS = [
    "**/*.png",
    "../**/*.png",
    "[",
    "[!",
    "*[",
    "data/calib/[a-z",
    "**",
    "***/*.png",
    "data/**/**/**/*.png",
    "{a,b}*.png",
    "?",
    "*.PNG",
    "data/calib/*.png/",
    "data/calib",
    "data/calib/",
    "data/calib/[0-9]*.png",
    "../examples/shapes/*/*.png",
    "data/calib/**",
    "*",
    "data/*/*.png",
    "[]",
    "[[]",
    "\\*",
    "**/**/**/**/*",
]
# Globs rooted at / would walk the whole machine (and /proc's loops): the loader refuses ** outside the workspace.
ROOT_GLOBS = ["/**/*.png", "/**", "/proc/**/*.png", "../../../../../../../**/*.png", "/**/*"]
BAD_DEVICES = [
    "cpu-int9",
    "CPU-INT8",
    "gpu",
    "axis-artpec10",
    "cpu-int8 ",
    " cpu-int8",
    "",
    "cpu_int8",
    "cpu-int8.yaml",
    "devices/none.yaml",
    "../../../../etc/passwd.yaml",
    "/proc/self/status.yaml",
    "devices/my-npu.yml",
    "devices/",
    ".yaml",
    "a.yaml.yaml",
]
DEVICES = BAD_DEVICES + [
    "devices/my-npu.yaml",
    "devices/../devices/my-npu.yaml",
    f"{OUTSIDE}/profile.yaml",
    "ethos-u55-128",
    "axis-cv25",
    "tflm-int8",
    "coral-edgetpu",
    "cpu-int16x8",
    "cpu-dynamic-range",
    "cpu-fp16",
    "axis-artpec7",
    "axis-artpec9",
    "ethos-u85-256",
]
# the first values of each are wrong
ENUMS = {
    "layout": ["NCHW", "nwhc", "chw", "", "nhwc ", "nchw", "nhwc"],
    "color": ["rgba", "RGB", "grey", "bgr", "gray", "yuv", ""],
    "task": ["classify", "Classification", "detection", "other", "classification"],
    "input_type": ["float64", "int4", "uint8", "float16", "int16", "INT8"],
    "output_type": ["float64", "bool", "int8", "uint16", "float32"],
    "activations": ["int4", "int32", "int16", "float"],
    "on_unsupported": ["ignore", "FAIL", "warn", "error", ""],
    "per_channel": ["yes", "no", "true", 1, 0],
}
WRONG_ENUMS = {
    "layout": ["NCHW", "nwhc", "chw", "", "nhwc "],
    "color": ["rgba", "RGB", "grey", "yuv", ""],
    "task": ["classify", "Classification", "detection"],
    "input_type": ["float64", "int4", "float16", "INT8"],
    "output_type": ["float64", "bool", "uint16"],
    "activations": ["int4", "int32", "float"],
    "on_unsupported": ["ignore", "FAIL", "error", ""],
    "per_channel": ["yes", "no", 1, 0],
}
UNKNOWN_KEYS = [
    "colour",
    "sampels",
    "Version",
    "outputs",
    "target",
    "x",
    "__proto__",
    "$ref",
    "<<<",
    "",
    " ",
    "a.b",
    "targets ",
    "1",
    "validate ",
    "inputs.image",
    "TARGETS",
    "devices",
]
# Build folders `check` must refuse (exit 2): `clean` would delete the user's files there.
OUTPUTS_OWNED = [
    ".",
    "..",
    "../recipes",
    "../..",
    "/",
    OUTSIDE,
    f"{OUTSIDE}/build",
    "/tmp",
    "../recipes/../..",
    "../.buildsys",
    "../build",
]
# ... and the folders holding the recipe's own model and data (recipes/model, recipes/data for
# the test recipe, examples/ for the bundled ones)
OUTPUTS_OF_SOURCES = {
    "model/": ["model", "data", "data/calib", "data/val"],
    "../examples/": ["../examples", "../examples/shapes", "../examples/shapes/calib"],
}
OUTPUTS_OTHER = [
    "../build/x",
    "../build/shapes-onnx",
    "build",
    "x/../../build/y",
    "../examples/x",
    "data/x",
    "../build/" + "n" * 300,
    "../build/a\nb",
    "out",
]


def _at(rng: random.Random, data: Any, wanted: Callable[[Any], bool] = lambda v: True) -> KeyPath:
    choices = [p for p in paths(data) if wanted(get(data, p))]
    return rng.choice(choices)


def _set(rng: random.Random, data: Any, path: KeyPath, value: Any, what: str) -> Mutation:
    data = copy.deepcopy(data)
    put(data, path, value)
    return f"{what}: {_dotted(path)} = {_short(value)}", dump(data), None


def _dotted(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "<top>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} chars)"


def _required(path: KeyPath, data: Any) -> bool:
    """Keys the schema requires, or whose removal leaves a list or mapping the schema rejects."""
    last = path[-1]
    parent = get(data, path[:-1])
    if path in (("version",), ("source",), ("targets",), ("calibration", "inputs")):
        return True
    if len(path) == 3 and path[0] == "targets" and last == "device":
        return True
    if isinstance(last, int) and path[0] in ("shapes",):
        return False  # a shorter shape is still a shape
    if len(path) == 2 and path[0] == "source" and last != "sha256":
        return True
    if len(path) == 4 and path[1] == "inputs" and last in ("images", "npy", "npz"):
        return True
    return (
        isinstance(parent, (dict, list))
        and len(parent) == 1
        and path[:-1] in (("targets",), ("calibration", "inputs"), ("validate", "inputs"))
    )


def delete_key(rng, text, data) -> Mutation:
    path = _at(rng, data)
    expect = 2 if _required(path, data) else None
    data = copy.deepcopy(data)
    del get(data, path[:-1])[path[-1]]
    return f"delete {_dotted(path)}", dump(data), expect


def duplicate_key(rng, text, data) -> Mutation:
    lines = text.splitlines(keepends=True)
    keyed = [i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(("#", "-"))]
    i = rng.choice(keyed)
    indent = len(lines[i]) - len(lines[i].lstrip())
    end = i + 1  # the whole block of the key, so a duplicate mapping is a duplicate too
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    block = lines[i:end] if rng.random() < 0.5 else lines[i : i + 1]
    return (
        f"duplicate line {i + 1} ({len(block)} lines): {lines[i].strip()}",
        "".join(lines[:end] + block + lines[end:]),
        None,
    )


def retype(rng, text, data) -> Mutation:
    value = rng.choice(SCALARS)(rng)
    return _set(rng, data, _at(rng, data), value, "retype")


def number(rng, text, data) -> Mutation:
    numeric = [p for p in paths(data) if isinstance(get(data, p), (int, float)) and not isinstance(get(data, p), bool)]
    return _set(rng, data, rng.choice(numeric or paths(data)), rng.choice(NUMBERS), "number")


def bigint(rng, text, data) -> Mutation:
    digits = rng.choice([4301, 5000, 20_000])
    value = Raw("int", rng.choice(["", "-"]) + "9" * digits)
    numeric = [p for p in paths(data) if isinstance(get(data, p), int) and not isinstance(get(data, p), bool)]
    what, body, _ = _set(rng, data, rng.choice(numeric or paths(data)), value, f"bigint ({digits} digits)")
    return what, body, 2


def nonfinite(rng, text, data) -> Mutation:
    numeric = [p for p in paths(data) if isinstance(get(data, p), (int, float)) and not isinstance(get(data, p), bool)]
    value = rng.choice(NONFINITE)
    what, body, _ = _set(rng, data, rng.choice(numeric or paths(data)), Raw("float", value), "nonfinite")
    return what, body, None if value == "1.0e-999" else 2


def _strings(data: Any) -> list[KeyPath]:
    return [p for p in paths(data) if isinstance(get(data, p), str)] or paths(data)


def long_string(rng, text, data) -> Mutation:
    return _set(rng, data, rng.choice(_strings(data)), rng.choice(LONG)(), "long string")


def unicode(rng, text, data) -> Mutation:
    if rng.random() < 0.25:  # as a key
        path = rng.choice(mappings(data))
        data = copy.deepcopy(data)
        get(data, path)[rng.choice(UNICODE)] = 1
        return f"unicode key under {_dotted(path)}", dump(data), None
    return _set(rng, data, rng.choice(_strings(data)), rng.choice(UNICODE), "unicode")


def control_chars(rng, text, data) -> Mutation:
    if rng.random() < 0.5:  # raw in the file, where YAML forbids or tolerates them
        char = rng.choice(["\0", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\r", "\x0c", "\ufffe"])
        at = rng.randrange(len(text))
        forbidden = char in "\0\x01\x07\x1b\x7f\ufffe"  # not printable: YAML's reader refuses the file
        return f"raw {char!r} at char {at}", text[:at] + char + text[at:], 2 if forbidden else None
    return _set(rng, data, rng.choice(_strings(data)), rng.choice(CONTROLS), "control chars")


PATH_KEYS = ("keras", "onnx", "tflite", "saved_model", "images", "npy", "npz", "labels", "output", "device")


def _path_slot(rng: random.Random, data: Any) -> KeyPath:
    found = key_paths(data, *PATH_KEYS)
    return rng.choice(found + [("output",), ("validate", "labels")])


def _path_value(path: KeyPath, value: str) -> str:
    # devices and labels only take some suffixes: keep the mutation past the schema
    if path[-1] == "device" and not value.endswith((".yaml", ".yml")):
        return value + ".yaml"
    if path[-1] == "labels" and not value.endswith(".npy"):
        return value + ".npy"
    return value


def _ensure(data: Any, path: KeyPath) -> Any:
    """A copy of the data with the mappings along `path` present."""
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
            node[part] = {}
        node = node[part]
    return data


def path_traversal(rng, text, data) -> Mutation:
    path = _path_slot(rng, data)
    value = _path_value(path, rng.choice(TRAVERSAL))
    return _set(rng, _ensure(data, path), path, value, "path")


def special_files(rng, text, data) -> Mutation:
    path = _path_slot(rng, data)
    value = _path_value(path, f"{OUTSIDE}/{rng.choice(SPECIAL)}")
    return _set(rng, _ensure(data, path), path, value, "special file")


def _images_slot(rng: random.Random, data: Any) -> KeyPath:
    found = key_paths(data, "images", "npy", "npz")
    return rng.choice(found) if found else ("calibration", "inputs", "image", "images")


def globs(rng, text, data) -> Mutation:
    path = _images_slot(rng, data)
    value = rng.choice(GLOBS)
    data = _ensure(data, path)
    if path[-1] != "images":  # an images pattern in place of the array file
        src = get(data, path[:-1])
        src.pop(path[-1])
        path = path[:-1] + ("images",)
    return _set(rng, data, path, value, "glob")


def root_globs(rng, text, data) -> Mutation:
    path = _images_slot(rng, data)
    data = _ensure(data, path)
    if path[-1] != "images":
        get(data, path[:-1]).pop(path[-1])
        path = path[:-1] + ("images",)
    return _set(rng, data, path, rng.choice(ROOT_GLOBS), "root glob")


def truncate(rng, text, data) -> Mutation:
    raw = text.encode("utf-8")
    at = rng.randrange(len(raw))
    return f"truncate at byte {at} of {len(raw)}", raw[:at], None


def tabs(rng, text, data) -> Mutation:
    lines = text.splitlines(keepends=True)
    indented = [i for i, line in enumerate(lines) if line.startswith(" ")] or [0]
    i = rng.choice(indented)
    how = rng.choice(["indent", "after colon", "everywhere"])
    if how == "indent":
        lines[i] = "\t" + lines[i].lstrip(" ")
    elif how == "after colon":
        lines[i] = lines[i].replace(": ", ":\t", 1)
    else:
        lines = [line.replace("  ", "\t") for line in lines]
    return f"tabs ({how}) at line {i + 1}", "".join(lines), 2 if how == "indent" else None


ANCHORS = [
    # the same object twice: the dumper writes &id001 / *id001
    "share",
    "undefined alias",
    "alias bomb",
    "recursive",
    "anchor on scalar",
    "alias as key",
]


def anchors(rng, text, data) -> Mutation:
    how = rng.choice(ANCHORS)
    if how == "share":
        data = copy.deepcopy(data)
        src = rng.choice(paths(data))
        dst = rng.choice(paths(data))
        if dst[: len(src)] == src:  # not into itself
            dst = ("validate", "inputs") if "validate" in data else ("calibration",)
        data = _ensure(data, dst)
        put(data, dst, get(data, src))
        return f"alias: {_dotted(dst)} = *{_dotted(src)}", dump(data), None
    if how == "undefined alias":
        return how, text.replace("samples:", "samples: *nowhere #", 1) + "name2: *nope\n", 2
    if how == "alias bomb":
        bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        for n in range(1, 9):
            bomb += f"{chr(97 + n)}: &{chr(97 + n)} [" + ",".join([f"*{chr(96 + n)}"] * 9) + "]\n"
        return how, text + "bomb:\n" + "".join("  " + line for line in bomb.splitlines(keepends=True)), 2
    if how == "recursive":
        return how, text.replace("targets:\n", "targets: &t\n  - *t\n", 1), 2
    if how == "anchor on scalar":  # batch: 1 is valid, unless the recipe has a batch already
        return how, text.replace("version: 1", "version: &v 1\nbatch: *v", 1), 2 if "\nbatch:" in text else None
    return how, text.replace("version: 1", "version: &x 1", 1) + "? *x\n: 2\n", 2


def merge_keys(rng, text, data) -> Mutation:
    how = rng.choice(["target", "top", "list", "bad"])
    if how == "target":
        return (
            how,
            text.replace("targets:\n", "targets:\n  - &t {device: cpu-int8, name: a}\n  - <<: *t\n    name: b\n", 1),
            2,
        )
    if how == "top":
        return how, "base: &b {version: 1}\n<<: *b\n" + text, 2
    if how == "list":
        return how, "x: &b {version: 1}\ny: &c {batch: 1}\n<<: [*b, *c]\n" + text, 2
    return how, text + "<<: 1\n", 2


TAGS = [
    "!!python/object/apply:os.system ['touch /tmp/pwned-buildsys']",
    "!!python/name:os.system",
    "!!binary aGVsbG8=",
    "!!timestamp 2001-12-14",
    "2001-12-14",
    "!!set {a, b}",
    "!!omap [{a: 1}]",
    "!custom x",
    "!!str 64",
    "!!int '64'",
    "!!int 'abc'",
    "!!float 'x'",
    "!!bool 'maybe'",
    "!!null 'x'",
    "!!int '0x'",
    "!!float ''",
    "!!int ''",
    "!!bool ''",
    "!!map [1, 2]",
    "!!seq {a: 1}",
    "!!str [1]",
    "!<tag:yaml.org,2002:int> '1_0'",
    "!!int 0b102",
    "!!float '1e999'",
    "!!int '1' '2'",
    "!!pairs [{a: 1}]",
    "!!merge x",
    "!!value x",
    "!!yaml x",
    "!!int 0o8",
    "!!float .nan",
    "!!int '" + "9" * 5000 + "'",
]


def tags(rng, text, data) -> Mutation:
    tag = rng.choice(TAGS)
    lines = text.splitlines(keepends=True)
    valued = [i for i, line in enumerate(lines) if ": " in line and not line.lstrip().startswith("#")]
    i = rng.choice(valued)
    key, _, _ = lines[i].partition(": ")
    lines[i] = f"{key}: {tag}\n"
    # a tag YAML cannot build into plain data, or text its tag cannot read, must be refused
    refused = tag.startswith(
        (
            "!!python",
            "!!binary",
            "!!timestamp",
            "2001",
            "!!set",
            "!!omap",
            "!custom",
            "!!pairs",
            "!!merge",
            "!!value",
            "!!yaml",
            "!!map [",
            "!!seq {",
            "!!str [",
            "!!int 'abc'",
            "!!float 'x'",
            "!!bool",
            "!!int '0x'",
            "!!float ''",
            "!!int ''",
            "!!int 0b",
            "!!int 0o8",
            "!!float .nan",
            "!!float '1e999'",
            "!!int '1' '2'",
            "!!int '999",
        )
    )
    return f"tag at line {i + 1}: {lines[i].strip()[:100]}", "".join(lines), 2 if refused else None


TOPLEVEL = [
    "",
    "\n",
    "# only a comment\n",
    "- version: 1\n",
    "42\n",
    "'text'\n",
    "null\n",
    "~\n",
    "[]\n",
    "{}\n",
    "true\n",
    "---\n",
    "...\n",
    "--- |\n  version: 1\n",
    "version\n",
    "!!map {}\n",
    "? version\n",
    "&a [*a]\n",
    "- - - - []\n",
    "[" * 200 + "]" * 200 + "\n",
    "{a: " * 100 + "1" + "}" * 100 + "\n",
]


def toplevel(rng, text, data) -> Mutation:
    how = rng.choice(["replace", "as list", "as scalar"])
    if how == "replace":
        top = rng.choice(TOPLEVEL)
        return f"top level: {top!r}", top, 2
    if how == "as list":
        return how, "- " + text.replace("\n", "\n  "), 2
    return how, "|\n" + "".join("  " + line for line in text.splitlines(keepends=True)), 2


def documents(rng, text, data) -> Mutation:
    how = rng.choice(["twice", "empty second", "markers", "leading", "stream end", "directive", "bad directive"])
    body = {
        "twice": text + "---\n" + text,
        "empty second": text + "---\n",
        "markers": "---\n" + text + "...\n",
        "leading": "---\n---\n" + text,
        "stream end": text + "...\n" + text,
        "directive": "%YAML 1.2\n---\n" + text,
        "bad directive": "%YAML 9.9\n---\n" + text,
    }[how]
    return how, body, 0 if how in ("markers", "directive") else 2


def encoding(rng, text, data) -> Mutation:
    how = rng.choice(["utf-16", "bom", "latin-1", "lone byte", "crlf", "cr", "surrogate", "nul bytes", "overlong"])
    raw = text.encode("utf-8")
    at = rng.randrange(len(raw))
    body = {
        "utf-16": text.encode("utf-16"),
        "bom": b"\xef\xbb\xbf" + raw,
        "latin-1": text.replace("shapes", "shäpes").encode("latin-1"),
        "lone byte": raw[:at] + b"\xff" + raw[at:],
        "crlf": raw.replace(b"\n", b"\r\n"),
        "cr": raw.replace(b"\n", b"\r"),
        "surrogate": raw + "name: \ud800\n".encode("utf-8", "surrogatepass"),
        "nul bytes": raw[:at] + b"\0\0\0" + raw[at:],
        "overlong": raw + b"name: \xc0\xaf\n",
    }[how]
    # a BOM and any line break style are still the same recipe; bytes that are not UTF-8 are not
    return f"encoding: {how}", body, 0 if how in ("bom", "crlf", "cr") else 2


def unknown_key(rng, text, data) -> Mutation:
    path = rng.choice(mappings(data))
    key = rng.choice(UNKNOWN_KEYS)
    data = copy.deepcopy(data)
    target = get(data, path)
    # open mappings (shapes, inputs, attributes) take any name: only a closed one must refuse
    closed = path[-1:] not in (("shapes",), ("inputs",), ("attributes",)) and key not in target
    target[key] = rng.choice(SCALARS)(rng)
    return f"unknown key {key!r} under {_dotted(path)}", dump(data), 2 if closed else None


def enum(rng, text, data) -> Mutation:
    if rng.random() < 0.4:
        i = rng.randrange(len(data["targets"]))
        value = rng.choice(DEVICES)
        what, body, _ = _set(rng, data, ("targets", i, "device"), value, "device")
        return what, body, 2 if value in BAD_DEVICES else None
    key = rng.choice(sorted(ENUMS))
    if key in ("layout", "color"):
        slots = [p[:-1] + (key,) for p in key_paths(data, "images")] or [("calibration", "inputs", "image", key)]
    elif key == "task":
        slots = [("validate", "task")]
    else:
        slots = [("targets", i, key) for i in range(len(data["targets"]))]
    path = rng.choice(slots)
    value = rng.choice(ENUMS[key])
    what, body, _ = _set(rng, _ensure(data, path), path, value, f"enum {key}")
    return what, body, 2 if value in WRONG_ENUMS[key] else None


EMPTIES = [
    ("targets",),
    ("calibration", "inputs"),
    ("validate", "inputs"),
    ("shapes",),
    ("validate", "thresholds"),
    ("replacements",),
    ("source",),
    ("calibration",),
    ("validate",),
    ("shapes", "image"),
    ("targets", 0),
]


def empty(rng, text, data) -> Mutation:
    if rng.random() < 0.5:
        path = rng.choice(EMPTIES)
    else:
        path = rng.choice([p for p in paths(data) if isinstance(get(data, p), (dict, list))])
    value = rng.choice([[], {}, "", None])
    return _set(rng, _ensure(data, path), path, value, "empty")


def output_owned(rng, text, data) -> Mutation:
    source = next(iter(data["source"].values()))
    value = rng.choice(OUTPUTS_OWNED + next(v for k, v in OUTPUTS_OF_SOURCES.items() if source.startswith(k)))
    what, body, _ = _set(rng, data, ("output",), value, "output")
    return what, body, 2


def output_other(rng, text, data) -> Mutation:
    return _set(rng, data, ("output",), rng.choice(OUTPUTS_OTHER), "output")


STRUCTURES: list[tuple[str, Callable[[dict], None]]] = [
    ("targets as mapping", lambda d: d.update(targets={"cpu-int8": {}})),
    (
        "two source formats",
        lambda d: d["source"].update(onnx="../examples/shapes/model.onnx", keras="model/model.keras"),
    ),
    ("source as text", lambda d: d.update(source="model/model.keras")),
    ("inputs as list", lambda d: d["calibration"].update(inputs=[{"images": "data/calib/*.png"}])),
    (
        "npy and images",
        lambda d: next(iter(d["calibration"]["inputs"].values())).update(npy="../examples/shapes/calib.npy"),
    ),
    ("npy source", lambda d: d["calibration"]["inputs"].update(image={"npy": "../examples/shapes/calib.npy"})),
    ("npz with key", lambda d: d["calibration"]["inputs"].update(image={"npz": "x.npz", "key": "image"})),
    ("key with images", lambda d: next(iter(d["calibration"]["inputs"].values())).update(key="x")),
    ("resize with npy", lambda d: d["calibration"]["inputs"].update(image={"npy": "a.npy", "resize": [1, 1]})),
    ("saved_model on a file", lambda d: d.update(source={"saved_model": "../examples/shapes/model.keras"})),
    ("keras on a folder", lambda d: d.update(source={"keras": "../examples/shapes"})),
    ("tflite source", lambda d: d.update(source={"tflite": "../examples/shapes/model.keras"})),
    ("onnx on keras", lambda d: d.update(source={"onnx": "../examples/shapes/model.keras"})),
    ("h5 source", lambda d: d.update(source={"keras": "../examples/shapes/model.h5"})),
    ("no calibration, int8", lambda d: d.pop("calibration", None)),
    ("axis-cv25 from keras", lambda d: d["targets"].append({"device": "axis-cv25"})),
    ("same target twice", lambda d: d["targets"].append(dict(d["targets"][0]))),
    (
        "profile stem clash",
        lambda d: d["targets"].extend([{"device": "devices/my-npu.yaml"}, {"device": "cpu-int8", "name": "my-npu"}]),
    ),
    ("input not in model", lambda d: d["calibration"]["inputs"].update(other={"images": "data/calib/*.png"})),
    ("shapes of unknown input", lambda d: d.update(shapes={"nope": [1, 2], " ": [1], "": [3]})),
    (
        "labels without data",
        lambda d: (
            d.pop("calibration", None),
            d["validate"].pop("inputs", None),
            d["validate"].update(labels="../examples/shapes/val/labels.npy"),
        ),
    ),
    ("accuracy without labels", lambda d: d["validate"].update(thresholds={"min_accuracy": 0.5})),
    ("sha256 pin wrong", lambda d: d["source"].update(sha256="0" * 64)),
    ("sha256 uppercase", lambda d: d["source"].update(sha256="A" * 64)),
    (
        "gray with 3 means",
        lambda d: next(iter(d["calibration"]["inputs"].values())).update(color="gray", mean=[1, 2, 3]),
    ),
    ("rgb with 2 stds", lambda d: next(iter(d["calibration"]["inputs"].values())).update(std=[1, 2])),
    ("std zero", lambda d: next(iter(d["calibration"]["inputs"].values())).update(std=[0])),
    ("version 2", lambda d: d.update(version=2)),
    ("version 1.0", lambda d: d.update(version=1.0)),
    ("version '1'", lambda d: d.update(version="1")),
    ("name of another recipe", lambda d: d.update(name="shapes-onnx")),
    ("output of another recipe", lambda d: d.update(output="../build/shapes-onnx")),
    ("huge shapes", lambda d: d.update(shapes={"image": [10**12, 10**12, 10**12, 10**12]})),
    ("huge resize", lambda d: next(iter(d["calibration"]["inputs"].values())).update(resize=[10**9, 10**9])),
    ("samples huge", lambda d: d["calibration"].update(samples=10**18)),
    ("100 targets", lambda d: d.update(targets=[{"device": "cpu-int8", "name": f"t{i}"} for i in range(100)])),
    ("deep nesting", lambda d: d.update(validate=_deep(70))),
]


def _deep(n: int) -> Any:
    out: Any = 1
    for _ in range(n):
        out = {"a": out}
    return out


def structure(rng, text, data) -> Mutation:
    what, change = rng.choice(STRUCTURES)
    data = copy.deepcopy(data)
    data.setdefault("calibration", {"inputs": {"image": {"images": "data/calib/*.png"}}})
    data.setdefault("validate", {})
    try:
        change(data)
    except (KeyError, AttributeError, TypeError, StopIteration, IndexError):
        return f"structure ({what}) did not apply; top-level extra key", dump({**data, "extra": what}), None
    return f"structure: {what}", dump(data), None


REPLACEMENTS = [
    {"node": "", "attributes": {"mode": "nearest"}},
    {"match": {"name": "("}, "attributes": {"mode": 1}},
    {"match": {"name": "(a+)+$"}, "attributes": {"a": None}},
    {"match": {}, "rewrite": "hardswish"},
    {"match": {"op_type": "Conv"}, "rewrite": "gelu-tanh"},
    {"match": {"op_type": "Conv"}, "rewrite": "nope"},
    {"node": "x", "rewrite": "erf-poly", "approximate": "yes"},
    {"input": "image", "keep_layout": "nhwc"},
    {"output": "out", "output_layout": "nhwc", "optional": True},
    {"node": "x", "input": "y", "attributes": {}},
    {"node": "x", "inputs": {"shape": [[1, [2, [3]]], "a"]}},
    {"node": "x", "inputs": {"1": float("nan")}},
    {"match": {"op_type": "Conv", "name": "[" * 100}, "attributes": {"x": 1}, "optional": False},
    {"input": "image", "keep_layout": "nchw", "approximate": True},
    {"match": {"name": "\\"}, "attributes": {"x": 1}},
    {"match": {"name": "(?P<a>x)(?P<a>y)"}, "attributes": {"x": 1}},
    {"match": {"name": "x{99999999999}"}, "attributes": {"x": 1}},
    {"match": {"name": "(" * 5000 + ")" * 5000}, "attributes": {"x": 1}},
]


def replacements(rng, text, data) -> Mutation:
    data = copy.deepcopy(data)
    entries = [copy.deepcopy(rng.choice(REPLACEMENTS)) for _ in range(rng.randint(1, 3))]
    data["replacements"] = entries
    if rng.random() < 0.6:
        data["source"] = {"onnx": "../examples/shapes/model.onnx"}
    return f"replacements: {_short(entries)}", dump(data), None


# Paths given on the command line instead of the recipe; the recipe itself stays intact.
RECIPE_PATHS = {
    "/dev/zero": 2,
    "/dev/null": 2,
    f"{OUTSIDE}/fifo": 2,
    f"{OUTSIDE}/fifo.yaml": 2,
    f"{OUTSIDE}/huge.yaml": 2,
    f"{OUTSIDE}/dir.yaml": 2,
    f"{OUTSIDE}/zero.yaml": 2,
    f"{OUTSIDE}/loop.yaml": 2,
    "recipes/model/model.keras": 2,
    "recipes/nope.yaml": 2,
    "recipes/model": 2,
    "/proc/self/status": 2,
    "recipes/../recipes/shapes.yaml": 0,
    f"{OUTSIDE}": 2,
    "recipes/devices/my-npu.yaml": 2,
    f"{WS}/recipes/shapes.yaml": 0,
    "recipes/shapes.yaml/": None,
    "-": 2,
    "recipes/\0.yaml": 2,
}


# kind -> (mutation, weight). Weights keep the slow kinds rare: every root glob may cost the whole budget.
KINDS: dict[str, tuple[Callable[..., Mutation] | None, int]] = {
    "delete_key": (delete_key, 30),
    "duplicate_key": (duplicate_key, 15),
    "retype": (retype, 40),
    "number": (number, 20),
    "bigint": (bigint, 5),
    "nonfinite": (nonfinite, 8),
    "long_string": (long_string, 10),
    "unicode": (unicode, 12),
    "control_chars": (control_chars, 12),
    "path_traversal": (path_traversal, 25),
    "special_files": (special_files, 15),
    "glob": (globs, 12),
    "root_glob": (root_globs, 1),
    "truncate": (truncate, 15),
    "tabs": (tabs, 6),
    "anchors": (anchors, 10),
    "merge_keys": (merge_keys, 5),
    "tags": (tags, 15),
    "toplevel": (toplevel, 8),
    "documents": (documents, 7),
    "encoding": (encoding, 8),
    "unknown_key": (unknown_key, 12),
    "enum": (enum, 20),
    "empty": (empty, 12),
    "output_owned": (output_owned, 10),
    "output_other": (output_other, 6),
    "structure": (structure, 25),
    "replacements": (replacements, 10),
    "recipe_path": (None, 8),  # these four: see make_case
    "profile": (None, 12),
    "workspace": (None, 4),
    "lockfile": (None, 8),
}

# Mutation kinds that fail today because of defects other engineers are fixing (issue 12).
# They stay in the run: a fix turns them into passes (xfail is not strict); delete the entry then.
KNOWN: dict[str, str] = {}
