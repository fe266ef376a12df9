"""The benchmark suite: ``make bench``, or ``python -m benchmarks --help``.

Kept empty on purpose: every client is measured in a fresh ``python -m
benchmarks.worker`` subprocess, and this package must not import anything into
it beyond what the client under test needs.
"""
