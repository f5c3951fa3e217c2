"""Benchmarks that print numbers: run with `make bench` or `python -m bench <name>`."""
