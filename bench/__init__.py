"""Benchmarks: `make bench` prints the numbers the issues ask for."""
