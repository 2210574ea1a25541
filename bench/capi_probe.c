/* capi_probe.c: the softmax VJP behind a CPython C-API entry point instead of cffi -- a probe.
 *
 * Not part of the package. bench/capi_probe.py compiles it (with csrc/) into a temporary
 * directory and times it beside softmax_grad.native.softmax_vjp, to measure what the per-call cost
 * of small calls would be with a binding that reads the arrays' data pointers directly, as NumPy's
 * ufuncs and PyTorch's operators do, instead of building one cffi object per array.
 *
 * vjp(y, dy) and vjp(y, dy, out) make the checks native.softmax_vjp's fast path makes (ndarrays,
 * float32/float64 alike, same shape, at least one dimension, C-contiguous and aligned, out
 * writeable and not overlapping the inputs) and then call the same C kernel on one thread with the
 * best ISA. Anything the probe does not accept raises TypeError; the package's wrapper would fall
 * back to its slow path there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include "softmax_grad.h"

static int best_isa;

static int usable(PyObject *o, int type)
{
    if (!PyArray_Check(o))
        return 0;
    PyArrayObject *a = (PyArrayObject *)o;
    return PyArray_TYPE(a) == type && PyArray_NDIM(a) >= 1 && PyArray_ISCARRAY_RO(a) &&
           PyArray_ISNOTSWAPPED(a);
}

static PyObject *vjp(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 && nargs != 3)
        return PyErr_Format(PyExc_TypeError, "vjp(y, dy[, out]) takes 2 or 3 arguments");
    if (!PyArray_Check(args[0]))
        return PyErr_Format(PyExc_TypeError, "y must be an ndarray");
    PyArrayObject *y = (PyArrayObject *)args[0];
    const int type = PyArray_TYPE(y);
    if ((type != NPY_FLOAT32 && type != NPY_FLOAT64) || !usable(args[0], type) ||
        !usable(args[1], type))
        return PyErr_Format(PyExc_TypeError, "y and dy: C-contiguous float32 or float64 alike");
    PyArrayObject *dy = (PyArrayObject *)args[1];
    const int nd = PyArray_NDIM(y);
    if (PyArray_NDIM(dy) != nd || !PyArray_CompareLists(PyArray_DIMS(y), PyArray_DIMS(dy), nd))
        return PyErr_Format(PyExc_TypeError, "y and dy must have the same shape");
    PyArrayObject *out;
    if (nargs == 3) {
        if (!usable(args[2], type) || !PyArray_ISWRITEABLE((PyArrayObject *)args[2]))
            return PyErr_Format(PyExc_TypeError, "out: writeable, C-contiguous, dtype of y");
        out = (PyArrayObject *)args[2];
        if (PyArray_NDIM(out) != nd || !PyArray_CompareLists(PyArray_DIMS(y), PyArray_DIMS(out), nd))
            return PyErr_Format(PyExc_TypeError, "out must have the shape of y");
        const char *o = PyArray_BYTES(out), *a = PyArray_BYTES(y), *b = PyArray_BYTES(dy);
        const npy_intp bytes = PyArray_NBYTES(out);
        if ((o < a + bytes && a < o + bytes) || (o < b + bytes && b < o + bytes))
            return PyErr_Format(PyExc_TypeError, "out must not overlap y or dy");
        Py_INCREF(out);
    } else {
        out = (PyArrayObject *)PyArray_SimpleNew(nd, PyArray_DIMS(y), type);
        if (!out)
            return NULL;
    }
    const size_t size = (size_t)PyArray_SIZE(y), n = (size_t)PyArray_DIM(y, nd - 1);
    const size_t rows = n ? size / n : 0;
    const int status =
        type == NPY_FLOAT32
            ? sg_softmax_vjp_f32(PyArray_DATA(y), PyArray_DATA(dy), PyArray_DATA(out), rows, n,
                                 best_isa, 1)
            : sg_softmax_vjp_f64(PyArray_DATA(y), PyArray_DATA(dy), PyArray_DATA(out), rows, n,
                                 best_isa, 1);
    if (status) {
        Py_DECREF(out);
        return PyErr_Format(PyExc_RuntimeError, "kernel status %d", status);
    }
    return (PyObject *)out;
}

static PyMethodDef methods[] = {
    {"vjp", (PyCFunction)(void (*)(void))vjp, METH_FASTCALL, "vjp(y, dy[, out])"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_capi_probe", NULL, -1, methods};

PyMODINIT_FUNC PyInit__capi_probe(void)
{
    import_array();
    const int mask = sg_available_isas();
    best_isa = (mask >> SG_ISA_AVX512) & 1 ? SG_ISA_AVX512
               : (mask >> SG_ISA_AVX2) & 1 ? SG_ISA_AVX2
                                           : SG_ISA_SCALAR;
    return PyModule_Create(&module);
}
