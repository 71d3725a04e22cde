"""Benchmarks: numbers printed, targets compared in the same run, never timed unit tests."""
