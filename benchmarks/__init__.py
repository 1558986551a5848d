"""Benchmarks: run by hand (``python benchmarks/gate.py``), never by the test suite."""
