/* X25519 (RFC 7748) on four points at once with AVX2: the PSI's multi-buffer kernel.
 *
 * Why: an ECDH PSI applies two secret scalars to every ID of both parties, so its time is
 * the time of one X25519 times 2(n + m), and libsodium and OpenSSL both take ~35 us per
 * call on this project's 2-core EPYC machines (docs/design.md, "One training job", step 2).
 * Here every AVX2 register holds one 64-bit lane per point, so each field operation
 * works on four independent Montgomery ladders; see bench/RESULTS.md for the measurement.
 *
 * Field elements of GF(2^255 - 19) are ten unsigned limbs in radix 2^25.5 (26, 25, 26, ...
 * bits: the layout of the reference "ref10" code), one __m256i per limb. Limbs stay
 * non-negative: a subtraction adds 2p first. Bounds (checked in the comments of fe_mul and
 * fe_sq): every multiplication input is at most the sum of two carried elements or
 * carried + 2p - carried, i.e. below 3 * 2^26 per even limb and 3 * 2^25 + 2^18 per odd
 * one, so 19 times a limb (and 38 times an odd one) stays below 2^32, the width that
 * vpmuludq reads, and every sum of ten products stays below 2^64.
 *
 * Constant time: no branch and no memory index depends on a key or a point; the ladder
 * swaps with masks. The result is compared with libsodium's on random and edge inputs by
 * tests/unit/test_x25519x4.py.
 *
 * Python interface (module crypto.psi._x25519x4):
 *   available() -> bool        AVX2 on this CPU (else the caller keeps libsodium)
 *   multiply(keys, src, dst, per_row) -> int
 *       keys: 32 bytes (one key for all rows) or n * 32 bytes (per_row true);
 *       src, dst: n * 32 bytes; dst[i] = X25519(key_i, src[i]), canonical.
 *       Returns -1, or the first row whose result is all zero (a point of small order).
 *       The GIL is released while it runs. dst is src, or does not overlap it.
 *   encode(limbs) -> bytes     ten little-endian uint64 limbs (as the ladder leaves them)
 *       to the canonical 32-byte encoding: for the tests, which reach values >= 2^255.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* x86-64 with GCC or Clang only; elsewhere the module builds and says it is not available. */
#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_KERNEL 1
#include <immintrin.h>

typedef __m256i v4;
typedef struct { v4 l[10]; } fe4;

#define TARGET __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline)) TARGET

INLINE v4 set1(uint64_t x) { return _mm256_set1_epi64x((long long)x); }
INLINE v4 add(v4 a, v4 b) { return _mm256_add_epi64(a, b); }
INLINE v4 mul(v4 a, v4 b) { return _mm256_mul_epu32(a, b); }
/* Keeps the ten sums of a product in registers row by row: without it GCC computes all
 * products first and spills them to the stack, which made the kernel 2x slower. */
#define KEEP10(t) __asm__("" : "+x"(t[0]), "+x"(t[1]), "+x"(t[2]), "+x"(t[3]), "+x"(t[4]), \
                          "+x"(t[5]), "+x"(t[6]), "+x"(t[7]), "+x"(t[8]), "+x"(t[9]))

INLINE v4 times19(v4 a) { return add(add(_mm256_slli_epi64(a, 4), _mm256_slli_epi64(a, 1)), a); }

/* 2p in limbs: 2 * (2^26 - 19), then 2 * (2^25 - 1), 2 * (2^26 - 1), alternating. */
static const uint64_t TWO_P[10] = {
    0x7ffffda, 0x3fffffe, 0x7fffffe, 0x3fffffe, 0x7fffffe,
    0x3fffffe, 0x7fffffe, 0x3fffffe, 0x7fffffe, 0x3fffffe};

INLINE void fe_add(fe4 *h, const fe4 *f, const fe4 *g) {
    for (int i = 0; i < 10; i++) h->l[i] = add(f->l[i], g->l[i]);
}

INLINE void fe_sub(fe4 *h, const fe4 *f, const fe4 *g) {
    for (int i = 0; i < 10; i++)
        h->l[i] = _mm256_sub_epi64(add(f->l[i], set1(TWO_P[i])), g->l[i]);
}

/* Carry 64-bit limb sums down to 26/25 bits; limbs 1 and 5 may end up a little above 2^25
 * (at most 0x2000474 and 0x20002c4: within the input bounds of fe_mul). */
INLINE void fe_carry(fe4 *h, v4 t[10]) {
    const v4 m26 = set1((1u << 26) - 1), m25 = set1((1u << 25) - 1);
    v4 c;
#define CARRY(i, bits, mask) \
    c = _mm256_srli_epi64(t[i], bits); t[(i) + 1] = add(t[(i) + 1], c); t[i] = _mm256_and_si256(t[i], mask)
    CARRY(0, 26, m26); CARRY(4, 26, m26);
    CARRY(1, 25, m25); CARRY(5, 25, m25);
    CARRY(2, 26, m26); CARRY(6, 26, m26);
    CARRY(3, 25, m25); CARRY(7, 25, m25);
    CARRY(4, 26, m26); CARRY(8, 26, m26);
    c = _mm256_srli_epi64(t[9], 25); t[0] = add(t[0], times19(c)); t[9] = _mm256_and_si256(t[9], m25);
    CARRY(0, 26, m26);
#undef CARRY
    for (int i = 0; i < 10; i++) h->l[i] = t[i];
}

/* h = f * g, by operand scanning: row i of f times every limb of g, into ten sums that
 * stay in registers (g and 19 g are read from memory). Radix 2^25.5: a product of two odd
 * limbs counts twice, i.e. f_i is doubled for odd i when k = i + j is even; a product past
 * limb 9 wraps around times 19 (2^255 = 19 mod p).
 * Bounds: g limbs times 19 must fit 32 bits: g even limbs < 3 * 2^26 (19 times that is
 * 2^31.9), odd < 3 * 2^25 + 2^18; f odd limbs doubled likewise. Each of the ten products
 * of an output limb is below 2^27.6 * 2^31.9 = 2^59.5, their sum below 2^62.9. */
INLINE void fe_mul(fe4 *h, const fe4 *f, const fe4 *g) {
    v4 g19[10], t[10];
    for (int i = 1; i < 10; i++) g19[i] = mul(g->l[i], set1(19));
    for (int k = 0; k < 10; k++) t[k] = _mm256_setzero_si256();
#pragma GCC unroll 10
    for (int i = 0; i < 10; i++) {
        const v4 a = f->l[i];
        const v4 a2 = (i & 1) ? add(a, a) : a;
#pragma GCC unroll 10
        for (int k = 0; k < 10; k++) {
            int j = k - i;
            const v4 b = j < 0 ? g19[j + 10] : g->l[j];
            t[k] = add(t[k], mul((k & 1) ? a : a2, b));
        }
        KEEP10(t);
    }
    fe_carry(h, t);
}

/* h = f^2: fe_mul's rows, with each pair i < j once and doubled (f_i taken twice). */
INLINE void fe_sq(fe4 *h, const fe4 *f) {
    v4 f19[10], t[10];
    for (int i = 1; i < 10; i++) f19[i] = mul(f->l[i], set1(19));
    for (int k = 0; k < 10; k++) t[k] = _mm256_setzero_si256();
#pragma GCC unroll 10
    for (int i = 0; i < 10; i++) {
        const v4 a = f->l[i];
        const v4 a2 = add(a, a), a4 = add(a2, a2);
#pragma GCC unroll 10
        for (int j = i; j < 10; j++) {
            int k = i + j, wrap = k >= 10;
            if (wrap) k -= 10;
            int odd2 = (i & 1) && (j & 1);
            v4 m = i == j ? (odd2 ? a2 : a) : (odd2 ? a4 : a2);
            const v4 b = wrap ? f19[j] : f->l[j];
            t[k] = add(t[k], mul(m, b));
        }
        KEEP10(t);
    }
    fe_carry(h, t);
}

INLINE void fe_mul_small(fe4 *h, const fe4 *f, uint32_t c) {
    v4 t[10];
    const v4 cc = set1(c);
    for (int i = 0; i < 10; i++) t[i] = mul(f->l[i], cc);
    fe_carry(h, t);
}

INLINE void fe_cswap(fe4 *a, fe4 *b, v4 mask) {
    for (int i = 0; i < 10; i++) {
        v4 x = _mm256_and_si256(_mm256_xor_si256(a->l[i], b->l[i]), mask);
        a->l[i] = _mm256_xor_si256(a->l[i], x);
        b->l[i] = _mm256_xor_si256(b->l[i], x);
    }
}

/* z^(p - 2) = z^(2^255 - 21), the usual chain of 254 squarings and 11 multiplications. */
static TARGET void fe_invert(fe4 *out, const fe4 *z) {
    fe4 t0, t1, t2, t3;
    int i;
    fe_sq(&t0, z);
    fe_sq(&t1, &t0); fe_sq(&t1, &t1);
    fe_mul(&t1, z, &t1);
    fe_mul(&t0, &t0, &t1);
    fe_sq(&t2, &t0);
    fe_mul(&t1, &t1, &t2);
    fe_sq(&t2, &t1); for (i = 1; i < 5; i++) fe_sq(&t2, &t2);
    fe_mul(&t1, &t2, &t1);
    fe_sq(&t2, &t1); for (i = 1; i < 10; i++) fe_sq(&t2, &t2);
    fe_mul(&t2, &t2, &t1);
    fe_sq(&t3, &t2); for (i = 1; i < 20; i++) fe_sq(&t3, &t3);
    fe_mul(&t2, &t3, &t2);
    fe_sq(&t2, &t2); for (i = 1; i < 10; i++) fe_sq(&t2, &t2);
    fe_mul(&t1, &t2, &t1);
    fe_sq(&t2, &t1); for (i = 1; i < 50; i++) fe_sq(&t2, &t2);
    fe_mul(&t2, &t2, &t1);
    fe_sq(&t3, &t2); for (i = 1; i < 100; i++) fe_sq(&t3, &t3);
    fe_mul(&t2, &t3, &t2);
    fe_sq(&t2, &t2); for (i = 1; i < 50; i++) fe_sq(&t2, &t2);
    fe_mul(&t1, &t2, &t1);
    fe_sq(&t1, &t1); for (i = 1; i < 5; i++) fe_sq(&t1, &t1);
    fe_mul(out, &t1, &t0);
}

static const int LIMB_BIT[10] = {0, 26, 51, 77, 102, 128, 153, 179, 204, 230};

static uint64_t load64_le(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = (x << 8) | p[i];
    return x;
}

/* Four u-coordinates (top bit masked, RFC 7748 section 5) into limbs. */
static TARGET void fe_load4(fe4 *h, const uint8_t *u[4]) {
    for (int i = 0; i < 10; i++) {
        uint64_t lane[4];
        int bit = LIMB_BIT[i], width = (i & 1) ? 25 : 26;
        for (int k = 0; k < 4; k++) {
            uint8_t buf[40] = {0};
            memcpy(buf, u[k], 32);
            buf[31] &= 127;
            lane[k] = (load64_le(buf + bit / 8) >> (bit % 8)) & ((1ull << width) - 1);
        }
        h->l[i] = _mm256_set_epi64x((long long)lane[3], (long long)lane[2],
                                    (long long)lane[1], (long long)lane[0]);
    }
}

/* One lane's carried limbs to its canonical 32 little-endian bytes. */
static void fe_store1(uint8_t out[32], const uint64_t limb[10]) {
    uint64_t w[5] = {0};                      /* the value in radix 2^64, up to 2^256 */
    for (int i = 0; i < 10; i++) {
        int bit = LIMB_BIT[i], word = bit / 64, sh = bit % 64;
        unsigned __int128 v = (unsigned __int128)limb[i] << sh;
        unsigned __int128 acc = (unsigned __int128)w[word] + (uint64_t)v;
        w[word] = (uint64_t)acc;
        acc = (acc >> 64) + (uint64_t)(v >> 64) + w[word + 1];
        w[word + 1] = (uint64_t)acc;
        for (int j = word + 2; j < 5; j++) {   /* every word, whatever the value */
            acc = (acc >> 64) + w[j];
            w[j] = (uint64_t)acc;
        }
    }
    /* Fold bits 255 and up (times 19), twice, then subtract p if the value is >= p. */
    for (int r = 0; r < 2; r++) {
        uint64_t top = (w[3] >> 63) | (w[4] << 1);
        w[3] &= 0x7fffffffffffffffull;
        w[4] = 0;
        unsigned __int128 acc = (unsigned __int128)w[0] + (unsigned __int128)top * 19;
        w[0] = (uint64_t)acc;
        for (int j = 1; j < 4; j++) { acc = (acc >> 64) + w[j]; w[j] = (uint64_t)acc; }
        w[4] = (uint64_t)(acc >> 64);
    }
    /* v >= p iff v + 19 >= 2^255: add 19, keep bit 255 as the answer, drop it. */
    uint64_t s[4];
    unsigned __int128 acc = (unsigned __int128)w[0] + 19;
    s[0] = (uint64_t)acc;
    for (int j = 1; j < 4; j++) { acc = (acc >> 64) + w[j]; s[j] = (uint64_t)acc; }
    uint64_t ge = s[3] >> 63;
    uint64_t mask = 0 - ge;
    s[3] &= 0x7fffffffffffffffull;
    for (int j = 0; j < 4; j++) {
        uint64_t v = (s[j] & mask) | (w[j] & ~mask);
        for (int b = 0; b < 8; b++) out[8 * j + b] = (uint8_t)(v >> (8 * b));
    }
}

/* Four ladders: out[k] = X25519(key[k], u[k]). */
static TARGET void ladder4(uint8_t *out[4], const uint8_t *key[4], const uint8_t *u[4]) {
    uint8_t k[4][32];
    for (int j = 0; j < 4; j++) {
        memcpy(k[j], key[j], 32);
        k[j][0] &= 248; k[j][31] &= 127; k[j][31] |= 64;
    }
    fe4 x1, x2, z2, x3, z3, a, aa, b, bb, e, c, d, da, cb, t;
    fe_load4(&x1, u);
    for (int i = 0; i < 10; i++) {
        x2.l[i] = set1(i == 0); z2.l[i] = set1(0); x3.l[i] = x1.l[i]; z3.l[i] = set1(i == 0);
    }
    v4 swap = _mm256_setzero_si256();
    for (int pos = 254; pos >= 0; pos--) {
        v4 bit = _mm256_set_epi64x((k[3][pos >> 3] >> (pos & 7)) & 1, (k[2][pos >> 3] >> (pos & 7)) & 1,
                                   (k[1][pos >> 3] >> (pos & 7)) & 1, (k[0][pos >> 3] >> (pos & 7)) & 1);
        bit = _mm256_sub_epi64(_mm256_setzero_si256(), bit);   /* 0 or all ones */
        swap = _mm256_xor_si256(swap, bit);
        fe_cswap(&x2, &x3, swap);
        fe_cswap(&z2, &z3, swap);
        swap = bit;
        fe_add(&a, &x2, &z2);
        fe_sq(&aa, &a);
        fe_sub(&b, &x2, &z2);
        fe_sq(&bb, &b);
        fe_sub(&e, &aa, &bb);
        fe_add(&c, &x3, &z3);
        fe_sub(&d, &x3, &z3);
        fe_mul(&da, &d, &a);
        fe_mul(&cb, &c, &b);
        fe_add(&t, &da, &cb);
        fe_sq(&x3, &t);
        fe_sub(&t, &da, &cb);
        fe_sq(&t, &t);
        fe_mul(&z3, &x1, &t);
        fe_mul(&x2, &aa, &bb);
        fe_mul_small(&t, &e, 121665);
        fe_add(&t, &aa, &t);
        fe_mul(&z2, &e, &t);
    }
    fe_cswap(&x2, &x3, swap);
    fe_cswap(&z2, &z3, swap);
    fe_invert(&z2, &z2);
    fe_mul(&x2, &x2, &z2);
    uint64_t lanes[10][4];
    for (int i = 0; i < 10; i++) _mm256_storeu_si256((v4 *)lanes[i], x2.l[i]);
    for (int j = 0; j < 4; j++) {
        uint64_t limb[10];
        for (int i = 0; i < 10; i++) limb[i] = lanes[i][j];
        fe_store1(out[j], limb);
    }
    /* The clamped key copies. explicit_bzero where glibc has it: a hand-written volatile loop
     * here (inlined or not) made GCC 12's ladder ~35 % slower (bench/RESULTS.md). */
#ifdef __GLIBC__
    explicit_bzero(k, sizeof k);
#else
    for (volatile uint8_t *w = &k[0][0]; w < &k[0][0] + sizeof k; w++) *w = 0;
#endif
}

static int is_zero32(const uint8_t *p) {
    uint8_t acc = 0;
    for (int i = 0; i < 32; i++) acc |= p[i];
    return acc == 0;
}

/* dst[i] = X25519(keys[per_row ? i : 0], src[i]) for i < n; -1 or the first all-zero row. */
static Py_ssize_t run(const uint8_t *keys, int per_row, const uint8_t *src, uint8_t *dst,
                      Py_ssize_t n) {
    uint8_t pad_in[32] = {9}, pad_out[3][32];
    for (Py_ssize_t i = 0; i < n; i += 4) {
        const uint8_t *key[4], *u[4];
        uint8_t *out[4];
        for (int j = 0; j < 4; j++) {
            Py_ssize_t r = i + j;
            if (r < n) {
                key[j] = keys + (per_row ? 32 * r : 0);
                u[j] = src + 32 * r;
                out[j] = dst + 32 * r;
            } else {              /* a short last block: the base point, thrown away */
                key[j] = keys + (per_row ? 32 * i : 0);
                u[j] = pad_in;
                out[j] = pad_out[j - 1];
            }
        }
        ladder4(out, key, u);
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (is_zero32(dst + 32 * i)) return i;
    return -1;
}

#else
#define HAVE_KERNEL 0
static Py_ssize_t run(const uint8_t *keys, int per_row, const uint8_t *src, uint8_t *dst,
                      Py_ssize_t n) {
    (void)keys; (void)per_row; (void)src; (void)dst; (void)n;
    return -1;
}
#define __builtin_cpu_supports(feature) 0
#define __builtin_cpu_init() ((void)0)
#endif

static PyObject *py_available(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyBool_FromLong(__builtin_cpu_supports("avx2"));
}

static PyObject *py_multiply(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, src, dst;
    int per_row;
    if (!PyArg_ParseTuple(args, "y*y*w*p", &keys, &src, &dst, &per_row)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = src.len / 32;
    if (src.len % 32 || dst.len != src.len) {
        PyErr_SetString(PyExc_ValueError, "src and dst must be n * 32 bytes each");
    } else if (per_row ? keys.len != src.len : keys.len != 32) {
        PyErr_SetString(PyExc_ValueError, "keys must be 32 bytes, or 32 per row");
    } else if (!__builtin_cpu_supports("avx2")) {
        PyErr_SetString(PyExc_RuntimeError, "the AVX2 kernel is not available on this machine");
    } else {
        Py_ssize_t bad;
        Py_BEGIN_ALLOW_THREADS
        bad = run(keys.buf, per_row, src.buf, dst.buf, n);
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(bad);
    }
    PyBuffer_Release(&keys);
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *py_encode(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer limbs;
    if (!PyArg_ParseTuple(args, "y*", &limbs)) return NULL;
    PyObject *result = NULL;
    if (limbs.len != 80) {
        PyErr_SetString(PyExc_ValueError, "limbs must be 10 little-endian uint64 (80 bytes)");
    } else {
#if HAVE_KERNEL
        uint64_t l[10];
        uint8_t out[32];
        memcpy(l, limbs.buf, sizeof l);
        fe_store1(out, l);
        result = PyBytes_FromStringAndSize((const char *)out, 32);
#else
        PyErr_SetString(PyExc_RuntimeError, "the AVX2 kernel is not available on this machine");
#endif
    }
    PyBuffer_Release(&limbs);
    return result;
}

static PyMethodDef METHODS[] = {
    {"available", py_available, METH_NOARGS, "True if this CPU has AVX2."},
    {"multiply", py_multiply, METH_VARARGS,
     "multiply(keys, src, dst, per_row) -> -1 or the first row of small order."},
    {"encode", py_encode, METH_VARARGS, "encode(limbs) -> the canonical 32 bytes (tests)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_x25519x4",
                                    "X25519 on four points at once (AVX2).", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__x25519x4(void) {
    __builtin_cpu_init();
    return PyModule_Create(&MODULE);
}
