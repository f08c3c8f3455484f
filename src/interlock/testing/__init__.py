"""Helpers shipped with the package for tests and benchmarks (usable by operators for dry runs)."""
