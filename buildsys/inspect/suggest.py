"""Recipe snippets to paste: `shapes:` for dynamic inputs, `replacements:` for rewrites and NMS limits."""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import numpy_helper

from buildsys.documents.yamlmarks import yaml_text
from buildsys.inspect.model import DEFAULT_DOMAINS
from buildsys.inspect.rewrites import Suggestion
from buildsys.onnxprep.dynamic import snippet

NMS_LIMIT_INPUT = 2
NMS_LIMIT_NAME = "max_output_boxes_per_class"
NMS_SUGGESTED_LIMIT = 100
NMS_HUGE = 2**31  # exporters write INT64_MAX or INT32_MAX for "no limit": no static output size


def shapes_snippet(dynamic: list[tuple[str, list]]) -> str | None:
    if not dynamic:
        return None
    known = [(name, dims) for name, dims in dynamic if dims]
    text = snippet(known) if known else "shapes:"
    # without a rank there is nothing to suggest: the user writes every dim
    unknown = [f"  # {name}: [...]   # rank unknown: give every dim" for name, dims in dynamic if not dims]
    return "\n".join([text, *unknown])


def replacements_snippet(model: onnx.ModelProto, rewrites: list[Suggestion], needed: set[str]) -> str | None:
    """Entries for the rewrites that fit (`needed`: ops the converter lacks) and for unbounded NMS."""
    entries = [line for s in rewrites if s.fits for line in _rewrite_entry(s, s.op_type in needed)]
    entries += _nms_entries(model.graph)
    return "\n".join(["replacements:", *entries]) if entries else None


def _rewrite_entry(s: Suggestion, needed: bool) -> list[str]:
    why = f"the converter lacks {s.op_type}" if needed else f"for devices without {s.op_type}"
    count = f"{s.total} node{'s' if s.total != 1 else ''}"
    op_type = yaml_text(s.op_type)
    if s.fits_all:
        return [f"  - match: {{op_type: {op_type}}}   # {count}; {why}", *_rewrite_lines(s)]
    # a bare op_type match would also select the nodes that do not fit, which the engine rejects;
    # one entry by name (not one per node) keeps a group rewrite's nodes together (SPP -> SPPF)
    lines = [f"  # {s.rewrite} fits {len(s.fits)} of {count} ({why}); not {s.misfit}"]
    if len(s.named) < len(s.fits):
        lines.append(f"  # {len(s.fits) - len(s.named)} of them have no name to select them by")
    if s.named:
        names = yaml_text("^(?:" + "|".join(re.escape(n) for n in s.named) + ")$")
        lines += [f"  - match: {{op_type: {op_type}, name: {names}}}", *_rewrite_lines(s)]
    return lines


def _rewrite_lines(s: Suggestion) -> list[str]:
    lines = [f"    rewrite: {s.rewrite}"]
    if not s.exact:
        lines.append(f"    approximate: true   # max abs error {s.bound:g}")
    return lines + [f"    # or: rewrite: {name}" for name in s.alternatives]


def _nms_entries(graph: onnx.GraphProto) -> list[str]:
    lines = []
    for node in graph.node:
        if node.op_type != "NonMaxSuppression" or node.domain not in DEFAULT_DOMAINS:
            continue
        limit = node.input[NMS_LIMIT_INPUT] if len(node.input) > NMS_LIMIT_INPUT else ""
        value = _constant(graph, limit) if limit else None
        if limit and (value is None or value.size != 1 or value.dtype.kind not in "iu" or value.item() < NMS_HUGE):
            continue  # a set limit, or a computed one a constant would not describe
        selector = f"node: {yaml_text(node.name)}" if node.name else "match: {op_type: NonMaxSuppression}"
        lines.append(f"  - {selector}")
        # by the schema's input name: the recipe takes text keys only, and the name says what it is;
        # the engine keeps the rank exporters chose (torch writes a 1-element list)
        limit = NMS_SUGGESTED_LIMIT if value is None or value.ndim == 0 else [NMS_SUGGESTED_LIMIT] * value.size
        lines.append(f"    inputs: {{{NMS_LIMIT_NAME}: {limit}}}")
    return lines


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    """An initializer (not one a caller may feed as an input) or a Constant node's value."""
    if name in {v.name for v in graph.input}:
        return None
    for t in graph.initializer:
        if t.name == name:
            return None if t.data_location == onnx.TensorProto.EXTERNAL else numpy_helper.to_array(t)
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS and name in n.output and n.attribute:
            value = onnx.helper.get_attribute_value(n.attribute[0])
            return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else np.asarray(value)
    return None
