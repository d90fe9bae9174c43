"""Server-aided PSI (the default): PRF tags under a key the parties share, matched by a server.

After Kamara, Mohassel, Raykova and Sadeghian, "Scaling Private Set Intersection to
Billion-Element Sets" (FC 2014); the coordinator is the server, under the non-collusion
assumption the dealer already rests on (docs/design.md). Recipe for one job:

1. Grid and bank each draw an X25519 key pair for the job (the private half is passed in,
   drawn from ``secrets`` by the caller) and send the public half to each other, party to
   party: the coordinator never sees them (``public_key``).
2. Both derive the job key ``K = HKDF-SHA256(X25519(own, peer), info = TAG || domain ||
   lower public || higher public)`` (``agree_key``).
3. Each computes the 128-bit tag of every own ID, CBC-MAC over AES-256 under a key
   derived from K and the domain, of ``len(id) || utf8(id)`` padded to 16-byte blocks
   (``tags``), shuffles the tags with a permutation from ``secrets``
   (``matching.shuffle``) and sends them to the coordinator.
4. The coordinator matches the two lists and returns to each party the positions of its
   matched tags, in ascending tag order (``crypto.psi.tag_match.match_tags``), so both
   parties list the intersection in the same order.
5. Each party checks that the tags at its positions strictly ascend and maps them through
   its permutation to own rows (``accept_match``); the parties then compare a digest of
   the matched tags, so a server that answered the two differently is caught.

What the coordinator learns: both list sizes and the intersection size (which shuffled
positions match says nothing). Tags are pseudorandom without K: CBC-MAC over a PRP is a PRF
on prefix-free messages (Bellare, Kilian, Rogaway; Petrank, Rackoff), the length prefix makes
ID encodings prefix-free; for 10^7 IDs of up to 17 blocks the bound is < 2^-70. Were the
coordinator to collude with a party, that party's K would let it test guesses of the other's
IDs. Each party learns the intersection, as with ECDH. Why CBC-MAC, and its measured costs:
docs/design.md, "One training job", step 2.

Assumes: two semi-honest parties and a semi-honest coordinator that does not collude with
either; an authenticated party-to-party channel for step 1; IDs normalised by the caller
and unique (repeats are refused, naming the index). Pure functions, no I/O; randomness is
passed in or comes from ``secrets``. Errors name indices, never IDs or tags.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.psi.errors import (
    KEY_BYTES,
    PsiError,
    check_key,
    domain_prefix,
    encode_ids,
    first_duplicate,
)
from crypto.psi.matching import Permutation, byte_order, prefix64

TAG_BYTES = 16
CHUNK = 1 << 18  # IDs tagged per step: bounds the transient Python objects to ~50 MB
MAX_ID_BYTES = 2**16 - 1
TAG_KEY = b"gridcredit/psi/server-aided/v1/key\x00"
TAG_ID = b"gridcredit/psi/server-aided/v1/id\x00"

Tags = npt.NDArray[np.uint8]
"""(n, 16) ``uint8``: one tag per row."""
Positions = npt.NDArray[np.int64]


def public_key(private: bytes) -> bytes:
    """The X25519 public key of a 32-byte private key (step 1)."""
    check_key(private)
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def agree_key(private: bytes, peer_public: bytes, domain: bytes) -> bytes:
    """The job key K both parties derive (step 2); the coordinator never holds it.

    Parameters
    ----------
    private : bytes
        This party's 32-byte private key for the job, from ``secrets``.
    peer_public : bytes
        The peer's 32-byte public key, as received over the authenticated channel.
    domain : bytes
        Names the job; a different job gives an unrelated K even for the same key pairs.

    Returns
    -------
    bytes
        32 bytes (an AES-256 key).

    Raises
    ------
    PsiError
        Bad key or domain, or a peer public key of small order (no shared secret).
    """
    check_key(private)
    check_key(peer_public)
    own = X25519PrivateKey.from_private_bytes(private)
    try:
        shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise PsiError("the peer's public key has small order") from None
    low, high = sorted((own.public_key().public_bytes_raw(), peer_public))
    info = domain_prefix(TAG_KEY, domain) + low + high
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def as_tags(tags: npt.ArrayLike) -> Tags:
    """Check shape and dtype; a C-contiguous (n, 16) ``uint8`` array.

    Raises
    ------
    PsiError
        If the array is not (n, 16) ``uint8``.
    """
    a = np.asarray(tags)
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != TAG_BYTES:
        raise PsiError(f"expected (n, {TAG_BYTES}) uint8 tags, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)


def first_repeat(tags: Tags) -> int | None:
    """Index of the first row equal to an earlier row, or None (one ``np.sort`` if none)."""
    if len(tags) < 2:
        return None
    s = np.sort(prefix64(tags))
    if not np.any(s[1:] == s[:-1]):
        return None
    order = byte_order(tags)
    st = tags[order]
    hit = np.flatnonzero((st[1:] == st[:-1]).all(axis=1))
    # byte_order is stable, so in a pair of equal rows the later one comes second.
    return int(order[hit + 1].min()) if hit.size else None


def tag_key(key: bytes, domain: bytes) -> bytes:
    """The AES-256 key of the tags: ``HMAC-SHA256(K, TAG || len(domain) || domain)``."""
    check_key(key)
    return hmac.new(key, domain_prefix(TAG_ID, domain), hashlib.sha256).digest()


def encode_block(x: bytes) -> bytes:
    """One ID as CBC-MAC input: ``len(x)`` as 2 bytes, ``x``, zeros to a multiple of 16.

    The length in front makes the encodings prefix-free (two IDs of different lengths
    differ in the first block; IDs of equal length have as many blocks), which is what
    makes CBC-MAC a PRF on IDs of any length. For tests and as the reference of ``tags``.
    """
    m = len(x).to_bytes(2, "big") + x
    return m + bytes(-len(m) % 16)


def _cbc_mac(ecb: Any, m: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """CBC-MAC (zero IV) of every row of ``m`` (n, 16 b): b ECB calls over all rows."""
    state = np.frombuffer(ecb.update(np.ascontiguousarray(m[:, :16]).tobytes()), np.uint8)
    for j in range(16, m.shape[1], 16):
        x = state.reshape(-1, TAG_BYTES) ^ m[:, j : j + 16]
        state = np.frombuffer(ecb.update(x.tobytes()), np.uint8)
    return state.reshape(-1, TAG_BYTES)


def _tags_of(encoded: list[bytes], ecb: Any) -> Tags:
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    out = np.empty((len(encoded), TAG_BYTES), dtype=np.uint8)
    if not len(encoded):
        return out
    long = np.flatnonzero(lengths > MAX_ID_BYTES)
    if long.size:
        raise PsiError(f"ID longer than {MAX_ID_BYTES} bytes", int(long[0]))
    blocks = (lengths + 2 + 15) // 16
    objects = np.array(encoded, dtype=object)
    # Rows with the same block count go together, so one long ID widens only its group.
    for b in np.unique(blocks).tolist():
        rows = np.flatnonzero(blocks == b)
        m = np.zeros((len(rows), 16 * b), dtype=np.uint8)
        m[:, 0] = lengths[rows] >> 8
        m[:, 1] = lengths[rows] & 0xFF
        body = objects[rows].astype(f"S{16 * b - 2}")  # zero-padded, NUL bytes kept
        m[:, 2:] = body.view(np.uint8).reshape(len(rows), 16 * b - 2)
        out[rows] = _cbc_mac(ecb, m)
    return out


def tags(ids: Sequence[str], key: bytes, domain: bytes) -> Tags:
    """The 128-bit tag of each ID under K (step 3): CBC-MAC over AES-256, vectorized.

    1. ``k = HMAC-SHA256(K, TAG || len(domain) || domain)`` (``tag_key``).
    2. Each ID's UTF-8 becomes ``len || id || zeros`` in 16-byte blocks (``encode_block``).
    3. ``t = CBC-MAC_k`` of those blocks: IDs with b blocks go through b AES-ECB calls
       made over all of them at once, with an XOR in numpy between calls; no per-ID loop
       but the UTF-8 encoding.

    Parameters
    ----------
    ids : sequence of str
        Unique IDs.
    key : bytes
        The job key K from ``agree_key``.
    domain : bytes
        Names the job.

    Returns
    -------
    Tags
        Shape (len(ids), 16), in the order of ``ids`` (shuffle before sending).

    Raises
    ------
    PsiError
        Bad key or domain, a non-string ID, an ID over 65535 bytes of UTF-8, or a repeated
        ID (naming its index).
    """
    ecb = Cipher(algorithms.AES(tag_key(key, domain)), modes.ECB()).encryptor()
    n = len(ids)
    out = np.empty((n, TAG_BYTES), dtype=np.uint8)
    for a in range(0, n, CHUNK):
        try:
            out[a : a + CHUNK] = _tags_of(encode_ids(ids[a : a + CHUNK]), ecb)
        except PsiError as exc:
            raise exc.shifted(a) from None
    ecb.finalize()
    if first_repeat(out) is not None:
        dup = first_duplicate(ids)
        raise PsiError("duplicate ID (IDs must be unique)", dup)
    return out


def tags_to_bytes(tags: npt.ArrayLike) -> bytes:
    """Serialise tags as the concatenation of their 16-byte rows."""
    return as_tags(tags).tobytes()


def tags_from_bytes(data: bytes) -> Tags:
    """Parse the concatenation of 16-byte rows.

    Raises
    ------
    PsiError
        If the length is not a multiple of 16.
    """
    if len(data) % TAG_BYTES:
        raise PsiError(f"expected a multiple of {TAG_BYTES} bytes, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, TAG_BYTES).copy()


def accept_match(
    positions: npt.ArrayLike, sent: Tags, perm: Permutation
) -> tuple[Permutation, bytes]:
    """A party's step 5: own rows of the matched tags and their digest, after checking.

    Parameters
    ----------
    positions : array_like
        Integer positions into the tags as sent, from the coordinator.
    sent : Tags
        The tags as sent (shuffled).
    perm : Permutation
        The shuffle: ``sent[j]`` is the tag of own row ``perm[j]``.

    Returns
    -------
    rows : Permutation
        Own row indices, in ascending tag order.
    digest : bytes
        SHA-256 of the matched tags in that order: equal on both sides iff the coordinator
        gave both the same match (the parties compare it).

    Raises
    ------
    PsiError
        Positions not 1-d integers within range, or whose tags do not strictly ascend (a
        repeat or a wrong order), naming the first bad entry.
    """
    pos = np.asarray(positions)
    if pos.ndim != 1 or (pos.size and pos.dtype.kind not in "iu"):
        raise PsiError(f"expected 1-d integer positions, got {pos.shape} {pos.dtype}")
    pos = pos.astype(np.int64, copy=False)
    bad = np.flatnonzero((pos < 0) | (pos >= len(sent)))
    if bad.size:
        raise PsiError(f"position out of range 0..{len(sent) - 1}", int(bad[0]))
    t = as_tags(sent)[pos]
    hi = prefix64(t)
    lo = np.ascontiguousarray(t[:, 8:]).view(">u8").ravel().astype(np.uint64)
    ok = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise PsiError("matched tags do not strictly ascend", int(bad[0]) + 1)
    rows: Permutation = perm[pos].astype(np.intp, copy=False)
    return rows, hashlib.sha256(t.tobytes()).digest()


