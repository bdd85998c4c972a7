"""Validation: kernels timed on real hardware, measured records and reproduction targets.

Filled by the [validation] issue; the package exists so that records and targets have a home.
"""
