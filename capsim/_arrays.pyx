# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Compiled helpers of the array paths: the replications' random streams seeded a chunk at a time
(:func:`capsim.model.replication_uniforms`) and running sums down columns
(:func:`capsim.tally.stage_sums`). Each has a numpy equivalent, used when this module is not
built and checked against it by the tests.

Replication ``i`` of seed ``s`` draws from ``numpy.random.default_rng(SeedSequence(s,
spawn_key=(i,)))``: numpy's ``SeedSequence`` (M. E. O'Neill's ``seed_seq`` design: a pool of four
32-bit words hashed from the entropy, then hashed out into the generator's state) seeds a
``PCG64`` generator (128-bit LCG, XSL-RR output), and ``Generator.random`` turns each 64-bit
output into a double from its top 53 bits. Building those three objects costs ~13 us a
replication in Python; the same arithmetic here, on C integers, costs well under one.
``tests/test_arrays.py`` checks every step against numpy's own objects.
"""

from libc.stdint cimport uint32_t, uint64_t

import numpy as np

cdef uint32_t INIT_A = 0x43b0d7e5
cdef uint32_t MULT_A = 0x931e8875
cdef uint32_t INIT_B = 0x8b51f9dd
cdef uint32_t MULT_B = 0x58f38ded
cdef uint32_t MIX_MULT_L = 0xca01f9dd
cdef uint32_t MIX_MULT_R = 0x4973f715
cdef int POOL = 4
# PCG64's 128-bit multiplier, as high and low 64-bit words
cdef uint64_t MULT_HI = 0x2360ED051FC65DA4ULL
cdef uint64_t MULT_LO = 0x4385DF649FCCF645ULL
cdef uint64_t LOW32 = 0xFFFFFFFFULL


cdef inline uint32_t hashmix(uint32_t value, uint32_t* hash_const) noexcept nogil:
    value ^= hash_const[0]
    hash_const[0] *= MULT_A
    value *= hash_const[0]
    return value ^ (value >> 16)


cdef inline uint32_t mix(uint32_t x, uint32_t y) noexcept nogil:
    cdef uint32_t result = MIX_MULT_L * x - MIX_MULT_R * y
    return result ^ (result >> 16)


cdef void seed_pool(const uint32_t* entropy, int n, uint32_t* pool) noexcept nogil:
    """The SeedSequence pool of an assembled entropy (``n`` words, at least ``POOL``)."""
    cdef uint32_t hash_const = INIT_A
    cdef int src, dst
    for dst in range(POOL):
        pool[dst] = hashmix(entropy[dst], &hash_const)
    for src in range(POOL):
        for dst in range(POOL):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src], &hash_const))
    for src in range(POOL, n):
        for dst in range(POOL):
            pool[dst] = mix(pool[dst], hashmix(entropy[src], &hash_const))


cdef void pool_state(const uint32_t* pool, uint64_t* words) noexcept nogil:
    """``generate_state(4, np.uint64)``: eight 32-bit words, read as four little-endian 64-bit."""
    cdef uint32_t hash_const = INIT_B
    cdef uint32_t value
    cdef uint32_t half[8]
    cdef int k
    for k in range(8):
        value = pool[k % POOL] ^ hash_const
        hash_const *= MULT_B
        value *= hash_const
        half[k] = value ^ (value >> 16)
    for k in range(4):
        words[k] = <uint64_t>half[2 * k] | (<uint64_t>half[2 * k + 1] << 32)


cdef inline uint64_t mulhi(uint64_t a, uint64_t b) noexcept nogil:
    """The high 64 bits of the 128-bit product ``a * b``."""
    cdef uint64_t a0 = a & LOW32, a1 = a >> 32, b0 = b & LOW32, b1 = b >> 32
    cdef uint64_t p01 = a0 * b1, p10 = a1 * b0
    cdef uint64_t mid = ((a0 * b0) >> 32) + (p01 & LOW32) + (p10 & LOW32)
    return a1 * b1 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)


cdef struct Pcg:
    uint64_t hi, lo, inc_hi, inc_lo


cdef inline void step(Pcg* g) noexcept nogil:
    """state = state * multiplier + increment (mod 2**128)."""
    cdef uint64_t hi = mulhi(g.lo, MULT_LO) + g.hi * MULT_LO + g.lo * MULT_HI
    cdef uint64_t lo = g.lo * MULT_LO
    g.lo = lo + g.inc_lo
    g.hi = hi + g.inc_hi + (g.lo < lo)


cdef inline double next_double(Pcg* g) noexcept nogil:
    step(g)
    cdef uint64_t x = g.hi ^ g.lo
    cdef unsigned int rot = <unsigned int>(g.hi >> 58)
    x = (x >> rot) | (x << ((64 - rot) & 63))
    return <double>(x >> 11) * (1.0 / 9007199254740992.0)


cdef void seed_pcg(const uint64_t* words, Pcg* g) noexcept nogil:
    """PCG64 seeded with state ``words[0:2]`` and sequence ``words[2:4]`` (high word first)."""
    cdef uint64_t lo
    g.inc_hi = (words[2] << 1) | (words[3] >> 63)
    g.inc_lo = (words[3] << 1) | 1
    g.hi = 0
    g.lo = 0
    step(g)
    lo = g.lo
    g.lo = lo + words[1]
    g.hi = g.hi + words[0] + (g.lo < lo)
    step(g)


def uniforms(
    const uint32_t[::1] seed_words, const uint64_t[::1] replications, Py_ssize_t n, order="C"
):
    """Row ``k``: the first ``n`` doubles of replication ``replications[k]``'s stream, for a
    seed given as its 32-bit words (least significant first, as SeedSequence splits it); the
    array in C or Fortran ``order``."""
    cdef Py_ssize_t count = replications.shape[0]
    out = np.empty((count, n), dtype=np.float64, order=order)
    cdef double[:, :] values = out
    cdef int run = max(<int>seed_words.shape[0], POOL)  # SeedSequence pads the seed to the pool
    buffer = np.zeros(run + 2, dtype=np.uint32)
    buffer[: seed_words.shape[0]] = np.asarray(seed_words)
    cdef uint32_t[::1] entropy = buffer
    cdef uint32_t pool[4]
    cdef uint64_t words[4]
    cdef Pcg g
    cdef Py_ssize_t k, j
    cdef uint64_t i
    with nogil:
        for k in range(count):
            i = replications[k]
            entropy[run] = <uint32_t>(i & LOW32)
            entropy[run + 1] = <uint32_t>(i >> 32)  # the spawn key's second word, if any
            seed_pool(&entropy[0], run + (2 if i >> 32 else 1), pool)
            pool_state(pool, words)
            seed_pcg(words, &g)
            for j in range(n):
                values[k, j] = next_double(&g)
    return out


def add_rows(double[::1] total, const double[:, :] values):
    """Add the rows of ``values`` to ``total`` one after the other, in order (each column a
    running sum, as ``numpy.add.accumulate`` down the rows would end): in place."""
    cdef Py_ssize_t i, j, rows = values.shape[0]
    cdef double s
    with nogil:
        for j in range(values.shape[1]):
            s = total[j]
            for i in range(rows):
                s = s + values[i, j]
            total[j] = s
