"""Renderers: routing model -> proxy configuration text. Pure: no I/O, no clock, no environment."""
