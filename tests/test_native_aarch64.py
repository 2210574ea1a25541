"""The native kernels built for AArch64 (scalar and NEON paths), run under qemu user-mode emulation.

``tests/native_c/sg_check.c`` checks every path :c:func:`sg_available_isas` reports against
long double references from the definition (n = 1 .. 33 and longer rows, offsets of 0 .. 3
elements, guard values around every output, NaN and infinities, both VJP forms and the forward
softmax, multipass and online, all four dtypes; logsumexp and the fused cross-entropy in float32
and float64, with its label checks), and every path's bits against the scalar path's. It is
compiled from the shipped sources with the shipped flags (``softmax_grad._native_build``): once
for this machine, once with ``aarch64-linux-gnu-gcc -static`` and run with ``qemu-aarch64``.
Both print a hash of all the scalar outputs, from the same seeded inputs: equal hashes are the
claim that AArch64 gives x86-64's bits (a NaN's sign and payload excepted; the strict hash
records those). The outputs rounded from libm's log and log1p (logsumexp, the loss) have a hash
of their own, so that a platform libm rounding differently is told apart from a kernel.

``make test`` installs the cross tools where it can (``tools/ensure-tool aarch64``); elsewhere
the emulated tests skip, naming what is missing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from softmax_grad import _native_build as nb

DRIVER = Path(__file__).resolve().parent / "native_c" / "sg_check.c"
CROSS_CC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
HASH = re.compile(r"^hash ([0-9a-f]{16}) ([0-9a-f]{16})$", re.M)
LIBM_HASH = re.compile(r"^libm-hash ([0-9a-f]{16}) ([0-9a-f]{16})$", re.M)
CHECKS = re.compile(r"^checks (\d+) failures (\d+)$", re.M)


def _command(tmp: Path, cc: str, extra: tuple[str, ...]) -> tuple[list[str], Path]:
    exe = tmp / "sg_check"
    sources = [str(nb.CSRC / name) for name in nb.SOURCES] + [str(DRIVER)]
    cmd = [cc, *nb.COMPILE_ARGS, "-Wall", "-Werror", "-I", str(nb.CSRC), *extra, *sources]
    return [*cmd, "-o", str(exe), "-lm", *nb.LINK_ARGS], exe


def _summary(out: str) -> tuple[int, int, str, str, str]:
    """Checks, failures, and the strict, canonical and libm (canonical) hashes."""
    checks, failures = map(int, CHECKS.search(out).groups())
    strict, canonical = HASH.search(out).groups()
    return checks, failures, strict, canonical, LIBM_HASH.search(out).group(2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, str | None]:
    """The driver's output per build, "host" and "aarch64" (None when that build cannot be
    made here, with the reason in "why-<build>"): both compiled, then both run, in parallel."""
    builds = {}
    cc = os.environ.get("CC", "gcc")
    why = {}
    if shutil.which(cc):
        builds["host"] = (_command(tmp_path_factory.mktemp("host"), cc, ()), ())
    else:
        why["host"] = f"no C compiler {cc!r} on PATH for the stand-alone driver"
    missing = [tool for tool in (CROSS_CC, QEMU) if shutil.which(tool) is None]
    if missing:
        why["aarch64"] = (
            f"{' and '.join(missing)} not found (Debian/Ubuntu: apt-get install "
            "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; make test does it as root)"
        )
    else:
        cmd = _command(tmp_path_factory.mktemp("aarch64"), CROSS_CC, ("-static",))
        builds["aarch64"] = (cmd, (QEMU,))
    compiling = {k: subprocess.Popen(cmd) for k, ((cmd, _), _) in builds.items()}
    for k, proc in compiling.items():
        assert proc.wait(timeout=600) == 0, f"compiling the {k} driver failed"
    running = {
        k: subprocess.Popen(
            [*runner, str(exe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for k, ((_, exe), runner) in builds.items()
    }
    out: dict[str, str | None] = {k: None for k in ("host", "aarch64")}
    for k, proc in running.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"sg_check ({k}) failed:\n{stdout}\n{stderr[-4000:]}"
        out[k] = stdout
    out.update({f"why-{k}": v for k, v in why.items()})
    return out


@pytest.fixture(scope="module")
def host_run(runs) -> str:
    if runs["host"] is None:
        pytest.skip(runs["why-host"])
    return runs["host"]


@pytest.fixture(scope="module")
def aarch64_run(runs) -> str:
    if runs["aarch64"] is None:
        pytest.skip(runs["why-aarch64"])
    return runs["aarch64"]


def test_host_build_passes_every_check(host_run):
    checks, failures, *_ = _summary(host_run)
    assert failures == 0 and checks > 1_000_000, host_run


def test_aarch64_scalar_and_neon_pass_every_check_under_qemu(aarch64_run):
    assert aarch64_run.splitlines()[0] == "isas: scalar neon"
    checks, failures, *_ = _summary(aarch64_run)
    assert failures == 0 and checks > 1_000_000, aarch64_run


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="compares an x86-64 build with AArch64"
)
def test_aarch64_bits_equal_x86_64_bits(host_run, aarch64_run):
    # The same seeded inputs on both: every output equal bit for bit, NaNs as NaNs.
    assert _summary(aarch64_run)[3] == _summary(host_run)[3]


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="compares an x86-64 build with AArch64"
)
def test_aarch64_libm_rounded_outputs_equal_x86_64(host_run, aarch64_run):
    # logsumexp and the cross-entropy's loss are rounded from the C library's log and log1p:
    # equal here as long as both libms round those logs alike (glibc does). A difference with
    # an equal kernel hash above is the libm's, not the kernels'.
    assert _summary(aarch64_run)[4] == _summary(host_run)[4]
