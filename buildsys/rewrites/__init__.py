"""The registry of tested ONNX rewrites (`registry.REWRITES`) that turn a node an
accelerator lacks into ops it has (HardSwish -> Add/Clip/Mul, SPP -> SPPF, ...), and the
op builders they use (`ops`).

A leaf: recipe validation checks rewrite names here, `onnxprep` applies them, and the
converter's fusions leave what a rewrite emitted unfused.
"""
