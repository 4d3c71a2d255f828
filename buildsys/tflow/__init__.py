"""TensorFlow side of the build stages.

Deliberately imports nothing: importing TensorFlow costs seconds, and the no-op
build path must never pay it. Stage `run()` methods import the submodules.
"""
