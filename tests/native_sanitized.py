"""The native tests against an AddressSanitizer + UndefinedBehaviorSanitizer build of csrc/.

Two roles, both used by ``make sanitize`` (part of ``make test``):

``python tests/native_sanitized.py DIR``
    compiles the same C sources and the same cffi wrapper as the shipped extension, with
    ``-fsanitize=address,undefined``, into ``DIR/_sg_native_sanitized<EXT_SUFFIX>``
    (:func:`build`, which ``tests/test_native.py`` also uses for a build without AVX-512). The C
    code cffi generates is emitted from ``softmax_grad._native_build.make_ffi`` and compiled with
    ``$CC`` (default gcc) directly, so nothing is installed and the shipped build is untouched.

``pytest -p tests.native_sanitized tests/test_native.py`` (with ``SG_SANITIZED_DIR=DIR``)
    a pytest plugin that loads that module as ``softmax_grad._native`` before the tests import
    :mod:`softmax_grad.native`, and fails the session if anything else got loaded.

The Python interpreter is not instrumented, so the ASan runtime must be loaded first:
``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``, with ``ASAN_OPTIONS=detect_leaks=0`` (CPython
keeps objects alive at exit on purpose) and ``UBSAN_OPTIONS=halt_on_error=1``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

MODULE = "_sg_native_sanitized"
ROOT = Path(__file__).resolve().parents[1]
SANITIZE_FLAGS = (
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
)


def _load_build_script():
    # The build script lives inside the package but must not need the compiled extension.
    path = ROOT / "lib" / "softmax_grad" / "_native_build.py"
    spec = importlib.util.spec_from_file_location("_sg_native_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(
    outdir: Path, module: str = MODULE, flags: tuple = SANITIZE_FLAGS, macros: tuple | None = None
) -> Path:
    """Compile the extension as ``module`` into ``outdir`` with the shipped flags plus ``flags``
    (``-O`` among them replaces the shipped ``-O3``) and ``macros`` (default: the shipped build's,
    from the environment); return the path of the shared object. The sources compile one object
    each, as many at once as there are CPUs, then link."""
    nb = _load_build_script()
    outdir.mkdir(parents=True, exist_ok=True)
    wrapper = outdir / f"{module}.c"
    nb.make_ffi(module).emit_c_code(str(wrapper))
    target = outdir / f"{module}{sysconfig.get_config_var('EXT_SUFFIX')}"
    cc = shlex.split(os.environ.get("CC", "gcc"))
    replace_opt = any(f.startswith("-O") for f in flags)
    shipped = [arg for arg in nb.COMPILE_ARGS if not (replace_opt and arg.startswith("-O"))]
    defines = [f"-D{name}={value}" for name, value in (nb.macros() if macros is None else macros)]
    includes = [f"-I{sysconfig.get_paths()['include']}", f"-I{nb.CSRC}"]
    sources = [wrapper, *(nb.CSRC / name for name in nb.SOURCES)]
    objects = [outdir / f"{module}.{source.stem}.o" for source in sources]
    compiles = [
        [*cc, "-c", "-fPIC", *shipped, *flags, *defines, *includes, str(src), "-o", str(obj)]
        for src, obj in zip(sources, objects, strict=True)
    ]
    link = [*cc, "-shared", *shipped, *flags, *map(str, objects), *nb.LINK_ARGS, "-lm"]
    # The compiler is not what is tested: it runs without the ASan runtime that the sanitized
    # pytest session preloads (test_native's no-AVX-512 build runs there too).
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}

    def run(command: list) -> None:
        print("==>", " ".join(shlex.quote(arg) for arg in command), flush=True)
        subprocess.run(command, check=True, env=env)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(run, compiles))  # list(): re-raises the first failed compile
    run([*link, "-o", str(target)])
    return target


# ---- pytest plugin -----------------------------------------------------------------------------


def pytest_configure(config):
    outdir = os.environ.get("SG_SANITIZED_DIR")
    if not outdir:
        raise RuntimeError("set SG_SANITIZED_DIR to the directory given to the build step")
    if "softmax_grad.native" in sys.modules:
        raise RuntimeError("softmax_grad.native was imported before the sanitized module")
    sys.path.insert(0, os.path.abspath(outdir))
    module = importlib.import_module(MODULE)
    sys.modules["softmax_grad._native"] = module
    import softmax_grad.native as native

    if native._native is not module:
        raise RuntimeError("softmax_grad.native did not pick up the sanitized extension")
    print(f"native tests run against {module.__file__}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUTPUT_DIR")
    build(Path(sys.argv[1]))
