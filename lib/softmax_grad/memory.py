"""Peak memory of one call, as Python's tracemalloc sees it.

NumPy reports every array buffer it allocates to tracemalloc, so the peak of a NumPy computation
is the largest total of its live arrays (plus small Python objects), independent of the
allocator's caching and of the process's resident size. Libraries with their own allocator
(PyTorch's CPU tensors, XLA's buffers) are invisible to it;
:func:`~softmax_grad.peak_memory_torch` measures PyTorch's tensors the same way from the
allocation records of its profiler.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple


class PeakMemory(NamedTuple):
    """What :func:`peak_memory` measured: the call's result and its peak in bytes."""

    result: Any
    peak_bytes: int


def peak_memory(fn: Callable[..., Any], *args, **kwargs) -> PeakMemory:
    """Call ``fn(*args, **kwargs)`` and return its result with the peak of traced memory.

    The peak counts only what the call allocates on top of what was live before it (its inputs
    are not counted; the result is, if it is still alive at the peak). tracemalloc must not be
    tracing already: a nested measurement would reset the outer one's peak.

    Raises
    ------
    RuntimeError
        If tracemalloc is already tracing.
    """
    if tracemalloc.is_tracing():
        raise RuntimeError("peak_memory: tracemalloc is already tracing (nested measurement?)")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return PeakMemory(result, max(0, peak - base))


def peak_memory_torch(fn: Callable[..., Any], *args, **kwargs) -> PeakMemory:
    """Call ``fn(*args, **kwargs)`` under PyTorch's profiler and return the peak of its tensors.

    ``torch.profiler.profile(profile_memory=True)`` records every allocation and free of a
    tensor's storage (CPU included) with its size. The running sum of those records, in the
    order they happened, is the memory of the tensors the call allocated that are still alive;
    its maximum is the counterpart of :func:`peak_memory` for PyTorch: the bytes of live
    tensors on top of what existed before (frees of older tensors can only lower it), not the
    process's resident size, and not NumPy's arrays. The profiler slows the call down; time it
    separately.

    Raises
    ------
    ImportError
        If PyTorch is not installed.
    """
    from torch.profiler import ProfilerActivity, profile

    with (
        _without_kineto_log(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        result = fn(*args, **kwargs)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return PeakMemory(result, peak)


# The profiler's C++ library (Kineto) logs its start and stop to file descriptor 2 with a time
# stamp and a process id, lines no two runs share (they would break a notebook's comparison).
_KINETO_LOG = re.compile(rb"^[A-Z]+:\d{4}-\d\d-\d\d [\d:]+ \d+:\d+ \w+\.cpp:\d+\] ")


@contextlib.contextmanager
def _without_kineto_log():
    """Drop Kineto's log lines from file descriptor 2 while profiling; pass on anything else."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().splitlines(True) if not _KINETO_LOG.match(line)]
            if kept:
                sys.stderr.write(b"".join(kept).decode(errors="replace"))
