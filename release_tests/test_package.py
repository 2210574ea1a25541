"""The sdist and the wheel: each installs outside the repository and works.

``python -m build --sdist`` makes the sdist; pip builds the wheel from it, compiling ``csrc/``
from scratch in an isolated build environment, in a fresh virtual environment, and installs that
wheel there: what ``pip install`` of the sdist does, in its two steps (a single compile serves
both checks). The wheel then goes on its own into a second fresh environment, where nothing is
compiled. Both environments are used from a folder outside the repository, and in each
``softmax_grad.native`` must import from that environment and agree with the NumPy formula
:math:`dx = y\\,(dy - \\langle y, dy\\rangle)` on every ISA the CPU offers. Dependencies are
installed with ``-c constraints.txt``, from pip's cache when it has them.
"""

from __future__ import annotations

import email
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"

# Runs inside each fresh environment, from a folder outside the repository.
CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np
    import softmax_grad
    from softmax_grad import _native, native

    for module in (softmax_grad, _native):
        print("imported", module.__name__, "from", module.__file__)
        assert Path(module.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), (
            f"{module.__name__} was not imported from the environment it was installed into"
        )
    isas = native.isas()
    print("isas:", isas)
    assert isas and isas[0] == "scalar", isas
    rng = np.random.default_rng(16)
    for n in (1, 7, 33, 1000):
        x = rng.standard_normal((5, n))
        y = np.exp(x - x.max(axis=-1, keepdims=True))
        y /= y.sum(axis=-1, keepdims=True)
        dy = rng.standard_normal((5, n))
        expected = y * (dy - np.sum(y * dy, axis=-1, keepdims=True))
        # A few roundings per element, each at most eps relative to |y| * sum |y dy|.
        allowed = 8 * np.finfo(np.float64).eps * np.abs(y).max() * np.abs(y * dy).sum(-1).max() * n
        for isa in isas:
            err = float(np.max(np.abs(native.softmax_vjp(y, dy, isa=isa) - expected)))
            print(f"n={n:5d} {isa:8s} max|native - numpy| = {err:.2e} (allowed {allowed:.2e})")
            assert err <= allowed, (n, isa, err, allowed)
    print("OK")
    """
)


def _run(cmd: list, cwd: Path) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{output}"
    return output


def _fresh_env(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


@pytest.fixture(scope="session")
def sdist(tmp_path_factory) -> Path:
    """``python -m build --sdist``."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", out, REPO], cwd=REPO)
    return _one(out, "softmax_grad-*.tar.gz")


@pytest.fixture(scope="session")
def from_sdist(sdist, tmp_path_factory) -> tuple[Path, Path, str]:
    """A fresh environment into which pip built the sdist (compiling csrc/) and installed the
    wheel it made: (its python, that wheel, pip's log of the build)."""
    root = tmp_path_factory.mktemp("from-sdist")
    python = _fresh_env(root / "env")
    wheels = root / "wheels"
    pip = [python, "-m", "pip"]
    log = _run(
        [*pip, "wheel", "-v", "--no-deps", "--no-binary", "softmax-grad", "-w", wheels, sdist],
        cwd=root,
    )
    wheel = _one(wheels, "softmax_grad-*.whl")
    _run([*pip, "install", "-q", "-c", CONSTRAINTS, wheel], cwd=root)
    return python, wheel, log


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {found}"
    return found[0]


def test_sdist_has_the_c_sources(sdist):
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()}
    needed = {p.relative_to(REPO).as_posix() for p in (REPO / "csrc").glob("*.[ch]")}
    needed |= {"setup.py", "pyproject.toml", "README.md", "LICENSE"}
    needed |= {"lib/softmax_grad/_native_build.py", "lib/softmax_grad/native.py"}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    shipped_binaries = sorted(n for n in names if n.endswith((".so", ".o", ".pyd")))
    assert not shipped_binaries, shipped_binaries


def test_wheel_metadata(from_sdist):
    _, wheel, _ = from_sdist
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
        names = zf.namelist()
    assert any(n.startswith("softmax_grad/_native") for n in names), names
    assert meta["Name"] == "softmax-grad"
    assert meta["License-Expression"] == "MIT"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "make book" in meta.get_payload(), "the README is not the long description"
    urls = meta.get_all("Project-URL")
    assert any("github.com/softmax-grad/softmax-grad-book" in u for u in urls), urls
    assert any(u.startswith("Documentation") for u in urls), urls
    classifiers = meta.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers, classifiers
    assert meta["Requires-Python"] and meta["Keywords"] and meta["Author"]


def test_sdist_builds_from_scratch_and_native_works(from_sdist, tmp_path):
    python, _, log = from_sdist
    assert "Building wheel for softmax-grad" in log and "dispatch.c" in log, (
        "pip did not compile the extension from the sdist:\n" + log[-3000:]
    )
    out = _run([python, "-c", CHECK], cwd=tmp_path)
    print(out)
    assert out.rstrip().endswith("OK")


def test_wheel_installs_and_native_works_outside_the_repository(from_sdist, tmp_path):
    _, wheel, _ = from_sdist
    python = _fresh_env(tmp_path / "env")
    log = _run([python, "-m", "pip", "install", "-v", "-c", CONSTRAINTS, wheel], cwd=tmp_path)
    assert "Building wheel for softmax-grad" not in log, "pip built the wheel again:\n" + log
    out = _run([python, "-c", CHECK], cwd=tmp_path)
    print(out)
    assert out.rstrip().endswith("OK")
