"""Benchmark scripts: each module with a ``main`` is runnable as ``python -m bench.<name>``."""
