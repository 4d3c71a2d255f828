"""ONNX -> TensorFlow converter that tracks a layout permutation per tensor.

Never imports doit, rich, stages or the CLI: it is a library the convert
stage calls. Entry points: `prepare.prepare_model` (ONNX -> static ONNX) and
`convert.Converter` (static ONNX -> a TF callable with ONNX names and order).
"""
