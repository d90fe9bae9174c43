"""Names of the dealt secure products, shared by the dealers and the parties.

Each name labels one family of dealer corrections (docs/design.md, "The one secure product"):
the owner of the matrix and the holder of the vector expand the same masks from their seeds
under this name, and the dealer ships the holder's correction under it.

- mode ``local``: ``grad_grid`` is X_G^T d (the grid owns the matrix, the bank holds the
  vector share and receives the correction), ``grad_bank`` the mirror image, ``loss`` the dot
  product u_G . (u_B/4 - y~/2), first party grid, second party bank.
- mode ``shared``: ``fwd_<owner>`` is X_owner <theta_owner>, ``bwd_<owner>`` is
  X_owner^T <d> (names from :func:`crypto.correlated.product_name`).
- screening (``Task.SCREEN``): two bin products, each a matrix of the grid's and a block of
  the bank's columns: the one-hot bin matrix times [y on training rows, training rows,
  validation rows] (``screen-bins`` / ``screen-counts``), and the grid's fixed-point
  standardized indicators times the bank's (``screen-z`` / ``screen-pearson``). A deal
  request for epoch ``SCREEN_DEAL_EPOCH`` asks for the bank's corrections of both.
"""

from __future__ import annotations

from crypto.correlated import BACKWARD, FORWARD, product_name
from federation.protocol.messages import Role

GRAD = {Role.GRID: "grad_grid", Role.BANK: "grad_bank"}
LOSS = "loss"
FORWARD_PRODUCT = {role: product_name(FORWARD, role.value) for role in (Role.GRID, Role.BANK)}
BACKWARD_PRODUCT = {role: product_name(BACKWARD, role.value) for role in (Role.GRID, Role.BANK)}

SCREEN_DEAL_EPOCH = -1
SCREEN_COUNTS_MATRIX, SCREEN_COUNTS_BLOCK = "screen-bins", "screen-counts"
SCREEN_PEARSON_MATRIX, SCREEN_PEARSON_BLOCK = "screen-z", "screen-pearson"
SCREEN_COUNT_COLUMNS = 3  # y on training rows, training rows, validation rows
