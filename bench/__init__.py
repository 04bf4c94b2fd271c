"""Benchmarks (make bench): figures beside a yardstick from the same run, never timed tests."""
