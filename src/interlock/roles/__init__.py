"""Roles: composition roots (core, extension, proxy agent) wiring edges around the pure middle."""
