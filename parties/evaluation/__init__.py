"""Evaluation a bank's credit-risk team expects: metrics by concern (``checks``,
``discrimination``, ``calibration``, ``goodness_of_fit``, with ``metrics.evaluate`` as the one
import for callers), the points scorecard (``scorecard``) and PNG plots (``plots``).

Pure functions of arrays and prediction files. Imports ``crypto`` and ``parties.labels`` at
most; nothing from ``federation`` and nothing of the party protocol.
"""
