"""Swarm orchestration, pure: the service specs Interlock runs (`specs`), what the core wants
running (`desired`) and the Swarm objects it reads as typed records (`records`). No Docker
client, clock or file system: the edges (`edges/swarm_ops.py`) send and read them."""
