"""Benchmarks: `python -m bench.<name>`; each prints JSON and saves it under bench/results/."""
