"""The power-data label library: raw-table loading, the grid and bank indicator registries,
Table 7 early warning, Table 5 shell scores, synthetic data and the ``synth`` / ``features`` /
``warn`` subcommands of ``gridcredit``.

Everything here runs inside one party on its own data; nothing in this package talks to the
other party. Imports ``crypto`` and ``parties.evaluation`` at most: nothing from
``federation`` and nothing of the party protocol.
"""
