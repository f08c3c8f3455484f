"""Edges: thin adapters around one outside system each (Docker, nginx, HTTP peers, files)."""
