/* The genotype-counting kernel in C: one pass over int8 calls, every count, GIL released.
 *
 * A call's two int8 alleles are read as one little-endian uint16 x = a0 + 256*a1 (bytes as
 * unsigned). Hom-ref is x == 0; het is low byte != high byte; missing is low byte == 0xFF
 * (tutorial: allele 0 is -1) or either byte >= 0x80 (sgkit: any allele negative; het then
 * also needs both alleles called). A call holding the fill -2 (0xFE, mixed ploidy) is
 * missing and not het in both. The three flags of a call are packed into 10-bit fields
 * of one int32, so a row's counts and a column's running counts each cost one addition per
 * call; fields are unpacked every 1023 rows, and callers pass at most 1023 columns, before
 * any field can overflow. Buffers come through the buffer protocol: no numpy C API, so the
 * extension builds with nothing but a C compiler and Python's headers.
 *
 * On x86-64 CPUs with AVX2 a second loop (below) does the same counts with 16 calls per
 * vector; it is chosen at import from the CPU and can be switched off with simd(False).
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

/* One specialised loop per semantics and count type, so the inner loop has no branch. */
#define COUNT_LOOP(CODE, T)                                                               \
    for (Py_ssize_t i0 = 0; i0 < n; i0 += FIELD_MAX) {                                    \
        Py_ssize_t i1 = i0 + FIELD_MAX < n ? i0 + FIELD_MAX : n;                          \
        for (Py_ssize_t i = i0; i < i1; i++) {                                            \
            const uint16_t *row = v + i * stride + c0;                                    \
            int32_t total = 0;                                                            \
            for (Py_ssize_t j = 0; j < width; j++) {                                      \
                int32_t c = CODE(row[j]);                                                 \
                total += c;                                                               \
                acc[j] += c;                                                              \
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
            acc[j] = 0;                                                                   \
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

#define DEFINE_COUNT(NAME, CODE, T)                                                       \
    MULTIVERSION static void NAME(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,    \
                                  Py_ssize_t c0, Py_ssize_t width, void *variant,         \
                                  int64_t *sample, int32_t *acc) {                        \
        COUNT_LOOP(CODE, T)                                                               \
    }

DEFINE_COUNT(count_tutorial_u8, code_tutorial, uint8_t)
DEFINE_COUNT(count_sgkit_u8, code_sgkit, uint8_t)
DEFINE_COUNT(count_tutorial_u16, code_tutorial, uint16_t)
DEFINE_COUNT(count_sgkit_u16, code_sgkit, uint16_t)
DEFINE_COUNT(count_tutorial_u32, code_tutorial, uint32_t)
DEFINE_COUNT(count_sgkit_u32, code_sgkit, uint32_t)
DEFINE_COUNT(count_tutorial_u64, code_tutorial, uint64_t)
DEFINE_COUNT(count_sgkit_u64, code_sgkit, uint64_t)

/* ---- The AVX2 path ------------------------------------------------------------------
 * The loop above widens every call to an int32 lane (8 calls per vector) and ends each row
 * with a scalar remainder: for a 31-sample edge chunk, 7 of the 31 calls take the scalar
 * path. This path keeps calls in 16-bit lanes (16 per vector) and covers a row segment of
 * 16..64 calls with at most 4 loads; the last load ends exactly at the segment's end and
 * masks off the lanes the previous load already counted, so there is no scalar remainder
 * and no load past the segment. Flags are compare masks (-1/0); subtracting them counts.
 * Per-column counts stay in 16-bit registers and are flushed every FLUSH_ROWS rows; a row's
 * three counts are summed across its vectors, widened to 10-bit fields of int32 lanes
 * (as above) and summed horizontally once per row.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(ZARRGENO_BASELINE_ONLY)
#define HAVE_AVX2 1
#include <immintrin.h>

#define AVX2_FN __attribute__((target("avx2")))
#define FLUSH_ROWS 32767

AVX2_FN static inline uint32_t hsum_epi32(__m256i x) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return (uint32_t)_mm_cvtsi128_si32(s);
}

static inline void add_row(void *variant, Py_ssize_t itemsize, Py_ssize_t n, Py_ssize_t i,
                           uint32_t total) {
    uint32_t m = total & FIELD_MAX, h = (total >> 10) & FIELD_MAX, e = total >> 20;
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

/* Columns c0 .. c0+gw of every row, 16 <= gw <= 16*NV, NV = ceil(gw / 16). Column counts go
 * to sample[j], sample[sstride + j], sample[2*sstride + j] (missing, hom-ref, het). */
AVX2_FN static inline __attribute__((always_inline)) void avx2_segment(
    const uint16_t *v, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t c0, Py_ssize_t gw,
    void *variant, Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride, const int NV,
    const int SGKIT) {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i all = _mm256_set1_epi16(-1);
    const __m256i lobyte = _mm256_set1_epi16(0x00FF);
    const __m256i signs = _mm256_set1_epi16((short)0x8080);
    const __m256i fillbyte = _mm256_set1_epi16(0x00FE);
    const __m256i one = _mm256_set1_epi16(1);
    const Py_ssize_t last = gw - 16;
    const int skip = NV * 16 - (int)gw; /* lanes of the last load counted by the one before */
    int16_t keep_lanes[16];
    for (int l = 0; l < 16; l++)
        keep_lanes[l] = l >= skip ? -1 : 0;
    const __m256i keep = _mm256_loadu_si256((const __m256i *)keep_lanes);
    __m256i aM[4], aH[4], aE[4];
    for (int k = 0; k < NV; k++)
        aM[k] = aH[k] = aE[k] = zero;

    for (Py_ssize_t i0 = 0; i0 < n; i0 += FLUSH_ROWS) {
        Py_ssize_t i1 = i0 + FLUSH_ROWS < n ? i0 + FLUSH_ROWS : n;
        for (Py_ssize_t i = i0; i < i1; i++) {
            const uint16_t *row = v + i * stride + c0;
            __m256i sM = zero, sH = zero, sE = zero;
            for (int k = 0; k < NV; k++) {
                const int is_last = k == NV - 1;
                const __m256i kp = is_last ? keep : all;
                const __m256i x =
                    _mm256_loadu_si256((const __m256i *)(row + (is_last ? last : 16 * k)));
                const __m256i lo = _mm256_and_si256(x, lobyte);
                const __m256i hi = _mm256_srli_epi16(x, 8);
                const __m256i eq = _mm256_cmpeq_epi16(lo, hi);
                const __m256i hom = _mm256_and_si256(_mm256_cmpeq_epi16(x, zero), kp);
                __m256i miss, het;
                if (SGKIT) {
                    miss = _mm256_andnot_si256(
                        _mm256_cmpeq_epi16(_mm256_and_si256(x, signs), zero), kp);
                    het = _mm256_andnot_si256(_mm256_or_si256(eq, miss), kp);
                } else {
                    const __m256i fill = _mm256_or_si256(_mm256_cmpeq_epi16(lo, fillbyte),
                                                         _mm256_cmpeq_epi16(hi, fillbyte));
                    miss = _mm256_and_si256(
                        _mm256_or_si256(_mm256_cmpeq_epi16(lo, lobyte), fill), kp);
                    het = _mm256_andnot_si256(_mm256_or_si256(eq, fill), kp);
                }
                aM[k] = _mm256_sub_epi16(aM[k], miss);
                aH[k] = _mm256_sub_epi16(aH[k], hom);
                aE[k] = _mm256_sub_epi16(aE[k], het);
                sM = _mm256_sub_epi16(sM, miss);
                sH = _mm256_sub_epi16(sH, hom);
                sE = _mm256_sub_epi16(sE, het);
            }
            /* Each lane holds at most NV <= 4 per flag: widen pairs to int32, pack the three
             * flags into 10-bit fields, and sum the 8 lanes (at most 64 per field). */
            __m256i packed = _mm256_add_epi32(
                _mm256_madd_epi16(sM, one),
                _mm256_add_epi32(_mm256_slli_epi32(_mm256_madd_epi16(sH, one), 10),
                                 _mm256_slli_epi32(_mm256_madd_epi16(sE, one), 20)));
            add_row(variant, itemsize, n, i, hsum_epi32(packed));
        }
        for (int k = 0; k < NV; k++) {
            uint16_t m[16], h[16], e[16];
            _mm256_storeu_si256((__m256i *)m, aM[k]);
            _mm256_storeu_si256((__m256i *)h, aH[k]);
            _mm256_storeu_si256((__m256i *)e, aE[k]);
            const int is_last = k == NV - 1;
            const Py_ssize_t base = is_last ? last : 16 * k;
            for (int l = is_last ? skip : 0; l < 16; l++) {
                sample[base + l] += m[l];
                sample[sstride + base + l] += h[l];
                sample[2 * sstride + base + l] += e[l];
            }
            aM[k] = aH[k] = aE[k] = zero;
        }
    }
}

#define DEFINE_AVX2(NAME, NV, SGKIT)                                                      \
    AVX2_FN static void NAME(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,         \
                             Py_ssize_t c0, Py_ssize_t gw, void *variant,                 \
                             Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride) {  \
        avx2_segment(v, n, stride, c0, gw, variant, itemsize, sample, sstride, NV, SGKIT); \
    }

DEFINE_AVX2(avx2_tutorial_1, 1, 0)
DEFINE_AVX2(avx2_tutorial_2, 2, 0)
DEFINE_AVX2(avx2_tutorial_3, 3, 0)
DEFINE_AVX2(avx2_tutorial_4, 4, 0)
DEFINE_AVX2(avx2_sgkit_1, 1, 1)
DEFINE_AVX2(avx2_sgkit_2, 2, 1)
DEFINE_AVX2(avx2_sgkit_3, 3, 1)
DEFINE_AVX2(avx2_sgkit_4, 4, 1)

typedef void (*segment_fn)(const uint16_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           void *, Py_ssize_t, int64_t *, Py_ssize_t);
static const segment_fn avx2_segments[2][4] = {
    {avx2_tutorial_1, avx2_tutorial_2, avx2_tutorial_3, avx2_tutorial_4},
    {avx2_sgkit_1, avx2_sgkit_2, avx2_sgkit_3, avx2_sgkit_4},
};

/* Whether count_packed uses the AVX2 path: decided from the CPU at import, switchable. */
static int use_avx2 = 0;
#endif

/* The portable loop for columns c0 .. c0+width, its per-column counts added to sample with
 * row stride sstride (it accumulates in its own packed fields, then adds). */
static void portable_segment(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride,
                             Py_ssize_t c0, Py_ssize_t width, int sgkit, void *variant,
                             Py_ssize_t itemsize, int64_t *sample, Py_ssize_t sstride,
                             int64_t *cols, int32_t *acc) {
    memset(cols, 0, (size_t)(3 * width) * sizeof(int64_t));
    switch (itemsize * 2 + (sgkit ? 1 : 0)) {
    case 2: count_tutorial_u8(v, n, stride, c0, width, variant, cols, acc); break;
    case 3: count_sgkit_u8(v, n, stride, c0, width, variant, cols, acc); break;
    case 4: count_tutorial_u16(v, n, stride, c0, width, variant, cols, acc); break;
    case 5: count_sgkit_u16(v, n, stride, c0, width, variant, cols, acc); break;
    case 8: count_tutorial_u32(v, n, stride, c0, width, variant, cols, acc); break;
    case 9: count_sgkit_u32(v, n, stride, c0, width, variant, cols, acc); break;
    case 16: count_tutorial_u64(v, n, stride, c0, width, variant, cols, acc); break;
    default: count_sgkit_u64(v, n, stride, c0, width, variant, cols, acc); break;
    }
    for (Py_ssize_t f = 0; f < 3; f++)
        for (Py_ssize_t j = 0; j < width; j++)
            sample[f * sstride + j] += cols[f * width + j];
}

/* Every column of c0 .. c0+width: AVX2 segments of up to 64 columns where the CPU has it,
 * the portable loop for the rest (and for segments narrower than one 16-call load). */
static void count_all(const uint16_t *v, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t c0,
                      Py_ssize_t width, int sgkit, void *variant, Py_ssize_t itemsize,
                      int64_t *sample, int64_t *cols, int32_t *acc) {
#ifdef HAVE_AVX2
    if (use_avx2) {
        for (Py_ssize_t g = 0; g < width; g += 64) {
            Py_ssize_t gw = width - g < 64 ? width - g : 64;
            if (gw >= 16)
                avx2_segments[sgkit ? 1 : 0][(gw + 15) / 16 - 1](
                    v, n, stride, c0 + g, gw, variant, itemsize, sample + g, width);
            else
                portable_segment(v, n, stride, c0 + g, gw, sgkit, variant, itemsize,
                                 sample + g, width, cols, acc);
        }
        return;
    }
#endif
    portable_segment(v, n, stride, c0, width, sgkit, variant, itemsize, sample, width, cols,
                     acc);
}

/* count_packed(calls, n, stride, c0, c1, sgkit, variant, itemsize, sample)
 *   calls:    n rows of `stride` uint16 calls (C-contiguous int8 (n, stride, 2)), read-only
 *   variant:  3 x n unsigned counts of `itemsize` bytes (1, 2, 4 or 8), C-contiguous: each
 *             row's missing, hom-ref and het counts of columns c0:c1 are added to it
 *   sample:   3 x (c1 - c0) int64, the per-column counts added to it
 */
static PyObject *count_packed(PyObject *self, PyObject *args) {
    Py_buffer calls, variant_buf, sample_buf;
    Py_ssize_t n, stride, c0, c1, itemsize;
    int sgkit;
    if (!PyArg_ParseTuple(args, "y*nnnnpw*nw*", &calls, &n, &stride, &c0, &c1, &sgkit,
                          &variant_buf, &itemsize, &sample_buf))
        return NULL;
    Py_ssize_t width = c1 - c0;
    const char *problem = NULL;
    if (n < 0 || stride < 0 || c0 < 0 || width < 0 || c1 > stride || width > FIELD_MAX)
        problem = "column range out of bounds or wider than 1023";
    else if (calls.len < n * stride * 2)
        problem = "calls buffer too small";
    else if (itemsize != 1 && itemsize != 2 && itemsize != 4 && itemsize != 8)
        problem = "variant itemsize must be 1, 2, 4 or 8";
    else if (variant_buf.len < 3 * n * itemsize)
        problem = "variant buffer too small";
    else if (sample_buf.len < 3 * width * 8)
        problem = "sample buffer too small";
    int32_t *acc = NULL;
    int64_t *cols = NULL;
    if (problem == NULL && width > 0) {
        acc = PyMem_RawCalloc((size_t)width, sizeof(int32_t));
        cols = PyMem_RawCalloc((size_t)(3 * width), sizeof(int64_t));
        if (acc == NULL || cols == NULL)
            problem = "out of memory";
    }
    if (problem == NULL && width > 0 && n > 0) {
        const uint16_t *v = (const uint16_t *)calls.buf;
        void *variant = variant_buf.buf;
        int64_t *sample = (int64_t *)sample_buf.buf;
        Py_BEGIN_ALLOW_THREADS
        count_all(v, n, stride, c0, width, sgkit, variant, itemsize, sample, cols, acc);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(cols);
    PyMem_RawFree(acc);
    PyBuffer_Release(&calls);
    PyBuffer_Release(&variant_buf);
    PyBuffer_Release(&sample_buf);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
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

static PyMethodDef methods[] = {
    {"simd", simd, METH_VARARGS,
     "simd([enable]) -> bool: whether counting uses the AVX2 path; switch it with enable."},
    {"count_packed", count_packed, METH_VARARGS,
     "count_packed(calls, n, stride, c0, c1, sgkit, variant, itemsize, sample): add per-row "
     "counts to variant (3 x n unsigned) and per-column counts to sample (3 x width int64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "The compiled genotype-counting kernel.", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) {
#ifdef HAVE_AVX2
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    return PyModule_Create(&module);
}
