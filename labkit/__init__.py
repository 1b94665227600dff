"""Namespace Lab's toolkit: build, run and look at containers one kernel feature at a time."""

__version__ = "0.1.0"
