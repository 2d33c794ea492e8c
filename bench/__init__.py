"""Benchmarks (run as python -m bench.NAME); a package so the import contracts can see what they import."""
