"""Darknet models (`.cfg` + `.weights`) as a TensorFlow source.

`cfg` parses and checks the text, `weights` knows the binary layout and the
per-layer shapes (numpy only, for the cheap fetch check), `buildsys.tflow.darknet` builds the
TF function and `describe` lists the layers for `buildsys inspect`.
"""
