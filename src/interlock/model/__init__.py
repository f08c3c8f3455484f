"""The pure middle: snapshot types, label table, routing model and the build step.

Nothing in this package performs I/O or reads a clock or the environment (enforced by the
import-linter contracts in pyproject.toml).
"""
