"""Layer 1, pure maths: the ring Z_2^64 and fixed point, additive shares, the AES-CTR PRG,
the dealer's correlated randomness and the secure product, the Taylor sigmoid, PSI maths.

Arrays in, arrays out: no I/O, no logging of values, no global state, randomness passed in.
Imports only numpy, the standard library and the cryptographic packages (``cryptography``,
PyNaCl); never ``federation`` or ``parties``, gRPC, sockets, ``random`` or ``numpy.random``.
"""
