"""crypto.prg: HKDF + AES-CTR expansion into ring words, and the RingRng counter stream."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.prg import SEED_BYTES, RingRng, derive_key, expand, new_seed

SEED = bytes(range(32))


def test_expand_is_deterministic_per_seed_and_label() -> None:
    a = expand(SEED, "M/grid/batch=0", (4, 3))
    b = expand(bytes(SEED), "M/grid/batch=0", (4, 3))
    assert a.dtype == np.uint64
    assert (a == b).all()


@pytest.mark.parametrize(("seed", "label"), [
    (SEED, "M/grid/batch=1"),          # another label
    (SEED, "m/grid/batch=0"),          # case differs
    (bytes(31) + b"\x01", "M/grid/batch=0"),  # another seed
])
def test_other_label_or_seed_gives_unrelated_stream(seed: bytes, label: str) -> None:
    ref = expand(SEED, "M/grid/batch=0", 64)
    other = expand(seed, label, 64)
    assert int(np.sum(ref == other)) == 0


def test_expand_matches_hkdf_sha256_then_aes_ctr_little_endian() -> None:
    # Dealer and parties run in different processes: pin the construction itself.
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"gridcredit/prg/v1",
               info=b"c0/grad_grid/epoch=3").derive(SEED)
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(40))
    words = [int.from_bytes(stream[i : i + 8], "little") for i in range(0, 40, 8)]
    assert derive_key(SEED, "c0/grad_grid/epoch=3") == key
    assert [int(w) for w in expand(SEED, "c0/grad_grid/epoch=3", 5)] == words


@pytest.mark.parametrize("shape", [7, (7,), (2, 3), (2, 3, 4), (0,), (3, 0)])
def test_expand_returns_requested_shape(shape: int | tuple[int, ...]) -> None:
    out = expand(SEED, "shape", shape)
    want = (shape,) if isinstance(shape, int) else shape
    assert out.shape == want and out.dtype == np.uint64


def test_expand_shapes_read_one_stream_row_major() -> None:
    flat = expand(SEED, "rows", 12)
    assert (expand(SEED, "rows", (3, 4)).ravel() == flat).all()
    assert (expand(SEED, "rows", 5) == flat[:5]).all()  # a longer draw extends a shorter one


@pytest.mark.parametrize("seed", [b"", b"short", bytes(15)])
def test_short_seed_refused(seed: bytes) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        expand(seed, "x", 4)
    with pytest.raises(ValueError):
        RingRng(seed).random(4)


def test_new_seed_is_32_fresh_bytes() -> None:
    a, b = new_seed(), new_seed()
    assert len(a) == SEED_BYTES == 32 and a != b


def test_expand_bits_are_uniform_within_5_sigma_over_1e5_words() -> None:
    n = 10**5
    words = expand(SEED, "uniformity", n)
    bits = (words[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    ones = bits.sum(axis=0).astype(np.float64)
    sigma = (n * 0.25) ** 0.5
    worst = float(np.max(np.abs(ones - n / 2)))
    assert worst < 5 * sigma, f"bit frequency off by {worst / sigma:.1f} sigma"
    # and consecutive words are not equal more often than chance (2^-64 each)
    assert int(np.sum(words[1:] == words[:-1])) == 0


def test_ring_rng_counter_advances_per_draw() -> None:
    rng = RingRng(SEED, prefix="p")
    first, second = rng.random(8), rng.random(8)
    assert not (first == second).any()
    assert (first == expand(SEED, "p/1", 8)).all()
    assert (second == expand(SEED, "p/2", 8)).all()


def test_ring_rng_same_seed_same_sequence_other_prefix_other_sequence() -> None:
    a, b, c = RingRng(SEED), RingRng(SEED), RingRng(SEED, prefix="other")
    xs = [a.random((2, 2)) for _ in range(3)]
    ys = [b.random((2, 2)) for _ in range(3)]
    assert all((x == y).all() for x, y in zip(xs, ys))
    assert not (c.random((2, 2)) == xs[0]).any()


def test_ring_rng_without_seed_draws_fresh_seed() -> None:
    assert not (RingRng().random(4) == RingRng().random(4)).any()


def test_ring_rng_has_no_truth_value() -> None:
    rng = RingRng(SEED)
    with pytest.raises(TypeError):
        bool(rng)
    with pytest.raises(TypeError):
        if rng:  # pragma: no branch - the test is that this line raises
            pass


@pytest.mark.parametrize(("shape", "start", "stop"), [((10, 3), 0, 10), ((10, 3), 3, 7),
                                                      ((9, 5), 1, 2), ((1000, 7), 555, 1000),
                                                      ((4, 2), 2, 2)])
def test_expand_rows_is_the_same_stream_as_expand(shape: tuple[int, int], start: int,
                                                  stop: int, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    import crypto.prg as prg
    from crypto.prg import expand_rows

    monkeypatch.setattr(prg, "_CHUNK", 40)
    seed = bytes(range(32))
    full = expand(seed, "rows", shape)
    assert np.array_equal(expand_rows(seed, "rows", shape, start, stop), full[start:stop])


def test_expand_is_unchanged_by_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto.prg as prg

    monkeypatch.setattr(prg, "_CHUNK", 1000)  # many chunks, none a multiple of 8 or 16
    seed = bytes(range(32))
    reference = np.frombuffer(prg.keystream(prg.derive_key(seed, "big"), 8 * 70_001),
                              dtype="<u8")
    assert np.array_equal(expand(seed, "big", 70_001), reference)


@pytest.mark.parametrize("chunk", [None, 1 << 22])
def test_a_mask_longer_than_the_zero_buffer_is_keystream_throughout(
        chunk: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the shared zero buffer (1 MiB), at the default chunk and at a chunk larger than
    the buffer, every word is the AES-CTR keystream's: none left unwritten."""
    import crypto.prg as prg

    if chunk is not None:
        monkeypatch.setattr(prg, "_CHUNK", chunk)
    seed, words = bytes(range(32)), (3 << 18) + 5  # 6 MiB and 40 bytes
    reference = np.frombuffer(prg.keystream(prg.derive_key(seed, "long"), 8 * words),
                              dtype="<u8")
    assert np.array_equal(expand(seed, "long", words), reference)
