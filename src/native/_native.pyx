# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# unmo's native core, built as one module (a unity build, as asyncpg's
# protocol.pyx and uvloop's loop.pyx are): each concern lives in its own file,
# included here.  Python code imports it through thin modules (unmo.hashing,
# unmo.copy, unmo.kernel), never directly.

cimport cython
from cpython.bytes cimport PyBytes_AsString, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc, calloc
from libc.string cimport memcmp

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "debug.h":
    cdef int UNMO_DEBUG

# Declarations (cdef signatures, C helpers) per concern, then their bodies.
include "consts.pxi"
include "hashing.pxd"
include "copy.pxd"
include "kernel.pxd"
include "columns.pxd"

include "hashing.pyx"
include "copy.pyx"
include "kernel.pyx"
include "columns.pyx"
include "jsondecode.pyx"
include "replay.pyx"
