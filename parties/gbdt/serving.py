"""Online scoring of a boosted model (``gridcredit serve``): what each node answers.

The serving protocol is the logistic one (``parties.serving``); only the per-row answer
of the grid changes: instead of its partial logit it returns, for each requested row,
"x <= threshold" at every one of its splits, packed 64 to a word, in the canonical order
of (tree, node) that both model files give. The bank walks its trees with them. The
bank learns those bits for the rows it scores (the README's reveal table says so).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from crypto import bin_product as bp
from parties.gbdt.model import GbdtBankModel, GbdtGridModel
from parties.serving_bank import Combine

Float = npt.NDArray[np.float64]


def grid_row_bits(model: GbdtGridModel, x: Float) -> npt.NDArray[np.uint64]:
    """Per row of ``x``, the packed bits of the grid's splits in (tree, node) order."""
    nodes, bits = model.left_bits(x)
    order = np.lexsort((nodes[:, 1], nodes[:, 0])) if len(nodes) else np.zeros(0, np.int64)
    return bp.pack_bits(bits[order].T.reshape(x.shape[0], len(order)))


def bank_combiner(model: GbdtBankModel, x: Float) -> Combine:
    """The logit of the bank's rows from its features ``x`` and the grid's packed bits."""
    nodes = sorted(model.grid_nodes())

    def combine(rows: npt.NDArray[np.int64], words: npt.NDArray[np.generic]) -> Float:
        expected = (len(rows), -(-len(nodes) // 64))
        if words.shape != expected:
            raise ValueError(f"the grid's split bits have shape {words.shape}; the bank's "
                             f"trees need {expected}: the model files do not match")
        bits = bp.unpack_bits(np.asarray(words, dtype=np.uint64), len(nodes))
        grid_left = {node: bits[:, j] for j, node in enumerate(nodes)}
        return model.raw(x[rows], grid_left)

    return combine
