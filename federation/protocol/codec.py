"""The tensor codec: a numpy array as (dtype string, shape, little-endian bytes) and back.

Only plain numeric and fixed-width text dtypes travel; a decoded tensor's dtype, rank,
dimensions and byte count are checked before a view is made, so a hostile peer cannot make
the receiver allocate or misread. Knows nothing of protobuf: ``federation.transport.wire``
puts these three fields into its messages.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from federation.protocol.errors import ProtocolAbort

ALLOWED_KINDS = "uifU"
MAX_DIMS = 4
MAX_DIM_SIZE = 2**31


def encode_tensor(name: str, arr: npt.NDArray[np.generic]) -> tuple[str, list[int], bytes]:
    """(dtype string, shape, raw little-endian bytes) of ``arr``.

    Raises
    ------
    TypeError
        The dtype cannot be sent (objects, records, ...).
    """
    dtype, shape, raw = encode_tensor_view(name, arr)
    return dtype, shape, raw.tobytes()


def encode_tensor_view(name: str, arr: npt.NDArray[np.generic]
                       ) -> tuple[str, list[int], npt.NDArray[np.uint8]]:
    """:func:`encode_tensor` with the raw bytes as a flat ``uint8`` view of the array (no
    copy when it is already contiguous and little-endian), for a serializer that copies
    them once into the message.

    Raises
    ------
    TypeError
        The dtype cannot be sent (objects, records, ...).
    """
    if (type(arr) is np.ndarray and arr.dtype in _PLAIN_LITTLE
            and arr.flags.c_contiguous):  # the usual case, without the conversions below
        return _PLAIN_LITTLE[arr.dtype], list(arr.shape), arr.reshape(-1).view(np.uint8)
    a = np.ascontiguousarray(arr)
    if a.dtype.kind not in ALLOWED_KINDS:
        raise TypeError(f"tensor {name!r}: dtype {a.dtype} cannot be sent")
    little = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
    return little.dtype.str, list(a.shape), little.reshape(-1).view(np.uint8)


def decode_tensor(name: str, dtype_text: str, dims: list[int],
                  data: bytes | memoryview) -> npt.NDArray[np.generic]:
    """The array of :func:`encode_tensor`'s fields (a read-only view of ``data``).

    Raises
    ------
    ProtocolAbort
        Unknown or refused dtype, too many or too large dimensions, or a byte count that
        does not match dtype and shape.
    """
    dtype = _ACCEPTED.get(dtype_text)
    if dtype is not None and len(dims) == 1 and 0 <= dims[0] <= MAX_DIM_SIZE:  # the usual case
        if dims[0] * dtype.itemsize != len(data):
            raise ProtocolAbort(f"tensor {name!r}: {len(data)} bytes for {dtype_text} "
                                f"{tuple(int(s) for s in dims)} (expected "
                                f"{dims[0] * dtype.itemsize})")
        return np.frombuffer(data, dtype=dtype)
    try:
        dtype = _dtype(dtype_text)
    except (TypeError, ValueError, SyntaxError) as exc:
        raise ProtocolAbort(f"tensor {name!r}: unknown dtype {dtype_text!r}") from exc
    shape = tuple(int(s) for s in dims)
    if (dtype.kind not in ALLOWED_KINDS or dtype.itemsize == 0 or len(shape) > MAX_DIMS
            or any(not 0 <= s <= MAX_DIM_SIZE for s in shape)):
        raise ProtocolAbort(f"tensor {name!r}: refused dtype {dtype_text!r} / shape {shape}")
    expected = dtype.itemsize
    for size in shape:  # Python ints: a hostile shape cannot wrap the byte count
        expected *= size
    if expected != len(data):
        raise ProtocolAbort(f"tensor {name!r}: {len(data)} bytes for {dtype_text} {shape} "
                            f"(expected {expected})")
    if len(_ACCEPTED) < 64:
        _ACCEPTED[dtype_text] = dtype  # passed every dtype check above
    return np.frombuffer(data, dtype=dtype).reshape(shape)


_ACCEPTED: dict[str, np.dtype[Any]] = {}  # dtype strings once accepted
# Native little-endian numeric dtypes that need no conversion, with their wire names.
_PLAIN_LITTLE: dict[np.dtype[Any], str] = {
    np.dtype(t): np.dtype(t).str for t in ("<u8", "<i8", "<f8", "<u4", "<i4", "<f4", "u1", "i1")}


@lru_cache(maxsize=64)
def _dtype(text: str) -> np.dtype[Any]:
    """``np.dtype(text)``, parsed once per dtype string (a few us each in numpy 2)."""
    return np.dtype(text)
