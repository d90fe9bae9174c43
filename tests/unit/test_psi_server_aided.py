"""Tests for crypto.psi.server_aided: both parties and the coordinator in one process.

Every message goes through bytes as it would on the wire: the public keys party to party,
the tags to the coordinator, the positions back.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import psi
from crypto.psi import server_aided as sa
from crypto.psi import tag_match as tm
from crypto.psi.errors import PsiError

DOMAIN = b"job-7f3a"


def enterprise_ids(start: int, stop: int) -> list[str]:
    return [f"91330{i:07d}MA{i % 97:02d}" for i in range(start, stop)]


@dataclass
class Party:
    """One party: its IDs in its own list order and what it keeps between steps."""

    ids: Sequence[str]
    domain: bytes = DOMAIN
    private: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    key: bytes = b""
    sent: sa.Tags | None = None
    perm: psi.Permutation | None = None

    def public(self) -> bytes:
        return sa.public_key(self.private)

    def send_tags(self, peer_public: bytes) -> bytes:
        self.key = sa.agree_key(self.private, peer_public, self.domain)
        self.sent, self.perm = psi.shuffle(sa.tags(self.ids, self.key, self.domain))
        return sa.tags_to_bytes(self.sent)

    def finish(self, positions: bytes) -> tuple[list[str], bytes]:
        assert self.sent is not None and self.perm is not None
        pos = np.frombuffer(positions, dtype="<u4")
        rows, digest = sa.accept_match(pos, self.sent, self.perm)
        return [self.ids[i] for i in rows], digest


def coordinator(first: bytes, second: bytes) -> tuple[bytes, bytes]:
    a, b = tm.match_tags(sa.tags_from_bytes(first), sa.tags_from_bytes(second))
    return a.astype("<u4").tobytes(), b.astype("<u4").tobytes()


def run(grid: Party, bank: Party) -> tuple[list[str], list[str]]:
    pk_grid, pk_bank = grid.public(), bank.public()
    pos_grid, pos_bank = coordinator(grid.send_tags(pk_bank), bank.send_tags(pk_grid))
    rows_grid, digest_grid = grid.finish(pos_grid)
    rows_bank, digest_bank = bank.finish(pos_bank)
    assert digest_grid == digest_bank
    return rows_grid, rows_bank


def test_partial_overlap_is_exactly_the_set_intersection_in_one_order() -> None:
    ids_a = enterprise_ids(0, 1000)
    ids_b = enterprise_ids(700, 1500)
    rng = np.random.default_rng(1)  # test data order only
    ids_b = [ids_b[i] for i in rng.permutation(len(ids_b))]
    rows_a, rows_b = run(Party(ids_a), Party(ids_b))
    assert rows_a == rows_b
    assert len(rows_a) == 300 and set(rows_a) == set(ids_a) & set(ids_b)


def test_intersection_is_ordered_by_tag() -> None:
    a, b = Party(enterprise_ids(0, 80)), Party(enterprise_ids(40, 120))
    rows, _ = run(a, b)
    t = sa.tags(rows, a.key, DOMAIN)
    assert [bytes(r) for r in t] == sorted(bytes(r) for r in t)


def test_unbalanced_sizes() -> None:
    big = enterprise_ids(0, 20_000)
    small = enterprise_ids(19_990, 20_010)
    rows_a, rows_b = run(Party(big), Party(small))
    assert rows_a == rows_b and set(rows_a) == set(big) & set(small) and len(rows_a) == 10
    rows_c, rows_d = run(Party(small), Party(big))
    assert sorted(rows_c) == sorted(rows_a) and rows_c == rows_d


def test_empty_intersection_and_empty_lists() -> None:
    assert run(Party(enterprise_ids(0, 200)), Party(enterprise_ids(200, 300))) == ([], [])
    assert run(Party([]), Party(enterprise_ids(0, 10))) == ([], [])
    assert run(Party([]), Party([])) == ([], [])


def test_different_jobs_give_no_matches() -> None:
    ids = enterprise_ids(0, 50)
    assert run(Party(ids, domain=b"job-1"), Party(ids, domain=b"job-2")) == ([], [])


def test_same_intersection_as_ecdh_on_the_same_data() -> None:
    ids_a, ids_b = enterprise_ids(0, 400), enterprise_ids(250, 600)
    rows, _ = run(Party(ids_a), Party(ids_b))
    ka, kb = psi.new_key(), psi.new_key()
    own = psi.reblind(psi.blind(ids_a, ka, DOMAIN), kb)
    peer = psi.reblind(psi.blind(ids_b, kb, DOMAIN), ka)
    ecdh_a, _ = psi.intersect(own, peer)
    assert set(rows) == {ids_a[i] for i in ecdh_a}


def test_key_agreement_gives_both_parties_the_same_key_and_nobody_else() -> None:
    a, b, c = (secrets.token_bytes(32) for _ in range(3))
    k_ab = sa.agree_key(a, sa.public_key(b), DOMAIN)
    assert k_ab == sa.agree_key(b, sa.public_key(a), DOMAIN)
    assert len(k_ab) == 32
    assert k_ab != sa.agree_key(a, sa.public_key(c), DOMAIN)
    assert k_ab != sa.agree_key(a, sa.public_key(b), b"another-job")
    with pytest.raises(PsiError, match="small order"):
        sa.agree_key(a, bytes(32), DOMAIN)


def test_tags_are_16_bytes_and_look_unrelated_to_the_id_without_the_key() -> None:
    ids = enterprise_ids(0, 2000)
    k1, k2 = secrets.token_bytes(32), secrets.token_bytes(32)
    t1, t2 = sa.tags(ids, k1, DOMAIN), sa.tags(ids, k2, DOMAIN)
    assert t1.shape == (2000, 16) and t1.dtype == np.uint8
    np.testing.assert_array_equal(t1, sa.tags(ids, k1, DOMAIN))  # deterministic under K
    assert not {bytes(r) for r in t1} & {bytes(r) for r in t2}
    # Neighbouring IDs (one character apart) and one ID under two keys differ in about
    # half of their 128 bits; every bit position is set about half of the time.
    for x, y in ((t1[:-1], t1[1:]), (t1, t2)):
        flips = np.unpackbits(x ^ y, axis=1).sum(axis=1)
        assert 60 < flips.mean() < 68
    ones = np.unpackbits(t1, axis=1).mean(axis=0)
    assert np.all((ones > 0.4) & (ones < 0.6))  # fails with probability < 1e-9


def reference_tag(x: str, key: bytes, domain: bytes) -> bytes:
    """CBC-MAC of one ID, one AES block at a time (the definition, not the vectorized code)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    ecb = Cipher(algorithms.AES(sa.tag_key(key, domain)), modes.ECB()).encryptor()
    m = sa.encode_block(x.encode())
    state = bytes(16)
    for j in range(0, len(m), 16):
        state = ecb.update(bytes(a ^ b for a, b in zip(state, m[j:j + 16], strict=True)))
    return state


def test_tags_are_the_cbc_mac_of_the_length_prefixed_id_for_every_length() -> None:
    # Lengths around each block border, NUL bytes inside and at the end, non-ASCII, and one
    # long ID among short ones (groups of different block counts in one call).
    ids = ["", "a", "a\x00", "\x00a", "企业"] + ["x" * n for n in (13, 14, 15, 16, 29, 30, 31,
                                                              46, 300)]
    ids += enterprise_ids(0, 20)
    key = secrets.token_bytes(32)
    got = sa.tags(ids, key, DOMAIN)
    assert [bytes(r) for r in got] == [reference_tag(x, key, DOMAIN) for x in ids]
    assert sa.encode_block(b"a") != sa.encode_block(b"a\x00")
    assert len(sa.encode_block(b"x" * 14)) == 16 and len(sa.encode_block(b"x" * 15)) == 32


def test_an_id_longer_than_65535_bytes_is_refused() -> None:
    with pytest.raises(PsiError, match="longer than 65535 bytes at index 1$"):
        sa.tags(["a", "b" * 65536], secrets.token_bytes(32), DOMAIN)


def test_duplicate_ids_are_refused_naming_the_repeat() -> None:
    ids = enterprise_ids(0, 10) + enterprise_ids(4, 5) + enterprise_ids(10, 12)
    with pytest.raises(PsiError, match="duplicate ID .* at index 10$") as err:
        sa.tags(ids, secrets.token_bytes(32), DOMAIN)
    assert "91330" not in str(err.value)


def test_the_coordinator_refuses_repeated_tags_in_either_list() -> None:
    t = sa.tags(enterprise_ids(0, 20), secrets.token_bytes(32), DOMAIN)
    rep = np.concatenate([t, t[5:6], t[:3]])
    with pytest.raises(PsiError, match="repeated second tag at index 20$"):
        tm.match_tags(t, rep)
    with pytest.raises(PsiError, match="repeated first tag at index 20$"):
        tm.match_tags(rep, t)
    with pytest.raises(PsiError, match="repeated bank's tag at index 20$"):
        tm.match_tags(t, rep, names=("grid's", "bank's"))


def crafted(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 16), dtype=np.uint8)


@pytest.mark.parametrize("shared_prefix", [2, 3, 5])
def test_prefix_collisions_do_not_fool_the_match(shared_prefix: int) -> None:
    # Rows sharing their first 8 bytes: the fast path must compare all 16 bytes, and runs of
    # three or more equal prefixes are resolved on all bytes.
    rng = np.random.default_rng(shared_prefix)  # test data only
    a, b = crafted(rng, 60), crafted(rng, 50)
    a[:shared_prefix, :8] = 9
    b[:shared_prefix, :8] = 9
    b[10:30] = a[20:40]
    b[0] = a[1]
    pa, pb = tm.match_tags(a, b)
    want = sorted({bytes(r) for r in a} & {bytes(r) for r in b})
    assert [bytes(r) for r in a[pa]] == want
    np.testing.assert_array_equal(a[pa], b[pb])


@settings(max_examples=40, deadline=None)
@given(common=st.sets(st.text(max_size=8), max_size=15), only_a=st.sets(st.text(max_size=8),
       max_size=15), only_b=st.sets(st.text(max_size=8), max_size=15))
def test_property_intersection_equals_python_set_intersection(
    common: set[str], only_a: set[str], only_b: set[str]
) -> None:
    ids_a, ids_b = sorted(common | only_a), sorted(common | only_b, reverse=True)
    rows_a, rows_b = run(Party(ids_a), Party(ids_b))
    assert rows_a == rows_b
    assert sorted(rows_a) == sorted(set(ids_a) & set(ids_b))


def test_a_party_refuses_positions_out_of_range_repeated_or_out_of_order() -> None:
    t = sa.tags(enterprise_ids(0, 30), secrets.token_bytes(32), DOMAIN)
    perm = np.arange(30)
    order = psi.byte_order(t)
    rows, digest = sa.accept_match(order[:5], t, perm)
    np.testing.assert_array_equal(rows, order[:5])
    assert digest == hashlib.sha256(t[order[:5]].tobytes()).digest()
    with pytest.raises(PsiError, match="out of range 0..29 at index 1$"):
        sa.accept_match(np.array([order[0], 30]), t, perm)
    with pytest.raises(PsiError, match="strictly ascend at index 2$"):
        sa.accept_match(np.array([order[0], order[3], order[3]]), t, perm)
    with pytest.raises(PsiError, match="strictly ascend at index 1$"):
        sa.accept_match(np.array([order[4], order[2]]), t, perm)
    with pytest.raises(PsiError, match="integer positions"):
        sa.accept_match(np.array([0.5]), t, perm)


def test_bad_tags_and_bad_bytes_are_refused() -> None:
    with pytest.raises(PsiError, match="multiple of 16"):
        sa.tags_from_bytes(bytes(17))
    with pytest.raises(PsiError, match=r"\(n, 16\) uint8"):
        tm.match_tags(np.zeros((2, 32), dtype=np.uint8), np.zeros((2, 16), dtype=np.uint8))
    with pytest.raises(PsiError, match="expected str IDs, got int at index 2$"):
        sa.tags(["a", "b", 3], secrets.token_bytes(32), DOMAIN)  # type: ignore[list-item]


def test_pairs_of_equal_prefixes_stay_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_runs(*args: object) -> None:
        raise AssertionError("took the path of runs of three")

    monkeypatch.setattr(tm, "_match_runs", no_runs)
    rng = np.random.default_rng(7)  # test data only
    a, b = crafted(rng, 40), crafted(rng, 40)
    a[0, :8], b[5, :8] = 7, 7  # across the lists, different tails: not a match
    a[7, :8], a[8, :8] = 5, 5  # within one list, different tails: not a repeat
    b[20:30] = a[10:20]
    pa, pb = tm.match_tags(a, b)
    np.testing.assert_array_equal(pa, psi.byte_order(a[10:20]) + 10)
    np.testing.assert_array_equal(a[pa], b[pb])


@pytest.mark.parametrize("seed", range(6))
def test_many_runs_of_equal_prefixes_match_like_the_exact_intersection(seed: int) -> None:
    # Few distinct 8-byte prefixes, so runs of 3+ abound, some holding several matches.
    rng = np.random.default_rng(seed)  # test data only
    a, b = crafted(rng, 300), crafted(rng, 250)
    a[:, :8] = rng.integers(0, 40, size=(300, 1), dtype=np.uint8)
    b[:, :8] = rng.integers(0, 40, size=(250, 1), dtype=np.uint8)
    b[rng.permutation(250)[:120]] = a[rng.permutation(300)[:120]]
    pa, pb = tm.match_tags(a, b)
    xa, xb = psi.intersect(a, b)
    np.testing.assert_array_equal(pa, xa)
    np.testing.assert_array_equal(pb, xb)
    assert len(pa) == 120


def test_a_repeat_inside_a_run_of_equal_prefixes_is_refused() -> None:
    rng = np.random.default_rng(9)  # test data only
    a, b = crafted(rng, 10), crafted(rng, 10)
    a[:4, :8] = 1  # a run of four equal prefixes in the first list
    a[3] = a[1]  # ... holding a repeat
    with pytest.raises(PsiError, match="repeated first tag at index 3$"):
        tm.match_tags(a, b)
