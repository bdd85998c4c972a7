"""Interfaces: the ``decodex`` command line (and, later, the dashboard)."""
