"""A cryptographic pseudo-random generator of ring elements.

Assumes: 32-byte seeds or keys drawn from ``secrets``; a label is never reused for two
different purposes under one seed (callers build labels from job, step and counter).
Each (seed, label) pair is turned into an AES-256 key with HKDF-SHA256, and the
AES-CTR keystream over a zero nonce is read as little-endian ``uint64`` words. numpy's
own generators are not used for masks: they are not cryptographic.
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.ring import Ring

SEED_BYTES = 32
_NONCE = bytes(16)
_CHUNK = 1 << 20  # keystream bytes per cipher call (at most the size of _ZEROS)
# The plaintext of every cipher call, zeroed once per process: a fresh ``bytes(n)`` per call
# zeroed n bytes each time, which cost more than the AES of a small mask.
_ZEROS = memoryview(bytes(1 << 20))


def new_seed() -> bytes:
    """A fresh 32-byte seed from the operating system's CSPRNG."""
    return secrets.token_bytes(SEED_BYTES)


def derive_key(seed: bytes, label: str) -> bytes:
    """HKDF-SHA256(seed, info=label) -> 32 bytes; a different label gives an independent key."""
    if len(seed) < 16:
        raise ValueError(f"seed must be at least 16 bytes, got {len(seed)}")
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"gridcredit/prg/v1", info=label.encode()
    )
    return hkdf.derive(seed)


def keystream(key: bytes, n_bytes: int) -> bytes:
    """The first ``n_bytes`` of the AES-256-CTR keystream under ``key``."""
    enc = Cipher(algorithms.AES(key), modes.CTR(_NONCE)).encryptor()
    return enc.update(bytes(n_bytes)) + enc.finalize()


def _keystream_into(key: bytes, out: npt.NDArray[np.uint8], offset: int) -> None:
    """Keystream bytes [offset, offset + len(out)) written into ``out``, a chunk at a time.

    CTR's counter block is the 128-bit big-endian block index (it starts at the zero nonce),
    so any byte range of the stream can be produced without the bytes before it.
    """
    block, skip = divmod(offset, 16)
    enc = Cipher(algorithms.AES(key), modes.CTR(block.to_bytes(16, "big"))).encryptor()
    if skip:
        enc.update(bytes(skip))
    zeros, step = _ZEROS, min(_CHUNK, len(_ZEROS))
    for pos in range(0, len(out), step):
        n = min(step, len(out) - pos)
        try:
            written = enc.update_into(zeros[:n], out[pos:pos + n].data)  # into ``out``, no copy
            if written != n:  # never leave mask bytes unwritten
                raise RuntimeError(f"AES-CTR wrote {written} of {n} keystream bytes")
        except ValueError:  # older ``cryptography`` wants block_size - 1 spare bytes
            out[pos:pos + n] = np.frombuffer(enc.update(zeros[:n]), dtype=np.uint8)


def expand(seed: bytes, label: str, shape: int | tuple[int, ...]) -> Ring:
    """Uniform ring elements of the given shape, determined by (seed, label).

    1. key = HKDF(seed, label).
    2. Read prod(shape) * 8 bytes of AES-CTR keystream as little-endian uint64.
    """
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    count = int(np.prod(dims, dtype=np.int64))
    words = np.empty(count, dtype="<u8")
    _keystream_into(derive_key(seed, label), words.view(np.uint8), 0)
    return words.astype(np.uint64, copy=False).reshape(dims)


def expand_rows(seed: bytes, label: str, shape: tuple[int, int], start: int, stop: int
                ) -> Ring:
    """Rows [start, stop) of ``expand(seed, label, shape)``, without the other rows: a large
    mask can be used a block of rows at a time."""
    n, k = shape
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows [{start}, {stop}) outside a {n}-row mask")
    words = np.empty((stop - start) * k, dtype="<u8")
    _keystream_into(derive_key(seed, label), words.view(np.uint8), 8 * k * start)
    return words.astype(np.uint64, copy=False).reshape(stop - start, k)


def expand_words(seed: bytes, label: str, shape: tuple[int, int],
                 dtype: type[np.unsignedinteger[Any]], start: int, stop: int,
                 out: npt.NDArray[np.unsignedinteger[Any]] | None = None
                 ) -> npt.NDArray[np.unsignedinteger[Any]]:
    """Rows [start, stop) of an n x k array of uniform words of ``dtype`` (``uint8`` to
    ``uint64``): the AES-CTR keystream of (seed, label) read as little-endian words of that
    width, so a ring of l <= 32 bits costs 4 keystream bytes per element, not 8. With
    ``uint64`` it is ``expand_rows``. ``out``: a 1-d buffer of ``dtype`` to write into (its
    first (stop - start) * k words; the result is a view of them), so that a loop over row
    blocks reuses one buffer instead of faulting in fresh pages for every block."""
    n, k = shape
    if not 0 <= start <= stop <= n:
        raise ValueError(f"rows [{start}, {stop}) outside a {n}-row mask")
    size, count = np.dtype(dtype).itemsize, (stop - start) * k
    if out is None:
        words = np.empty(count, dtype=np.dtype(dtype).newbyteorder("<"))
    elif out.dtype != dtype or out.ndim != 1 or out.size < count \
            or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous 1-d {np.dtype(dtype)} buffer of at least "
                         f"{count} words, got {out.dtype} {out.shape}")
    else:
        words = out[:count]
    _keystream_into(derive_key(seed, label), words.view(np.uint8), size * k * start)
    return words.astype(dtype, copy=False).reshape(stop - start, k)


class RingRng:
    """A stream of independent uniform ring arrays under one seed (a counter per draw)."""

    __slots__ = ("_seed", "_prefix", "_counter")

    def __init__(self, seed: bytes | None = None, prefix: str = "rng") -> None:
        self._seed = new_seed() if seed is None else seed
        self._prefix = prefix
        self._counter = 0

    def random(self, shape: int | tuple[int, ...]) -> Ring:
        """The next uniform ring array of ``shape``."""
        self._counter += 1
        return expand(self._seed, f"{self._prefix}/{self._counter}", shape)

    def __bool__(self) -> bool:
        raise TypeError("a RingRng has no truth value")
