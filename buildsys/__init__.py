"""buildsys: declarative, incremental builds of edge TFLite models."""

__version__ = "0.1.0"
