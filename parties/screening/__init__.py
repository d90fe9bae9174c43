"""Screening indicators before modelling: statistics of binned indicators against the label,
their stability, redundancy and the selection rules.

Pure functions of counts and arrays; imports ``crypto``, ``parties.labels`` and itself,
nothing from ``federation``.
"""
