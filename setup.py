"""Builds unmo's native extension; metadata lives in pyproject.toml.

Build switches (environment):
  UNMO_DEBUG=1   compile invariant checks in (UNMO_DEBUG macro), line tracing,
                 Cython bounds checks and an annotated HTML report per source.
"""

import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("UNMO_DEBUG", "0") not in ("", "0")
NATIVE = os.path.join("src", "native")

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"), ("UNMO_DEBUG", "1" if DEBUG else "0")]
directives = {"language_level": "3", "embedsignature": True}
if DEBUG:
    macros.append(("CYTHON_TRACE_NOGIL", "1"))
    directives.update(boundscheck=True, wraparound=True, linetrace=True, initializedcheck=True)
    cflags = ["-O0", "-g3"]
else:
    cflags = ["-O3"]

extensions = [
    Extension(
        "unmo._native",
        sources=[os.path.join(NATIVE, "_native.pyx")],
        include_dirs=[NATIVE, numpy.get_include()],
        define_macros=macros,
        extra_compile_args=cflags,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=[NATIVE],
        compiler_directives=directives,
        annotate=DEBUG,
        build_dir="build/cython",
    ),
)
