"""Interlock: application routing for Docker Swarm services, in Python.

This module holds the version string only; it must import nothing.
"""

__version__ = "0.1.0"
