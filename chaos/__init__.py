"""The fault drill (`make chaos`, `python -m chaos`): the mesh as processes on private servers under a
steady checkout load, each process, server and dependency broken in turn, and an invariant checker
over every service's state after each fault. See docs/reliability.md.
"""
