"""Layer 3, how messages move and are recorded: the ``Channel`` protocol with its in-memory
and gRPC implementations and the tag-matching inbox (``channel``), the party-to-party
stream (``stream``), gRPC client and server (``grpc_client``, ``grpc_server``), protobuf
conversions (``wire``, the only place that converts), certificates and role checks
(``certs``), and the signed hash-chained audit log with its checks (``audit``,
``audit_check``, ``audit_pairs``).

Imports ``crypto``, ``federation.protocol`` and the generated ``federation.proto`` only;
never ``parties`` nor the top of ``federation`` (it serves the coordinator through
``federation.protocol.services``).
"""
