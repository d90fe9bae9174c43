"""Tests for crypto.psi and parties.psi_pool: both PSI roles in one process.

Every message between the two parties goes through ``points_to_bytes`` /
``points_from_bytes``, as it would on the wire.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import itertools
import secrets
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_from_uniform,
    crypto_sign_ed25519_pk_to_curve25519,
)

from crypto import psi
from crypto.psi import Points, PsiError, x25519
from parties import psi_pool

P = 2**255 - 19
DOMAIN = b"job-7f3a"


def le(u: int) -> bytes:
    return u.to_bytes(32, "little")


def is_on_curve(u: int) -> bool:
    rhs = (u**3 + 486662 * u**2 + u) % P
    return rhs == 0 or pow(rhs, (P - 1) // 2, P) == 1


# Small-order u-coordinates of Curve25519 and its twist that are canonical (< p)
# (the blocklist of libsodium / RFC 7748 section 7), and non-canonical encodings.
SMALL_ORDER = [
    le(0),
    le(1),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    le(P - 1),
]
NON_CANONICAL = [le(P), le(P + 1), le(P + 18), le(2**255 - 1), le(2**256 - 1), le(P - 1 + 2**255)]


def wire(points: Points) -> Points:
    """Serialise and parse, as the transport does, checking the size on the way."""
    data = psi.points_to_bytes(points)
    assert len(data) == 32 * len(points)
    return psi.points_from_bytes(data)


@dataclass
class Party:
    """One side of the protocol; ``ids`` in its own list order."""

    ids: Sequence[str]
    domain: bytes = DOMAIN
    key: bytes = field(default_factory=psi.new_key)
    reblind_key: bytes | None = None  # differs from ``key`` only to test a broken party
    perm: psi.Permutation | None = None
    peer_double: Points | None = None

    def first_message(self) -> bytes:
        shuffled, self.perm = psi.shuffle(psi.blind(self.ids, self.key, self.domain))
        return psi.points_to_bytes(shuffled)

    def answer(self, peer_first: bytes) -> bytes:
        key = self.key if self.reblind_key is None else self.reblind_key
        self.peer_double = psi.reblind(psi.points_from_bytes(peer_first), key)
        return psi.points_to_bytes(self.peer_double)

    def finish(self, peer_answer: bytes) -> tuple[list[str], Points]:
        assert self.perm is not None and self.peer_double is not None
        own_double = psi.unshuffle(psi.points_from_bytes(peer_answer), self.perm)
        own_index, peer_index = psi.intersect(own_double, self.peer_double)
        np.testing.assert_array_equal(own_double[own_index], self.peer_double[peer_index])
        return [self.ids[i] for i in own_index], own_double[own_index]


def run_psi(a: Party, b: Party) -> tuple[list[str], list[str]]:
    """Run both roles; return the matched IDs as each side orders them."""
    msg_a, msg_b = a.first_message(), b.first_message()
    ans_a, ans_b = a.answer(msg_b), b.answer(msg_a)
    rows_a, double_a = a.finish(ans_b)
    rows_b, double_b = b.finish(ans_a)
    np.testing.assert_array_equal(double_a, double_b)
    return rows_a, rows_b


def enterprise_ids(start: int, stop: int) -> list[str]:
    return [f"91330{i:07d}MA{i % 97:02d}" for i in range(start, stop)]


def test_partial_overlap_finds_exactly_the_300_common_ids_in_the_same_order() -> None:
    ids_a = enterprise_ids(0, 1000)
    ids_b = enterprise_ids(700, 1500)  # 800 IDs, 300 shared with ids_a
    rng = np.random.default_rng(1)
    ids_b = [ids_b[i] for i in rng.permutation(len(ids_b))]
    rows_a, rows_b = run_psi(Party(ids_a), Party(ids_b))
    assert len(rows_a) == 300
    assert set(rows_a) == set(ids_a) & set(ids_b)
    assert rows_a == rows_b


def test_rows_are_ordered_by_the_doubly_blinded_bytes() -> None:
    a, b = Party(enterprise_ids(0, 60)), Party(enterprise_ids(30, 90))
    msg_a, msg_b = a.first_message(), b.first_message()
    ans_a, ans_b = a.answer(msg_b), b.answer(msg_a)
    _, double_a = a.finish(ans_b)
    rows = [bytes(r) for r in double_a]
    assert len(rows) == 30
    assert rows == sorted(rows)
    assert ans_a  # B's answer is unused here


def test_intersection_order_is_memcmp_order_even_when_rows_share_a_prefix() -> None:
    rng = np.random.default_rng(5)
    own = rng.integers(0, 256, size=(40, 32), dtype=np.uint8)
    own[:20, :8] = 7  # 20 different rows that tie on the first 8 bytes
    own[25:30] = own[20:25, ::-1]
    peer = own[rng.permutation(40)[:30]]
    own_index, peer_index = psi.intersect(own, peer)
    common = [bytes(r) for r in own[own_index]]
    assert common == sorted({bytes(r) for r in own} & {bytes(r) for r in peer})
    np.testing.assert_array_equal(own[own_index], peer[peer_index])
    order = psi.byte_order(own)
    assert [bytes(r) for r in own[order]] == sorted(bytes(r) for r in own)


def test_no_overlap_gives_an_empty_intersection() -> None:
    rows_a, rows_b = run_psi(Party(enterprise_ids(0, 200)), Party(enterprise_ids(200, 350)))
    assert rows_a == rows_b == []


def test_full_overlap_matches_every_id_despite_different_list_orders() -> None:
    ids = enterprise_ids(0, 250)
    rows_a, rows_b = run_psi(Party(ids), Party(ids[::-1]))
    assert rows_a == rows_b
    assert sorted(rows_a) == sorted(ids)


def test_empty_lists_are_allowed() -> None:
    rows_a, rows_b = run_psi(Party([]), Party(enterprise_ids(0, 10)))
    assert rows_a == rows_b == []


def test_different_domains_give_no_matches() -> None:
    ids = enterprise_ids(0, 100)
    rows_a, rows_b = run_psi(Party(ids, domain=b"job-1"), Party(ids, domain=b"job-2"))
    assert rows_a == rows_b == []


def test_a_party_reblinding_with_another_key_gives_no_matches() -> None:
    ids = enterprise_ids(0, 100)
    rows_a, rows_b = run_psi(Party(ids), Party(ids, reblind_key=psi.new_key()))
    assert rows_a == rows_b == []


def test_same_ids_under_different_keys_give_unrelated_blinded_points() -> None:
    ids = enterprise_ids(0, 50)
    x = psi.blind(ids, psi.new_key(), DOMAIN)
    y = psi.blind(ids, psi.new_key(), DOMAIN)
    assert not set(map(bytes, x)) & set(map(bytes, y))


def test_domain_is_length_prefixed_so_id_and_domain_cannot_trade_bytes() -> None:
    assert not np.array_equal(psi.hash_to_points(["bc"], b"a"), psi.hash_to_points(["c"], b"ab"))


def test_hash_matches_libsodium_from_uniform_sum_moved_to_montgomery_form() -> None:
    ids = ["", "a", "企业-0001", "91330000MA27XL0E2K"]
    tag = b"gridcredit/psi/v1/hash-to-curve25519\x00" + len(DOMAIN).to_bytes(2, "big") + DOMAIN
    for row, x in zip(psi.hash_to_points(ids, DOMAIN), ids, strict=True):
        h = hashlib.sha512(tag + x.encode()).digest()
        e = crypto_core_ed25519_add(
            crypto_core_ed25519_from_uniform(h[:32]), crypto_core_ed25519_from_uniform(h[32:])
        )
        assert bytes(row) == crypto_sign_ed25519_pk_to_curve25519(e)


def test_exponentiations_commute() -> None:
    h = psi.hash_to_points(enterprise_ids(0, 20), DOMAIN)
    a, b = psi.new_key(), psi.new_key()
    np.testing.assert_array_equal(
        psi.reblind(psi.reblind(h, a), b), psi.reblind(psi.reblind(h, b), a)
    )


def test_duplicate_ids_are_rejected_naming_the_repeat() -> None:
    ids = enterprise_ids(0, 10) + enterprise_ids(0, 1) + enterprise_ids(10, 20)
    with pytest.raises(PsiError, match="at index 10$") as err:
        psi.blind(ids, psi.new_key(), DOMAIN)
    assert err.value.index == 10
    assert "91330" not in str(err.value)  # IDs never appear in errors


def test_repeated_doubly_blinded_points_are_rejected() -> None:
    pts = psi.hash_to_points(enterprise_ids(0, 10), DOMAIN)
    repeated = np.concatenate([pts, pts[3:4]])
    with pytest.raises(PsiError, match="repeated peer") as err:
        psi.intersect(pts, repeated)
    assert err.value.index == 10
    with pytest.raises(PsiError, match="repeated own") as err:
        psi.intersect(repeated, pts)
    assert err.value.index == 10


@pytest.mark.parametrize("bad", SMALL_ORDER + NON_CANONICAL, ids=lambda b: b.hex()[:8])
def test_small_order_and_non_canonical_points_are_rejected_naming_the_index(bad: bytes) -> None:
    good = psi.blind(enterprise_ids(0, 50), psi.new_key(), DOMAIN)
    received = psi.points_from_bytes(psi.points_to_bytes(good[:37]) + bad + good[37:].tobytes())
    with pytest.raises(PsiError, match="invalid point .* at index 37$") as err:
        psi.reblind(received, psi.new_key())
    assert err.value.index == 37


def random_garbage(on_curve: bool, count: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < count:
        u = int.from_bytes(secrets.token_bytes(32), "little") % P
        if is_on_curve(u) == on_curve:
            out.append(le(u))
    return out


def test_random_garbage_is_rejected() -> None:
    key = psi.new_key()
    for _ in range(20):
        junk = secrets.token_bytes(32)
        junk = junk[:31] + bytes([junk[31] | 0x80])  # top bit set: never canonical
        with pytest.raises(PsiError, match="at index 0$"):
            psi.reblind(psi.points_from_bytes(junk), key)
    for length in (1, 31, 33, 65):
        with pytest.raises(PsiError, match="multiple of 32"):
            psi.points_from_bytes(bytes(length))
    with pytest.raises(PsiError, match="uint8"):
        psi.reblind(np.zeros((3, 16), dtype=np.uint8), key)


def test_twist_points_are_accepted_and_match_nothing_on_the_curve() -> None:
    # Curve25519 is twist-secure, so answering a twist point leaks nothing about the key;
    # the answer is a twist point and no doubly-blinded curve point equals it.
    key_a, key_b = psi.new_key(), psi.new_key()
    twist = psi.points_from_bytes(b"".join(random_garbage(on_curve=False, count=10)))
    answered = psi.reblind(twist, key_a)
    assert not any(is_on_curve(int.from_bytes(r.tobytes(), "little")) for r in answered)
    curve = psi.points_from_bytes(b"".join(random_garbage(on_curve=True, count=10)))
    honest = psi.reblind(psi.reblind(curve, key_b), key_a)
    assert psi.intersect(honest, answered)[0].size == 0


def test_hash_to_u_lands_on_curve_and_twist_and_both_commute() -> None:
    # SHA-256 straight to u: about half the IDs land on the twist; X25519 commutes there too.
    ids = enterprise_ids(0, 200)
    u = psi.hash_to_u(ids, DOMAIN)
    on_curve = [is_on_curve(int.from_bytes(r.tobytes(), "little")) for r in u]
    assert 60 < sum(on_curve) < 140  # fails with probability < 1e-8
    a, b = psi.new_key(), psi.new_key()
    np.testing.assert_array_equal(psi.reblind(psi.blind(ids, a, DOMAIN), b),
                                  psi.reblind(psi.blind(ids, b, DOMAIN), a))


def test_hash_to_u_is_sha256_of_the_tagged_id_with_the_top_bit_cleared() -> None:
    ids = ["", "a", "企业-0001", "91330000MA27XL0E2K"]
    tag = b"gridcredit/psi/v2/sha256-to-x25519\x00" + len(DOMAIN).to_bytes(2, "big") + DOMAIN
    for row, x in zip(psi.hash_to_u(ids, DOMAIN), ids, strict=True):
        d = bytearray(hashlib.sha256(tag + x.encode()).digest())
        d[31] &= 0x7F
        assert bytes(row) == bytes(d)


def test_blind_equals_openssl_x25519_of_the_hash() -> None:
    ids = enterprise_ids(0, 64)
    key = psi.new_key()
    want = [X25519PrivateKey.from_private_bytes(key).exchange(
        X25519PublicKey.from_public_bytes(bytes(u))) for u in psi.hash_to_u(ids, DOMAIN)]
    assert [bytes(r) for r in psi.blind(ids, key, DOMAIN)] == want


def test_bundled_and_loaded_libsodium_agree() -> None:
    sodium: Any = importlib.import_module("nacl.bindings")
    pts = psi.hash_to_u(enterprise_ids(0, 32), DOMAIN)
    key = psi.new_key()
    want = [sodium.crypto_scalarmult(key, bytes(u)) for u in pts]
    assert [bytes(r) for r in x25519.multiply(key, pts)] == want


@pytest.mark.parametrize(
    ("key", "domain"), [(b"short", DOMAIN), (bytes(32), b""), ("x" * 32, DOMAIN)]
)
def test_bad_key_or_domain_is_rejected(key: bytes, domain: bytes) -> None:
    with pytest.raises(PsiError):
        psi.blind(["a"], key, domain)


def test_unshuffle_inverts_shuffle() -> None:
    pts = psi.hash_to_points(enterprise_ids(0, 100), DOMAIN)
    shuffled, perm = psi.shuffle(pts)
    assert sorted(perm.tolist()) == list(range(100))
    assert not np.array_equal(shuffled, pts)  # fails with probability 1/100!
    np.testing.assert_array_equal(psi.unshuffle(shuffled, perm), pts)
    inv = psi.invert_permutation(perm)
    np.testing.assert_array_equal(inv[perm], np.arange(100))
    with pytest.raises(PsiError, match="expected 100 points back"):
        psi.unshuffle(shuffled[:99], perm)


def test_random_permutation_puts_each_item_everywhere() -> None:
    firsts = {int(psi.random_permutation(4)[0]) for _ in range(200)}
    assert firsts == {0, 1, 2, 3}  # fails with probability about 4 * (3/4)^200


id_sets = st.sets(st.text(max_size=8), max_size=12)


@settings(max_examples=40, deadline=None)
@given(common=id_sets, only_a=id_sets, only_b=id_sets)
def test_property_intersection_equals_set_intersection(
    common: set[str], only_a: set[str], only_b: set[str]
) -> None:
    ids_a = sorted(common | only_a)
    ids_b = sorted(common | only_b, reverse=True)
    rows_a, rows_b = run_psi(Party(ids_a), Party(ids_b))
    assert rows_a == rows_b
    assert sorted(rows_a) == sorted(set(ids_a) & set(ids_b))


# --- parties.psi_pool ---------------------------------------------------------------


@pytest.fixture
def small_pool(monkeypatch: pytest.MonkeyPatch) -> Iterator[psi_pool.PsiPool]:
    """A 2-thread pool that takes work from 8 items up, so tests stay fast."""
    monkeypatch.setattr(psi_pool, "SERIAL_BELOW", 8)
    monkeypatch.setattr(psi_pool, "MAX_CHUNK", 16)
    pool = psi_pool.PsiPool(2)
    yield pool
    pool.close()


def test_chunk_bounds_cover_the_range_in_order() -> None:
    for n, workers in [(1, 2), (7, 2), (10_000, 2), (100_000, 2), (100_001, 3)]:
        bounds = psi_pool.chunk_bounds(n, workers, max_chunk=4096)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(b0[1] == b1[0] for b0, b1 in itertools.pairwise(bounds))
        assert all(0 < b - a <= 4096 for a, b in bounds)
        assert len(bounds) >= min(n, 4 * workers)


def test_parallel_blind_and_reblind_equal_the_serial_functions(
    small_pool: psi_pool.PsiPool,
) -> None:
    ids = enterprise_ids(0, 150)
    key, key2 = psi.new_key(), psi.new_key()
    blinded = psi_pool.blind_parallel(ids, key, DOMAIN, pool=small_pool)
    np.testing.assert_array_equal(blinded, psi.blind(ids, key, DOMAIN))
    np.testing.assert_array_equal(
        psi_pool.reblind_parallel(blinded, key2, pool=small_pool), psi.reblind(blinded, key2)
    )


def test_parallel_work_runs_on_pool_threads(small_pool: psi_pool.PsiPool) -> None:
    names: set[str] = set()
    real = x25519.multiply

    def spy(key: bytes, pts: Points, *, what: str) -> Points:
        names.add(threading.current_thread().name)
        return real(key, pts, what=what)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(psi_pool, "multiply", spy)
        psi_pool.blind_parallel(enterprise_ids(0, 100), psi.new_key(), DOMAIN, pool=small_pool)
    assert names and all(n.startswith("psi") for n in names)


def test_parallel_reblind_names_the_first_bad_index_of_the_whole_array(
    small_pool: psi_pool.PsiPool,
) -> None:
    pts = psi.blind(enterprise_ids(0, 120), psi.new_key(), DOMAIN)
    pts[101] = np.frombuffer(SMALL_ORDER[2], dtype=np.uint8)
    pts[77] = np.frombuffer(SMALL_ORDER[3], dtype=np.uint8)  # in a later chunk than 0..15
    with pytest.raises(PsiError, match="small order.* at index 77$") as err:
        psi_pool.reblind_parallel(pts, psi.new_key(), pool=small_pool)
    assert err.value.index == 77
    pts[90] = np.frombuffer(NON_CANONICAL[0], dtype=np.uint8)
    with pytest.raises(PsiError, match=r"canonical u-coordinate\) at index 90$"):
        psi_pool.reblind_parallel(pts, psi.new_key(), pool=small_pool)


def test_parallel_blind_rejects_duplicates_across_chunks(small_pool: psi_pool.PsiPool) -> None:
    ids = enterprise_ids(0, 100) + enterprise_ids(3, 4)
    with pytest.raises(PsiError, match="at index 100$"):
        psi_pool.blind_parallel(ids, psi.new_key(), DOMAIN, pool=small_pool)


def test_a_pool_made_for_one_call_is_closed_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psi_pool, "SERIAL_BELOW", 8)
    before = {t.name for t in threading.enumerate()}
    ids = enterprise_ids(0, 40)
    key = psi.new_key()
    out = psi_pool.blind_parallel(ids, key, DOMAIN, workers=2)
    np.testing.assert_array_equal(out, psi.blind(ids, key, DOMAIN))
    assert {t.name for t in threading.enumerate()} <= before


def test_closed_pool_refuses_work() -> None:
    pool = psi_pool.PsiPool(1)
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.executor()


def test_random_permutation_is_uniform_over_all_orders() -> None:
    counts = collections.Counter(tuple(psi.random_permutation(3).tolist()) for _ in range(3000))
    assert set(counts) == set(itertools.permutations(range(3)))
    assert all(400 < c < 600 for c in counts.values())  # each ~500; fails w.p. < 1e-5


def test_random_permutation_breaks_ties_with_a_fresh_coin(monkeypatch: pytest.MonkeyPatch) -> None:
    from crypto.psi import matching

    draws: list[bytes] = []

    def fake(n: int) -> bytes:
        out = bytes(n) if not draws else bytes([draws[-1][0] ^ 1] * n)  # keys 0; then coins
        draws.append(out)
        return out

    monkeypatch.setattr(secrets, "token_bytes", fake)
    assert matching.random_permutation(2).tolist() == [1, 0]  # coin 1: the tied pair swaps
    draws.clear()
    monkeypatch.setattr(matching, "_argsort_permutation", lambda n: np.arange(n)[::-1].copy())
    assert matching.random_permutation(3).tolist() == [2, 1, 0]  # 3 ties: argsort fallback
