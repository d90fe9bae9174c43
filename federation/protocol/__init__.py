"""Layer 2, the words every node shares and that know no node: messages and settings
(``messages``), errors, the train/validation split and batch schedule (``schedule``), the
names of dealt products (``products``), the tensor codec (``codec``) and the interfaces the
transport serves (``services``).

Imports ``crypto`` and itself only: no gRPC, no protobuf, no transport, no party or
coordinator code.
"""
