"""Benchmarks: `make bench` or `python -m tests.bench` (see README.md here). Not part of the test suite."""
