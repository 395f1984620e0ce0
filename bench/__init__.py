"""Benchmark harness: direct vs. minimal aiohttp proxy vs. aigw (run with ``python -m bench``)."""
