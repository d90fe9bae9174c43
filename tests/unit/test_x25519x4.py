"""The four-way AVX2 X25519 kernel (crypto/psi/_x25519x4.c) against libsodium and OpenSSL.

The kernel is the PSI's default where it builds (see crypto/psi/x25519.py), so it must give
libsodium's bytes for every input: random points and keys, the RFC 7748 vectors, points
whose limbs sit at the edges of the kernel's bounds, non-canonical and top-bit-set
encodings, the all-zero result of a small-order point (refused, with the first such row),
and rows that do not fill a block of four. In CI the kernel must have been built.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import psi
from crypto.psi import x25519

P = 2**255 - 19
REPO = Path(__file__).resolve().parents[2]
SODIUM: Any = importlib.import_module("nacl.bindings")


def _has_avx2() -> bool:
    try:
        return " avx2 " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


def _load() -> Any:
    try:
        return importlib.import_module("crypto.psi._x25519x4")
    except ImportError:
        return None


KERNEL = _load()
if KERNEL is None and os.environ.get("CI") and _has_avx2():
    pytest.fail("crypto/psi/_x25519x4.c was not built by 'pip install -e .' (is gcc there?)",
                pytrace=False)
pytestmark = pytest.mark.skipif(KERNEL is None or not KERNEL.available(),
                                reason="the AVX2 kernel is not built or this CPU has no AVX2")


def le(n: int) -> bytes:
    return (n % 2**256).to_bytes(32, "little")


def sodium(key: bytes, u: bytes) -> bytes:
    """libsodium's X25519, with the all-zero result (which it refuses) as 32 zero bytes."""
    try:
        return bytes(SODIUM.crypto_scalarmult(key, u))
    except Exception:  # nacl raises RuntimeError for an all-zero result
        return bytes(32)


def kernel(keys: bytes, rows: list[bytes], per_row: bool = False) -> tuple[list[bytes], int]:
    src = np.frombuffer(b"".join(rows), np.uint8).reshape(-1, 32).copy()
    out = np.empty_like(src)
    bad = KERNEL.multiply(keys, src, out, per_row)
    return [bytes(r) for r in out], bad


# Inputs at the edges of the limb bounds and of the encoding: values just below and
# above p, 2^255 (bit 255 set, which X25519 ignores), all-ones limbs, single bits.
EDGES = ([le(v) for v in (2, 3, 9, P - 2, P + 2, P + 3, 2**254, 2**255 - 2, 2**255 - 22,
                          2**256 - 2, 2**256 - 22, 2**255 + 9, (1 << 26) - 1, 1 << 51)]
         + [le(((1 << 255) - 1) ^ (1 << b)) for b in range(0, 255, 17)]
         + [le(1 << b) for b in range(2, 255, 23)])


def test_rfc7748_vectors() -> None:
    key = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    out, bad = kernel(key, [u])
    assert bad == -1
    assert out[0].hex() == "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"


def test_rfc7748_iterated_1000_times() -> None:
    k = u = le(9)
    for i in range(1000):
        (r,), _ = kernel(k, [u])
        k, u = r, k
        if i == 0:
            assert k.hex() == "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
    assert k.hex() == "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"


def test_random_points_and_edges_equal_libsodium_and_openssl() -> None:
    rng = np.random.default_rng(7)
    rows = [bytes(r) for r in rng.integers(0, 256, (2000, 32), dtype=np.uint8)] + EDGES
    key = psi.new_key()
    out, bad = kernel(key, rows)
    assert bad == -1
    assert out == [sodium(key, u) for u in rows]
    ossl = X25519PrivateKey.from_private_bytes(key)
    assert out[:200] == [ossl.exchange(X25519PublicKey.from_public_bytes(u)) for u in rows[:200]]


def test_one_key_per_row_equals_libsodium() -> None:
    rng = np.random.default_rng(8)
    rows = [bytes(r) for r in rng.integers(0, 256, (501, 32), dtype=np.uint8)]
    keys = [bytes(r) for r in rng.integers(0, 256, (501, 32), dtype=np.uint8)]
    out, bad = kernel(b"".join(keys), rows, per_row=True)
    assert bad == -1
    assert out == [sodium(k, u) for k, u in zip(keys, rows, strict=True)]


@pytest.mark.parametrize("n", range(0, 10))
def test_row_counts_that_do_not_fill_a_block_of_four(n: int) -> None:
    rows = [le(1000 + 7 * i) for i in range(n)]
    key = psi.new_key()
    out, bad = kernel(key, rows)
    assert (out, bad) == ([sodium(key, u) for u in rows], -1)


@pytest.mark.parametrize("position", [0, 3, 4, 8])
def test_small_order_points_give_zero_and_the_first_such_row(position: int) -> None:
    rows = [le(100 + i) for i in range(9)]
    rows[position] = le(1)
    rows[-1] = le(P - 1)                    # a second one after it: the first is named
    out, bad = kernel(psi.new_key(), rows)
    assert bad == position
    assert out[position] == bytes(32) and out[-1] == bytes(32)
    with pytest.raises(psi.PsiError, match=r"small order.*index " + str(position)):
        x25519.multiply(psi.new_key(), np.frombuffer(b"".join(rows), np.uint8).reshape(-1, 32))


@pytest.mark.parametrize(("n", "position"), [(300, 150), (300, 299), (200, 64)])
def test_a_small_order_point_deep_in_a_long_call_is_named_and_the_rest_are_right(
        n: int, position: int) -> None:
    rng = np.random.default_rng(n + position)
    rows = [bytes(r) for r in rng.integers(0, 256, (n, 32), dtype=np.uint8)]
    rows[position] = le(0)
    key = psi.new_key()
    out, bad = kernel(key, rows)
    assert bad == position
    assert out == [sodium(key, u) for u in rows]


LIMB_BIT = (0, 26, 51, 77, 102, 128, 153, 179, 204, 230)
# The largest limbs the ladder's carry leaves (limbs 1 and 5 may exceed 2^25 a little).
LIMB_MAX = (2**26 - 1, 0x2000474, 2**26 - 1, 2**25 - 1, 2**26 - 1, 0x20002C4, 2**26 - 1,
            2**25 - 1, 2**26 - 1, 2**25 - 1)


def test_encoding_reduces_every_carried_value_including_those_at_or_above_2_255() -> None:
    # Values >= 2^255 occur only for outputs near 0 mod p, which random points never give:
    # encode() reaches the fold of bit 255 directly.
    rng = np.random.default_rng(11)
    cases = [list(LIMB_MAX), [0] * 10, [2**26 - 19] + [2**25 - 1 if i % 2 else 2**26 - 1
                                                       for i in range(1, 10)]]
    cases += [[int(rng.integers(0, m + 1)) for m in LIMB_MAX] for _ in range(3000)]
    cases += [[m - int(rng.integers(0, 4)) for m in LIMB_MAX] for _ in range(200)]
    for limbs in cases:
        value = sum(v << b for v, b in zip(limbs, LIMB_BIT, strict=True))
        got = KERNEL.encode(np.array(limbs, dtype="<u8").tobytes())
        assert got == le(value % P), limbs
    assert sum(v << b for v, b in zip(LIMB_MAX, LIMB_BIT, strict=True)) >= 2**255


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), u=st.binary(min_size=32, max_size=32))
def test_property_any_key_and_point_equal_libsodium(key: bytes, u: bytes) -> None:
    (out,), _ = kernel(key, [u])
    assert out == sodium(key, u)


def test_threads_run_at_once_and_agree() -> None:
    rng = np.random.default_rng(9)
    pts = rng.integers(0, 256, (400, 32), dtype=np.uint8)
    key = psi.new_key()
    want = x25519.multiply(key, pts)
    got: list[Any] = [None] * 4

    def work(i: int) -> None:
        got[i] = x25519.multiply(key, pts)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(np.array_equal(g, want) for g in got)


def test_multiply_uses_the_kernel_unless_libsodium_is_asked_for() -> None:
    if os.environ.get("GRIDCREDIT_X25519", "") != "libsodium":
        assert x25519.BACKEND.startswith("four-way AVX2 kernel")
    pts = np.random.default_rng(10).integers(0, 256, (37, 32), dtype=np.uint8)
    key = psi.new_key()
    assert np.array_equal(x25519.multiply(key, pts), x25519.multiply(key, pts, libsodium=True))
    code = "from crypto.psi import x25519; print(x25519.BACKEND)"
    env = {**os.environ, "GRIDCREDIT_X25519": "libsodium"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "kernel" not in out and "libsodium" in out.lower()


@pytest.mark.parametrize(("keys", "src", "dst", "message"), [
    (bytes(31), bytes(32), bytearray(32), "keys must be"),
    (bytes(32), bytes(33), bytearray(33), "n \\* 32"),
    (bytes(32), bytes(64), bytearray(32), "n \\* 32"),
])
def test_bad_buffer_sizes_are_refused(keys: bytes, src: bytes, dst: bytearray,
                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KERNEL.multiply(keys, src, dst, False)
