"""ONNX to ONNX preparation, the `prepare` stage's work: shape overrides, dynamic inputs,
constant folding, cuts, and the recipe's `replacements:` (per-node edits in `edits`, applied
with the registered rewrites of `buildsys.rewrites` in `replace`).

It sits above the converter (it cuts with `buildsys.converter.cut`) and below `tflow`,
which loads prepared models through `prepare.load_onnx`.
"""
