"""Gradient-boosted trees with the bank as label holder (the post-loan ensemble).

``core`` (gradients, split search, tree arrays), ``grower`` (levels, sibling subtraction,
boosting) and ``twin`` (the plaintext twin) are the algorithm; ``bank_side``, ``grid_side``
and ``fit`` run it federated over the bin product; ``model``, ``node_steps`` and
``serving`` are the files, the node's steps and online scoring. Imports ``crypto``,
``federation.protocol``, ``federation.transport`` and ``parties`` (binning, bin product,
data, model writing, serving), like the rest of ``parties``.
"""
