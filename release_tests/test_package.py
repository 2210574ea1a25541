"""``python -m build`` makes an sdist and a wheel; both install outside the repository and work.

The wheel goes into a fresh virtual environment (not editable, run from a folder outside the
repository); the sdist is built from scratch by pip in a second fresh environment, which compiles
``csrc/`` again. In each, ``softmax_grad.native`` must import from that environment and agree with
the NumPy formula :math:`dx = y\\,(dy - \\langle y, dy\\rangle)` on every ISA the CPU offers.
Dependencies are installed with ``-c constraints.txt``, from pip's cache when it has them.
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
def dist(tmp_path_factory) -> Path:
    """``python -m build``: the sdist, then the wheel built from that sdist (build's default)."""
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", out, REPO], cwd=REPO)
    return out


def _one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {dist}, found {found}"
    return found[0]


def test_sdist_has_the_c_sources(dist):
    sdist = _one(dist, "softmax_grad-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in tar.getnames()}
    needed = {p.relative_to(REPO).as_posix() for p in (REPO / "csrc").glob("*.[ch]")}
    needed |= {"setup.py", "pyproject.toml", "README.md", "LICENSE"}
    needed |= {"lib/softmax_grad/_native_build.py", "lib/softmax_grad/native.py"}
    assert needed <= names, f"missing from the sdist: {sorted(needed - names)}"
    shipped_binaries = sorted(n for n in names if n.endswith((".so", ".o", ".pyd")))
    assert not shipped_binaries, shipped_binaries


def test_wheel_metadata(dist):
    wheel = _one(dist, "softmax_grad-*.whl")
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


def test_wheel_installs_and_native_works_outside_the_repository(dist, tmp_path):
    wheel = _one(dist, "softmax_grad-*.whl")
    python = _fresh_env(tmp_path / "env")
    _run([python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, wheel], cwd=tmp_path)
    out = _run([python, "-c", CHECK], cwd=tmp_path)
    print(out)
    assert out.rstrip().endswith("OK")


def test_sdist_builds_from_scratch_and_native_works(dist, tmp_path):
    sdist = _one(dist, "softmax_grad-*.tar.gz")
    python = _fresh_env(tmp_path / "env")
    log = _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-v",
            "-c",
            CONSTRAINTS,
            "--no-binary",
            "softmax-grad",
            sdist,
        ],
        cwd=tmp_path,
    )
    assert "Building wheel for softmax-grad" in log and "dispatch.c" in log, (
        "pip did not compile the extension from the sdist:\n" + log[-3000:]
    )
    out = _run([python, "-c", CHECK], cwd=tmp_path)
    print(out)
    assert out.rstrip().endswith("OK")
