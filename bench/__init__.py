"""Benchmarks: each prints its figure beside an anchor measured in the same run, as a ratio."""
