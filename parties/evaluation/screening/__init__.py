"""Screening indicators before modelling (docs/design.md, "Screening"): per-bin statistics
of an indicator against the label from counts (``binstats``: WOE, IV, KS, AUC, monotone
trend and merge), stability (``stability``: PSI), redundancy (``redundancy``: Pearson, VIF),
the selection rules (``selection``), the bank's screening document (``document``) and its
plots (``plots``).

Pure functions of counts and arrays; imports ``crypto`` and ``parties.labels`` at most,
nothing from ``federation`` and nothing of the party protocol.
"""
