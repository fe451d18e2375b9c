/* The genotype-counting kernel in C: one pass over int8 calls, every count, GIL released.
 *
 * A call's two int8 alleles are read as one little-endian uint16 x = a0 + 256*a1 (bytes as
 * unsigned). Hom-ref is x == 0; het is low byte != high byte; missing is low byte == 0xFF
 * (tutorial: allele 0 is -1) or either byte >= 0x80 (sgkit: any allele negative; het then
 * also needs both alleles called). The three flags of a call are packed into 10-bit fields
 * of one int32, so a row's counts and a column's running counts each cost one addition per
 * call; fields are unpacked every 1023 rows, and callers pass at most 1023 columns, before
 * any field can overflow. Buffers come through the buffer protocol: no numpy C API, so the
 * extension builds with nothing but a C compiler and Python's headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define FIELD_MAX 1023

static inline int32_t code_tutorial(uint32_t x) {
    uint32_t lo = x & 0xFF, hi = x >> 8;
    return (int32_t)((lo == 0xFF) | ((x == 0) << 10) | ((lo != hi) << 20));
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
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
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
    if (problem == NULL && width > 0) {
        acc = PyMem_RawCalloc((size_t)width, sizeof(int32_t));
        if (acc == NULL)
            problem = "out of memory";
    }
    if (problem == NULL && width > 0 && n > 0) {
        const uint16_t *v = (const uint16_t *)calls.buf;
        void *variant = variant_buf.buf;
        int64_t *sample = (int64_t *)sample_buf.buf;
        Py_BEGIN_ALLOW_THREADS
        switch (itemsize * 2 + (sgkit ? 1 : 0)) {
        case 2: count_tutorial_u8(v, n, stride, c0, width, variant, sample, acc); break;
        case 3: count_sgkit_u8(v, n, stride, c0, width, variant, sample, acc); break;
        case 4: count_tutorial_u16(v, n, stride, c0, width, variant, sample, acc); break;
        case 5: count_sgkit_u16(v, n, stride, c0, width, variant, sample, acc); break;
        case 8: count_tutorial_u32(v, n, stride, c0, width, variant, sample, acc); break;
        case 9: count_sgkit_u32(v, n, stride, c0, width, variant, sample, acc); break;
        case 16: count_tutorial_u64(v, n, stride, c0, width, variant, sample, acc); break;
        default: count_sgkit_u64(v, n, stride, c0, width, variant, sample, acc); break;
        }
        Py_END_ALLOW_THREADS
    }
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

static PyMethodDef methods[] = {
    {"count_packed", count_packed, METH_VARARGS,
     "count_packed(calls, n, stride, c0, c1, sgkit, variant, itemsize, sample): add per-row "
     "counts to variant (3 x n unsigned) and per-column counts to sample (3 x width int64)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "The compiled genotype-counting kernel.", -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
