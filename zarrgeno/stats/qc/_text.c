/* Text of plink2's report files from columns of cells, in one compiled pass.
 *
 * Cells are numpy fixed-width byte strings (`S` arrays): a cell of width w holds its text
 * and, when shorter, zero bytes after it (numpy's own rule). Two functions:
 *
 *   join(items, present, out): for each row of items (n x m cells, C-contiguous), the
 *       present cells (n x m bool) joined by ',' into out (n cells, zero-filled, at least
 *       m * w + m - 1 wide): plink2's comma-separated columns (ALT, ALT_FREQS, ...).
 *   lines(columns): the rows of columns (each n cells, contiguous) as one bytes object,
 *       cells separated by a tab, each row ended by a newline.
 *
 * Both are what numpy's string additions did, chained per column, without the arrays in
 * between: a report block costs one read of its cells and one write of its text.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static Py_ssize_t cell_len(const char *cell, Py_ssize_t width) {
    const char *end = memchr(cell, 0, (size_t)width);
    return end == NULL ? width : end - cell;
}

static PyObject *join(PyObject *self, PyObject *args) {
    Py_buffer items, present, out;
    Py_ssize_t n, m, w, ow;
    if (!PyArg_ParseTuple(args, "y*nnny*w*n", &items, &n, &m, &w, &present, &out, &ow))
        return NULL;
    const char *problem = NULL;
    if (n < 0 || m < 0 || w < 1 || ow < 1)
        problem = "negative sizes";
    else if (items.len < n * m * w || present.len < n * m || out.len < n * ow)
        problem = "buffers too small for their sizes";
    else if (m > 0 && ow < m * w + m - 1)
        problem = "output cells too narrow";
    if (problem == NULL) {
        const char *src = items.buf;
        const unsigned char *take = present.buf;
        char *dst = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            char *at = dst + i * ow;
            int first = 1;
            for (Py_ssize_t j = 0; j < m; j++) {
                if (!take[i * m + j])
                    continue;
                if (!first)
                    *at++ = ',';
                const char *cell = src + (i * m + j) * w;
                const Py_ssize_t len = cell_len(cell, w);
                memcpy(at, cell, (size_t)len);
                at += len;
                first = 0;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&items);
    PyBuffer_Release(&present);
    PyBuffer_Release(&out);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *lines(PyObject *self, PyObject *args) {
    PyObject *columns;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &columns))
        return NULL;
    const Py_ssize_t m = PyTuple_GET_SIZE(columns);
    if (m == 0)
        return PyBytes_FromStringAndSize("", 0);
    Py_buffer *views = PyMem_Calloc((size_t)m, sizeof(Py_buffer));
    Py_ssize_t *widths = PyMem_Calloc((size_t)m, sizeof(Py_ssize_t));
    if (views == NULL || widths == NULL) {
        PyMem_Free(views);
        PyMem_Free(widths);
        return PyErr_NoMemory();
    }
    Py_ssize_t got = 0, n = -1;
    const char *problem = NULL;
    for (; got < m; got++) {
        PyObject *column = PyTuple_GET_ITEM(columns, got);
        if (PyObject_GetBuffer(column, &views[got], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            break;
        const Py_buffer *v = &views[got];
        if (v->ndim != 1 || v->itemsize < 1) {
            problem = "columns must be 1-D arrays of byte strings";
            got++;
            break;
        }
        if (n < 0)
            n = v->shape[0];
        if (v->shape[0] != n) {
            problem = "columns must have the same length";
            got++;
            break;
        }
        widths[got] = v->itemsize;
    }
    PyObject *result = NULL;
    if (got == m && problem == NULL) {
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t j = 0; j < m; j++)
                total += cell_len((const char *)views[j].buf + i * widths[j], widths[j]) + 1;
        result = PyBytes_FromStringAndSize(NULL, total);
        if (result != NULL) {
            char *at = PyBytes_AS_STRING(result);
            Py_BEGIN_ALLOW_THREADS
            for (Py_ssize_t i = 0; i < n; i++)
                for (Py_ssize_t j = 0; j < m; j++) {
                    const char *cell = (const char *)views[j].buf + i * widths[j];
                    const Py_ssize_t len = cell_len(cell, widths[j]);
                    memcpy(at, cell, (size_t)len);
                    at += len;
                    *at++ = j + 1 < m ? '\t' : '\n';
                }
            Py_END_ALLOW_THREADS
        }
    }
    for (Py_ssize_t j = 0; j < got; j++)
        PyBuffer_Release(&views[j]);
    PyMem_Free(views);
    PyMem_Free(widths);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        Py_XDECREF(result);
        return NULL;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"join", join, METH_VARARGS, "Join the present cells of each row with commas."},
    {"lines", lines, METH_VARARGS, "Rows of cells: tab-separated, newline-ended bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_text",
                                    "Text of report files from columns of cells.", -1, methods};

PyMODINIT_FUNC PyInit__text(void) { return PyModule_Create(&module); }
