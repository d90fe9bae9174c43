"""Layer 4, the party node and its protocol steps: data loading (``data``), PSI alignment
(``alignment``, ``psi_pool``), the two fits (``local_fit``, ``shared_fit`` with
``shared_params``), joint scoring (``joint``), online serving (``serving``,
``serving_grid``, ``serving_bank``), checkpoints, models, the bank's outputs and the node's
state machine (``node``, ``state``).

Imports ``crypto``, ``federation.protocol`` and ``federation.transport``; never gRPC itself
and never the top of ``federation``. Two rooms inside know nothing of the federation:
``parties.labels`` (the indicator library) and ``parties.evaluation`` (metrics, scorecard,
plots).
"""
