"""cffi API-mode build of ``softmax_grad._native`` from ``csrc/`` (run at install time).

setuptools runs this through ``cffi_modules`` in ``setup.py`` when the package is installed
(``pip install -e .`` / ``make install``); importing :mod:`softmax_grad.native` never compiles.

The C interface is ``csrc/softmax_grad.h``, read here verbatim for ``ffi.cdef`` (preprocessor
lines dropped), so the header is the one place that declares it. One compile serves every x86-64
CPU: the AVX2 and AVX-512 files enable their instruction sets per function with
``__attribute__((target(...)))`` and run only after ``dispatch.c`` has checked the CPU; no
``-march=native``. On AArch64 ``kernels_neon.c`` adds the NEON path (part of every AArch64 CPU)
and the x86 files compile to nothing, as it does on x86-64; elsewhere only the scalar path
exists. ``SG_NO_AVX512=1`` in the build's environment leaves out the AVX-512 path (see
:func:`macros`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
HEADER = CSRC / "softmax_grad.h"
SOURCES = (
    "dispatch.c",
    "pool.c",
    "kernels_scalar.c",
    "kernels_avx2.c",
    "kernels_avx512.c",
    "kernels_neon.c",
)
DEPENDS = (
    "softmax_grad.h",
    "kernels.h",
    "kernels_simd.h",
    "kernels_sum.h",
    "kernels_x86.h",
    "kernels_scalar_vocab.h",
    "kernels_half.h",
    "kernels_avx2_half.h",
    "kernels_avx2_ps.h",
    "kernels_avx512_half.h",
    "kernels_avx512_ps.h",
    "kernels_neon_half.h",
    "kernels_neon_ps.h",
    "pool.h",
)
MODULE = "softmax_grad._native"

# -ffp-contract=off: no silent a*b+c fusion, so NaN/inf follow the written operations (and the
# O(n^2) kernel keeps the source thread's multiply-multiply-add). No -ffast-math, for the same
# reason: the kernels must see NaN and infinities.
COMPILE_ARGS = ("-O3", "-std=gnu11", "-ffp-contract=off", "-fno-strict-aliasing", "-pthread")
LINK_ARGS = ("-pthread",)


def macros(environ=os.environ) -> tuple:
    """Preprocessor macros of the build: ``SG_NO_AVX512`` when the environment sets
    ``SG_NO_AVX512`` to anything but ``""`` or ``"0"`` (for a compiler without AVX-512
    intrinsics: ``csrc/kernels_avx512.c`` then compiles to nothing and ``isas()`` never offers
    ``"avx512"``)."""
    return (("SG_NO_AVX512", "1"),) if environ.get("SG_NO_AVX512", "0") not in ("", "0") else ()


def cdef_source(header: Path = HEADER) -> str:
    """The header without its preprocessor lines: the declarations cffi parses."""
    lines = header.read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _relative(path: Path) -> str:
    # setuptools rejects absolute source paths; the build runs from the project root.
    return os.path.relpath(path)


def make_ffi(module: str = MODULE) -> FFI:
    """An FFI for ``module`` compiling every C source in ``csrc/`` with the shipped flags."""
    ffi = FFI()
    ffi.cdef(cdef_source())
    ffi.set_source(
        module,
        '#include "softmax_grad.h"',
        sources=[_relative(CSRC / name) for name in SOURCES],
        depends=[_relative(CSRC / name) for name in DEPENDS],
        include_dirs=[_relative(CSRC)],
        define_macros=list(macros()),
        extra_compile_args=list(COMPILE_ARGS),
        extra_link_args=list(LINK_ARGS),
        libraries=["m"],
    )
    return ffi


ffi = make_ffi()

if __name__ == "__main__":
    ffi.compile(verbose=True)
