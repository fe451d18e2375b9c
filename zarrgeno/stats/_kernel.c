/* The genotype-counting kernel in C: one pass over int8 calls, every count, GIL released.
 *
 * A call's two int8 alleles are read as one little-endian uint16 x = a0 + 256*a1 (bytes as
 * unsigned). Hom-ref is x == 0; het is low byte != high byte; missing is low byte == 0xFF
 * (tutorial: allele 0 is -1) or either byte >= 0x80 (sgkit: any allele negative; het then
 * also needs both alleles called). A call holding the fill -2 (0xFE, mixed ploidy) is
 * missing and not het in both. Under the tutorial rule the kernel also counts the partial
 * calls, one allele missing (0/., ./1, a haploid call stored as [0, -1]): those it counts
 * as het with allele 0 negative, or as called with allele 1 negative. With alleles >= -2
 * they are exactly the calls the tutorial rule counts as het and the sgkit rule does not;
 * the sgkit loops count none. The three flags of a call are packed into 10-bit fields
 * of one int32, so a row's counts and a column's running counts each cost one addition per
 * call; fields are unpacked every 1023 rows, and callers pass at most 1023 columns, before
 * any field can overflow. Buffers come through the buffer protocol: no numpy C API, so the
 * extension builds with nothing but a C compiler and Python's headers.
 *
 * On x86-64 CPUs with AVX2 a second loop (below) does the same counts with 16 calls per
 * vector; it is chosen at import from the CPU and can be switched off with simd(False).
 * missing_terms likewise has an AVX-512 path (F, BW, VL), switched with avx512().
 *
 * Wider alleles (int16, int32, int64: VCF Zarr allows them, and bio2zarr writes int16 once
 * an allele index passes 127) go through count_wide: the same flags from the two alleles'
 * values, the same packed fields, one portable loop (gcc vectorises it where it can).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define FIELD_MAX 1023

/* -2 (0xFE) is VCF Zarr's fill of a call with fewer alleles than the array's ploidy (a
 * haploid call in a diploid array): such a call is missing and never het, in both
 * semantics, as scikit-allel and sgkit count it (any allele < 0 is not called). */
static inline int32_t code_tutorial(uint32_t x) {
    uint32_t lo = x & 0xFF, hi = x >> 8;
    uint32_t fill = (lo == 0xFE) | (hi == 0xFE);
    return (int32_t)(((lo == 0xFF) | fill) | ((x == 0) << 10) | (((lo != hi) & !fill) << 20));
}

static inline int32_t code_sgkit(uint32_t x) {
    uint32_t lo = x & 0xFF, hi = x >> 8;
    uint32_t miss = (x & 0x8080) != 0;
    return (int32_t)(miss | ((x == 0) << 10) | (((lo != hi) & !miss) << 20));
}

/* The same codes from two wider alleles' values (int16 and int32 as int32, or int64). */
#define WIDE_CODES(A)                                                                     \
    static inline int32_t wide_tutorial_##A(A a0, A a1) {                                 \
        int32_t fill = (a0 == -2) | (a1 == -2);                                           \
        return ((a0 == -1) | fill) | (((a0 == 0) & (a1 == 0)) << 10) |                    \
               (((a0 != a1) & !fill) << 20);                                              \
    }                                                                                     \
    static inline int32_t wide_sgkit_##A(A a0, A a1) {                                    \
        int32_t miss = (a0 < 0) | (a1 < 0);                                               \
        return miss | (((a0 == 0) & (a1 == 0)) << 10) | (((a0 != a1) & !miss) << 20);     \
    }
WIDE_CODES(int32_t)
WIDE_CODES(int64_t)

/* A partial call of code c = code_tutorial(x): het with allele 0 negative, or called with
 * allele 1 negative, each counted (as the AVX2 loop counts the two bytes; both hold only for
 * alleles below -2, which no writer stores). */
static inline int32_t partial_tutorial(int32_t c, uint32_t x) {
    /* bit 20: het (c) and a0's sign (x bit 7); bit 0: called (not c's missing bit) and a1's
     * sign (x bit 15). A column's sums over FIELD_MAX rows stay below 2**10: the two fields
     * never meet. */
    return (int32_t)(((x << 13) | (x >> 15)) & ((uint32_t)c ^ 1) & 0x100001);
}

/* The same two fields from a wider call's code c = wide_tutorial(a0, a1). */
static inline int32_t partial_wide(int32_t c, int64_t a0, int64_t a1) {
    return (((c >> 20) & (a0 < 0)) << 20) | (~c & (a1 < 0) & 1);
}

/* CALL(row, j): the code of call j of a row; an int8 call is one uint16, a wider call two
 * alleles. PART(c, row, j): its partial-call fields (tutorial rule), or none (sgkit). */
#define CALL_TUTORIAL(row, j) code_tutorial(row[j])
#define CALL_SGKIT(row, j) code_sgkit(row[j])
#define CALL_WIDE_TUTORIAL32(row, j) wide_tutorial_int32_t(row[2 * (j)], row[2 * (j) + 1])
#define CALL_WIDE_SGKIT32(row, j) wide_sgkit_int32_t(row[2 * (j)], row[2 * (j) + 1])
#define CALL_WIDE_TUTORIAL64(row, j) wide_tutorial_int64_t(row[2 * (j)], row[2 * (j) + 1])
#define CALL_WIDE_SGKIT64(row, j) wide_sgkit_int64_t(row[2 * (j)], row[2 * (j) + 1])
#define PART_TUTORIAL(c, row, j) partial_tutorial(c, row[j])
#define PART_WIDE(c, row, j) partial_wide(c, row[2 * (j)], row[2 * (j) + 1])
#define PART_NONE(c, row, j) 0

/* One specialised loop per semantics, allele width and count type, so the inner loop has
 * no branch; ROW is where row i's column c0 starts (ROW_INT8 or ROW_WIDE). */
#define ROW_INT8 v + i * stride + c0
#define ROW_WIDE v + (i * stride + c0) * 2
#define COUNT_LOOP(CALL, PART, T, ROW_T, ROW)                                             \
    for (Py_ssize_t i0 = 0; i0 < n; i0 += FIELD_MAX) {                                    \
        Py_ssize_t i1 = i0 + FIELD_MAX < n ? i0 + FIELD_MAX : n;                          \
        for (Py_ssize_t i = i0; i < i1; i++) {                                            \
            const ROW_T *row = ROW;                                                       \
            int32_t total = 0;                                                            \
            for (Py_ssize_t j = 0; j < width; j++) {                                      \
                int32_t c = CALL(row, j);                                                 \
                total += c;                                                               \
                acc[j] += c;                                                              \
                acc[width + j] += PART(c, row, j);                                        \
            }                                                                             \
            ((T *)variant)[i] += (T)(total & FIELD_MAX);                                  \
            ((T *)variant)[n + i] += (T)((total >> 10) & FIELD_MAX);                      \
            ((T *)variant)[2 * n + i] += (T)(total >> 20);                                \
        }                                                                                 \
        for (Py_ssize_t j = 0; j < width; j++) {                                          \
            int32_t a = acc[j];                                                           \
            sample[j] += a & FIELD_MAX;                                                   \
            sample[width + j] += (a >> 10) & FIELD_MAX;                                   \
            sample[2 * width + j] += a >> 20;                                             \
            *partial += (acc[width + j] & FIELD_MAX) + (acc[width + j] >> 20);            \
            acc[j] = acc[width + j] = 0;                                                  \
        }                                                                                 \
    }

/* Each loop is compiled twice, for AVX2 and for the x86-64 baseline (SSE2), and the
 * loader picks the one the CPU runs; elsewhere it is compiled once, for the default target. */
/* ZARRGENO_BASELINE_ONLY builds the portable loop alone, for the baseline target: the tests
 * build it so, to run what a CPU without AVX2 runs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(ZARRGENO_BASELINE_ONLY)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

#define DEFINE_COUNT(NAME, CODE, PART, T)                                                 \
    MULTIVERSION static void NAME(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,    \
                                  Py_ssize_t c0, Py_ssize_t width, void *variant,         \
                                  int64_t *sample, int32_t *acc, int64_t *partial) {      \
        COUNT_LOOP(CODE, PART, T, uint16_t, ROW_INT8)                                     \
    }

DEFINE_COUNT(count_tutorial_u8, CALL_TUTORIAL, PART_TUTORIAL, uint8_t)
DEFINE_COUNT(count_sgkit_u8, CALL_SGKIT, PART_NONE, uint8_t)
DEFINE_COUNT(count_tutorial_u16, CALL_TUTORIAL, PART_TUTORIAL, uint16_t)
DEFINE_COUNT(count_sgkit_u16, CALL_SGKIT, PART_NONE, uint16_t)
DEFINE_COUNT(count_tutorial_u32, CALL_TUTORIAL, PART_TUTORIAL, uint32_t)
DEFINE_COUNT(count_sgkit_u32, CALL_SGKIT, PART_NONE, uint32_t)
DEFINE_COUNT(count_tutorial_u64, CALL_TUTORIAL, PART_TUTORIAL, uint64_t)
DEFINE_COUNT(count_sgkit_u64, CALL_SGKIT, PART_NONE, uint64_t)

/* The wider-allele loops: allele type A, per semantics and count type. */
typedef void (*wide_fn)(const void *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, void *,
                        int64_t *, int32_t *, int64_t *);
#define DEFINE_WIDE(NAME, CALL, PART, T, A)                                               \
    MULTIVERSION static void NAME(const void *data, Py_ssize_t n, Py_ssize_t stride,      \
                                  Py_ssize_t c0, Py_ssize_t width, void *variant,         \
                                  int64_t *sample, int32_t *acc, int64_t *partial) {      \
        const A *v = (const A *)data;                                                     \
        COUNT_LOOP(CALL, PART, T, A, ROW_WIDE)                                            \
    }
#define DEFINE_WIDE_ALL(A, TUTORIAL, SGKIT)                                               \
    DEFINE_WIDE(wide_tutorial_##A##_u8, TUTORIAL, PART_WIDE, uint8_t, A)                  \
    DEFINE_WIDE(wide_tutorial_##A##_u16, TUTORIAL, PART_WIDE, uint16_t, A)                \
    DEFINE_WIDE(wide_tutorial_##A##_u32, TUTORIAL, PART_WIDE, uint32_t, A)                \
    DEFINE_WIDE(wide_tutorial_##A##_u64, TUTORIAL, PART_WIDE, uint64_t, A)                \
    DEFINE_WIDE(wide_sgkit_##A##_u8, SGKIT, PART_NONE, uint8_t, A)                        \
    DEFINE_WIDE(wide_sgkit_##A##_u16, SGKIT, PART_NONE, uint16_t, A)                      \
    DEFINE_WIDE(wide_sgkit_##A##_u32, SGKIT, PART_NONE, uint32_t, A)                      \
    DEFINE_WIDE(wide_sgkit_##A##_u64, SGKIT, PART_NONE, uint64_t, A)
DEFINE_WIDE_ALL(int16_t, CALL_WIDE_TUTORIAL32, CALL_WIDE_SGKIT32)
DEFINE_WIDE_ALL(int32_t, CALL_WIDE_TUTORIAL32, CALL_WIDE_SGKIT32)
DEFINE_WIDE_ALL(int64_t, CALL_WIDE_TUTORIAL64, CALL_WIDE_SGKIT64)
#define WIDE_TABLE(A)                                                                     \
    {{wide_tutorial_##A##_u8, wide_tutorial_##A##_u16, wide_tutorial_##A##_u32,           \
      wide_tutorial_##A##_u64},                                                           \
     {wide_sgkit_##A##_u8, wide_sgkit_##A##_u16, wide_sgkit_##A##_u32, wide_sgkit_##A##_u64}}
/* By allele size (2, 4, 8 bytes), semantics (tutorial, sgkit), count size (1, 2, 4, 8). */
static const wide_fn wide_loops[3][2][4] = {WIDE_TABLE(int16_t), WIDE_TABLE(int32_t),
                                            WIDE_TABLE(int64_t)};

/* log2 of 1, 2, 4 or 8. */
static inline int size_index(Py_ssize_t size) {
    return size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : 3;
}

/* ---- The AVX2 path ------------------------------------------------------------------
 * The loop above widens every call to an int32 lane (8 calls per vector) and ends each row
 * with a scalar remainder: for a 31-sample edge chunk, 7 of the 31 calls take the scalar
 * path. This path keeps a call in a 16-bit lane (16 per vector) and covers a row segment of
 * 16..64 calls with at most 4 loads; the last load ends exactly at the segment's end and
 * its lanes that the previous load already counted are zeroed (a 0/0 call, corrected for
 * below), so there is no scalar remainder and no load past the segment.
 *
 * Flags are byte-wise compare masks (-1/0), about 7 operations per 16 calls: with y the
 * call's bytes swapped, one compare of x against y (low byte forced to 0xFF) gives "allele 0
 * is -1" in the low byte and "alleles equal" in the high byte; one more compare gives, per
 * 16-bit lane, "no -2" (tutorial) or "no negative allele" (sgkit), so a single and-not
 * leaves "called" in the low byte and "het" in the high byte of each lane (the tutorial
 * loops add two operations: those masks and-ed with y, then a movemask whose popcount is
 * the partial calls). Hom-ref is one byte compare with 0 per two loads, packed to bytes.
 * Subtracting masks counts: per column in byte counters held in registers and flushed every
 * FLUSH_ROWS < 256 rows, per row in a row vector. Row vectors are summed 8 rows at a time by
 * a tree of horizontal adds, which leaves the 8 rows' totals in one vector, added to the
 * per-variant counts with vector loads and stores: no per-row horizontal sum, no per-row
 * scalar work.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(ZARRGENO_BASELINE_ONLY)
#define HAVE_AVX2 1
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2,popcnt")))
#define AVX2_INLINE AVX2_FN static inline __attribute__((always_inline))
/* Rows between flushes of the per-column byte counters: below 256 so none wraps, and a
 * multiple of 8 so only the last block has rows left over from the 8-row steps. */
#define FLUSH_ROWS 248
/* An empty asm that "changes" the column counters in use after each row: without it gcc
 * reassociates their sums over 8 rows, keeps 8 rows of masks live and spills them. */
#define AVX2_BARRIER(NV, a, b, c, d, e, f)                                                \
    do {                                                                                  \
        if ((NV) <= 2)                                                                    \
            __asm__("" : "+x"(a), "+x"(b), "+x"(e));                                      \
        else                                                                              \
            __asm__("" : "+x"(a), "+x"(b), "+x"(c), "+x"(d), "+x"(e), "+x"(f));           \
    } while (0)

/* The masks of 16 calls x: in each 16-bit lane, 0xFF in the low byte when the call is not
 * missing and 0xFF in the high byte when it is het. Under the tutorial rule *partial gets
 * the number of partial calls. */
AVX2_INLINE __m256i avx2_called_het(__m256i x, const int SGKIT, int64_t *partial,
                                     __m256i *okp) {
    const __m256i swap = _mm256_setr_epi8(1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15,
                                          14, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12,
                                          15, 14);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i swapped = _mm256_shuffle_epi8(x, swap);
    /* low byte: allele 0 is -1; high byte: both alleles are equal */
    const __m256i neg1_or_eq =
        _mm256_cmpeq_epi8(x, _mm256_or_si256(swapped, _mm256_set1_epi16(0x00FF)));
    __m256i ok; /* 16-bit lanes: no allele is -2 (tutorial) / negative (sgkit) */
    if (SGKIT)
        ok = _mm256_cmpeq_epi16(_mm256_and_si256(x, _mm256_set1_epi16((short)0x8080)), zero);
    else
        ok = _mm256_cmpeq_epi16(_mm256_cmpeq_epi8(x, _mm256_set1_epi8((char)0xFE)), zero);
    const __m256i c = _mm256_andnot_si256(neg1_or_eq, ok);
    *okp = ok;
    /* tutorial: c & swapped has the sign of a1 in each "called" byte and of a0 in each
     * "het" byte, so its byte signs are the partial calls: a movemask and a popcount */
    if (!SGKIT)
        *partial += __builtin_popcount((unsigned)_mm256_movemask_epi8(
            _mm256_and_si256(c, swapped)));
    return c;
}

/* Hom-ref masks of two loads a and b as bytes: packing saturates a 16-bit call to a byte
 * that is 0 only if the call is 0/0, so one byte compare tests 32 calls. In each 128-bit
 * half: 8 calls of a, then 8 of b. */
AVX2_INLINE __m256i avx2_hom_pair(__m256i a, __m256i b) {
    return _mm256_cmpeq_epi8(_mm256_packs_epi16(a, b), _mm256_setzero_si256());
}

/* The QC pass's extras of a segment (see qc_all): each row's missing-call bits (bits: row
 * 0's byte of the segment's first column, nbytes a row, or NULL for none) and its flags
 * (flags[i] |= bit 0: a called call holds an allele >= 2; bit 1: a call the two rules count
 * differently, see scan_u8). */
typedef struct {
    uint8_t *bits;
    Py_ssize_t nbytes;
    uint8_t *flags;
} qc_extra;
static int scan_u8(const uint16_t *row, Py_ssize_t width, uint8_t *bits);

/* Whether 16 calls x may set a QC flag (see scan_u8): their calls other than -1/-1, or-ed
 * into *any, the accumulator of a group of rows. A call sets bits 0xFEFE if it is called
 * (alleles 0..127) with an allele >= 2, or holds a negative allele (bit 7) without being
 * -1/-1: a group whose *any has none of them sets no flag, and only the rows of the others
 * are tested one by one (avx2_group_flags; a -2 fill is left to that). */
AVX2_INLINE void avx2_qc_flags(__m256i x, __m256i *any) {
    *any = _mm256_or_si256(*any,
                           _mm256_andnot_si256(_mm256_cmpeq_epi16(x, _mm256_set1_epi16(-1)), x));
}

/* Load k of a row: 16 calls from column 16*k; if MASKED, the last one ends at the
 * segment's end with the lanes the previous load counted zeroed. */
AVX2_INLINE __m256i avx2_load(const uint16_t *row, Py_ssize_t last, __m256i keep,
                              const int NV, const int MASKED, const int k) {
    if (MASKED && k == NV - 1)
        return _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(row + last)), keep);
    return _mm256_loadu_si256((const __m256i *)(row + 16 * k));
}

/* Per-column counters of one segment: cc[k] counts "called" and "het" (low and high byte of
 * each lane) of load k; ch[k/2] counts hom-ref of loads k and k+1, packed to bytes (in each
 * 128-bit half, 8 lanes of the even load, then 8 of the odd one). All are byte counters.
 * A row adds its masks to them and to its per-lane sums: called and het bytes in *rc (at
 * most NV each), hom-ref bytes in *rh (at most 2 each); partial calls (tutorial) in the
 * scalar *pc. Written out with pointers to single vectors, not arrays, so that gcc keeps
 * every counter in a register. */

/* Loads k and k+1 of a row, k even (k+1 only if the row has it). With QC, their flags
 * go to the group's *any (avx2_qc_flags) and, with BITS, the loads' missing-call bits to
 * *word (bit j: the segment's column j; the last load's lanes past skip, when MASKED). */
AVX2_INLINE void avx2_pair(const uint16_t *row, Py_ssize_t last, __m256i keep, const int NV,
                           const int MASKED, const int SGKIT, const int k, __m256i *cc_even,
                           __m256i *cc_odd, __m256i *ch, __m256i *rc, __m256i *rh,
                           int64_t *pc, const int QC, const int BITS, int skip, __m256i *any,
                           uint64_t *word) {
    const __m256i x_even = avx2_load(row, last, keep, NV, MASKED, k);
    __m256i x_odd = _mm256_set1_epi16(1); /* not 0/0 */
    __m256i ok_even, ok_odd = _mm256_set1_epi16(-1);
    __m256i c = avx2_called_het(x_even, SGKIT, pc, &ok_even);
    *cc_even = _mm256_sub_epi8(*cc_even, c);
    *rc = _mm256_sub_epi8(*rc, c);
    if (k + 1 < NV) {
        x_odd = avx2_load(row, last, keep, NV, MASKED, k + 1);
        c = avx2_called_het(x_odd, SGKIT, pc, &ok_odd);
        *cc_odd = _mm256_sub_epi8(*cc_odd, c);
        *rc = _mm256_sub_epi8(*rc, c);
    }
    const __m256i h = avx2_hom_pair(x_even, x_odd);
    *ch = _mm256_sub_epi8(*ch, h);
    *rh = _mm256_sub_epi8(*rh, h);
    if (QC) {
        avx2_qc_flags(x_even, any);
        if (k + 1 < NV)
            avx2_qc_flags(x_odd, any);
    }
    if (QC && BITS) {
        /* ok as bytes, the even load's 16 lanes then the odd one's: a movemask */
        const __m256i okb =
            _mm256_permute4x64_epi64(_mm256_packs_epi16(ok_even, ok_odd), 0xD8);
        const uint32_t miss = ~(uint32_t)_mm256_movemask_epi8(okb);
        uint64_t lo = miss & 0xFFFF, hi = miss >> 16;
        if (MASKED && k == NV - 1)
            lo >>= skip;
        if (MASKED && k + 1 == NV - 1)
            hi >>= skip;
        *word |= lo << (16 * k);
        if (k + 1 < NV)
            *word |= hi << (16 * (k + 1));
    }
}

/* A row of a segment of gw calls. With QC (qe), its flags go to the group's *any
 * (avx2_qc_flags) and, with BITS, its loads' missing-call bits are written (those of a TAIL
 * segment's last calls come from the tail vector, avx2_tail_bits). */
AVX2_INLINE void avx2_row(const uint16_t *row, Py_ssize_t last, __m256i keep, const int NV,
                          const int MASKED, const int SGKIT, __m256i *cc0, __m256i *cc1,
                          __m256i *cc2, __m256i *cc3, __m256i *ch0, __m256i *ch1,
                          __m256i *rc, __m256i *rh, int64_t *pc, const int QC, const int BITS,
                          const qc_extra *qe, Py_ssize_t i, Py_ssize_t gw, int skip,
                          __m256i *any) {
    const __m256i zero = _mm256_setzero_si256();
    uint64_t word = 0;
    *rc = *rh = zero;
    avx2_pair(row, last, keep, NV, MASKED, SGKIT, 0, cc0, cc1, ch0, rc, rh, pc, QC, BITS, skip,
              any, &word);
    if (NV > 2)
        avx2_pair(row, last, keep, NV, MASKED, SGKIT, 2, cc2, cc3, ch1, rc, rh, pc, QC, BITS,
                  skip, any, &word);
    if (QC && BITS) {
        /* unmasked (a TAIL segment): the loads' 2*NV bytes; the tail calls' byte follows */
        uint8_t *out = qe->bits + i * qe->nbytes;
        memcpy(out, &word, 2 * NV - 1); /* (gw + 7) / 8 bytes: 2*NV - 1, or 2*NV */
        if (!MASKED || gw > 16 * NV - 8)
            out[2 * NV - 1] = (uint8_t)(word >> (16 * NV - 8));
    }
}

/* The last two calls (one 32-bit word) of row r, broadcast, blended into word r of t. */
#define AVX2_TAIL_WORD(t, p, r)                                                           \
    do {                                                                                  \
        int32_t word;                                                                     \
        memcpy(&word, (p), sizeof word);                                                  \
        t = _mm256_blend_epi32(t, _mm256_set1_epi32(word), 1 << (r));                     \
    } while (0)

/* Adds 8 uint16 counts to 8 consecutive counts of `itemsize` bytes at p. */
AVX2_INLINE void avx2_add8(void *p, Py_ssize_t itemsize, __m128i v) {
    switch (itemsize) {
    case 1: {
        __m128i b = _mm_packus_epi16(v, v);
        _mm_storel_epi64((__m128i *)p, _mm_add_epi8(_mm_loadl_epi64((const __m128i *)p), b));
        break;
    }
    case 2:
        _mm_storeu_si128((__m128i *)p, _mm_add_epi16(_mm_loadu_si128((const __m128i *)p), v));
        break;
    case 4:
        _mm256_storeu_si256((__m256i *)p,
                            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)p),
                                             _mm256_cvtepu16_epi32(v)));
        break;
    default: {
        __m256i *q = (__m256i *)p;
        const __m256i lo = _mm256_cvtepu16_epi64(v);
        const __m256i hi = _mm256_cvtepu16_epi64(_mm_srli_si128(v, 8));
        _mm256_storeu_si256(q, _mm256_add_epi64(_mm256_loadu_si256(q), lo));
        _mm256_storeu_si256(q + 1, _mm256_add_epi64(_mm256_loadu_si256(q + 1), hi));
        break;
    }
    }
}

/* Adds one row's counts (the rows left over from the 8-row steps). */
static inline void add_row(void *variant, Py_ssize_t itemsize, Py_ssize_t n, Py_ssize_t i,
                           uint32_t m, uint32_t h, uint32_t e) {
    switch (itemsize) {
    case 1: {
        uint8_t *o = (uint8_t *)variant;
        o[i] += (uint8_t)m; o[n + i] += (uint8_t)h; o[2 * n + i] += (uint8_t)e;
        break;
    }
    case 2: {
        uint16_t *o = (uint16_t *)variant;
        o[i] += (uint16_t)m; o[n + i] += (uint16_t)h; o[2 * n + i] += (uint16_t)e;
        break;
    }
    case 4: {
        uint32_t *o = (uint32_t *)variant;
        o[i] += m; o[n + i] += h; o[2 * n + i] += e;
        break;
    }
    default: {
        uint64_t *o = (uint64_t *)variant;
        o[i] += m; o[n + i] += h; o[2 * n + i] += e;
        break;
    }
    }
}

/* The sum of x's 16 uint16 lanes. */
AVX2_INLINE uint32_t hsum_epi16(__m256i x) {
    __m256i w = _mm256_madd_epi16(x, _mm256_set1_epi16(1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

/* The missing-call bits of the tail vector of rows i..i+7 of a TAIL segment (ok: its lanes
 * without a negative allele; word r: row r's last two calls, the first zeroed when
 * tail_skip), written to each row's byte 2*NV (the calls from column 16*NV). */
AVX2_INLINE void avx2_tail_bits(__m256i ok, const qc_extra *qe, Py_ssize_t i, int tail_skip,
                                const int NV) {
    /* ok as bytes: per 128-bit half, 4 rows' 8 calls (then a copy); 2 bits a row */
    const uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_packs_epi16(ok, ok));
    const uint32_t miss = (m & 0xFF) | ((m >> 8) & 0xFF00);
    uint8_t *out = qe->bits + i * qe->nbytes + 2 * NV;
    for (int r = 0; r < 8; r++)
        out[r * qe->nbytes] = (uint8_t)(((miss >> (2 * r)) & 3) >> tail_skip);
}

/* Or-s into qe->flags the flags of rows i .. i+rows (gw calls from column c0) when their
 * accumulator any (avx2_qc_flags) says they may have one (in SNP data such as Ag1000G's,
 * about 4% of the groups hold a called allele >= 2, fewer a half call): each row's own,
 * from its loads (the last ending at the segment's end, overlapping the one before). In
 * *rare the alleles of called calls (bits 0x7E7E set: an allele >= 2), in *odd the
 * negative calls other than -1/-1 and holding no -2 (scan_u8's rule). */
AVX2_INLINE void avx2_group_flags(const uint16_t *v, Py_ssize_t stride, Py_ssize_t c0,
                                  Py_ssize_t gw, const qc_extra *qe, Py_ssize_t i, int rows,
                                  __m256i any) {
    if (_mm256_testz_si256(any, _mm256_set1_epi16((short)0xFEFE)))
        return;
    const __m256i zero = _mm256_setzero_si256();
    for (int r = 0; r < rows; r++) {
        const uint16_t *row = v + (i + r) * stride + c0;
        __m256i rare = zero, odd = zero;
        for (Py_ssize_t c = 0; c < gw; c += 16) {
            const __m256i x =
                _mm256_loadu_si256((const __m256i *)(row + (c + 16 <= gw ? c : gw - 16)));
            const __m256i ok =
                _mm256_cmpeq_epi16(_mm256_and_si256(x, _mm256_set1_epi16((short)0x8080)), zero);
            const __m256i plain =
                _mm256_or_si256(_mm256_cmpeq_epi16(x, _mm256_set1_epi16(-1)),
                                _mm256_cmpeq_epi8(x, _mm256_set1_epi8((char)0xFE)));
            rare = _mm256_or_si256(rare, _mm256_and_si256(x, ok));
            odd = _mm256_or_si256(odd,
                                  _mm256_andnot_si256(ok, _mm256_cmpeq_epi16(plain, zero)));
        }
        qe->flags[i + r] |= (uint8_t)((!_mm256_testz_si256(rare, _mm256_set1_epi16(0x7E7E))) |
                                      ((!_mm256_testz_si256(odd, odd)) << 1));
    }
}

/* Columns c0 .. c0+gw of every row. Column counts go to sample[j], sample[sstride + j],
 * sample[2*sstride + j] (missing, hom-ref, het).
 *
 * Without TAIL, 16 <= gw <= 16*NV: NV = ceil(gw / 16) loads a row. The lanes of the last
 * load that the previous one counted ("skip" of them) are zeroed, so each counts as a
 * called, hom-ref, not het call in its row: a row's missing count is its 16*NV lanes less
 * the called ones, its hom-ref count is less skip, and the column counters of those lanes
 * are never read.
 *
 * With TAIL, gw = 16*NV + 1 or + 2 (a 50-sample chunk: 3 loads and 2 calls): NV full loads
 * a row, and the last two calls of 8 rows (one 32-bit word each) are blended into one
 * vector and counted as a ninth load, where a fourth load a row would count 2 new calls
 * in 16. A first call of those two that the loads counted is zeroed, as above. Rows left
 * over from the 8-row steps count their tail calls with the scalar code. Under the
 * tutorial rule the segment's partial calls are added to *partial. With QC (qe), each row's
 * flags and (BITS) missing-call bits go to qe as well: the flags of 8 rows at a time
 * (avx2_group_flags), with TAIL the tail calls' bits from the tail vector (avx2_tail_bits);
 * scan_u8 for the rows left over. */
AVX2_INLINE void avx2_segment(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,
                              Py_ssize_t c0, Py_ssize_t gw, void *variant,
                              Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride,
                              int64_t *partial, const int NV, const int SGKIT,
                              const int TAIL, const qc_extra *qe, const int QC,
                              const int BITS) {
    const __m256i zero = _mm256_setzero_si256();
    const Py_ssize_t last = TAIL ? 16 * (NV - 1) : gw - 16;
    const int skip = TAIL ? 0 : NV * 16 - (int)gw;
    /* TAIL: the segment is NV loads and 1 or 2 calls; the tail word of each row holds its
     * last 2 calls, of which the first, when the loads counted it, is zeroed. */
    const Py_ssize_t tail = gw - 2;
    const int tail_skip = TAIL ? 2 - (int)(gw - 16 * NV) : 0;
    const __m256i tail_keep = _mm256_set1_epi32(tail_skip ? (int)0xFFFF0000 : -1);
    __m256i ct = zero, ht = zero; /* the tail's column counters: lane 2r + j, row r, call j */
    int16_t keep_lanes[16];
    for (int l = 0; l < 16; l++)
        keep_lanes[l] = l >= skip ? -1 : 0;
    const __m256i keep = _mm256_loadu_si256((const __m256i *)keep_lanes);
    const __m128i lanes = _mm_set1_epi16((short)(NV * 16 + (TAIL ? 2 : 0)));
    const __m128i skipped = _mm_set1_epi16((short)(TAIL ? tail_skip : skip));
    __m256i cc0 = zero, cc1 = zero, cc2 = zero, cc3 = zero, ch0 = zero, ch1 = zero;
    int64_t pc = 0; /* tutorial: partial calls */
    __m256i gany = zero; /* QC: a group's flag accumulator */
    const qc_extra q = QC ? *qe : (qc_extra){NULL, 0, NULL}; /* in registers: stores via
                                                              * bits cannot change it */
#define AVX2_ROW(r, RC, RH)                                                               \
    do {                                                                                  \
        avx2_row(v + (i + (r)) * stride + c0, last, keep, NV, !TAIL, SGKIT, &cc0, &cc1,   \
                 &cc2, &cc3, &ch0, &ch1, &RC, &RH, &pc, QC, BITS, &q, i + (r), gw, skip,   \
                 &gany);                                                                  \
        AVX2_BARRIER(NV, cc0, cc1, cc2, cc3, ch0, ch1);                                   \
        if (QC) /* gany too: or-ed in row by row, not reassociated */                     \
            __asm__("" : "+x"(gany));                                                     \
    } while (0)
/* Rows i+r .. i+r+3, their sums merged pairwise by horizontal adds into C and H. */
#define AVX2_FOUR_ROWS(r, C, H)                                                           \
    do {                                                                                  \
        __m256i ca, ha, cb, hb, c01, h01;                                                 \
        AVX2_ROW((r), ca, ha);                                                            \
        AVX2_ROW((r) + 1, cb, hb);                                                        \
        c01 = _mm256_hadd_epi16(ca, cb);                                                  \
        h01 = _mm256_hadd_epi16(ha, hb);                                                  \
        AVX2_ROW((r) + 2, ca, ha);                                                        \
        AVX2_ROW((r) + 3, cb, hb);                                                        \
        C = _mm256_hadd_epi16(c01, _mm256_hadd_epi16(ca, cb));                            \
        H = _mm256_hadd_epi16(h01, _mm256_hadd_epi16(ha, hb));                            \
    } while (0)

    for (Py_ssize_t i0 = 0; i0 < n; i0 += FLUSH_ROWS) {
        Py_ssize_t i1 = i0 + FLUSH_ROWS < n ? i0 + FLUSH_ROWS : n, i = i0;
        for (; i + 8 <= i1; i += 8) {
            /* rows i..i+7: a tree of horizontal adds, each pair merged as soon as it is
             * complete, leaves in each 128-bit half the 8 rows' sums over its lanes */
            __m256i c03, h03, c47, h47;
            gany = zero;
            AVX2_FOUR_ROWS(0, c03, h03);
            AVX2_FOUR_ROWS(4, c47, h47);
            const __m256i tc = _mm256_hadd_epi16(c03, c47), th = _mm256_hadd_epi16(h03, h47);
            __m256i t = _mm256_add_epi16(_mm256_permute2x128_si256(tc, th, 0x20),
                                         _mm256_permute2x128_si256(tc, th, 0x31));
            if (TAIL) {
                /* the 8 rows' tail words in one vector: counted like a load, their row
                 * sums (lanes 2r and 2r+1) put in t's layout and added */
                const uint16_t *p = v + i * stride + c0 + tail;
                __m256i w = zero;
                AVX2_TAIL_WORD(w, p, 0);
                AVX2_TAIL_WORD(w, p + stride, 1);
                AVX2_TAIL_WORD(w, p + 2 * stride, 2);
                AVX2_TAIL_WORD(w, p + 3 * stride, 3);
                AVX2_TAIL_WORD(w, p + 4 * stride, 4);
                AVX2_TAIL_WORD(w, p + 5 * stride, 5);
                AVX2_TAIL_WORD(w, p + 6 * stride, 6);
                AVX2_TAIL_WORD(w, p + 7 * stride, 7);
                w = _mm256_and_si256(w, tail_keep);
                __m256i ok_tail;
                const __m256i c = avx2_called_het(w, SGKIT, &pc, &ok_tail);
                const __m256i h = avx2_hom_pair(w, _mm256_set1_epi16(1));
                ct = _mm256_sub_epi8(ct, c);
                ht = _mm256_sub_epi8(ht, h);
                /* per 128-bit half: 4 rows' called/het sums, then their 4 hom-ref words */
                const __m256i rc = _mm256_hadd_epi16(_mm256_sub_epi8(zero, c), zero);
                const __m256i sums = _mm256_unpacklo_epi64(rc, _mm256_sub_epi8(zero, h));
                t = _mm256_add_epi16(t, _mm256_permute4x64_epi64(sums, 0xD8));
                if (QC)
                    avx2_qc_flags(w, &gany);
                if (QC && BITS)
                    avx2_tail_bits(ok_tail, &q, i, tail_skip, NV);
            }
            if (QC)
                avx2_group_flags(v, stride, c0, gw, &q, i, 8, gany);
            const __m128i called = _mm256_castsi256_si128(t);
            const __m128i miss =
                _mm_sub_epi16(lanes, _mm_and_si128(called, _mm_set1_epi16(0x00FF)));
            const __m128i hom_bytes = _mm256_extracti128_si256(t, 1);
            const __m128i hom =
                _mm_sub_epi16(_mm_add_epi16(_mm_and_si128(hom_bytes, _mm_set1_epi16(0x00FF)),
                                            _mm_srli_epi16(hom_bytes, 8)),
                              skipped);
            const __m128i het = _mm_srli_epi16(called, 8);
            char *out = (char *)variant + i * itemsize;
            avx2_add8(out, itemsize, miss);
            avx2_add8(out + n * itemsize, itemsize, hom);
            avx2_add8(out + 2 * n * itemsize, itemsize, het);
        }
        const int64_t tail_rows = i - i0; /* rows whose tail word the vectors counted */
        for (; i < i1; i++) {
            __m256i c, h;
            AVX2_ROW(0, c, h);
            const uint32_t called = hsum_epi16(c), hom = hsum_epi16(h);
            uint32_t m = (uint32_t)(NV * 16) - (called & 0xFF);
            uint32_t o = (hom & 0xFF) + (hom >> 8) - (uint32_t)skip, e = called >> 8;
            for (int j = tail_skip; TAIL && j < 2; j++) {
                const uint16_t x = v[i * stride + c0 + tail + j];
                const int32_t code = SGKIT ? code_sgkit(x) : code_tutorial(x);
                const int32_t cm = code & FIELD_MAX, co = (code >> 10) & FIELD_MAX;
                if (!SGKIT) {
                    const int32_t pt = partial_tutorial(code, x);
                    pc += (pt & 1) + (pt >> 20);
                }
                m += (uint32_t)cm;
                o += (uint32_t)co;
                e += (uint32_t)(code >> 20);
                sample[tail + j] += cm;
                sample[sstride + tail + j] += co;
                sample[2 * sstride + tail + j] += code >> 20;
            }
            if (QC) /* the row's flags, and (TAIL) the bits of the calls after its loads */
                q.flags[i] |= (uint8_t)scan_u8(v + i * stride + c0, gw,
                                                 BITS ? q.bits + i * q.nbytes : NULL);
            add_row(variant, itemsize, n, i, m, o, e);
        }
        const int64_t rows = i1 - i0;
        uint8_t cb[4][32], hb[2][32];
        _mm256_storeu_si256((__m256i *)cb[0], cc0);
        _mm256_storeu_si256((__m256i *)cb[1], cc1);
        _mm256_storeu_si256((__m256i *)cb[2], cc2);
        _mm256_storeu_si256((__m256i *)cb[3], cc3);
        _mm256_storeu_si256((__m256i *)hb[0], ch0);
        _mm256_storeu_si256((__m256i *)hb[1], ch1);
        cc0 = cc1 = cc2 = cc3 = ch0 = ch1 = zero;
        for (int k = 0; k < NV; k++) {
            const int is_last = k == NV - 1;
            const Py_ssize_t base = is_last ? last : 16 * k;
            for (int l = is_last ? skip : 0; l < 16; l++) {
                sample[base + l] += rows - cb[k][2 * l];
                sample[sstride + base + l] += hb[k / 2][(l / 8) * 16 + (k % 2) * 8 + l % 8];
                sample[2 * sstride + base + l] += cb[k][2 * l + 1];
            }
        }
        if (TAIL) {
            _mm256_storeu_si256((__m256i *)cb[0], ct);
            _mm256_storeu_si256((__m256i *)hb[0], ht);
            ct = ht = zero;
            for (int j = tail_skip; j < 2; j++) {
                int64_t called = 0, hom = 0, het = 0;
                for (int q = j; q < 16; q += 2) {
                    called += cb[0][2 * q];
                    het += cb[0][2 * q + 1];
                    hom += hb[0][(q / 8) * 16 + q % 8];
                }
                sample[tail + j] += tail_rows - called;
                sample[sstride + tail + j] += hom;
                sample[2 * sstride + tail + j] += het;
            }
        }
    }
    if (!SGKIT)
        *partial += pc;
#undef AVX2_FOUR_ROWS
#undef AVX2_ROW
}

#define DEFINE_AVX2(NAME, NV, SGKIT, TAIL)                                                \
    AVX2_FN static void NAME(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,         \
                             Py_ssize_t c0, Py_ssize_t gw, void *variant,                 \
                             Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride,    \
                             int64_t *partial) {                                          \
        avx2_segment(v, n, stride, c0, gw, variant, itemsize, sample, sstride, partial,   \
                     NV, SGKIT, TAIL, NULL, 0, 0);                                        \
    }
/* The QC pass's segments: sgkit's counts, each row's flags and (BITS) missing-call bits, in
 * NV loads a row (the last masked) or, for 16*NV + 1 or + 2 calls, NV loads and the tail
 * words (TAIL). */
#define DEFINE_AVX2_QC_ANY(NAME, NV, BITS, TAIL)                                          \
    AVX2_FN static void NAME(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,         \
                             Py_ssize_t c0, Py_ssize_t gw, void *variant,                 \
                             Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride,    \
                             const qc_extra *qe) {                                        \
        int64_t unused = 0;                                                               \
        avx2_segment(v, n, stride, c0, gw, variant, itemsize, sample, sstride, &unused,   \
                     NV, 1, TAIL, qe, 1, BITS);                                           \
    }
#define DEFINE_AVX2_QC(NAME, NV, BITS) DEFINE_AVX2_QC_ANY(NAME, NV, BITS, 0)
#define DEFINE_AVX2_QC_TAIL(NAME, NV, BITS) DEFINE_AVX2_QC_ANY(NAME, NV, BITS, 1)

DEFINE_AVX2(avx2_tutorial_1, 1, 0, 0)
DEFINE_AVX2(avx2_tutorial_2, 2, 0, 0)
DEFINE_AVX2(avx2_tutorial_3, 3, 0, 0)
DEFINE_AVX2(avx2_tutorial_4, 4, 0, 0)
DEFINE_AVX2(avx2_sgkit_1, 1, 1, 0)
DEFINE_AVX2(avx2_sgkit_2, 2, 1, 0)
DEFINE_AVX2(avx2_sgkit_3, 3, 1, 0)
DEFINE_AVX2(avx2_sgkit_4, 4, 1, 0)
/* Segments of 16*k + 1 or 16*k + 2 calls: k loads and the tail words. */
DEFINE_AVX2(avx2_tutorial_tail_1, 1, 0, 1)
DEFINE_AVX2(avx2_tutorial_tail_2, 2, 0, 1)
DEFINE_AVX2(avx2_tutorial_tail_3, 3, 0, 1)
DEFINE_AVX2(avx2_sgkit_tail_1, 1, 1, 1)
DEFINE_AVX2(avx2_sgkit_tail_2, 2, 1, 1)
DEFINE_AVX2(avx2_sgkit_tail_3, 3, 1, 1)

DEFINE_AVX2_QC(avx2_qc_1, 1, 0)
DEFINE_AVX2_QC(avx2_qc_2, 2, 0)
DEFINE_AVX2_QC(avx2_qc_3, 3, 0)
DEFINE_AVX2_QC(avx2_qc_4, 4, 0)
DEFINE_AVX2_QC(avx2_qc_bits_1, 1, 1)
DEFINE_AVX2_QC(avx2_qc_bits_2, 2, 1)
DEFINE_AVX2_QC(avx2_qc_bits_3, 3, 1)
DEFINE_AVX2_QC(avx2_qc_bits_4, 4, 1)
DEFINE_AVX2_QC_TAIL(avx2_qc_tail_1, 1, 0)
DEFINE_AVX2_QC_TAIL(avx2_qc_tail_2, 2, 0)
DEFINE_AVX2_QC_TAIL(avx2_qc_tail_3, 3, 0)
DEFINE_AVX2_QC_TAIL(avx2_qc_bits_tail_1, 1, 1)
DEFINE_AVX2_QC_TAIL(avx2_qc_bits_tail_2, 2, 1)
DEFINE_AVX2_QC_TAIL(avx2_qc_bits_tail_3, 3, 1)
typedef void (*qc_segment_fn)(const uint16_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, void *, Py_ssize_t, int64_t *, Py_ssize_t,
                              const qc_extra *);
/* By bits (none, kept), then by loads a row (as avx2_segments). */
static const qc_segment_fn avx2_qc_segments[2][4] = {
    {avx2_qc_1, avx2_qc_2, avx2_qc_3, avx2_qc_4},
    {avx2_qc_bits_1, avx2_qc_bits_2, avx2_qc_bits_3, avx2_qc_bits_4},
};
static const qc_segment_fn avx2_qc_tail_segments[2][3] = {
    {avx2_qc_tail_1, avx2_qc_tail_2, avx2_qc_tail_3},
    {avx2_qc_bits_tail_1, avx2_qc_bits_tail_2, avx2_qc_bits_tail_3},
};

typedef void (*segment_fn)(const uint16_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           void *, Py_ssize_t, int64_t *, Py_ssize_t, int64_t *);
static const segment_fn avx2_segments[2][4] = {
    {avx2_tutorial_1, avx2_tutorial_2, avx2_tutorial_3, avx2_tutorial_4},
    {avx2_sgkit_1, avx2_sgkit_2, avx2_sgkit_3, avx2_sgkit_4},
};
static const segment_fn avx2_tail_segments[2][3] = {
    {avx2_tutorial_tail_1, avx2_tutorial_tail_2, avx2_tutorial_tail_3},
    {avx2_sgkit_tail_1, avx2_sgkit_tail_2, avx2_sgkit_tail_3},
};

/* Whether count_packed uses the AVX2 path: decided from the CPU at import, switchable. */
static int use_avx2 = 0;
#endif

/* Per-column counts cols (3 x width) added to sample, whose rows are sstride apart. */
static inline void add_columns(int64_t *sample, Py_ssize_t sstride, const int64_t *cols,
                               Py_ssize_t width) {
    for (Py_ssize_t f = 0; f < 3; f++)
        for (Py_ssize_t j = 0; j < width; j++)
            sample[f * sstride + j] += cols[f * width + j];
}

/* The portable loop for columns c0 .. c0+width, its per-column counts added to sample with
 * row stride sstride (it accumulates in its own packed fields, then adds). */
static void portable_segment(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,
                             Py_ssize_t c0, Py_ssize_t width, int sgkit, void *variant,
                             Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride,
                             int64_t *partial, int64_t *cols, int32_t *acc) {
    memset(cols, 0, (size_t)(3 * width) * sizeof(int64_t));
    int64_t *p = partial;
    switch (itemsize * 2 + (sgkit ? 1 : 0)) {
    case 2: count_tutorial_u8(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 3: count_sgkit_u8(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 4: count_tutorial_u16(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 5: count_sgkit_u16(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 8: count_tutorial_u32(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 9: count_sgkit_u32(v, n, stride, c0, width, variant, cols, acc, p); break;
    case 16: count_tutorial_u64(v, n, stride, c0, width, variant, cols, acc, p); break;
    default: count_sgkit_u64(v, n, stride, c0, width, variant, cols, acc, p); break;
    }
    add_columns(sample, sstride, cols, width);
}

/* Every column of c0 .. c0+width: AVX2 segments of up to 64 columns where the CPU has it,
 * the portable loop for the rest (and for segments narrower than one 16-call load). */
static void count_all(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t c0,
                      Py_ssize_t width, int sgkit, void *variant, Py_ssize_t itemsize,
                      int64_t *sample, int64_t *partial, int64_t *cols, int32_t *acc) {
#ifdef HAVE_AVX2
    if (use_avx2) {
        for (Py_ssize_t g = 0; g < width; g += 64) {
            Py_ssize_t gw = width - g < 64 ? width - g : 64;
            if (gw > 16 && gw % 16 <= 2 && gw % 16 > 0)
                avx2_tail_segments[sgkit ? 1 : 0][gw / 16 - 1](
                    v, n, stride, c0 + g, gw, variant, itemsize, sample + g, width, partial);
            else if (gw >= 16)
                avx2_segments[sgkit ? 1 : 0][(gw + 15) / 16 - 1](
                    v, n, stride, c0 + g, gw, variant, itemsize, sample + g, width, partial);
            else
                portable_segment(v, n, stride, c0 + g, gw, sgkit, variant, itemsize,
                                 sample + g, width, partial, cols, acc);
        }
        return;
    }
#endif
    portable_segment(v, n, stride, c0, width, sgkit, variant, itemsize, sample, width, partial,
                     cols, acc);
}

/* Columns c0 .. c0+width of n rows of int8 calls (allele 1: count_all) or of wider ones
 * (allele 2, 4, 8: the wide loops), every count added to variant (3 x n) and sample. */
static void count_rows(const char *data, Py_ssize_t allele, Py_ssize_t n, Py_ssize_t stride,
                       Py_ssize_t c0, Py_ssize_t width, int sgkit, void *variant,
                       Py_ssize_t itemsize, int64_t *sample, int64_t *partial, int64_t *cols,
                       int32_t *acc) {
    if (allele == 1) {
        count_all((const uint16_t *)data, n, stride, c0, width, sgkit, variant, itemsize,
                  sample, partial, cols, acc);
    } else {
        memset(cols, 0, (size_t)(3 * width) * sizeof(int64_t));
        wide_loops[size_index(allele) - 1][sgkit ? 1 : 0][size_index(itemsize)](
            data, n, stride, c0, width, variant, cols, acc, partial);
        add_columns(sample, width, cols, width);
    }
}

/* ---- Masked counting: a site filter's passing rows, counted where they are ------------
 * Only rows whose mask byte is nonzero are counted; the others' per-row counts are left as
 * they are and add nothing to the per-column counts. Runs of at least MASK_RUN passing rows
 * are counted in place (a run of rows of the C-contiguous calls is contiguous), at most
 * MASK_BLOCK rows a call; shorter runs have their columns copied into a small staging block
 * (it stays in cache), counted when full. Either way the per-row counts land in a zeroed
 * scratch (3 x rows) first, then are added at their rows: the loops address the per-row
 * counts with the row count as the field stride. */
#define MASK_RUN 32
#define MASK_BLOCK 4096
#define MASK_STAGE_BYTES (1 << 18)

/* Adds per-row counts scratch (3 x k) to rows at[0..k) of variant (3 x n), or to rows
 * r0 .. r0+k when at is NULL. */
static void add_rows_at(void *variant, Py_ssize_t itemsize, Py_ssize_t n, const void *scratch,
                        Py_ssize_t k, const Py_ssize_t *at, Py_ssize_t r0) {
#define ADD_ROWS_AT(T)                                                                    \
    {                                                                                     \
        T *o = (T *)variant;                                                              \
        const T *s = (const T *)scratch;                                                  \
        for (Py_ssize_t f = 0; f < 3; f++)                                                \
            for (Py_ssize_t r = 0; r < k; r++)                                            \
                o[f * n + (at ? at[r] : r0 + r)] += s[f * k + r];                         \
        break;                                                                            \
    }
    switch (itemsize) {
    case 1: ADD_ROWS_AT(uint8_t)
    case 2: ADD_ROWS_AT(uint16_t)
    case 4: ADD_ROWS_AT(uint32_t)
    default: ADD_ROWS_AT(uint64_t)
    }
#undef ADD_ROWS_AT
}

typedef struct {
    Py_ssize_t allele, stride, c0, width, itemsize;
    int sgkit;
    void *variant;
    Py_ssize_t n;
    int64_t *sample, *partial, *cols;
    int32_t *acc;
    char *scratch, *stage;
    Py_ssize_t *at;
} mask_args;

/* Counts rows r0 .. r0+k in place (at NULL) or the k staged rows at[0..k). */
static void mask_flush(const mask_args *m, const char *data, Py_ssize_t k, const Py_ssize_t *at,
                       Py_ssize_t r0) {
    memset(m->scratch, 0, (size_t)(3 * k * m->itemsize));
    if (at == NULL)
        count_rows(data + r0 * m->stride * 2 * m->allele, m->allele, k, m->stride, m->c0,
                   m->width, m->sgkit, m->scratch, m->itemsize, m->sample, m->partial,
                   m->cols, m->acc);
    else
        count_rows(m->stage, m->allele, k, m->width, 0, m->width, m->sgkit, m->scratch,
                   m->itemsize, m->sample, m->partial, m->cols, m->acc);
    add_rows_at(m->variant, m->itemsize, m->n, m->scratch, k, at, r0);
}

/* The masked count of n rows (mask: n bytes); stage_rows: the staging block's capacity. */
static void count_masked(const mask_args *m, const char *data, const uint8_t *mask,
                         Py_ssize_t stage_rows) {
    const Py_ssize_t n = m->n, call = 2 * m->allele, rowbytes = m->width * call;
    Py_ssize_t staged = 0, i = 0;
    while (i < n) {
        if (!mask[i]) {
            i++;
            continue;
        }
        Py_ssize_t j = i + 1;
        while (j < n && mask[j])
            j++;
        if (j - i >= MASK_RUN) {
            for (Py_ssize_t r = i; r < j; r += MASK_BLOCK)
                mask_flush(m, data, j - r < MASK_BLOCK ? j - r : MASK_BLOCK, NULL, r);
        } else {
            if (staged + (j - i) > stage_rows) {
                mask_flush(m, data, staged, m->at, 0);
                staged = 0;
            }
            if (m->c0 == 0 && m->width == m->stride) /* whole rows: the run is one block */
                memcpy(m->stage + staged * rowbytes, data + i * rowbytes,
                       (size_t)((j - i) * rowbytes));
            else
                for (Py_ssize_t r = i; r < j; r++)
                    memcpy(m->stage + (staged + r - i) * rowbytes,
                           data + (r * m->stride + m->c0) * call, (size_t)rowbytes);
            for (Py_ssize_t r = i; r < j; r++)
                m->at[staged++] = r;
        }
        i = j;
    }
    if (staged)
        mask_flush(m, data, staged, m->at, 0);
}

/* ---- QC statistics: genotype histograms, sgkit counts, missing-call bits ----------------
 * qc_count counts what count_packed / count_wide count under the run's semantics and, in
 * the same pass, each row's histogram of diploid genotypes over K alleles (column 0: the
 * missing calls, any allele negative; genotype a/b, a <= b, at 1 + b(b+1)/2 + a, VCF order),
 * the per-column sgkit counts (missing, hom-ref, het) and, when asked, one bit per call, set
 * when it is missing. Rows go QC_ROWS at a time, so that a block stays in cache through its
 * passes: the sgkit counts (the loops above) and the scan for the bits, for called calls
 * with an allele >= 2 and for calls where the tutorial rule differs from sgkit's (a negative
 * allele, other than -1/-1 or a -2 fill: rows that hold one have their tutorial counts
 * fixed call by call, the others' are the sgkit counts). On the AVX2 path (int8 calls) the
 * scan is part of the counting loop (qc_block_fused), which reads each call once; elsewhere
 * it is a second pass over the block (qc_scan). A row needs no
 * more than its sgkit counts unless it holds such a call (0/1 = het, 1/1 = called - 0/0 -
 * het); only those rows, rare in SNP data, are classified call by call. A block of 1024
 * rows (100 KB of 50-sample int8 calls) stays in L2 and pays its fixed work (zeroing and
 * adding the per-column counters) over 4x the rows of a 256-row one. */
#define QC_ROWS 1024
/* Under the tutorial rule, a block where more than 1 row in QC_ODD_SHARE holds a call the
 * two rules count differently (half calls, scikit-allel's haploid [0, -1]) is counted by
 * the tutorial loops again rather than fixed call by call. */
#define QC_ODD_SHARE 16

/* Item i of an unsigned array of itemsize bytes. */
static inline uint64_t read_at(const void *array, Py_ssize_t itemsize, Py_ssize_t i) {
    switch (itemsize) {
    case 1: return ((const uint8_t *)array)[i];
    case 2: return ((const uint16_t *)array)[i];
    case 4: return ((const uint32_t *)array)[i];
    default: return ((const uint64_t *)array)[i];
    }
}

/* Add v to item i of an unsigned array of itemsize bytes. */
static inline void add_at(void *array, Py_ssize_t itemsize, Py_ssize_t i, int64_t v) {
    switch (itemsize) {
    case 1: ((uint8_t *)array)[i] += (uint8_t)v; break;
    case 2: ((uint16_t *)array)[i] += (uint16_t)v; break;
    case 4: ((uint32_t *)array)[i] += (uint32_t)v; break;
    default: ((uint64_t *)array)[i] += (uint64_t)v; break;
    }
}

/* The missing bits of one int8 row (none when bits is NULL). Returns bit 0 when a called call
 * has an allele >= 2, bit 1 when a call is negative other than -1/-1 and holds no -2 (where
 * the tutorial rule differs from sgkit's). Bit j % 8 of byte j / 8 is call j's, as numpy's
 * packbits(bitorder="little"). */
static int scan_u8(const uint16_t *row, Py_ssize_t width, uint8_t *bits) {
    uint32_t rare = 0, odd = 0;
    for (Py_ssize_t j0 = 0; j0 < width; j0 += 8) {
        Py_ssize_t j1 = j0 + 8 < width ? j0 + 8 : width;
        uint32_t byte = 0;
        for (Py_ssize_t j = j0; j < j1; j++) {
            uint32_t x = row[j], neg = x & 0x8080;
            byte |= (uint32_t)(neg != 0) << (j - j0);
            rare |= neg ? 0 : x & 0x7E7E;
            odd |= neg && x != 0xFFFF && (x & 0xFF) != 0xFE && (x >> 8) != 0xFE;
        }
        if (bits != NULL)
            bits[j0 >> 3] = (uint8_t)byte;
    }
    return (rare != 0) | (odd != 0) << 1;
}

/* Calls of an int8 row with an allele >= 2, by genotype column (cnt, 1 + K(K+1)/2 items);
 * those with an allele >= K in *beyond. */
static void rare_u8(const uint16_t *row, Py_ssize_t width, int k, int64_t *cnt, int64_t *beyond) {
    for (Py_ssize_t j = 0; j < width; j++) {
        uint32_t x = row[j];
        if (x & 0x8080)
            continue;
        uint32_t a = x & 0xFF, b = x >> 8;
        if (a > b) {
            uint32_t t = a; a = b; b = t;
        }
        if (b < 2)
            continue;
        if (b >= (uint32_t)k)
            ++*beyond;
        else
            cnt[1 + b * (b + 1) / 2 + a]++;
    }
}

/* The same two for wider alleles of type A. */
#define QC_WIDE(A)                                                                          \
    static int scan_##A(const A *row, Py_ssize_t width, uint8_t *bits) {                  \
        int rare = 0, odd = 0;                                                              \
        for (Py_ssize_t j0 = 0; j0 < width; j0 += 8) {                                      \
            Py_ssize_t j1 = j0 + 8 < width ? j0 + 8 : width;                                \
            uint32_t byte = 0;                                                              \
            for (Py_ssize_t j = j0; j < j1; j++) {                                          \
                A a0 = row[2 * j], a1 = row[2 * j + 1];                                     \
                int neg = (a0 < 0) | (a1 < 0);                                              \
                byte |= (uint32_t)neg << (j - j0);                                          \
                rare |= (!neg) & ((a0 >= 2) | (a1 >= 2));                                   \
                odd |= neg & !((a0 == -1) & (a1 == -1)) & (a0 != -2) & (a1 != -2);          \
            }                                                                               \
            if (bits != NULL)                                                               \
                bits[j0 >> 3] = (uint8_t)byte;                                              \
        }                                                                                   \
        return rare | odd << 1;                                                             \
    }                                                                                       \
    static void rare_##A(const A *row, Py_ssize_t width, int k, int64_t *cnt,              \
                         int64_t *beyond) {                                                 \
        for (Py_ssize_t j = 0; j < width; j++) {                                            \
            A a = row[2 * j], b = row[2 * j + 1];                                           \
            if (a < 0 || b < 0)                                                             \
                continue;                                                                   \
            if (a > b) {                                                                    \
                A t = a; a = b; b = t;                                                      \
            }                                                                               \
            if (b < 2)                                                                      \
                continue;                                                                   \
            if (b >= k)                                                                     \
                ++*beyond;                                                                  \
            else                                                                            \
                cnt[1 + (int64_t)b * (b + 1) / 2 + a]++;                                    \
        }                                                                                   \
    }
QC_WIDE(int16_t)
QC_WIDE(int32_t)
QC_WIDE(int64_t)

/* The tutorial counts of a row from its sgkit counts: for each call where the two rules
 * differ (see scan_u8), the change of its missing and het counts, added to the row's (t: 3
 * x b counts, row i) and its column's (sample: 3 x width), and its partial calls. */
static void tutorial_fix(const char *data, Py_ssize_t allele, Py_ssize_t row, Py_ssize_t stride,
                         Py_ssize_t c0, Py_ssize_t width, uint16_t *t, Py_ssize_t b, Py_ssize_t i,
                         int64_t *sample, int64_t *partial) {
    const Py_ssize_t at = row * stride + c0;
    int64_t dm = 0, dh = 0;
    for (Py_ssize_t j = 0; j < width; j++) {
        int64_t a0, a1;
        int32_t code, part;
        if (allele == 1) {
            const uint32_t x = ((const uint16_t *)data)[at + j];
            a0 = (int8_t)(x & 0xFF);
            a1 = (int8_t)(x >> 8);
            code = code_tutorial(x);
            part = partial_tutorial(code, x);
        } else {
            switch (allele) {
            case 2: a0 = ((const int16_t *)data)[2 * (at + j)]; a1 = ((const int16_t *)data)[2 * (at + j) + 1]; break;
            case 4: a0 = ((const int32_t *)data)[2 * (at + j)]; a1 = ((const int32_t *)data)[2 * (at + j) + 1]; break;
            default: a0 = ((const int64_t *)data)[2 * (at + j)]; a1 = ((const int64_t *)data)[2 * (at + j) + 1]; break;
            }
            code = wide_tutorial_int64_t(a0, a1);
            part = partial_wide(code, a0, a1);
        }
        if (!(a0 < 0 || a1 < 0) || (a0 == -1 && a1 == -1) || a0 == -2 || a1 == -2)
            continue;
        const int64_t m = (code & FIELD_MAX) - 1, h = code >> 20; /* sgkit: missing, not het */
        dm += m;
        dh += h;
        sample[j] += m;
        sample[2 * width + j] += h;
        *partial += (part & 1) + (part >> 20);
    }
    t[i] = (uint16_t)(t[i] + dm);
    t[2 * b + i] = (uint16_t)(t[2 * b + i] + dh);
}

/* Scan b rows from row r0 (columns c0.. of width): their missing bits (bits: the block's
 * first row, or NULL) and whether each needs its calls classified (rare[i]). */
static void qc_scan(const char *data, Py_ssize_t allele, Py_ssize_t r0, Py_ssize_t b,
                    Py_ssize_t stride, Py_ssize_t c0, Py_ssize_t width, uint8_t *bits,
                    Py_ssize_t nbytes, uint8_t *rare) {
#define QC_SCAN_ROWS(A, SCAN)                                                               \
    for (Py_ssize_t i = 0; i < b; i++)                                                      \
        rare[i] = (uint8_t)SCAN((const A *)data + ((r0 + i) * stride + c0) * (allele == 1 ? 1 : 2), \
                                width, bits != NULL ? bits + i * nbytes : NULL);
    switch (allele) {
    case 1: /* the AVX2 path scans int8 calls in its counting loop (qc_block_fused) */
        QC_SCAN_ROWS(uint16_t, scan_u8)
        break;
    case 2: QC_SCAN_ROWS(int16_t, scan_int16_t) break;
    case 4: QC_SCAN_ROWS(int32_t, scan_int32_t) break;
    default: QC_SCAN_ROWS(int64_t, scan_int64_t) break;
    }
#undef QC_SCAN_ROWS
}

#ifdef HAVE_AVX2
/* rare_u8 for rows of at least 16 calls: 16 calls a load (the last load ending at the row's
 * end, its lanes already seen dropped), only the calls with an allele >= 2 taken one by
 * one. */
AVX2_FN static void rare_u8_avx2(const uint16_t *row, Py_ssize_t width, int k, int64_t *cnt,
                                 int64_t *beyond) {
    const __m256i neg = _mm256_set1_epi16((short)0x8080), big = _mm256_set1_epi16(0x7E7E);
    const __m256i zero = _mm256_setzero_si256();
    for (Py_ssize_t j = 0; j < width; j += 16) {
        const Py_ssize_t at = j + 16 <= width ? j : width - 16;
        const __m256i x = _mm256_loadu_si256((const __m256i *)(row + at));
        const __m256i called = _mm256_cmpeq_epi16(_mm256_and_si256(x, neg), zero);
        const __m256i small = _mm256_cmpeq_epi16(_mm256_and_si256(x, big), zero);
        uint32_t lanes = (uint32_t)_mm256_movemask_epi8(_mm256_andnot_si256(small, called)) &
                         0x55555555u;
        lanes &= ~(uint32_t)0 << (2 * (j - at)); /* calls before j: the previous load's */
        while (lanes) {
            const uint32_t x1 = row[at + (__builtin_ctz(lanes) >> 1)];
            lanes &= lanes - 1;
            uint32_t a = x1 & 0xFF, b = x1 >> 8;
            if (a > b) {
                const uint32_t t = a;
                a = b;
                b = t;
            }
            if (b >= (uint32_t)k)
                ++*beyond;
            else
                cnt[1 + b * (b + 1) / 2 + a]++;
        }
    }
}
#endif

/* Classify the calls of row `row` with an allele >= 2 into cnt (see rare_u8). */
static void qc_rare(const char *data, Py_ssize_t allele, Py_ssize_t row, Py_ssize_t stride,
                    Py_ssize_t c0, Py_ssize_t width, int k, int64_t *cnt, int64_t *beyond) {
    const Py_ssize_t at = row * stride + c0;
    switch (allele) {
    case 1:
#ifdef HAVE_AVX2
        if (use_avx2 && width >= 16) {
            rare_u8_avx2((const uint16_t *)data + at, width, k, cnt, beyond);
            break;
        }
#endif
        rare_u8((const uint16_t *)data + at, width, k, cnt, beyond);
        break;
    case 2: rare_int16_t((const int16_t *)data + 2 * at, width, k, cnt, beyond); break;
    case 4: rare_int32_t((const int32_t *)data + 2 * at, width, k, cnt, beyond); break;
    default: rare_int64_t((const int64_t *)data + 2 * at, width, k, cnt, beyond); break;
    }
}

/* Add a block's counts tmp (3 x b) to rows r0.. of variant (3 x n, itemsize bytes), and its
 * histogram columns 0-3 from the sgkit counts tq (3 x b) to rows r0.. of hist (n x h), a
 * row's four with ROW_ADD(out, H, missing, hom-ref, het, rest). */
#define QC_ADD_BLOCK(T, H, ROW_ADD)                                                         \
    static void qc_add_##T##_##H(T *variant, Py_ssize_t n, H *hist, Py_ssize_t h,          \
                                 Py_ssize_t r0, Py_ssize_t b, const uint16_t *tmp,          \
                                 const uint16_t *tq, Py_ssize_t width) {                    \
        for (int f = 0; f < 3; f++)                                                         \
            for (Py_ssize_t i = 0; i < b; i++)                                              \
                variant[f * n + r0 + i] += (T)tmp[f * b + i];                               \
        for (Py_ssize_t i = 0; i < b; i++) {                                                \
            const Py_ssize_t m = tq[i], hom = tq[b + i], het = tq[2 * b + i];               \
            ROW_ADD(hist + (r0 + i) * h, H, m, hom, het, width - m - hom - het);            \
        }                                                                                   \
    }
#define ROW_ADD_EACH(out, H, m, hom, het, rest)                                             \
    do {                                                                                    \
        (out)[0] += (H)(m);                                                                 \
        (out)[1] += (H)(hom);                                                               \
        (out)[2] += (H)(het);                                                               \
        (out)[3] += (H)(rest);                                                              \
    } while (0)
/* Byte and 16-bit histograms on little-endian CPUs: each row's four counts packed into one
 * word W (four bytes or four uint16) by a loop the compiler vectorises, then added to the
 * row as one word. Each count's total fits its type (the histogram's type is chosen so), so
 * no lane carries into the next, and one load, add and store replace four. */
#define QC_ADD_WORDS(T, H, W)                                                               \
    MULTIVERSION static void qc_words_##H(const uint16_t *tq, Py_ssize_t b, W width,       \
                                          W *words) {                                       \
        const int shift = 8 * (int)sizeof(H);                                               \
        for (Py_ssize_t i = 0; i < b; i++) {                                                \
            const W m = tq[i], hom = tq[b + i], het = tq[2 * b + i];                         \
            words[i] = m | hom << shift | het << (2 * shift) | (width - m - hom - het)       \
                                                                   << (3 * shift);          \
        }                                                                                   \
    }                                                                                       \
    /* rows of one word each (a split histogram's first four columns): the counts and   \
     * the words in one loop */                                                             \
    MULTIVERSION static void qc_word_rows_##H(T *restrict v0, T *restrict v1,              \
                                              T *restrict v2, H *restrict out,              \
                                              const uint16_t *restrict tmp,                 \
                                              const uint16_t *restrict tq, Py_ssize_t b,    \
                                              W width) {                                    \
        const int shift = 8 * (int)sizeof(H);                                               \
        for (Py_ssize_t i = 0; i < b; i++) {                                                \
            v0[i] += (T)tmp[i];                                                             \
            v1[i] += (T)tmp[b + i];                                                         \
            v2[i] += (T)tmp[2 * b + i];                                                     \
            const W m = tq[i], hom = tq[b + i], het = tq[2 * b + i];                         \
            W word;                                                                         \
            memcpy(&word, out + 4 * i, sizeof word);                                        \
            word += m | hom << shift | het << (2 * shift) | (width - m - hom - het)          \
                                                              << (3 * shift);               \
            memcpy(out + 4 * i, &word, sizeof word);                                        \
        }                                                                                   \
    }                                                                                       \
    static void qc_add_##T##_##H(T *variant, Py_ssize_t n, H *hist, Py_ssize_t h,          \
                                 Py_ssize_t r0, Py_ssize_t b, const uint16_t *tmp,          \
                                 const uint16_t *tq, Py_ssize_t width) {                    \
        if (h == 4) {                                                                       \
            qc_word_rows_##H(variant + r0, variant + n + r0, variant + 2 * n + r0,          \
                             hist + r0 * 4, tmp, tq, b, (W)width);                          \
            return;                                                                         \
        }                                                                                   \
        for (int f = 0; f < 3; f++)                                                         \
            for (Py_ssize_t i = 0; i < b; i++)                                              \
                variant[f * n + r0 + i] += (T)tmp[f * b + i];                               \
        W words[QC_ROWS];                                                                   \
        qc_words_##H(tq, b, (W)width, words);                                               \
        H *out = hist + r0 * h;                                                             \
        for (Py_ssize_t i = 0; i < b; i++, out += h) {                                      \
            W word;                                                                         \
            memcpy(&word, out, sizeof word);                                                \
            word += words[i];                                                               \
            memcpy(out, &word, sizeof word);                                                \
        }                                                                                   \
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
QC_ADD_WORDS(uint8_t, uint8_t, uint32_t)
QC_ADD_WORDS(uint16_t, uint16_t, uint64_t)
#else
QC_ADD_BLOCK(uint8_t, uint8_t, ROW_ADD_EACH)
QC_ADD_BLOCK(uint16_t, uint16_t, ROW_ADD_EACH)
#endif
QC_ADD_BLOCK(uint32_t, uint32_t, ROW_ADD_EACH)
QC_ADD_BLOCK(uint64_t, uint64_t, ROW_ADD_EACH)

static void qc_add_block(void *variant, Py_ssize_t itemsize, Py_ssize_t n, void *hist,
                         Py_ssize_t hsize, Py_ssize_t h, Py_ssize_t r0, Py_ssize_t b,
                         const uint16_t *tmp, const uint16_t *tq, Py_ssize_t width) {
    if (itemsize == hsize) {
        switch (itemsize) {
        case 1: qc_add_uint8_t_uint8_t(variant, n, hist, h, r0, b, tmp, tq, width); return;
        case 2: qc_add_uint16_t_uint16_t(variant, n, hist, h, r0, b, tmp, tq, width); return;
        case 4: qc_add_uint32_t_uint32_t(variant, n, hist, h, r0, b, tmp, tq, width); return;
        default: qc_add_uint64_t_uint64_t(variant, n, hist, h, r0, b, tmp, tq, width); return;
        }
    }
    for (int f = 0; f < 3; f++)
        for (Py_ssize_t i = 0; i < b; i++)
            add_at(variant, itemsize, f * n + r0 + i, tmp[f * b + i]);
    for (Py_ssize_t i = 0; i < b; i++) {
        const int64_t m = tq[i], hom = tq[b + i], het = tq[2 * b + i];
        add_at(hist, hsize, (r0 + i) * h, m);
        add_at(hist, hsize, (r0 + i) * h + 1, hom);
        add_at(hist, hsize, (r0 + i) * h + 2, het);
        add_at(hist, hsize, (r0 + i) * h + 3, width - m - hom - het);
    }
}

/* The missing, hom-ref and het counts (sgkit or tutorial) of b rows starting at row r0, into
 * tmp (3 x b, uint16) and the per-column sample (3 x width, added to). */
static void qc_block_counts(const char *data, Py_ssize_t allele, Py_ssize_t r0, Py_ssize_t b,
                            Py_ssize_t stride, Py_ssize_t c0, Py_ssize_t width, int sgkit,
                            uint16_t *tmp, int64_t *sample, int64_t *partial, int64_t *cols,
                            int32_t *acc) {
    memset(tmp, 0, (size_t)(3 * b) * sizeof(uint16_t));
    if (allele == 1) {
        count_all((const uint16_t *)data + r0 * stride, b, stride, c0, width, sgkit, tmp, 2,
                  sample, partial, cols, acc);
    } else {
        memset(cols, 0, (size_t)(3 * width) * sizeof(int64_t));
        wide_loops[size_index(allele) - 1][sgkit ? 1 : 0][1](
            data + r0 * stride * 2 * allele, b, stride, c0, width, tmp, cols, acc, partial);
        add_columns(sample, width, cols, width);
    }
}

#ifdef HAVE_AVX2
/* qc_block_counts under sgkit's rule for int8 calls on the AVX2 path, with in the same pass
 * each row's missing-call bits (bits: the block's first row, or NULL) and its flags (rare:
 * as qc_scan's): the segments of count_all, with their QC extras. */
static void qc_block_fused(const uint16_t *v, Py_ssize_t b, Py_ssize_t stride, Py_ssize_t c0,
                           Py_ssize_t width, uint16_t *tmp, int64_t *sample, int64_t *cols,
                           int32_t *acc, uint8_t *bits, Py_ssize_t nbytes, uint8_t *rare) {
    memset(tmp, 0, (size_t)(3 * b) * sizeof(uint16_t));
    memset(rare, 0, (size_t)b);
    const int with_bits = bits != NULL;
    for (Py_ssize_t g = 0; g < width; g += 64) {
        const Py_ssize_t gw = width - g < 64 ? width - g : 64;
        const qc_extra qe = {with_bits ? bits + g / 8 : NULL, nbytes, rare};
        if (gw > 16 && gw % 16 <= 2 && gw % 16 > 0) {
            avx2_qc_tail_segments[with_bits][gw / 16 - 1](v, b, stride, c0 + g, gw, tmp, 2,
                                                          sample + g, width, &qe);
        } else if (gw >= 16) {
            avx2_qc_segments[with_bits][(gw + 15) / 16 - 1](v, b, stride, c0 + g, gw, tmp, 2,
                                                            sample + g, width, &qe);
        } else {
            int64_t unused = 0;
            portable_segment(v, b, stride, c0 + g, gw, 1, tmp, 2, sample + g, width, &unused,
                             cols, acc);
            for (Py_ssize_t i = 0; i < b; i++)
                rare[i] |= (uint8_t)scan_u8(v + i * stride + c0 + g, gw,
                                            with_bits ? bits + i * nbytes + g / 8 : NULL);
        }
    }
}
#endif

/* Per-cohort allele counts (see cohort_count, below). */
typedef struct cohort_args {
    const char *data;
    Py_ssize_t allele, n, stride, c0, width, nc, osize;
    int64_t k;
    const int32_t *cohort;
    void *out;
    /* The AVX2 row path: cohort bit masks (NULL: not taken), their 64-bit words per
     * cohort, the row's vectors, scratch for the row's bits, each cohort's columns. */
    uint64_t *cm;
    Py_ssize_t words, nv;
    uint32_t *bits;
    int64_t *size;
    /* The portable path's per-call values, per-cohort sums and masks (NULL past
     * COHORT_MASKS cohorts: a scatter instead). */
    uint32_t *v, *acc, *masks;
} cohort_args;
static void cohort_rows(const struct cohort_args *q, Py_ssize_t lo, Py_ssize_t hi,
                        const uint8_t *rare);
static const char *cohort_prepare(struct cohort_args *q, Py_ssize_t cohort_len,
                                  Py_ssize_t out_len);
static void cohort_release(struct cohort_args *q);

typedef struct {
    const char *data;
    Py_ssize_t allele, n, stride, c0, width;
    int sgkit, k;
    void *variant, *hist;
    Py_ssize_t itemsize, hsize, nbytes;
    int64_t *sample, *qsample;
    uint8_t *bits;
    /* Per-cohort allele counts of the same rows, block by block while they are in cache
     * (see cohort_count), or NULL. */
    const struct cohort_args *cohorts;
    /* Items between variant's three count rows (n, unless the rows are a run of a longer
     * array's). */
    Py_ssize_t vstride;
    /* The histogram's layout (see qc_count): items between hist's rows (of its first
     * four columns), its columns past the fourth (rare: the fifth column's item of row 0,
     * rstride items between rows), and which rows' rare columns hold counts (NULL: every
     * row's). */
    Py_ssize_t hstride, rstride;
    void *rare;
    uint8_t *rseen;
} qc_args;

/* Add v to rare column c (from 0: the histogram's fifth) of row `row` of q's histogram; a
 * split histogram's row has its rare columns zeroed first, the first time. */
static void rare_add(const qc_args *q, Py_ssize_t row, Py_ssize_t c, int64_t v) {
    if (q->rseen != NULL && !q->rseen[row]) {
        const Py_ssize_t h = 1 + (Py_ssize_t)q->k * (q->k + 1) / 2;
        memset((char *)q->rare + row * q->rstride * q->hsize, 0, (size_t)((h - 4) * q->hsize));
        q->rseen[row] = 1;
    }
    add_at(q->rare, q->hsize, row * q->rstride + c, v);
}

/* The first row from i (below b) whose flags (rare[]) have a bit of `bit` set, else b.
 * Such rows are rare: eight flag bytes are tested at a time. */
static inline Py_ssize_t next_flagged(const uint8_t *rare, Py_ssize_t i, Py_ssize_t b,
                                      uint8_t bit) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t spread = 0x0101010101010101ull * bit;
    for (; i + 8 <= b; i += 8) {
        uint64_t w;
        memcpy(&w, rare + i, sizeof w);
        if (w & spread)
            return i + (__builtin_ctzll(w & spread) >> 3);
    }
#endif
    while (i < b && !(rare[i] & bit))
        i++;
    return i;
}

/* The QC pass over every row, block by block (GIL released by the caller). */
static void qc_all(const qc_args *q, int64_t *partial, int64_t *beyond, uint16_t *tq,
                   uint16_t *tt, uint8_t *rare, int64_t *cnt, int64_t *cols, int32_t *acc,
                   int64_t *bq) {
    const Py_ssize_t n = q->n, width = q->width, h = 1 + (Py_ssize_t)q->k * (q->k + 1) / 2;
    int64_t unused = 0;
    for (Py_ssize_t r0 = 0; r0 < n; r0 += QC_ROWS) {
        const Py_ssize_t b = n - r0 < QC_ROWS ? n - r0 : QC_ROWS;
        memset(bq, 0, (size_t)(3 * width) * sizeof(int64_t));
        uint8_t *bits = q->bits != NULL ? q->bits + r0 * q->nbytes : NULL;
        int fused = 0;
#ifdef HAVE_AVX2
        if (q->allele == 1 && use_avx2) { /* the counts, bits and flags in one pass */
            qc_block_fused((const uint16_t *)q->data + r0 * q->stride, b, q->stride, q->c0,
                           width, tq, bq, cols, acc, bits, q->nbytes, rare);
            fused = 1;
        }
#endif
        if (!fused) {
            qc_block_counts(q->data, q->allele, r0, b, q->stride, q->c0, width, 1, tq, bq,
                            &unused, cols, acc);
            qc_scan(q->data, q->allele, r0, b, q->stride, q->c0, width, bits, q->nbytes, rare);
        }
        for (Py_ssize_t f = 0; f < 3 * width; f++)
            q->qsample[f] += bq[f];
        Py_ssize_t odd = 0;
        for (Py_ssize_t i = next_flagged(rare, 0, b, 2); !q->sgkit && i < b;
             i = next_flagged(rare, i + 1, b, 2))
            odd++;
        if (!q->sgkit && odd * QC_ODD_SHARE > b) { /* many: the tutorial loops, once more */
            qc_block_counts(q->data, q->allele, r0, b, q->stride, q->c0, width, 0, tt,
                            q->sample, partial, cols, acc);
        } else { /* the sgkit counts, and under the tutorial rule the calls it differs on */
            for (Py_ssize_t f = 0; f < 3 * width; f++)
                q->sample[f] += bq[f];
            if (!q->sgkit) {
                memcpy(tt, tq, (size_t)(3 * b) * sizeof(uint16_t));
                for (Py_ssize_t i = next_flagged(rare, 0, b, 2); i < b;
                     i = next_flagged(rare, i + 1, b, 2))
                    tutorial_fix(q->data, q->allele, r0 + i, q->stride, q->c0, width, tt, b, i,
                                 q->sample, partial);
            }
        }
        qc_add_block(q->variant, q->itemsize, q->vstride, q->hist, q->hsize, q->hstride, r0, b,
                     q->sgkit ? tq : tt, tq, width);
        if (q->cohorts != NULL)
            cohort_rows(q->cohorts, r0, r0 + b, rare);
        for (Py_ssize_t i = next_flagged(rare, 0, b, 1); i < b;
             i = next_flagged(rare, i + 1, b, 1)) {
            const Py_ssize_t row = r0 + i;
            qc_rare(q->data, q->allele, row, q->stride, q->c0, width, q->k, cnt, beyond);
            /* 0/1 and 1/1 were counted as het and "the rest" (columns 2, 3): move the
             * calls of alleles >= 2 to their own columns */
            for (int hi = 2; hi < q->k; hi++)
                for (int lo = 0; lo <= hi; lo++) {
                    const Py_ssize_t col = 1 + hi * (hi + 1) / 2 + lo;
                    if (cnt[col] == 0)
                        continue;
                    add_at(q->hist, q->hsize, row * q->hstride + (lo == hi ? 3 : 2), -cnt[col]);
                    rare_add(q, row, col - 4, cnt[col]);
                    cnt[col] = 0;
                }
        }
    }
}

/* A site filter's passing rows in qc_count: runs of at least MASK_RUN rows are counted where
 * they lie (on the AVX2 path, which takes 8 rows a step, all but their last 0-7 rows); the
 * rows of shorter runs (and those last rows) have their calls (columns c0.. of width) copied
 * together into a staging block of up to cap rows (it stays in cache), counted there by
 * qc_all into zeroed staging counts, histograms, bits and per-cohort counts, which are then
 * added at the rows they came from (bits copied). Other rows are left as they are: no count,
 * no histogram, no missing bit. */
typedef struct {
    char *calls, *variant, *hist, *out;
    uint8_t *bits;
    Py_ssize_t cap, at[QC_ROWS];
} qc_stage;
/* The staging block's calls are at most this many bytes (or one row): QC_ROWS rows of a
 * wide chunk (thousands of samples) would hold tens of megabytes a thread. */
#define QC_STAGE_BYTES (1 << 20)

/* Rows in a staging block of rows of rowbytes bytes: QC_ROWS, fewer for wide rows. */
static inline Py_ssize_t stage_rows(Py_ssize_t rowbytes) {
    const Py_ssize_t fit = rowbytes > 0 ? QC_STAGE_BYTES / rowbytes : QC_ROWS;
    return fit < 1 ? 1 : fit < QC_ROWS ? fit : QC_ROWS;
}

/* Adds rows 0..b of src (items a row, type T) to rows at[0..b) of dst. */
#define ADD_STAGED_ROWS(T, dst, src, items, at, b)                                          \
    for (Py_ssize_t r = 0; r < (b); r++) {                                                  \
        T *o = (T *)(dst) + (at)[r] * (items);                                              \
        const T *p = (const T *)(src) + r * (items);                                        \
        for (Py_ssize_t j = 0; j < (items); j++)                                            \
            o[j] += p[j];                                                                   \
    }

static void add_staged_rows(void *dst, const void *src, Py_ssize_t size, Py_ssize_t items,
                            const Py_ssize_t *at, Py_ssize_t b) {
    switch (size) {
    case 1: ADD_STAGED_ROWS(uint8_t, dst, src, items, at, b) break;
    case 2: ADD_STAGED_ROWS(uint16_t, dst, src, items, at, b) break;
    case 4: ADD_STAGED_ROWS(uint32_t, dst, src, items, at, b) break;
    default: ADD_STAGED_ROWS(uint64_t, dst, src, items, at, b) break;
    }
}

/* Add b staged histogram rows (src: b x h, every column) to q's rows at[0..b). */
static void add_staged_hist(const qc_args *q, const char *src, const Py_ssize_t *at,
                            Py_ssize_t b) {
    const Py_ssize_t h = 1 + (Py_ssize_t)q->k * (q->k + 1) / 2, size = q->hsize;
    for (Py_ssize_t r = 0; r < b; r++) {
        const char *row = src + r * h * size;
        for (Py_ssize_t c = 0; c < 4; c++)
            add_at(q->hist, size, at[r] * q->hstride + c, read_at(row, size, c));
        for (Py_ssize_t c = 4; c < h; c++) {
            const uint64_t v = read_at(row, size, c);
            if (v) /* a split histogram's rare columns are only touched when counted */
                rare_add(q, at[r], c - 4, (int64_t)v);
        }
    }
}

/* Counts the b staged rows (st) as qc_all counts q's, then adds them at st->at. */
static void qc_flush_staged(const qc_args *q, qc_stage *st, Py_ssize_t b, int64_t *partial,
                            int64_t *beyond, uint16_t *tq, uint16_t *tt, uint8_t *rare,
                            int64_t *cnt, int64_t *cols, int32_t *acc, int64_t *bq) {
    const Py_ssize_t h = 1 + (Py_ssize_t)q->k * (q->k + 1) / 2;
    qc_args sq = *q;
    sq.data = st->calls;
    sq.n = b;
    sq.stride = q->width;
    sq.c0 = 0;
    sq.variant = st->variant;
    sq.vstride = b;
    sq.hist = st->hist; /* staged: every column of a row together, all zeroed */
    sq.hstride = sq.rstride = h;
    sq.rare = st->hist + 4 * q->hsize;
    sq.rseen = NULL;
    sq.bits = q->bits != NULL ? st->bits : NULL;
    memset(st->variant, 0, (size_t)(3 * b * q->itemsize));
    memset(st->hist, 0, (size_t)(b * h * q->hsize));
    struct cohort_args sc;
    if (q->cohorts != NULL) {
        sc = *q->cohorts;
        sc.data = st->calls;
        sc.n = b;
        sc.stride = q->width;
        sc.c0 = 0;
        sc.out = st->out;
        memset(st->out, 0, (size_t)(b * sc.nc * sc.k * sc.osize));
        sq.cohorts = &sc;
    }
    qc_all(&sq, partial, beyond, tq, tt, rare, cnt, cols, acc, bq);
    for (Py_ssize_t f = 0; f < 3; f++) /* variant: 3 x n, staged 3 x b */
        add_staged_rows((char *)q->variant + f * q->vstride * q->itemsize,
                        st->variant + f * b * q->itemsize, q->itemsize, 1, st->at, b);
    add_staged_hist(q, st->hist, st->at, b);
    if (q->cohorts != NULL)
        add_staged_rows(q->cohorts->out, st->out, sc.osize, sc.nc * sc.k, st->at, b);
    if (q->bits != NULL)
        for (Py_ssize_t r = 0; r < b; r++)
            memcpy(q->bits + st->at[r] * q->nbytes, st->bits + r * q->nbytes,
                   (size_t)q->nbytes);
}

/* q's arguments for its rows row .. row+len, whose calls are at data (stride calls a row,
 * from column c0, as q's): sq (and sc, its cohorts') point at those rows' counts,
 * histograms, bits and per-cohort counts. */
static void qc_rows_at(const qc_args *q, const char *data, Py_ssize_t len, Py_ssize_t row,
                       qc_args *sq, struct cohort_args *sc) {
    *sq = *q;
    sq->data = data;
    sq->n = len;
    sq->variant = (char *)q->variant + row * q->itemsize;
    sq->hist = (char *)q->hist + row * q->hstride * q->hsize;
    sq->rare = (char *)q->rare + row * q->rstride * q->hsize;
    sq->rseen = q->rseen != NULL ? q->rseen + row : NULL;
    sq->bits = q->bits != NULL ? q->bits + row * q->nbytes : NULL;
    if (q->cohorts != NULL) {
        *sc = *q->cohorts;
        sc->data = data;
        sc->n = len;
        sc->out = (char *)sc->out + row * sc->nc * sc->k * sc->osize;
        sq->cohorts = sc;
    }
}

/* qc_all over rows i .. i+len of q, in place. */
static void qc_run_in_place(const qc_args *q, Py_ssize_t i, Py_ssize_t len, int64_t *partial,
                            int64_t *beyond, uint16_t *tq, uint16_t *tt, uint8_t *rare,
                            int64_t *cnt, int64_t *cols, int32_t *acc, int64_t *bq) {
    qc_args sq;
    struct cohort_args sc;
    qc_rows_at(q, q->data + i * q->stride * 2 * q->allele, len, i, &sq, &sc);
    qc_all(&sq, partial, beyond, tq, tt, rare, cnt, cols, acc, bq);
}

/* The first row from i (below n) whose mask byte is nonzero (nonzero: 1) or zero (0), else
 * n: eight bytes are tested at a time, as a site filter's runs are long. */
static inline Py_ssize_t next_mask_byte(const uint8_t *mask, Py_ssize_t i, Py_ssize_t n,
                                        int nonzero) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, mask + i, sizeof w);
        /* nonzero bytes, or the zero bytes' high bits (exact up to the first zero byte) */
        const uint64_t hits = nonzero ? w : (w - ones) & ~w & highs;
        if (hits)
            return i + (__builtin_ctzll(hits) >> 3);
    }
#endif
    while (i < n && (mask[i] != 0) != nonzero)
        i++;
    return i;
}

/* qc_all over the rows whose mask byte is nonzero. */
static void qc_all_masked(const qc_args *q, const uint8_t *mask, qc_stage *st, int64_t *partial,
                          int64_t *beyond, uint16_t *tq, uint16_t *tt, uint8_t *rare,
                          int64_t *cnt, int64_t *cols, int32_t *acc, int64_t *bq) {
    const Py_ssize_t call = 2 * q->allele, rowbytes = q->width * call;
    Py_ssize_t b = 0, i = 0;
    while ((i = next_mask_byte(mask, i, q->n, 1)) < q->n) {
        const Py_ssize_t j = next_mask_byte(mask, i + 1, q->n, 0);
        if (j - i >= MASK_RUN) {
            Py_ssize_t len = j - i;
#ifdef HAVE_AVX2
            if (use_avx2 && q->allele == 1) /* 8 rows a step: the last 0-7 rows are staged */
                len &= ~(Py_ssize_t)7;
#endif
            qc_run_in_place(q, i, len, partial, beyond, tq, tt, rare, cnt, cols, acc, bq);
            i += len;
        }
        for (Py_ssize_t r = i; r < j; r++) {
            memcpy(st->calls + b * rowbytes, q->data + (r * q->stride + q->c0) * call,
                   (size_t)rowbytes);
            st->at[b++] = r;
            if (b == st->cap) {
                qc_flush_staged(q, st, b, partial, beyond, tq, tt, rare, cnt, cols, acc, bq);
                b = 0;
            }
        }
        i = j;
    }
    if (b)
        qc_flush_staged(q, st, b, partial, beyond, tq, tt, rare, cnt, cols, acc, bq);
}

/* ---- The --het unit step: per-variant expected heterozygosity, per-sample sums ----------
 * unit_alleles reads a unit's genotype histograms row by row: each variant's allele counts,
 * its alleles (REF and listed ALT, or, without them, the alleles its calls hold), the
 * number of distinct alleles called, and plink2 --het's expected heterozygosity with the
 * floating-point steps of zarrgeno.stats.qc.inbreeding.expected_het (not contracted into
 * fused multiply-adds: -std=c99 turns contraction off, and the AVX2 loop's target has no
 * FMA, so the bits are the same). missing_terms adds, per sample, the
 * variants and the expected heterozygosity its missing calls take away. */
#define EXPECTED_EPSILON (1.0 / 34359738368.0) /* 2**-35: plink2's kSmallishEpsilon */
#define ROWS_INLINE static inline __attribute__((always_inline))

/* plink2 --het's expected heterozygosity of a variant of na alleles, from its allele counts
 * ac (k items) and 1 / AN; sets *poly. */
static inline double expected_het(const int64_t *ac, int k, int64_t na, int64_t an,
                                   double recip, uint8_t *poly) {
    double e = 0.0;
    if (an > 0) {
        const double f0 = (double)ac[0] * recip;
        if (na == 2) {
            e = (2 * f0) * (1 - f0);
        } else {
            double total = 0.0, squares = 0.0;
            for (int a = 0; a < k - 1; a++) {
                double fa = a == 0 ? f0 : (double)ac[a] * recip;
                if (a >= na - 1)
                    fa = 0.0;
                total += fa;
                squares += fa * fa;
            }
            const double last = 1.0 - total;
            e = 1.0 - squares - last * last;
        }
    }
    *poly = an > 0 && e >= EXPECTED_EPSILON;
    return *poly ? e : 0.0;
}

/* 8 bytes from p as one little-endian word: bit b of byte i is bit 8 i + b. */
static inline uint64_t load_le64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Whether any of bytes lo..hi-1 of row is non-zero, in 8-byte loads that stay within
 * row[0:hi] (a histogram row's genotype columns past 1/1: one load for 11 uint8 columns). */
static inline int any_byte(const unsigned char *row, size_t lo, size_t hi) {
    if (hi - lo >= 8) {
        uint64_t w = load_le64(row + hi - 8);
        for (size_t o = lo; o + 8 < hi; o += 8)
            w |= load_le64(row + o);
        return w != 0;
    }
    if (hi > lo && hi >= 8) /* one load ending at hi, the bytes before lo shifted out */
        return (load_le64(row + hi - 8) >> (8 * (8 - (hi - lo)))) != 0;
    unsigned char r = 0;
    for (size_t o = lo; o < hi; o++)
        r |= row[o];
    return r != 0;
}

/* One call of unit_alleles: its arguments, what it counts, and its tables. */
typedef struct {
    int k;
    Py_ssize_t h; /* histogram columns, 1 + k(k+1)/2 */
    /* the layout (as qc_count's): items between rows of columns 0-3, the rare columns
     * (past the fourth) and their row stride, and which rows hold rare counts (NULL: all) */
    Py_ssize_t hs, rs;
    const char *rare;
    const uint8_t *rseen;
    int64_t *n_alleles;
    int observed;
    double *ehet;
    uint8_t *poly;
    const double *recips; /* 1 / AN for AN < n_recips (0 for AN 0) */
    int64_t n_recips;
    int64_t seen[65]; /* rows calling 0, 1, ..., k distinct alleles */
    Py_ssize_t first_beyond;
    int64_t ac[64];                   /* a row's allele counts: items 2.. are 0 between rows */
    uint8_t lo_of[2081], hi_of[2081]; /* each genotype column's two alleles */
} unit_state;

/* The end of a row's step, from its allele counts u->ac: its alleles (or whether it calls
 * one beyond them), expected heterozygosity and polymorphism. */
ROWS_INLINE void unit_finish(unit_state *u, Py_ssize_t i, int top, int64_t an) {
    if (u->observed)
        u->n_alleles[i] = top > 2 ? top : 2;
    else if (top > u->n_alleles[i] && u->first_beyond < 0)
        u->first_beyond = i;
    /* 1 / AN from a table when it holds it (the same double, no division) */
    const double recip = an <= 0 ? 0.0 : an < u->n_recips ? u->recips[an] : 1.0 / (double)an;
    u->ehet[i] = expected_het(u->ac, u->k, u->n_alleles[i], an, recip, u->poly + i);
}

/* One set of row steps per histogram count type H. A row whose calls hold alleles 0 and 1
 * only (its genotype columns past 1/1 empty, found with word loads: almost every row of SNP
 * data) takes a short path: two allele counts, and for two alleles plink2's 2 f0 (1 - f0),
 * no loop over the alleles. Rows calling 0, 1 or 2 distinct alleles are counted in
 * registers and added to u->seen once. */
#define UNIT_ROWS(H)                                                                        \
    static void unit_general_##H(unit_state *u, const H *c, Py_ssize_t i) {                 \
        int64_t *ac = u->ac;                                                                \
        int top = 0; /* 1 + the highest allele called */                                    \
        const H *r = (const H *)u->rare + i * u->rs; /* columns 4.. */                      \
        ac[0] = ac[1] = 0; /* as a short row left them */                                   \
        for (Py_ssize_t j = 1; j < u->h; j++) {                                             \
            const H x = j < 4 ? c[j] : r[j - 4];                                            \
            ac[u->lo_of[j]] += (int64_t)x;                                                  \
            ac[u->hi_of[j]] += (int64_t)x;                                                  \
            top = x ? u->hi_of[j] + 1 : top;                                                \
        }                                                                                   \
        int64_t an = 0, distinct = 0;                                                       \
        for (int a = 0; a < u->k; a++) {                                                    \
            an += ac[a];                                                                    \
            distinct += ac[a] > 0;                                                          \
        }                                                                                   \
        u->seen[distinct]++;                                                                \
        unit_finish(u, i, top, an);                                                         \
        for (int a = 0; a < u->k; a++)                                                      \
            ac[a] = 0;                                                                      \
    }                                                                                       \
    static void unit_rows_##H(unit_state *u, const H *hist, Py_ssize_t lo, Py_ssize_t hi) { \
        const size_t rest = 4 * sizeof(H), end = (size_t)u->h * sizeof(H);                 \
        int64_t *n_alleles = u->n_alleles;                                                  \
        double *ehet = u->ehet;                                                             \
        uint8_t *poly = u->poly;                                                            \
        const double *recips = u->recips;                                                   \
        const int64_t n_recips = u->n_recips;                                               \
        const int observed = u->observed;                                                   \
        int64_t one = 0, two = 0, fast = 0;                                                 \
        for (Py_ssize_t i = lo; i < hi; i++) {                                              \
            const H *c = hist + i * u->hs;                                                  \
            if (u->rseen != NULL ? u->rseen[i] != 0                                         \
                                 : any_byte((const unsigned char *)c, rest, end)) {         \
                unit_general_##H(u, c, i);                                                  \
                continue;                                                                   \
            }                                                                               \
            const int64_t a0 = 2 * (int64_t)c[1] + (int64_t)c[2];                          \
            const int64_t a1 = (int64_t)c[2] + 2 * (int64_t)c[3];                           \
            const int64_t an = a0 + a1;                                                     \
            one += (a0 > 0) != (a1 > 0);                                                    \
            two += (a0 > 0) & (a1 > 0);                                                     \
            fast++;                                                                         \
            if (observed) {                                                                 \
                n_alleles[i] = 2; /* as unit_finish writes it: no call past allele 1 */     \
            } else if (n_alleles[i] != 2) { /* the check and loop of unit_finish */         \
                u->ac[0] = a0;                                                              \
                u->ac[1] = a1;                                                              \
                unit_finish(u, i, (c[2] | c[3]) ? 2 : c[1] ? 1 : 0, an);                    \
                u->ac[0] = u->ac[1] = 0;                                                    \
                continue;                                                                   \
            }                                                                               \
            /* expected_het's 2 f0 (1 - f0); with no call (recips[0] is 0, or 1 / 0 gives  \
             * NaN) the row is not polymorphic and its ehet 0, without a branch */          \
            const double recip = an < n_recips ? recips[an] : 1.0 / (double)an;            \
            const double f0 = (double)a0 * recip;                                           \
            const double e = (2 * f0) * (1 - f0);                                           \
            const int keep = (an > 0) & (e >= EXPECTED_EPSILON);                            \
            uint64_t bits;                                                                  \
            memcpy(&bits, &e, 8);                                                           \
            bits &= (uint64_t)0 - (uint64_t)keep;                                           \
            memcpy(ehet + i, &bits, 8);                                                     \
            poly[i] = (uint8_t)keep;                                                        \
        }                                                                                   \
        u->seen[0] += fast - one - two;                                                     \
        u->seen[1] += one;                                                                  \
        u->seen[2] += two;                                                                  \
    }
UNIT_ROWS(uint8_t)
UNIT_ROWS(uint16_t)
UNIT_ROWS(uint32_t)
UNIT_ROWS(uint64_t)

#ifdef HAVE_AVX2
/* The same steps, 4 rows at a time where all 4 call alleles 0 and 1 only, for uint8 and
 * uint16 counts (whose allele counts convert exactly through int32): the allele counts as 4
 * doubles, 1 / AN by one vector division (correctly rounded, as the table's 1.0 / AN is),
 * then the products and differences of expected_het in the same order, lane by lane, and
 * a mask for its conditions; no branch on the data but the rare rows past 1/1. */
#define UNIT_ROWS_AVX2(H)                                                                   \
    AVX2_FN static void unit_rows_avx2_##H(unit_state *u, const H *hist, Py_ssize_t n) {    \
        const Py_ssize_t h = u->h, hs = u->hs;                                              \
        const size_t rest = 4 * sizeof(H), end = (size_t)h * sizeof(H);                     \
        const __m128i pick1 = _mm_setr_epi8(1, -1, -1, -1, 5, -1, -1, -1, 9, -1, -1, -1,    \
                                            13, -1, -1, -1);                                \
        const __m128i pick2s = _mm_setr_epi8(2, -1, -1, -1, 6, -1, -1, -1, 10, -1, -1, -1,  \
                                             14, -1, -1, -1);                               \
        const __m128i pick3 = _mm_setr_epi8(3, -1, -1, -1, 7, -1, -1, -1, 11, -1, -1, -1,   \
                                            15, -1, -1, -1);                                \
        const __m256d one = _mm256_set1_pd(1.0), two = _mm256_set1_pd(2.0);                \
        const __m256d none = _mm256_setzero_pd(), eps = _mm256_set1_pd(EXPECTED_EPSILON);  \
        const __m256i one_i = _mm256_set1_epi64x(1), two_i = _mm256_set1_epi64x(2);         \
        const int third = u->k > 2; /* expected_het's sum reaches allele 1 */               \
        /* bytes 1, 12, 3, 14 (0/0 and 1/1 of two 11-byte rows) and 2, 13, 2, 13 (0/1) */    \
        const __m256i pick13 = _mm256_setr_epi8(                                            \
            1, -1, -1, -1, 12, -1, -1, -1, 3, -1, -1, -1, 14, -1, -1, -1,                   \
            1, -1, -1, -1, 12, -1, -1, -1, 3, -1, -1, -1, 14, -1, -1, -1);                  \
        const __m256i pick2 = _mm256_setr_epi8(                                             \
            2, -1, -1, -1, 13, -1, -1, -1, 2, -1, -1, -1, 13, -1, -1, -1,                   \
            2, -1, -1, -1, 13, -1, -1, -1, 2, -1, -1, -1, 13, -1, -1, -1);                  \
        const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);                   \
        const int observed = u->observed;                                                   \
        int64_t *n_alleles = u->n_alleles;                                                  \
        double *ehet = u->ehet;                                                             \
        uint8_t *poly = u->poly;                                                            \
        Py_ssize_t first_beyond = -1;                                                       \
        int64_t zeros = 0, both = 0, fast = 0;                                              \
        Py_ssize_t i = 0;                                                                   \
        for (; i + 4 <= n; i += 4) {                                                        \
            const H *c = hist + i * hs;                                                     \
            const unsigned char *b = (const unsigned char *)c;                              \
            int general;                                                                    \
            if (u->rseen != NULL) { /* flags of 0 or 1: bit 8 j of the word is row j's */   \
                uint32_t w;                                                                 \
                memcpy(&w, u->rseen + i, 4);                                                \
                general = (int)((w & 1) | (w >> 7 & 2) | (w >> 14 & 4) | (w >> 21 & 8));    \
            } else {                                                                        \
                general = any_byte(b, rest, end) | any_byte(b + end, rest, end) << 1 |      \
                          any_byte(b + 2 * end, rest, end) << 2 |                           \
                          any_byte(b + 3 * end, rest, end) << 3;                            \
            }                                                                               \
            __m256d a0, a1;                                                                 \
            if (sizeof(H) == 1 && hs == 4) { /* rows of 4 bytes: columns 1-3 of 4 rows */   \
                const __m128i v = _mm_loadu_si128((const __m128i *)b);                      \
                const __m128i c1 = _mm_shuffle_epi8(v, pick1), c2 = _mm_shuffle_epi8(v, pick2s); \
                const __m128i c3 = _mm_shuffle_epi8(v, pick3);                              \
                a0 = _mm256_cvtepi32_pd(_mm_add_epi32(_mm_slli_epi32(c1, 1), c2));          \
                a1 = _mm256_cvtepi32_pd(_mm_add_epi32(c2, _mm_slli_epi32(c3, 1)));          \
            } else if (sizeof(H) == 1 && hs == 11) { /* K = 4: rows 0, 1 in bytes 0..15 */  \
                const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(b + 22)), \
                                                   _mm_loadu_si128((const __m128i *)b));    \
                const __m256i x = _mm256_add_epi32(                                         \
                    _mm256_slli_epi32(_mm256_shuffle_epi8(v, pick13), 1),                   \
                    _mm256_shuffle_epi8(v, pick2)); /* AC0, AC0, AC1, AC1 of 2 rows a lane */ \
                const __m256i y = _mm256_permutevar8x32_epi32(x, order);                    \
                a0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(y));                         \
                a1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(y, 1));                    \
            } else {                                                                        \
                const H *d = c + hs, *e2 = c + 2 * hs, *f = c + 3 * hs;                     \
                a0 = _mm256_cvtepi32_pd(_mm_setr_epi32(2 * c[1] + c[2], 2 * d[1] + d[2],    \
                                                       2 * e2[1] + e2[2], 2 * f[1] + f[2])); \
                a1 = _mm256_cvtepi32_pd(_mm_setr_epi32(c[2] + 2 * c[3], d[2] + 2 * d[3],    \
                                                       e2[2] + 2 * e2[3], f[2] + 2 * f[3])); \
            }                                                                               \
            const __m256d an = _mm256_add_pd(a0, a1);                                       \
            const __m256d called = _mm256_cmp_pd(an, none, _CMP_GT_OQ);                    \
            const __m256d recip = _mm256_div_pd(one, an);                                   \
            const __m256d f0 = _mm256_mul_pd(a0, recip);                                    \
            __m256d e = _mm256_mul_pd(_mm256_mul_pd(two, f0), _mm256_sub_pd(one, f0));      \
            if (observed) {                                                                 \
                _mm256_storeu_si256((__m256i *)(n_alleles + i), two_i);                     \
            } else {                                                                        \
                const __m256i na = _mm256_loadu_si256((const __m256i *)(n_alleles + i));    \
                const __m256d is2 = _mm256_castsi256_pd(_mm256_cmpeq_epi64(na, two_i));     \
                if (_mm256_movemask_pd(is2) != 15) { /* the loop over the alleles */        \
                    const __m256d f1 = third ? _mm256_mul_pd(a1, recip) : none;             \
                    const __m256d total = _mm256_add_pd(f0, f1);                            \
                    const __m256d squares =                                                 \
                        _mm256_add_pd(_mm256_mul_pd(f0, f0), _mm256_mul_pd(f1, f1));        \
                    const __m256d last = _mm256_sub_pd(one, total);                         \
                    const __m256d many = _mm256_sub_pd(_mm256_sub_pd(one, squares),         \
                                                       _mm256_mul_pd(last, last));          \
                    const __m256d more =                                                    \
                        _mm256_castsi256_pd(_mm256_cmpgt_epi64(na, two_i));                 \
                    e = _mm256_blendv_pd(_mm256_and_pd(more, many), e, is2);                \
                }                                                                           \
                /* allele 1 called where the variant has under 2 alleles, any under 1 */    \
                const __m256d under2 = _mm256_castsi256_pd(_mm256_cmpgt_epi64(two_i, na));  \
                const __m256d under1 = _mm256_castsi256_pd(_mm256_cmpgt_epi64(one_i, na));  \
                const __m256d alt = _mm256_cmp_pd(a1, none, _CMP_GT_OQ);                    \
                const int beyond = _mm256_movemask_pd(_mm256_or_pd(                         \
                    _mm256_and_pd(alt, under2), _mm256_and_pd(called, under1)));            \
                if ((beyond & ~general) && first_beyond < 0)                                \
                    first_beyond = i + __builtin_ctz((unsigned)(beyond & ~general));        \
            }                                                                               \
            const __m256d keep =                                                            \
                _mm256_and_pd(called, _mm256_cmp_pd(e, eps, _CMP_GE_OQ));                   \
            _mm256_storeu_pd(ehet + i, _mm256_and_pd(keep, e));                             \
            /* bit j of the mask to byte j */                                               \
            const uint32_t bytes = ((uint32_t)_mm256_movemask_pd(keep) * 0x00204081u) &     \
                                   0x01010101u;                                             \
            memcpy(poly + i, &bytes, 4);                                                    \
            const __m256d both_called = _mm256_and_pd(_mm256_cmp_pd(a0, none, _CMP_GT_OQ),  \
                                                      _mm256_cmp_pd(a1, none, _CMP_GT_OQ)); \
            zeros += __builtin_popcount((unsigned)(~_mm256_movemask_pd(called) & ~general & 15)); \
            both += __builtin_popcount((unsigned)(_mm256_movemask_pd(both_called) & ~general)); \
            fast += 4 - __builtin_popcount((unsigned)general);                              \
            if (general) { /* its rows with calls past 1/1 again, in full */                \
                const Py_ssize_t before = first_beyond;                                     \
                u->first_beyond = -1;                                                       \
                for (int r = 0; r < 4; r++)                                                 \
                    if (general >> r & 1)                                                   \
                        unit_general_##H(u, c + r * hs, i + r);                             \
                if (u->first_beyond >= 0 && (before < 0 || u->first_beyond < before))       \
                    first_beyond = u->first_beyond;                                         \
            }                                                                               \
        }                                                                                   \
        u->first_beyond = first_beyond;                                                     \
        u->seen[0] += zeros;                                                                \
        u->seen[1] += fast - zeros - both;                                                  \
        u->seen[2] += both;                                                                 \
        unit_rows_##H(u, hist, i, n);                                                       \
    }
UNIT_ROWS_AVX2(uint8_t)
UNIT_ROWS_AVX2(uint16_t)
#endif

/* Every row's step, on the AVX2 loop where there is one and it is switched on. */
static Py_ssize_t unit_alleles_loop(const char *hist, Py_ssize_t hsize, Py_ssize_t n,
                                    unit_state *u) {
#ifdef HAVE_AVX2
    if (use_avx2 && hsize == 1) {
        unit_rows_avx2_uint8_t(u, (const uint8_t *)hist, n);
        return u->first_beyond;
    }
    if (use_avx2 && hsize == 2) {
        unit_rows_avx2_uint16_t(u, (const uint16_t *)hist, n);
        return u->first_beyond;
    }
#endif
    switch (hsize) {
    case 1: unit_rows_uint8_t(u, (const uint8_t *)hist, 0, n); break;
    case 2: unit_rows_uint16_t(u, (const uint16_t *)hist, 0, n); break;
    case 4: unit_rows_uint32_t(u, (const uint32_t *)hist, 0, n); break;
    default: unit_rows_uint64_t(u, (const uint64_t *)hist, 0, n); break;
    }
    return u->first_beyond;
}

/* unit_alleles(hist, hsize, hstride, rare, rstride, rseen, n, k, width, n_alleles, observed,
 * ehet, poly, seen) -> first row with calls beyond its alleles, or -1
 *   hist .. rseen: n rows of genotype histograms (1 + k(k+1)/2 columns, unsigned of hsize
 *              bytes) laid out as qc_count's (whole rows: hstride = rstride = columns, rare
 *              from hist's fifth item, rseen empty), of calls of at most width samples
 *   n_alleles: n int64: each variant's alleles (read), or written when observed
 *   ehet:      n float64 (written); poly: n uint8 (written); seen: k + 1 int64 (added to)
 */
static PyObject *unit_alleles(PyObject *self, PyObject *args) {
    Py_buffer hist, rare, rseen, alleles, ehet, poly, seen;
    Py_ssize_t hsize, hstride, rstride, n, k, width;
    int observed;
    if (!PyArg_ParseTuple(args, "y*nny*ny*nnnw*pw*w*w*", &hist, &hsize, &hstride, &rare,
                          &rstride, &rseen, &n, &k, &width, &alleles, &observed, &ehet, &poly,
                          &seen))
        return NULL;
    const Py_ssize_t h = 1 + k * (k + 1) / 2;
    const char *problem = NULL;
    Py_ssize_t row = -1;
    if (k < 2 || k > 64 || n < 0 || width < 0 ||
        (hsize != 1 && hsize != 2 && hsize != 4 && hsize != 8))
        problem = "k must be within 2..64 and hsize 1, 2, 4 or 8";
    else if (rseen.len == 0 ? hstride != h || rstride != h : hstride < 4 || rstride < h - 4)
        problem = "histogram row strides do not fit its layout";
    else if ((n > 0 && (hist.len < ((n - 1) * hstride + 4) * hsize ||
                        rare.len < ((n - 1) * rstride + h - 4) * hsize)) ||
             (rseen.len != 0 && rseen.len < n) || alleles.len < n * 8 || ehet.len < n * 8 ||
             poly.len < n || seen.len < (k + 1) * 8)
        problem = "a buffer is too small";
    double *recips = NULL;
    const int64_t n_recips = 2 * (int64_t)width + 1; /* AN is at most twice the samples */
    if (problem == NULL && n_recips <= (1 << 20)) {
        recips = PyMem_RawMalloc((size_t)n_recips * sizeof(double));
        if (recips == NULL)
            problem = "out of memory";
        for (int64_t an = 0; recips != NULL && an < n_recips; an++)
            recips[an] = an ? 1.0 / (double)an : 0.0;
    }
    unit_state *u = NULL;
    if (problem == NULL && (u = PyMem_RawCalloc(1, sizeof(unit_state))) == NULL)
        problem = "out of memory";
    if (problem == NULL) {
        u->k = (int)k;
        u->h = h;
        u->hs = hstride;
        u->rs = rstride;
        u->rare = rare.buf;
        u->rseen = rseen.len ? (const uint8_t *)rseen.buf : NULL;
        u->n_alleles = alleles.buf;
        u->observed = observed;
        u->ehet = ehet.buf;
        u->poly = poly.buf;
        u->recips = recips;
        u->n_recips = recips != NULL ? n_recips : 0;
        u->first_beyond = -1;
        for (int hi = 0, col = 1; hi < k; hi++)
            for (int lo = 0; lo <= hi; lo++, col++) {
                u->lo_of[col] = (uint8_t)lo;
                u->hi_of[col] = (uint8_t)hi;
            }
        Py_BEGIN_ALLOW_THREADS
        row = unit_alleles_loop(hist.buf, hsize, n, u);
        Py_END_ALLOW_THREADS
        int64_t *out = seen.buf;
        for (Py_ssize_t a = 0; a <= k; a++)
            out[a] += u->seen[a];
    }
    PyMem_RawFree(u);
    PyMem_RawFree(recips);
    PyBuffer_Release(&hist);
    PyBuffer_Release(&rare);
    PyBuffer_Release(&rseen);
    PyBuffer_Release(&alleles);
    PyBuffer_Release(&ehet);
    PyBuffer_Release(&poly);
    PyBuffer_Release(&seen);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return PyLong_FromSsize_t(row);
}

/* allele_counts(hist, hsize, n, k, out): out (n x k int64, written) gets each row's count of
 * each allele from its genotype histogram (n x (1 + k(k+1)/2) unsigned of hsize bytes,
 * C-contiguous): a genotype a/b adds to a and to b. An integer pass, where a product with
 * the allele matrix would run in floats (BLAS, its threads spinning after). A row calling
 * alleles 0 and 1 only (found with word loads) takes two sums; the others are summed in a
 * local array, which no store to out can alias. */
#define ALLELE_COUNTS(H)                                                                    \
    ROWS_INLINE void allele_rows_##H(const H *hist, Py_ssize_t n, int k, int64_t *out) {    \
        const Py_ssize_t h = 1 + (Py_ssize_t)k * (k + 1) / 2;                               \
        const size_t rest = 4 * sizeof(H), end = (size_t)h * sizeof(H);                     \
        for (Py_ssize_t i = 0; i < n; i++) {                                                \
            const H *c = hist + i * h;                                                      \
            int64_t *ac = out + i * k;                                                      \
            if (!any_byte((const unsigned char *)c, rest, end)) {                           \
                const int64_t a0 = 2 * (int64_t)c[1] + (int64_t)c[2];                       \
                const int64_t a1 = (int64_t)c[2] + 2 * (int64_t)c[3];                       \
                ac[0] = a0;                                                                 \
                ac[1] = a1;                                                                 \
                for (int a = 2; a < k; a++)                                                 \
                    ac[a] = 0;                                                              \
                continue;                                                                   \
            }                                                                               \
            int64_t sum[64];                                                                \
            for (int a = 0; a < k; a++)                                                     \
                sum[a] = 0;                                                                 \
            for (int hi = 0, col = 1; hi < k; hi++)                                         \
                for (int lo = 0; lo <= hi; lo++, col++) {                                   \
                    sum[lo] += (int64_t)c[col];                                             \
                    sum[hi] += (int64_t)c[col];                                             \
                }                                                                           \
            for (int a = 0; a < k; a++)                                                     \
                ac[a] = sum[a];                                                             \
        }                                                                                   \
    }                                                                                       \
    static void allele_counts_##H(const H *hist, Py_ssize_t n, int k, int64_t *out) {       \
        if (k == 4) /* K of the QC pass: the loops unrolled */                              \
            allele_rows_##H(hist, n, 4, out);                                               \
        else                                                                                \
            allele_rows_##H(hist, n, k, out);                                               \
    }
ALLELE_COUNTS(uint8_t)
ALLELE_COUNTS(uint16_t)
ALLELE_COUNTS(uint32_t)
ALLELE_COUNTS(uint64_t)

static PyObject *allele_counts(PyObject *self, PyObject *args) {
    Py_buffer hist, out;
    Py_ssize_t hsize, n, k;
    if (!PyArg_ParseTuple(args, "y*nnnw*", &hist, &hsize, &n, &k, &out))
        return NULL;
    const char *problem = NULL;
    if (k < 2 || k > 64 || n < 0 || (hsize != 1 && hsize != 2 && hsize != 4 && hsize != 8))
        problem = "k must be within 2..64 and hsize 1, 2, 4 or 8";
    else if (hist.len < n * (1 + k * (k + 1) / 2) * hsize || out.len < n * k * 8)
        problem = "a buffer is too small";
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        switch (hsize) {
        case 1: allele_counts_uint8_t(hist.buf, n, (int)k, out.buf); break;
        case 2: allele_counts_uint16_t(hist.buf, n, (int)k, out.buf); break;
        case 4: allele_counts_uint32_t(hist.buf, n, (int)k, out.buf); break;
        default: allele_counts_uint64_t(hist.buf, n, (int)k, out.buf); break;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&hist);
    PyBuffer_Release(&out);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Sample j of bits set in word (samples 64 w ...) gets o[j] += 1 and x[j] += e. */
ROWS_INLINE void missing_word(uint64_t word, int64_t *o, double *x, double e) {
    while (word) {
        const int j = __builtin_ctzll(word);
        word &= word - 1;
        o[j]++;
        x[j] += e;
    }
}

/* The last word of a row of nbytes >= 1 bytes: its last 1..8 bytes, little-endian. */
static inline uint64_t last_word(const unsigned char *row, Py_ssize_t nbytes, Py_ssize_t tail) {
    if (nbytes >= 8) /* the row's last 8 bytes, those before the last word shifted out */
        return load_le64(row + nbytes - 8) >> (8 * (8 - tail));
    uint64_t last = 0;
    for (Py_ssize_t t = 0; t < nbytes; t++)
        last |= (uint64_t)row[t] << (8 * t);
    return last;
}

#define MISSING_ROWS 256 /* rows whose polymorphic ones are listed at a time */

#ifdef HAVE_AVX2 /* x86-64 with gcc or clang: an AVX-512 path for missing_sum too */
#define HAVE_AVX512 1
#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl")))
#define MISSING_BLOCK 2048 /* rows listed at a time by the AVX-512 path */

/* Whether missing_terms uses the AVX-512 path: decided from the CPU at import, switchable. */
static int use_avx512 = 0;

/* Whether the CPU runs AVX-512 F, BW and VL (and the system saves their registers). */
static int cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

#define AVX512_INLINE AVX512_FN static inline __attribute__((always_inline))
typedef uint16_t __attribute__((may_alias)) u16_alias;

/* The 16 bits at p (little-endian) as a mask, by kmovw from memory (a load): written out,
 * as gcc otherwise loads them into a general register and moves that to the mask with a
 * uop on the ports the adds need. */
AVX512_INLINE __mmask16 mask_at(const unsigned char *p) {
    __mmask16 k;
    __asm__("kmovw %1, %0" : "=k"(k) : "m"(*(const u16_alias *)p));
    return k;
}

/* One row's GB bytes of bits at q (reading q[GB] too) added: byte t masks the add of ei
 * to the 8 doubles xs[t], bytes 2u and 2u + 1 the count into the 16 int32 cs[u]. */
AVX512_INLINE void missing_row_avx512(const unsigned char *q, __m512d ei, __m512d *xs,
                                      __m512i *cs, const int GB) {
    const __m512i minus_one = _mm512_set1_epi32(-1);
    for (int u = 0; 2 * u < GB; u++) {
        const __mmask16 k = mask_at(q + 2 * u);
        xs[2 * u] = _mm512_mask_add_pd(xs[2 * u], (__mmask8)k, xs[2 * u], ei);
        cs[u] = _mm512_mask_sub_epi32(cs[u], k, cs[u], minus_one);
        __asm__("" : "+v"(cs[u])); /* else gcc adds into a copy and moves it back */
        if (2 * u + 1 < GB)
            xs[2 * u + 1] = _mm512_mask_add_pd(xs[2 * u + 1], (__mmask8)mask_at(q + 2 * u + 1),
                                               xs[2 * u + 1], ei);
    }
}

/* missing_sum for the 8 GB (1..8) samples from 64 g over the m listed rows, keep masking
 * the samples to the width: each byte of a row's bits is the mask of a masked add of the
 * row's e to 8 doubles held in a register, each two bytes that of a count into 16 int32
 * (at most MISSING_BLOCK rows: no overflow). The doubles start from x, so each sample's
 * sum adds the rows in order, as the scalar loop does: the same bits. Lanes past the
 * width (bits past it, the byte after the last) are summed and never stored. */
AVX512_INLINE void missing_group_avx512(const unsigned char *b, Py_ssize_t n,
                                        Py_ssize_t nbytes, Py_ssize_t g, const int32_t *rows,
                                        Py_ssize_t m, const double *e, int64_t *o, double *x,
                                        uint64_t keep, const int GB) {
    __m512d xs[8];
    __m512i cs[4];
    for (int t = 0; t < GB; t++)
        xs[t] = _mm512_maskz_loadu_pd((__mmask8)(keep >> (8 * t)), x + 8 * t);
    for (int u = 0; 2 * u < GB; u++)
        cs[u] = _mm512_setzero_si512();
    /* the block's last row's last group: the byte after it may be past the bits */
    const int padded = 8 * (g + 1) >= nbytes && rows[m - 1] == n - 1;
    for (Py_ssize_t r = 0; r < m - padded; r++) {
        const Py_ssize_t i = rows[r];
        missing_row_avx512(b + i * nbytes + 8 * g, _mm512_set1_pd(e[i]), xs, cs, GB);
    }
    if (padded) {
        unsigned char pad[16] = {0};
        memcpy(pad, b + (n - 1) * nbytes + 8 * g, (size_t)GB); /* GB = nbytes - 8 g */
        missing_row_avx512(pad, _mm512_set1_pd(e[n - 1]), xs, cs, GB);
    }
    for (int t = 0; t < GB; t++)
        _mm512_mask_storeu_pd(x + 8 * t, (__mmask8)(keep >> (8 * t)), xs[t]);
    for (int u = 0; 2 * u < GB; u++) {
        const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(cs[u]));
        const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(cs[u], 1));
        const __mmask8 klo = (__mmask8)(keep >> (16 * u)), khi = (__mmask8)(keep >> (16 * u + 8));
        int64_t *at = o + 16 * u;
        _mm512_mask_storeu_epi64(at, klo,
                                 _mm512_add_epi64(_mm512_maskz_loadu_epi64(klo, at), lo));
        _mm512_mask_storeu_epi64(at + 8, khi,
                                 _mm512_add_epi64(_mm512_maskz_loadu_epi64(khi, at + 8), hi));
    }
}

/* The rows i of 0..n (n <= MISSING_BLOCK) with p[i] != 0, in order, into rows (room for
 * n + 16): 16 flags a step, their indices compressed into one store. Returns the count. */
AVX512_FN static Py_ssize_t list_rows_avx512(const uint8_t *p, Py_ssize_t n, int32_t *rows) {
    const __m512i step = _mm512_set1_epi32(16);
    __m512i at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    Py_ssize_t m = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i flags = _mm_loadu_si128((const __m128i *)(p + i));
        const __mmask16 k = _mm_test_epi8_mask(flags, flags);
        _mm512_storeu_si512(rows + m, _mm512_maskz_compress_epi32(k, at));
        m += __builtin_popcount(k);
        at = _mm512_add_epi32(at, step);
    }
    for (; i < n; i++) {
        rows[m] = (int32_t)i;
        m += p[i] != 0;
    }
    return m;
}

/* missing_sum on AVX-512: the polymorphic rows of each MISSING_BLOCK rows listed, then
 * summed 64 samples (8 bytes of bits) at a time, the last group of the row's last 1..8
 * bytes. */
AVX512_FN static void missing_sum_avx512(const uint8_t *b, Py_ssize_t n, Py_ssize_t nbytes,
                                         Py_ssize_t width, const double *e, const uint8_t *p,
                                         int64_t *o, double *x) {
    const Py_ssize_t words = (nbytes + 7) / 8, tail = nbytes - 8 * (words - 1);
    const Py_ssize_t within = width - 64 * (words - 1); /* samples of the last word, 1..64 */
    const uint64_t keep = within >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << within) - 1;
    int32_t rows[MISSING_BLOCK + 16];
    for (Py_ssize_t lo = 0; lo < n; lo += MISSING_BLOCK) {
        const Py_ssize_t k = n - lo < MISSING_BLOCK ? n - lo : MISSING_BLOCK; /* its rows */
        const Py_ssize_t m = list_rows_avx512(p + lo, k, rows);
        if (m == 0)
            continue;
        const unsigned char *bb = b + lo * nbytes;
        const double *eb = e + lo;
        for (Py_ssize_t g = 0; g + 1 < words; g++)
            missing_group_avx512(bb, k, nbytes, g, rows, m, eb, o + 64 * g, x + 64 * g,
                                 ~(uint64_t)0, 8);
        const Py_ssize_t g = words - 1;
        int64_t *ol = o + 64 * g;
        double *xl = x + 64 * g;
        switch (tail) {
#define MISSING_TAIL(GB)                                                                  \
    case GB: missing_group_avx512(bb, k, nbytes, g, rows, m, eb, ol, xl, keep, GB); break;
            MISSING_TAIL(1)
            MISSING_TAIL(2)
            MISSING_TAIL(3)
            MISSING_TAIL(4)
            MISSING_TAIL(5)
            MISSING_TAIL(6)
            MISSING_TAIL(7)
            default: missing_group_avx512(bb, k, nbytes, g, rows, m, eb, ol, xl, keep, 8);
#undef MISSING_TAIL
        }
    }
}
#endif

/* The sums of missing_terms over rows of nbytes >= 1 bytes, read as 64-bit words (bit j of
 * a little-endian word: sample 64 w + j); the last word, of the row's last 1..8 bytes, is
 * masked to the width. The polymorphic rows of each MISSING_ROWS are listed first, without
 * a branch, then summed: most rows are not polymorphic, in no order a branch predicts.
 * Each sample's sum adds the rows in order, as a byte loop does. CPUs with AVX-512 take
 * missing_sum_avx512 (the same sums, the same bits). */
static void missing_sum(const uint8_t *b, Py_ssize_t n, Py_ssize_t nbytes, Py_ssize_t width,
                        const double *e, const uint8_t *p, int64_t *o, double *x) {
#ifdef HAVE_AVX512
    if (use_avx512) {
        missing_sum_avx512(b, n, nbytes, width, e, p, o, x);
        return;
    }
#endif
    const Py_ssize_t words = (nbytes + 7) / 8, tail = nbytes - 8 * (words - 1);
    const Py_ssize_t within = width - 64 * (words - 1); /* samples of the last word, 1..64 */
    const uint64_t keep = within >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << within) - 1;
    int64_t *o_last = o + 64 * (words - 1);
    double *x_last = x + 64 * (words - 1);
    Py_ssize_t rows[MISSING_ROWS];
    for (Py_ssize_t lo = 0; lo < n; lo += MISSING_ROWS) {
        const Py_ssize_t hi = n - lo < MISSING_ROWS ? n : lo + MISSING_ROWS;
        Py_ssize_t m = 0;
        for (Py_ssize_t i = lo; i < hi; i++) {
            rows[m] = i;
            m += p[i] != 0;
        }
        for (Py_ssize_t r = 0; r < m; r++) {
            const Py_ssize_t i = rows[r];
            const unsigned char *row = b + i * nbytes;
            const double ei = e[i];
            for (Py_ssize_t w = 0; w + 1 < words; w++)
                missing_word(load_le64(row + 8 * w), o + 64 * w, x + 64 * w, ei);
            missing_word(last_word(row, nbytes, tail) & keep, o_last, x_last, ei);
        }
    }
}

/* missing_terms(bits, n, nbytes, width, ehet, poly, obs, expected): for each row i of n with
 * poly[i], each sample j whose bit is set in bits (n x nbytes) gets obs[j] += 1 and
 * expected[j] += ehet[i] (obs int64, expected float64, width items each). */
static PyObject *missing_terms(PyObject *self, PyObject *args) {
    Py_buffer bits, ehet, poly, obs, expected;
    Py_ssize_t n, nbytes, width;
    if (!PyArg_ParseTuple(args, "y*nnny*y*w*w*", &bits, &n, &nbytes, &width, &ehet, &poly,
                          &obs, &expected))
        return NULL;
    const char *problem = NULL;
    if (n < 0 || width < 0 || nbytes != (width + 7) / 8)
        problem = "nbytes must be ceil(width / 8)";
    else if (bits.len < n * nbytes || ehet.len < n * 8 || poly.len < n || obs.len < width * 8 ||
             expected.len < width * 8)
        problem = "a buffer is too small";
    if (problem == NULL && nbytes > 0) {
        Py_BEGIN_ALLOW_THREADS
        missing_sum(bits.buf, n, nbytes, width, ehet.buf, poly.buf, obs.buf, expected.buf);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&ehet);
    PyBuffer_Release(&poly);
    PyBuffer_Release(&obs);
    PyBuffer_Release(&expected);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Check the buffers, then count columns c0:c1 of n rows of `stride` calls of two alleles of
 * `allele` bytes each (1: the int8 loops, 2, 4, 8: the wide loops) with the GIL released. */
static PyObject *count_checked(Py_buffer *calls, Py_ssize_t allele, Py_ssize_t n,
                               Py_ssize_t stride, Py_ssize_t c0, Py_ssize_t c1, int sgkit,
                               Py_buffer *variant_buf, Py_ssize_t itemsize,
                               Py_buffer *sample_buf, Py_buffer *mask_buf) {
    Py_ssize_t width = c1 - c0;
    const uint8_t *mask = (const uint8_t *)mask_buf->buf;
    const char *problem = NULL;
    if (n < 0 || stride < 0 || c0 < 0 || width < 0 || c1 > stride || width > FIELD_MAX)
        problem = "column range out of bounds or wider than 1023";
    else if (calls->len / (2 * allele) < n * stride)
        problem = "calls buffer too small";
    else if ((uintptr_t)calls->buf % (uintptr_t)allele)
        problem = "calls buffer not aligned to its allele size";
    else if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
        problem = "variant itemsize must be 1, 2, 4 or 8";
    else if (variant_buf->len < 3 * n * itemsize)
        problem = "variant buffer too small";
    else if (sample_buf->len < 3 * width * 8)
        problem = "sample buffer too small";
    else if (mask != NULL && mask_buf->len < n)
        problem = "mask buffer too small";
    int32_t *acc = NULL;
    int64_t *cols = NULL, partial = 0;
    mask_args m = {allele, stride, c0, width, itemsize, sgkit, variant_buf->buf, n,
                   (int64_t *)sample_buf->buf, &partial, NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t stage_rows = 0;
    if (problem == NULL && width > 0) {
        acc = PyMem_RawCalloc((size_t)(2 * width), sizeof(int32_t)); /* fields, partial */
        cols = PyMem_RawCalloc((size_t)(3 * width), sizeof(int64_t));
        if (acc == NULL || cols == NULL)
            problem = "out of memory";
    }
    if (problem == NULL && width > 0 && n > 0 && mask != NULL) {
        Py_ssize_t rowbytes = width * 2 * allele;
        stage_rows = MASK_STAGE_BYTES / rowbytes;
        stage_rows = stage_rows < MASK_RUN ? MASK_RUN : stage_rows > 1024 ? 1024 : stage_rows;
        Py_ssize_t rows = stage_rows > MASK_BLOCK ? stage_rows : MASK_BLOCK;
        m.scratch = PyMem_RawMalloc((size_t)(3 * rows * itemsize));
        m.stage = PyMem_RawMalloc((size_t)(stage_rows * rowbytes));
        m.at = PyMem_RawMalloc((size_t)stage_rows * sizeof(Py_ssize_t));
        if (m.scratch == NULL || m.stage == NULL || m.at == NULL)
            problem = "out of memory";
    }
    m.cols = cols;
    m.acc = acc;
    if (problem == NULL && width > 0 && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (mask != NULL)
            count_masked(&m, (const char *)calls->buf, mask, stage_rows);
        else
            count_rows((const char *)calls->buf, allele, n, stride, c0, width, sgkit,
                       variant_buf->buf, itemsize, m.sample, &partial, cols, acc);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(m.at);
    PyMem_RawFree(m.stage);
    PyMem_RawFree(m.scratch);
    PyMem_RawFree(cols);
    PyMem_RawFree(acc);
    PyBuffer_Release(calls);
    PyBuffer_Release(variant_buf);
    PyBuffer_Release(sample_buf);
    PyBuffer_Release(mask_buf);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return PyLong_FromLongLong(partial);
}

/* count_packed(calls, n, stride, c0, c1, sgkit, variant, itemsize, sample[, mask]) -> int
 *   calls:    n rows of `stride` uint16 calls (C-contiguous int8 (n, stride, 2)), read-only
 *   variant:  3 x n unsigned counts of `itemsize` bytes (1, 2, 4 or 8), C-contiguous: each
 *             row's missing, hom-ref and het counts of columns c0:c1 are added to it
 *   sample:   3 x (c1 - c0) int64, the per-column counts added to it
 *   mask:     None, or n bytes: only rows whose byte is nonzero are counted (the others'
 *             variant counts are left as they are)
 * Returns the number of partial calls counted as het (tutorial; 0 under sgkit).
 */
static PyObject *count_packed(PyObject *self, PyObject *args) {
    Py_buffer calls, variant_buf, sample_buf, mask_buf;
    Py_ssize_t n, stride, c0, c1, itemsize;
    int sgkit;
    memset(&mask_buf, 0, sizeof(mask_buf));
    if (!PyArg_ParseTuple(args, "y*nnnnpw*nw*|z*", &calls, &n, &stride, &c0, &c1, &sgkit,
                          &variant_buf, &itemsize, &sample_buf, &mask_buf))
        return NULL;
    return count_checked(&calls, 1, n, stride, c0, c1, sgkit, &variant_buf, itemsize,
                         &sample_buf, &mask_buf);
}

/* count_wide(calls, allele, n, stride, c0, c1, sgkit, variant, itemsize, sample[, mask])
 * -> int: as count_packed, for C-contiguous native-order (n, stride, 2) calls of int16,
 * int32 or int64 (allele = 2, 4 or 8 bytes). */
static PyObject *count_wide(PyObject *self, PyObject *args) {
    Py_buffer calls, variant_buf, sample_buf, mask_buf;
    Py_ssize_t allele, n, stride, c0, c1, itemsize;
    int sgkit;
    memset(&mask_buf, 0, sizeof(mask_buf));
    if (!PyArg_ParseTuple(args, "y*nnnnnpw*nw*|z*", &calls, &allele, &n, &stride, &c0, &c1,
                          &sgkit, &variant_buf, &itemsize, &sample_buf, &mask_buf))
        return NULL;
    if (allele != 2 && allele != 4 && allele != 8) {
        PyBuffer_Release(&calls);
        PyBuffer_Release(&variant_buf);
        PyBuffer_Release(&sample_buf);
        PyBuffer_Release(&mask_buf);
        PyErr_SetString(PyExc_ValueError, "allele size must be 2, 4 or 8");
        return NULL;
    }
    return count_checked(&calls, allele, n, stride, c0, c1, sgkit, &variant_buf, itemsize,
                         &sample_buf, &mask_buf);
}

/* ---- Counting a Blosc chunk while it is in cache ----------------------------------------
 * blosc_count decodes a Blosc (format 1 or 2) chunk of int8 calls one Blosc block at a time
 * into a small buffer and counts the whole rows there before it decodes the next block, so
 * the decoded calls are counted from the cache rather than written to memory and read back.
 * It takes chunks of one-byte items (typesize 1: a byte shuffle of one-byte items changes
 * nothing) compressed with LZ4, or stored as they are (memcpyed: counted where they lie). A
 * row split across two blocks is carried to the front of the buffer. The LZ4 decoder is the
 * one numcodecs' Blosc links (LZ4_decompress_safe), passed in as an address: it never reads
 * past its input nor writes past its output, and every offset and size from the chunk is
 * checked against the chunk's length first. */
typedef int (*lz4_decode_fn)(const char *src, char *dst, int srcsize, int dstcap);

#define BLOSC_MEMCPYED 0x02
#define BLOSC_BITSHUFFLE 0x04
#define BLOSC_LZ4_FORMAT 1
/* Decoded bytes gathered before they are counted: with the block being decoded and its
 * compressed bytes, well inside a core's L2 cache. */
#define INCACHE_BYTES (1 << 18)

static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct {
    Py_ssize_t stride, c0, width, itemsize, n;
    int sgkit;
    void *variant;
    int64_t *sample, *partial, *cols;
    int32_t *acc;
    char *scratch;
} piece_args;

/* Counts k whole rows at data, their per-row counts added to rows row .. row+k (all n rows
 * at once: straight into variant). */
static void count_piece_rows(void *ctx, const char *data, Py_ssize_t k, Py_ssize_t row) {
    const piece_args *p = ctx;
    if (row == 0 && k == p->n) {
        count_rows(data, 1, k, p->stride, p->c0, p->width, p->sgkit, p->variant, p->itemsize,
                   p->sample, p->partial, p->cols, p->acc);
        return;
    }
    memset(p->scratch, 0, (size_t)(3 * k * p->itemsize));
    count_rows(data, 1, k, p->stride, p->c0, p->width, p->sgkit, p->scratch, p->itemsize,
               p->sample, p->partial, p->cols, p->acc);
    add_rows_at(p->variant, p->itemsize, p->n, p->scratch, k, NULL, row);
}

/* What is done with k whole decoded rows at data, rows row .. row+k of the chunk. */
typedef void (*rows_fn)(void *ctx, const char *data, Py_ssize_t k, Py_ssize_t row);

/* The first n rows (stride int8 calls of two alleles) of a Blosc chunk, handed to fn a few
 * Blosc blocks at a time through buf (cap bytes): at most INCACHE_BYTES + a block + a row
 * decoded at once; a chunk stored as is, all n rows where they lie. NULL on success, else
 * what is wrong with the chunk. */
static const char *blosc_pieces(rows_fn fn, void *ctx, Py_ssize_t n, Py_ssize_t stride,
                                const uint8_t *chunk, Py_ssize_t len, lz4_decode_fn lz4,
                                char *buf, Py_ssize_t cap) {
    const Py_ssize_t rowbytes = stride * 2, end = n * rowbytes;
    const uint8_t flags = chunk[2];
    const Py_ssize_t nbytes = le32(chunk + 4), blocksize = le32(chunk + 8);
    if (nbytes < end)
        return "Blosc header says fewer decoded bytes than the rows need";
    if (flags & BLOSC_MEMCPYED) {
        if (len < 16 + nbytes)
            return "stored Blosc chunk shorter than its header says";
        fn(ctx, (const char *)chunk + 16, n, 0);
        return NULL;
    }
    if (blocksize <= 0 || cap < INCACHE_BYTES + blocksize + rowbytes)
        return "Blosc block size out of range";
    const Py_ssize_t nblocks = nbytes / blocksize + (nbytes % blocksize ? 1 : 0);
    if (16 + 4 * nblocks > len)
        return "Blosc block offsets past the end of the chunk";
    Py_ssize_t lo = 0, hi = 0, pos = 0, row = 0;
    for (Py_ssize_t b = 0; pos < end; b++) {
        const Py_ssize_t bsize = nbytes - pos < blocksize ? nbytes - pos : blocksize;
        const Py_ssize_t start = le32(chunk + 16 + 4 * b);
        if (start < 16 + 4 * nblocks || start > len - 4)
            return "Blosc block offset outside the chunk";
        const Py_ssize_t csize = (int32_t)le32(chunk + start);
        if (csize <= 0 || csize > len - start - 4)
            return "Blosc block size past the end of the chunk";
        const char *src = (const char *)chunk + start + 4;
        if (csize == bsize)
            memcpy(buf + hi, src, (size_t)bsize);
        else if (lz4(src, buf + hi, (int)csize, (int)bsize) != bsize)
            return "LZ4 block does not decode to its Blosc block size";
        hi += bsize;
        pos += bsize;
        if (hi - lo < INCACHE_BYTES && pos < end)
            continue;
        Py_ssize_t avail = pos > end ? hi - (pos - end) : hi;
        Py_ssize_t k = (avail - lo) / rowbytes;
        if (k > 0)
            fn(ctx, buf + lo, k, row);
        row += k;
        lo += k * rowbytes;
        memmove(buf, buf + lo, (size_t)(hi - lo));
        hi -= lo;
        lo = 0;
    }
    return NULL;
}

/* The checks blosc_count and blosc_qc make of a chunk (raw, len bytes), its decoder address
 * and scratch buffer: NULL, or what is wrong. */
static const char *blosc_checks(const uint8_t *raw, Py_ssize_t len, unsigned long long address,
                                const void *buffer) {
    if (address == 0)
        return "no LZ4 decoder";
    if (((uintptr_t)raw | (uintptr_t)buffer) % 2)
        return "chunk or buffer not aligned to two bytes";
    if (len < 16 || (Py_ssize_t)le32(raw + 12) != len)
        return "Blosc header disagrees with the chunk's length";
    if (raw[0] < 1 || raw[0] > 2 || raw[3] != 1 || (raw[2] & BLOSC_BITSHUFFLE) ||
        (!(raw[2] & BLOSC_MEMCPYED) && raw[2] >> 5 != BLOSC_LZ4_FORMAT))
        return "not a Blosc chunk of one-byte items in LZ4 or stored as is";
    return NULL;
}

/* blosc_count(chunk, lz4, n, stride, c0, c1, sgkit, variant, itemsize, sample, buffer) -> int
 *   chunk:   a Blosc chunk of int8 calls (n or more rows of `stride` calls) whose header the
 *            caller checked against the chunk's size; typesize 1, LZ4 or memcpyed
 *   lz4:     the address of LZ4_decompress_safe
 *   buffer:  writable scratch of at least 2**18 + blocksize + 2 * stride bytes
 *   the rest as count_packed (no mask), for the chunk's first n rows.
 * Returns the partial calls counted as het; ValueError names what is wrong with the chunk.
 */
static PyObject *blosc_count(PyObject *self, PyObject *args) {
    Py_buffer chunk, variant_buf, sample_buf, buffer;
    Py_ssize_t n, stride, c0, c1, itemsize;
    unsigned long long address;
    int sgkit;
    if (!PyArg_ParseTuple(args, "y*Knnnnpw*nw*w*", &chunk, &address, &n, &stride, &c0, &c1,
                          &sgkit, &variant_buf, &itemsize, &sample_buf, &buffer))
        return NULL;
    const uint8_t *raw = (const uint8_t *)chunk.buf;
    Py_ssize_t width = c1 - c0;
    const char *problem = NULL;
    if (n < 0 || stride <= 0 || c0 < 0 || width < 0 || c1 > stride || width > FIELD_MAX)
        problem = "column range out of bounds or wider than 1023";
    else if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
        problem = "variant itemsize must be 1, 2, 4 or 8";
    else if (variant_buf.len < 3 * n * itemsize)
        problem = "variant buffer too small";
    else if (sample_buf.len < 3 * width * 8)
        problem = "sample buffer too small";
    else
        problem = blosc_checks(raw, chunk.len, address, buffer.buf);
    int64_t partial = 0;
    piece_args p = {stride, c0, width, itemsize, n, sgkit, variant_buf.buf,
                    (int64_t *)sample_buf.buf, &partial, NULL, NULL, NULL};
    Py_ssize_t rows = problem == NULL ? buffer.len / (2 * stride) + 1 : 0; /* rows a piece holds */
    if (problem == NULL && width > 0 && n > 0) {
        p.acc = PyMem_RawCalloc((size_t)(2 * width), sizeof(int32_t));
        p.cols = PyMem_RawCalloc((size_t)(3 * width), sizeof(int64_t));
        p.scratch = PyMem_RawMalloc((size_t)(3 * rows * itemsize));
        if (p.acc == NULL || p.cols == NULL || p.scratch == NULL)
            problem = "out of memory";
        if (problem == NULL) {
            lz4_decode_fn lz4 = (lz4_decode_fn)(uintptr_t)address;
            Py_BEGIN_ALLOW_THREADS
            problem = blosc_pieces(count_piece_rows, &p, n, stride, raw, chunk.len, lz4,
                                   (char *)buffer.buf, buffer.len);
            Py_END_ALLOW_THREADS
        }
    }
    PyMem_RawFree(p.scratch);
    PyMem_RawFree(p.cols);
    PyMem_RawFree(p.acc);
    PyBuffer_Release(&chunk);
    PyBuffer_Release(&variant_buf);
    PyBuffer_Release(&sample_buf);
    PyBuffer_Release(&buffer);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return PyLong_FromLongLong(partial);
}

/* The QC pass's arguments and scratch, for rows handed over a piece at a time. */
typedef struct {
    const qc_args *q;
    const uint8_t *mask;
    qc_stage *st;
    int64_t *partial, *beyond, *cnt, *cols, *bq;
    uint16_t *tq, *tt;
    uint8_t *rare;
    int32_t *acc;
} qc_run;

/* qc_all (over the rows the mask passes, with one) of k rows at data: q's rows row .. row+k. */
static void qc_piece_rows(void *ctx, const char *data, Py_ssize_t k, Py_ssize_t row) {
    const qc_run *r = ctx;
    qc_args sq;
    struct cohort_args sc;
    qc_rows_at(r->q, data, k, row, &sq, &sc);
    if (r->mask != NULL)
        qc_all_masked(&sq, r->mask + row, r->st, r->partial, r->beyond, r->tq, r->tt, r->rare,
                      r->cnt, r->cols, r->acc, r->bq);
    else
        qc_all(&sq, r->partial, r->beyond, r->tq, r->tt, r->rare, r->cnt, r->cols, r->acc,
               r->bq);
}

/* qc_count(calls, allele, n, stride, c0, c1, sgkit, variant, itemsize, sample, k, hist,
 *          hsize, hstride, rare, rstride, rseen, qsample, bits[, mask[, cohort, ncohorts,
 *          out, osize]]) -> (partial, beyond)
 *   calls, allele .. sample: as count_wide (allele 1: int8), the run's semantics; sample
 *             must hold zeros (it receives this call's per-column counts)
 *   hist .. rseen: the genotype histograms (1 + k(k+1)/2 columns, unsigned of hsize
 *             bytes), added to: columns 0-3 of row i at hist[i * hstride], the others at
 *             rare[i * rstride] (whole rows: hist itself from its fifth item, hstride =
 *             rstride = columns). rseen, n bytes or empty: a split histogram, whose row i
 *             has its rare columns zeroed and rseen[i] set when first counted there (they
 *             are not read otherwise); empty: the rare columns are counts already.
 *   qsample:  3 x (c1 - c0) int64 zeros: the per-column sgkit counts
 *   bits:     n x ceil((c1 - c0) / 8) uint8 (written), or an empty buffer for none
 *   mask:     None, or n bytes: only rows whose byte is nonzero are counted (the others'
 *             counts, histograms, bits and per-cohort counts are left as they are)
 *   cohort .. osize: per-cohort allele counts, as cohort_count's
 * Returns the partial calls counted as het (tutorial) and the calls holding an allele >= k
 * (counted in neither the histogram's genotype columns nor its missing column).
 *
 * blosc_qc(chunk, lz4, buffer, n, stride, c0, c1, sgkit, variant, .. [as qc_count]) is
 * qc_count of the first n rows of a Blosc chunk of int8 calls, decoded a few blocks at a
 * time as blosc_count decodes them (chunk, lz4, buffer: as blosc_count's) and counted while
 * they are in cache. */
static PyObject *qc_common(PyObject *args, int blosc) {
    Py_buffer calls, variant_buf, sample_buf, hist_buf, qsample_buf, bits_buf, rare_buf, rseen_buf;
    Py_buffer mask_buf = {0}, cohort_buf = {0}, cohort_out = {0}, buffer = {0};
    Py_ssize_t allele = 1, n, stride, c0, c1, itemsize, k, hsize, hstride, rstride, nc = 0;
    Py_ssize_t osize = 1;
    unsigned long long address = 0;
    int sgkit, parsed;
    if (blosc)
        parsed = PyArg_ParseTuple(args, "y*Kw*nnnnpw*nw*nw*nnw*nw*w*w*|z*y*nw*n", &calls,
                                  &address, &buffer, &n, &stride, &c0, &c1, &sgkit,
                                  &variant_buf, &itemsize, &sample_buf, &k, &hist_buf, &hsize,
                                  &hstride, &rare_buf, &rstride, &rseen_buf, &qsample_buf,
                                  &bits_buf, &mask_buf, &cohort_buf, &nc, &cohort_out, &osize);
    else
        parsed = PyArg_ParseTuple(args, "y*nnnnnpw*nw*nw*nnw*nw*w*w*|z*y*nw*n", &calls, &allele,
                                  &n, &stride, &c0, &c1, &sgkit, &variant_buf, &itemsize,
                                  &sample_buf, &k, &hist_buf, &hsize, &hstride, &rare_buf,
                                  &rstride, &rseen_buf, &qsample_buf, &bits_buf, &mask_buf,
                                  &cohort_buf, &nc, &cohort_out, &osize);
    if (!parsed)
        return NULL;
    const uint8_t *mask = (const uint8_t *)mask_buf.buf;
    const Py_ssize_t width = c1 - c0, h = 1 + k * (k + 1) / 2, nbytes = (width + 7) / 8;
    const char *problem = NULL;
    if (allele != 1 && allele != 2 && allele != 4 && allele != 8)
        problem = "allele size must be 1, 2, 4 or 8";
    else if (n < 0 || stride < blosc || c0 < 0 || width < 0 || c1 > stride || width > FIELD_MAX)
        problem = "column range out of bounds or wider than 1023";
    else if (!blosc && calls.len / (2 * allele) < n * stride)
        problem = "calls buffer too small";
    else if (!blosc && (uintptr_t)calls.buf % (uintptr_t)allele)
        problem = "calls buffer not aligned to its allele size";
    else if (k < 2 || k > 64)
        problem = "k must be within 2..64";
    else if ((itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8) ||
             (hsize != 1 && hsize != 2 && hsize != 4 && hsize != 8))
        problem = "count itemsizes must be 1, 2, 4 or 8";
    else if (hstride < 4 || rstride < h - 4)
        problem = "histogram row strides too small";
    else if (variant_buf.len < 3 * n * itemsize ||
             (n > 0 && (hist_buf.len < ((n - 1) * hstride + 4) * hsize ||
                        rare_buf.len < ((n - 1) * rstride + h - 4) * hsize)))
        problem = "variant or histogram buffer too small";
    else if (rseen_buf.len != 0 && rseen_buf.len < n)
        problem = "rare-row flags too small";
    else if (sample_buf.len < 3 * width * 8 || qsample_buf.len < 3 * width * 8)
        problem = "sample buffer too small";
    else if (bits_buf.len != 0 && bits_buf.len < n * nbytes)
        problem = "bits buffer too small";
    else if (mask != NULL && mask_buf.len < n)
        problem = "mask buffer too small";
    else if (blosc)
        problem = blosc_checks((const uint8_t *)calls.buf, calls.len, address, buffer.buf);
    struct cohort_args cq = {(const char *)calls.buf, allele, n, stride, c0, width, nc, osize,
                             k, cohort_buf.buf, cohort_out.buf, NULL, 0, 0, NULL, NULL,
                             NULL, NULL, NULL};
    if (problem == NULL && cohort_buf.obj != NULL)
        problem = cohort_prepare(&cq, cohort_buf.len, cohort_out.len);
    int32_t *acc = NULL;
    int64_t *cols = NULL, *cnt = NULL, partial = 0, beyond = 0;
    uint16_t *tmp = NULL;
    qc_stage *st = NULL;
    if (problem == NULL && width > 0 && n > 0 && mask != NULL) {
        st = PyMem_RawCalloc(1, sizeof(qc_stage));
        if (st != NULL) {
            const Py_ssize_t cap = st->cap = stage_rows(width * 2 * allele);
            st->calls = PyMem_RawMalloc((size_t)(cap * width * 2 * allele));
            st->variant = PyMem_RawMalloc((size_t)(3 * cap * itemsize));
            st->hist = PyMem_RawMalloc((size_t)(cap * h * hsize));
            st->bits = PyMem_RawMalloc((size_t)(cap * nbytes));
            if (cohort_buf.obj != NULL)
                st->out = PyMem_RawMalloc((size_t)(cap * nc * k * osize));
        }
        if (st == NULL || st->calls == NULL || st->variant == NULL || st->hist == NULL ||
            st->bits == NULL || (cohort_buf.obj != NULL && st->out == NULL))
            problem = "out of memory";
    }
    if (problem == NULL && width > 0 && n > 0) {
        acc = PyMem_RawCalloc((size_t)(2 * width), sizeof(int32_t));
        cols = PyMem_RawCalloc((size_t)(6 * width), sizeof(int64_t)); /* and a block's */
        cnt = PyMem_RawCalloc((size_t)h, sizeof(int64_t));
        tmp = PyMem_RawCalloc((size_t)(7 * QC_ROWS), sizeof(uint16_t)); /* tq, tt, rare */
        if (acc == NULL || cols == NULL || cnt == NULL || tmp == NULL)
            problem = "out of memory";
    }
    if (problem == NULL && width > 0 && n > 0) {
        qc_args q = {(const char *)calls.buf, allele, n, stride, c0, width, sgkit, (int)k,
                     variant_buf.buf, hist_buf.buf, itemsize, hsize, nbytes,
                     (int64_t *)sample_buf.buf, (int64_t *)qsample_buf.buf,
                     bits_buf.len ? (uint8_t *)bits_buf.buf : NULL,
                     cohort_buf.obj != NULL ? &cq : NULL, n, hstride, rstride, rare_buf.buf,
                     rseen_buf.len ? (uint8_t *)rseen_buf.buf : NULL};
        qc_run run = {&q, mask, st, &partial, &beyond, cnt, cols, cols + 3 * width, tmp,
                      tmp + 3 * QC_ROWS, (uint8_t *)(tmp + 6 * QC_ROWS), acc};
        Py_BEGIN_ALLOW_THREADS
        if (blosc)
            problem = blosc_pieces(qc_piece_rows, &run, n, stride, (const uint8_t *)calls.buf,
                                   calls.len, (lz4_decode_fn)(uintptr_t)address,
                                   (char *)buffer.buf, buffer.len);
        else
            qc_piece_rows(&run, (const char *)calls.buf, n, 0);
        Py_END_ALLOW_THREADS
    }
    if (st != NULL) {
        PyMem_RawFree(st->calls);
        PyMem_RawFree(st->variant);
        PyMem_RawFree(st->hist);
        PyMem_RawFree(st->bits);
        PyMem_RawFree(st->out);
        PyMem_RawFree(st);
    }
    PyMem_RawFree(tmp);
    PyMem_RawFree(cnt);
    PyMem_RawFree(cols);
    PyMem_RawFree(acc);
    PyBuffer_Release(&calls);
    PyBuffer_Release(&variant_buf);
    PyBuffer_Release(&sample_buf);
    PyBuffer_Release(&hist_buf);
    PyBuffer_Release(&rare_buf);
    PyBuffer_Release(&rseen_buf);
    PyBuffer_Release(&qsample_buf);
    PyBuffer_Release(&bits_buf);
    if (buffer.obj != NULL)
        PyBuffer_Release(&buffer);
    if (mask_buf.obj != NULL)
        PyBuffer_Release(&mask_buf);
    cohort_release(&cq);
    if (cohort_buf.obj != NULL)
        PyBuffer_Release(&cohort_buf);
    if (cohort_out.obj != NULL)
        PyBuffer_Release(&cohort_out);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return Py_BuildValue("LL", (long long)partial, (long long)beyond);
}

static PyObject *qc_count(PyObject *self, PyObject *args) {
    return qc_common(args, 0);
}

static PyObject *blosc_qc(PyObject *self, PyObject *args) {
    return qc_common(args, 1);
}

/* simd([enable]): whether count_packed takes the AVX2 path; with an argument, switch it (the
 * tests run both paths). Enabling it on a CPU without AVX2 raises ValueError. */
static PyObject *simd(PyObject *self, PyObject *args) {
    PyObject *enable = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &enable))
        return NULL;
#ifdef HAVE_AVX2
    if (enable != Py_None) {
        int on = PyObject_IsTrue(enable);
        if (on < 0)
            return NULL;
        __builtin_cpu_init();
        if (on && !__builtin_cpu_supports("avx2")) {
            PyErr_SetString(PyExc_ValueError, "this CPU has no AVX2");
            return NULL;
        }
        use_avx2 = on;
    }
    return PyBool_FromLong(use_avx2);
#else
    if (enable != Py_None && PyObject_IsTrue(enable)) {
        PyErr_SetString(PyExc_ValueError, "this build has no AVX2 path");
        return NULL;
    }
    Py_RETURN_FALSE;
#endif
}

/* ---- Per-cohort allele counts ---------------------------------------------------------
 * cohort_count adds, for each row, each cohort's count of each allele (REF first) over
 * its called calls (no allele negative, as plink2 --freq reads a half call: missing).
 * An int8 row whose called calls hold only alleles 0 and 1 (almost every row of SNP
 * data) takes one pass that turns each call into 1 | ALT alleles << 16 (0 when missing),
 * then one masked sum per cohort (the sums vectorise; with more than COHORT_MASKS cohorts
 * a scatter by cohort instead); other rows, and wider alleles, go call by call. */
#define COHORT_MASKS 8
/* Columns per call: a cohort's ALT count (2 per call) must fit 16 bits. */
#define COHORT_WIDTH 32767

static inline void cohort_call(int64_t a0, int64_t a1, int32_t c, int64_t k, void *out,
                               Py_ssize_t osize, Py_ssize_t at) {
    if (c < 0 || a0 < 0 || a1 < 0)
        return;
    if (a0 < k)
        add_at(out, osize, at + c * k + a0, 1);
    if (a1 < k)
        add_at(out, osize, at + c * k + a1, 1);
}


#ifdef HAVE_AVX2
/* One int8 row of at least 16 calls (nbytes = 2 x width) in nv vectors (the last one ending
 * at the row's end): when every call is 0/0, 0/1, 1/0, 1/1 or -1/-1, each cohort's ALT
 * alleles and missing alleles from two bit masks (an allele's sign bit; its bit 0 moved to
 * the sign) and the cohorts' bit masks cm (nc x words, a bit per byte of the row, bytes the
 * last vector shares with the one before cleared): one AND and POPCNT per 64 bytes and
 * cohort. Returns 0, counting nothing, for any other call (the row goes call by call). */
AVX2_INLINE int avx2_cohort_row(const uint8_t *row, Py_ssize_t nbytes, Py_ssize_t nv,
                                   const uint64_t *cm, Py_ssize_t words, Py_ssize_t nc,
                                   uint32_t *alt, uint32_t *miss, uint32_t *bits, int check) {
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi8(-1);
    const __m256i low = _mm256_set1_epi8((char)0xFE);
    __m256i bad = zero;
    uint32_t odd = 0, anyalt = 0, anymiss = 0;
    for (Py_ssize_t i = 0; i < nv; i++) {
        const Py_ssize_t at = (i + 1) * 32 <= nbytes ? i * 32 : nbytes - 32;
        const __m256i x = _mm256_loadu_si256((const __m256i *)(row + at));
        const uint32_t m = (uint32_t)_mm256_movemask_epi8(x);
        const uint32_t a = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(x, 7)) & ~m;
        /* bytes other than 0, 1 and -1; calls with one allele missing */
        if (check) { /* else the QC scan's flags said so */
            const __m256i fine = _mm256_or_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(x, low), zero), _mm256_cmpeq_epi8(x, ones));
            bad = _mm256_or_si256(bad, _mm256_andnot_si256(fine, ones));
        }
        odd |= (m ^ (m >> 1)) & 0x55555555u;
        bits[i] = a;
        bits[2 * words + i] = m;
        anyalt |= a;
        anymiss |= m;
    }
    if (odd || !_mm256_testz_si256(bad, bad))
        return 0;
    const uint64_t *ab = (const uint64_t *)bits, *mb = (const uint64_t *)(bits + 2 * words);
    for (Py_ssize_t c = 0; c < nc; c++) {
        uint32_t sa = 0, sm = 0;
        if (anyalt)
            for (Py_ssize_t w = 0; w < words; w++)
                sa += (uint32_t)__builtin_popcountll(ab[w] & cm[c * words + w]);
        if (anymiss)
            for (Py_ssize_t w = 0; w < words; w++)
                sm += (uint32_t)__builtin_popcountll(mb[w] & cm[c * words + w]);
        alt[c] = sa;
        miss[c] = sm;
    }
    return 1;
}
#endif

/* Row i of cohort_rows, without the AVX2 path. */
static void cohort_row(const cohort_args *q, Py_ssize_t i) {
    const Py_ssize_t width = q->width, nc = q->nc, k = q->k;
    const uint32_t *masks = q->masks;
    uint32_t *v = q->v, *acc = q->acc;
    const Py_ssize_t at = i * nc * k, first = i * q->stride + q->c0;
    if (q->allele != 1) {
        for (Py_ssize_t j = 0; j < width; j++) {
            int64_t a0, a1;
            switch (q->allele) {
            case 2: a0 = ((const int16_t *)q->data)[2 * (first + j)]; a1 = ((const int16_t *)q->data)[2 * (first + j) + 1]; break;
            case 4: a0 = ((const int32_t *)q->data)[2 * (first + j)]; a1 = ((const int32_t *)q->data)[2 * (first + j) + 1]; break;
            default: a0 = ((const int64_t *)q->data)[2 * (first + j)]; a1 = ((const int64_t *)q->data)[2 * (first + j) + 1]; break;
            }
            cohort_call(a0, a1, q->cohort[j], k, q->out, q->osize, at);
        }
        return;
    }
    const uint16_t *row = (const uint16_t *)q->data + first;
    uint32_t rare = 0;
    for (Py_ssize_t j = 0; j < width; j++) {
        const uint32_t x = row[j], ok = (x & 0x8080u) == 0;
        v[j] = ok * (1u | (((x & 1u) + ((x >> 8) & 1u)) << 16));
        rare |= (0u - ok) & x & 0x7E7Eu;
    }
    if (rare) { /* an allele >= 2: call by call */
        for (Py_ssize_t j = 0; j < width; j++) {
            const uint32_t x = row[j];
            cohort_call((int8_t)(x & 0xFF), (int8_t)(x >> 8), q->cohort[j], k, q->out,
                        q->osize, at);
        }
        return;
    }
    if (masks != NULL) {
        for (Py_ssize_t c = 0; c < nc; c++) {
            const uint32_t *m = masks + c * width;
            uint32_t sum = 0;
            for (Py_ssize_t j = 0; j < width; j++)
                sum += v[j] & m[j];
            acc[c] = sum;
        }
    } else {
        memset(acc, 0, (size_t)nc * sizeof(uint32_t));
        for (Py_ssize_t j = 0; j < width; j++)
            if (q->cohort[j] >= 0)
                acc[q->cohort[j]] += v[j];
    }
    for (Py_ssize_t c = 0; c < nc; c++) {
        const int64_t called = acc[c] & 0xFFFF, alt = acc[c] >> 16;
        if (called) {
            add_at(q->out, q->osize, at + c * k, 2 * called - alt);
            add_at(q->out, q->osize, at + c * k + 1, alt);
        }
    }
}

#ifdef HAVE_AVX2
/* cohort_rows with avx2_cohort_row for the rows it takes; a row of hom-ref and missing
 * calls only (no ALT bit) needs no per-cohort count of ALT alleles, a row with no missing
 * call none of missing ones. */
/* NV: the row's vectors when known at compile time (1 to 4: rows of up to 64 calls, whose
 * loops over vectors and mask words gcc unrolls), else 0. */
#define AVX2_COHORT_ROWS(T, NV)                                                             \
    AVX2_FN static void avx2_cohort_rows_##T##_##NV(const cohort_args *q, Py_ssize_t lo,    \
                                                    Py_ssize_t hi, const uint8_t *rare) {   \
        const Py_ssize_t nc = q->nc, k = q->k, nbytes = 2 * q->width;                       \
        const Py_ssize_t nv = NV ? NV : q->nv, words = NV ? (NV + 1) / 2 : q->words;        \
        uint32_t *acc = q->acc;                                                             \
        for (Py_ssize_t i = lo; i < hi; i++) {                                              \
            const uint8_t *row =                                                            \
                (const uint8_t *)((const uint16_t *)q->data + i * q->stride + q->c0);       \
            if ((rare != NULL && (rare[i - lo] & 3)) ||                                     \
                !avx2_cohort_row(row, nbytes, nv, q->cm, words, nc, acc, acc + nc, q->bits, \
                                 rare == NULL)) {                                           \
                cohort_row(q, i);                                                           \
                continue;                                                                   \
            }                                                                               \
            T *out = (T *)q->out + i * nc * k;                                              \
            for (Py_ssize_t c = 0; c < nc; c++) {                                           \
                const uint32_t called = (uint32_t)q->size[c] - acc[nc + c] / 2;             \
                out[c * k] += (T)(2 * called - acc[c]);                                     \
                out[c * k + 1] += (T)acc[c];                                                \
            }                                                                               \
        }                                                                                   \
    }
#define AVX2_COHORT_ROWS_ALL(T)                                                             \
    AVX2_COHORT_ROWS(T, 0)                                                                  \
    AVX2_COHORT_ROWS(T, 1)                                                                  \
    AVX2_COHORT_ROWS(T, 2)                                                                  \
    AVX2_COHORT_ROWS(T, 3)                                                                  \
    AVX2_COHORT_ROWS(T, 4)
AVX2_COHORT_ROWS_ALL(uint8_t)
AVX2_COHORT_ROWS_ALL(uint16_t)
AVX2_COHORT_ROWS_ALL(uint32_t)
AVX2_COHORT_ROWS_ALL(uint64_t)
#define AVX2_COHORT_TABLE(T)                                                                \
    {avx2_cohort_rows_##T##_0, avx2_cohort_rows_##T##_1, avx2_cohort_rows_##T##_2,          \
     avx2_cohort_rows_##T##_3, avx2_cohort_rows_##T##_4}
typedef void (*cohort_rows_fn)(const cohort_args *, Py_ssize_t, Py_ssize_t, const uint8_t *);
/* By count size (1, 2, 4, 8 bytes), then by vectors a row (0: any). */
static const cohort_rows_fn avx2_cohort_loops[4][5] = {
    AVX2_COHORT_TABLE(uint8_t), AVX2_COHORT_TABLE(uint16_t), AVX2_COHORT_TABLE(uint32_t),
    AVX2_COHORT_TABLE(uint64_t)};

static void avx2_cohort_rows(const cohort_args *q, Py_ssize_t lo, Py_ssize_t hi,
                             const uint8_t *rare) {
    avx2_cohort_loops[size_index(q->osize)][q->nv <= 4 ? q->nv : 0](q, lo, hi, rare);
}
#endif

/* Rows lo..hi of q (GIL released by the caller). rare: the QC scan's flags of those rows
 * (qc_scan: an allele >= 2 called, a half call), which spare the AVX2 path its own check of
 * each byte, or NULL. */
static void cohort_rows(const struct cohort_args *q, Py_ssize_t lo, Py_ssize_t hi,
                        const uint8_t *rare) {
#ifdef HAVE_AVX2
    if (q->cm != NULL) {
        avx2_cohort_rows(q, lo, hi, rare);
        return;
    }
#else
    (void)rare;
#endif
    for (Py_ssize_t i = lo; i < hi; i++)
        cohort_row(q, i);
}

/* Check q's cohorts (the calls' checks are the caller's) and allocate its buffers; a
 * message, or NULL. cohort_release frees them, whether this succeeded or not. */
static const char *cohort_prepare(struct cohort_args *q, Py_ssize_t cohort_len,
                                  Py_ssize_t out_len) {
    const Py_ssize_t width = q->width, nc = q->nc, n = q->n;
    if (width > COHORT_WIDTH)
        return "cohorts take at most 32767 columns per call";
    if (nc < 1 || q->k < 2 || q->k > 64)
        return "ncohorts must be >= 1 and k within 2..64";
    if (q->osize != 1 && q->osize != 2 && q->osize != 4 && q->osize != 8)
        return "count itemsize must be 1, 2, 4 or 8";
    if (cohort_len < width * (Py_ssize_t)sizeof(int32_t))
        return "cohort buffer too small";
    if (out_len < n * nc * q->k * q->osize)
        return "output buffer too small";
    const int32_t *cohort = q->cohort;
    for (Py_ssize_t j = 0; j < width; j++)
        if (cohort[j] < -1 || cohort[j] >= nc)
            return "cohort index out of range";
    if (width == 0 || n == 0)
        return NULL;
    q->v = PyMem_RawCalloc((size_t)width, sizeof(uint32_t));
    q->acc = PyMem_RawCalloc((size_t)(2 * nc), sizeof(uint32_t));
    if (nc <= COHORT_MASKS)
        q->masks = PyMem_RawCalloc((size_t)(nc * width), sizeof(uint32_t));
    if (q->v == NULL || q->acc == NULL || (nc <= COHORT_MASKS && q->masks == NULL))
        return "out of memory";
    for (Py_ssize_t j = 0; q->masks != NULL && j < width; j++)
        if (cohort[j] >= 0)
            q->masks[cohort[j] * width + j] = 0xFFFFFFFFu;
#ifdef HAVE_AVX2
    if (width >= 16 && q->allele == 1 && nc <= COHORT_MASKS && use_avx2) {
        const Py_ssize_t nbytes = 2 * width, nv = (nbytes + 31) / 32, words = (nv + 1) / 2;
        q->cm = PyMem_RawCalloc((size_t)(nc * words), sizeof(uint64_t));
        q->size = PyMem_RawCalloc((size_t)nc, sizeof(int64_t));
        q->bits = PyMem_RawCalloc((size_t)(4 * words), sizeof(uint32_t));
        if (q->cm == NULL || q->size == NULL || q->bits == NULL)
            return "out of memory";
        for (Py_ssize_t i = 0; i < nv; i++) {
            const Py_ssize_t at = (i + 1) * 32 <= nbytes ? i * 32 : nbytes - 32;
            for (Py_ssize_t p = 0; p < 32; p++) {
                const Py_ssize_t byte = at + p, c = cohort[byte / 2];
                if (byte >= i * 32 && c >= 0)
                    q->cm[c * words + (i * 32 + p) / 64] |= (uint64_t)1 << ((i * 32 + p) % 64);
            }
        }
        for (Py_ssize_t j = 0; j < width; j++)
            if (cohort[j] >= 0)
                q->size[cohort[j]]++;
        q->words = words;
        q->nv = nv;
    }
#endif
    return NULL;
}

static void cohort_release(struct cohort_args *q) {
    PyMem_RawFree(q->bits);
    PyMem_RawFree(q->size);
    PyMem_RawFree(q->cm);
    PyMem_RawFree(q->masks);
    PyMem_RawFree(q->acc);
    PyMem_RawFree(q->v);
    q->bits = NULL;
    q->size = NULL;
    q->cm = NULL;
    q->masks = q->acc = q->v = NULL;
}

/* cohort_count(calls, allele, n, stride, c0, c1, cohort, ncohorts, k, out, osize)
 *   calls, allele, n, stride, c0, c1: as count_wide (allele 1: int8)
 *   cohort:   int32 x (c1 - c0): each column's cohort, 0..ncohorts-1, or -1 for none
 *   out:      n x ncohorts x k unsigned of osize bytes, C-contiguous, added to */
static PyObject *cohort_count(PyObject *self, PyObject *args) {
    Py_buffer calls, cohort_buf, out_buf;
    Py_ssize_t allele, n, stride, c0, c1, nc, k, osize;
    if (!PyArg_ParseTuple(args, "y*nnnnny*nnw*n", &calls, &allele, &n, &stride, &c0, &c1,
                          &cohort_buf, &nc, &k, &out_buf, &osize))
        return NULL;
    const Py_ssize_t width = c1 - c0;
    const char *problem = NULL;
    cohort_args q = {(const char *)calls.buf, allele, n, stride, c0, width, nc, osize, k,
                     cohort_buf.buf, out_buf.buf, NULL, 0, 0, NULL, NULL, NULL, NULL, NULL};
    if (allele != 1 && allele != 2 && allele != 4 && allele != 8)
        problem = "allele size must be 1, 2, 4 or 8";
    else if (n < 0 || stride < 0 || c0 < 0 || width < 0 || c1 > stride)
        problem = "column range out of bounds";
    else if (calls.len / (2 * allele) < n * stride)
        problem = "calls buffer too small";
    else if ((uintptr_t)calls.buf % (uintptr_t)allele)
        problem = "calls buffer not aligned to its allele size";
    else
        problem = cohort_prepare(&q, cohort_buf.len, out_buf.len);
    if (problem == NULL && width > 0 && n > 0) {
        Py_BEGIN_ALLOW_THREADS
        cohort_rows(&q, 0, n, NULL);
        Py_END_ALLOW_THREADS
    }
    cohort_release(&q);
    PyBuffer_Release(&calls);
    PyBuffer_Release(&cohort_buf);
    PyBuffer_Release(&out_buf);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* avx512([enable]): whether missing_terms takes the AVX-512 path; with an argument, switch
 * it (the tests run both paths). Enabling it on a CPU without AVX-512 F, BW and VL raises
 * ValueError. */
static PyObject *avx512(PyObject *self, PyObject *args) {
    PyObject *enable = Py_None;
    if (!PyArg_ParseTuple(args, "|O", &enable))
        return NULL;
#ifdef HAVE_AVX512
    if (enable != Py_None) {
        int on = PyObject_IsTrue(enable);
        if (on < 0)
            return NULL;
        if (on && !cpu_has_avx512()) {
            PyErr_SetString(PyExc_ValueError, "this CPU has no AVX-512 (F, BW, VL)");
            return NULL;
        }
        use_avx512 = on;
    }
    return PyBool_FromLong(use_avx512);
#else
    if (enable != Py_None && PyObject_IsTrue(enable)) {
        PyErr_SetString(PyExc_ValueError, "this build has no AVX-512 path");
        return NULL;
    }
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef methods[] = {
    {"avx512", avx512, METH_VARARGS,
     "avx512([enable]) -> bool: whether missing_terms uses the AVX-512 path; switch it with "
     "enable."},
    {"simd", simd, METH_VARARGS,
     "simd([enable]) -> bool: whether counting uses the AVX2 path; switch it with enable."},
    {"count_packed", count_packed, METH_VARARGS,
     "count_packed(calls, n, stride, c0, c1, sgkit, variant, itemsize, sample[, mask]) -> int: "
     "add per-row counts to variant (3 x n unsigned) and per-column counts to sample (3 x "
     "width int64), of the rows whose mask byte is nonzero when a mask is given; return the "
     "partial calls counted as het (tutorial rule)."},
    {"qc_count", qc_count, METH_VARARGS,
     "qc_count(calls, allele, n, stride, c0, c1, sgkit, variant, itemsize, sample, k, hist, "
     "hsize, hstride, rare, rstride, rseen, qsample, bits[, mask[, cohort, ncohorts, out, "
     "osize]]) -> (partial, beyond): "
     "count_wide's counts, and each row's genotype histogram over k alleles, the per-column "
     "sgkit counts and missing-call bits (of the rows whose mask byte is nonzero)."},
    {"unit_alleles", unit_alleles, METH_VARARGS,
     "unit_alleles(hist, hsize, hstride, rare, rstride, rseen, n, k, width, n_alleles, "
     "observed, ehet, poly, seen) -> int: each "
     "variant's alleles, expected heterozygosity (plink2 --het) and alleles called; the "
     "first row with calls beyond its alleles, or -1."},
    {"allele_counts", allele_counts, METH_VARARGS,
     "allele_counts(hist, hsize, n, k, out): each row's allele counts (n x k int64) from its "
     "genotype histogram."},
    {"missing_terms", missing_terms, METH_VARARGS,
     "missing_terms(bits, n, nbytes, width, ehet, poly, obs, expected): per sample, the "
     "polymorphic variants and expected heterozygosity of its missing calls, added."},
    {"cohort_count", cohort_count, METH_VARARGS,
     "cohort_count(calls, allele, n, stride, c0, c1, cohort, ncohorts, k, out, osize): add "
     "each row's allele counts per cohort (n x ncohorts x k) over its called calls."},
    {"blosc_qc", blosc_qc, METH_VARARGS,
     "blosc_qc(chunk, lz4, buffer, n, stride, c0, c1, sgkit, variant, itemsize, sample, k, "
     "hist, hsize, hstride, rare, rstride, rseen, qsample, bits[, mask[, cohort, ncohorts, "
     "out, osize]]) -> (partial, beyond): qc_count of a Blosc chunk's first n rows of int8 "
     "calls, decoded in cache"},
    {"blosc_count", blosc_count, METH_VARARGS,
     "blosc_count(chunk, lz4, n, stride, c0, c1, sgkit, variant, itemsize, sample, buffer) "
     "-> int: count_packed of a Blosc chunk's first n rows, decoded a block at a time into "
     "buffer and counted there."},
    {"count_wide", count_wide, METH_VARARGS,
     "count_wide(calls, allele, n, stride, c0, c1, sgkit, variant, itemsize, sample[, mask]) "
     "-> int: "
     "count_packed for int16, int32 or int64 alleles (allele = 2, 4 or 8 bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "The compiled genotype-counting kernel.", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
#ifdef HAVE_AVX2
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
#ifdef HAVE_AVX512
    use_avx512 = cpu_has_avx512();
#endif
    return PyModule_Create(&module);
}
