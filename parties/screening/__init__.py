"""Screening indicators before modelling: statistics of binned indicators against the label,
their stability, redundancy and the selection rules (pure functions, no federation)."""
