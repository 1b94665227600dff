"""Benchmarks of the lab: how long its containers take to start, beside real runtimes.

Not part of the test suite: timings vary from machine to machine and run to run, so they are
measured and reported here, never asserted. See README.md.
"""
