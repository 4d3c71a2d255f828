"""Recipe problems a schema cannot express: names, paths, labels, duplicate targets.

The schema's own problems are rewritten in `buildsys.documents.problems`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from buildsys.documents.problems import show
from buildsys.documents.yamlmarks import KeyPath, Parsed
from buildsys.errors import Problem
from buildsys.recipe.model import default_target_name, not_onnx_graph

# Linux's NAME_MAX and PATH_MAX: past them every stat fails (ENAMETOOLONG) far from the recipe line.
NAME_MAX, PATH_MAX = 255, 4096


def semantic_problems(parsed: Parsed, stem: str, name_pattern: str) -> list[Problem]:
    """Checks beyond the schema; written to survive data the schema rejected."""
    data = parsed.data
    out = _default_name(parsed, data, stem, name_pattern)
    out += [parsed.at_value(path, why) for path, value in _file_names(data) if (why := _path_problem(value))]
    out += _duplicate_targets(parsed, data.get("targets"), name_pattern)
    for section in ("calibration", "validate"):
        inputs = data[section].get("inputs") if isinstance(data.get(section), dict) else None
        if isinstance(inputs, dict):
            out += _input_sources(parsed, (section, "inputs"), inputs)
    if isinstance(data.get("validate"), dict):
        out += _labels(parsed, data["validate"], "calibration" in data)
    if isinstance(data.get("shapes"), dict):
        out += _input_names(parsed, ("shapes",), data["shapes"])
    if isinstance(data.get("replacements"), list):
        from buildsys.recipe.replacements import replacement_problems

        out += replacement_problems(parsed, data["replacements"], data.get("source"))
    out += _cut_source(parsed, data)
    return out


def _cut_source(parsed: Parsed, data: dict) -> list[Problem]:
    """`outputs:` cuts ONNX graphs; on any other source it would silently do nothing."""
    source = data.get("source")
    fmt = not_onnx_graph(source)
    if "outputs" not in data or fmt is None:
        return []
    message = f"`outputs:` cuts ONNX models, and this recipe's source is {fmt}"
    return [parsed.at_key(("outputs",), message, "export the model to ONNX, or remove `outputs:`")]


def _file_names(data: dict) -> Iterator[tuple[KeyPath, str]]:
    """Every value that becomes a path: files read, the build folder, names of folders made."""
    found: list[tuple[KeyPath, Any]] = [(("name",), data.get("name")), (("output",), data.get("output"))]
    if isinstance(data.get("source"), dict):
        for k, v in data["source"].items():
            nested = v.items() if isinstance(v, dict) else ()
            found += [(("source", k, n), w) for n, w in nested if n not in ("inputs", "outputs", "kwargs")]
            found += [] if k == "sha256" or nested else [(("source", k), v)]
    for section in ("calibration", "validate"):
        part = data[section] if isinstance(data.get(section), dict) else {}
        inputs = part["inputs"] if isinstance(part.get("inputs"), dict) else {}
        for name, source in inputs.items():
            if isinstance(source, dict):
                found += [((section, "inputs", name, k), v) for k, v in source.items() if k in ("images", "npy", "npz")]
    if isinstance(data.get("validate"), dict):
        found.append((("validate", "labels"), data["validate"].get("labels")))
    for i, target in enumerate(data["targets"] if isinstance(data.get("targets"), list) else []):
        if isinstance(target, dict):
            found += [(("targets", i, k), target.get(k)) for k in ("device", "name")]
    return ((path, value) for path, value in found if isinstance(value, str))


def _path_problem(value: str) -> str | None:
    if "\0" in value:
        return "contains a NUL character, which no path can hold"
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > PATH_MAX:
        return f"is {size} bytes long; paths are limited to {PATH_MAX}"
    longest = max(value.split("/"), key=lambda part: len(part.encode("utf-8", "surrogatepass")))
    size = len(longest.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX:
        return f"holds a name of {size} bytes ({show(longest)}); file and folder names are limited to {NAME_MAX}"
    return None


def _labels(parsed: Parsed, validate: dict, calibrated: bool) -> list[Problem]:
    """Labels name samples of a data source; accuracy limits need labels."""
    out = []
    if "labels" in validate and "inputs" not in validate and not calibrated:
        hint = "add validate.inputs (or calibration.inputs): the labels are one class id per sample of that data"
        out.append(parsed.at_key(("validate", "labels"), "labels without validation data", hint))
    thresholds = validate.get("thresholds")
    for key in ("min_accuracy", "max_accuracy_drop"):
        if "labels" not in validate and isinstance(thresholds, dict) and key in thresholds:
            hint = "add validate.labels: a .npy of the class id of every validation sample"
            out.append(parsed.at_key(("validate", "thresholds", key), f"{key} needs validate.labels", hint))
    return out


def _default_name(parsed: Parsed, data: dict, stem: str, pattern: str) -> list[Problem]:
    if "name" in data or re.fullmatch(pattern, stem):
        return []
    hint = "add `name:` with letters, digits, '.', '_', '-', starting with a letter or digit"
    return [parsed.at(None, ("name",), f"the file name '{stem}' is not a valid recipe name", hint)]


def _duplicate_targets(parsed: Parsed, targets: Any, name_pattern: str) -> list[Problem]:
    if not isinstance(targets, list):
        return []
    out, first = [], {}
    for i, target in enumerate(targets):
        name = _target_name(target)
        if not isinstance(name, str):
            continue
        # a built-in device name is always a valid name; a profile file's stem may not be
        if "name" not in target and target["device"] != name and not re.fullmatch(name_pattern, name):
            message = f"the target name '{name}' taken from the device is not a valid name"
            out.append(parsed.at_key(("targets", i, "device"), message, "add `name:` to this target"))
            continue
        if name not in first:
            first[name] = i
            continue
        path = ("targets", i, "name") if "name" in target else ("targets", i)
        line = parsed.values[("targets", first[name])][0]
        message = f"target name '{name}' is used twice (first at line {line})"
        out.append(parsed.at_key(path, message, "give one of them a different `name:`"))
    return out


def _target_name(target: Any) -> str | None:
    if not isinstance(target, dict):
        return None
    device = target.get("device")
    return target.get("name", default_target_name(device) if isinstance(device, str) else None)


def _input_sources(parsed: Parsed, path: KeyPath, inputs: dict) -> list[Problem]:
    out = _input_names(parsed, path, inputs)
    for name, source in inputs.items():
        if isinstance(source, dict) and "images" in source:
            out += _channels(parsed, path + (name,), source)
    return out


def _input_names(parsed: Parsed, path: KeyPath, names: dict) -> list[Problem]:
    message = "input name must not be empty or start or end with spaces"
    return [parsed.at_key(path + (n,), message) for n in names if not n or n.strip() != n]


def _channels(parsed: Parsed, path: KeyPath, source: dict) -> list[Problem]:
    color = source.get("color", "rgb")
    out = []
    for key in ("mean", "std"):
        values = source.get(key)
        if not isinstance(values, list) or not 1 <= len(values) <= 3:
            continue  # missing, or the schema already reported it
        if color == "gray" and len(values) != 1:
            out.append(parsed.at_value(path + (key,), f"needs 1 value for gray images, got {len(values)}"))
        elif color in ("rgb", "bgr") and len(values) == 2:
            out.append(parsed.at_value(path + (key,), f"needs 1 or 3 values for {color} images, got 2"))
    return out
