"""PyTorch sources: the model loaded from what the recipe names, exported to ONNX, run as the reference.

Only `files` imports without torch: fetch checks the files on machines without it.
"""
