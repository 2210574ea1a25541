"""One timer for every chapter, with the warm-up and allocator discipline timings need.

:func:`~softmax_grad.time_call` times ``fn(*args, **kwargs)``: ``warmup`` untimed calls first,
then ``repeat`` samples of ``number`` calls each, with the garbage collector off (as ``timeit``
does), and reports seconds per call. The warm-up pays once for what a first call pays and later
calls do not: imports, caches, and the page faults of the first touch of fresh memory.

Fresh temporaries still cost on *every* call when they are large. glibc's ``malloc`` serves big
blocks (above its mmap threshold, 128 KiB initially, raised adaptively up to 32 MiB on 64-bit) with
fresh pages from the kernel, or returns freed memory at the top of the heap to it; either way each
call touches pages the kernel must fault in and zero. A function
that allocates three multi-MB temporaries can spend most of its time there, which then has nothing
to do with its arithmetic. So, to compare two implementations (say, fused against composed) fairly:

- give both preallocated outputs (``out=``) where their API allows, and time that; and
- time the allocating form too, and report the allocator's share separately:
  :func:`~softmax_grad.allocator_share` times both forms, interleaved, and returns the difference.

Setting ``MALLOC_TOP_PAD_`` (e.g. ``1073741824``) in the environment before Python starts makes
glibc keep freed memory, which removes most of that share. Where an API has no ``out=``
(the library's softmax, VJP and losses), chapters 4 and 5 time the same code in two fresh
processes, with and without it (:func:`~softmax_grad.run_fresh`), and report the difference as
the allocator's share.

Timings are noisy on a shared machine: compare implementations as ratios of the best sample,
measured side by side, and never check a timing in a unit test.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WARM_HEAP", "AllocatorShare", "Timing", "allocator_share", "run_fresh", "time_call"]

#: Target duration of one sample when ``number`` is chosen automatically, in seconds.
SAMPLE_SECONDS = 0.02
_clock = time.perf_counter  # a module attribute, so tests can substitute a deterministic clock


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one timed function.

    Attributes
    ----------
    best : float
        The fastest sample, per call: the least disturbed by other work on the machine.
    median : float
        The median sample, per call.
    number : int
        Calls per sample.
    samples : tuple of float
        Every sample, in seconds per call.
    """

    best: float
    median: float
    number: int
    samples: tuple[float, ...]

    def __str__(self) -> str:
        return (
            f"best {_seconds(self.best)}, median {_seconds(self.median)} per call "
            f"({len(self.samples)} samples of {self.number})"
        )


def _seconds(t: float) -> str:
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def _sample(call: Callable[[], object], number: int) -> float:
    """Seconds for ``number`` calls of ``call``."""
    start = _clock()
    for _ in range(number):
        call()
    return _clock() - start


def _auto_number(call: Callable[[], object]) -> int:
    """Calls per sample so that one sample takes about :data:`SAMPLE_SECONDS`."""
    number = 1
    while True:
        t = _sample(call, number)
        if t >= SAMPLE_SECONDS:
            return number
        # Grow toward the target from this measurement, at least doubling, at most x100 per step.
        number = max(2 * number, min(100 * number, int(number * SAMPLE_SECONDS / max(t, 1e-9))))


def _check_counts(repeat: int, number: int | None, warmup: int) -> None:
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    bad_number = isinstance(number, bool) or not isinstance(number, int) or number < 1
    if number is not None and bad_number:
        raise ValueError(f"number must be None or an int >= 1, got {number!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")


def _timed(calls: list[Callable[[], object]], repeat: int, number, warmup: int) -> list[Timing]:
    """Time several zero-argument calls, interleaving their samples (A B A B ...)."""
    _check_counts(repeat, number, warmup)
    for call in calls:
        for _ in range(warmup):
            call()
    numbers = [number if number is not None else _auto_number(call) for call in calls]
    samples: list[list[float]] = [[] for _ in calls]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            for call, k, out in zip(calls, numbers, samples, strict=True):
                out.append(_sample(call, k) / k)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [
        Timing(best=min(s), median=statistics.median(s), number=k, samples=tuple(s))
        for s, k in zip(samples, numbers, strict=True)
    ]


def time_call(
    fn: Callable, *args, repeat: int = 7, number: int | None = None, warmup: int = 1, **kwargs
) -> Timing:
    """Time ``fn(*args, **kwargs)``: seconds per call, best and median of ``repeat`` samples.

    Parameters
    ----------
    fn : callable
        The function to time; ``args`` and ``kwargs`` are passed to it on every call.
    repeat : int, default 7
        Number of samples.
    number : int, optional
        Calls per sample; by default chosen (after the warm-up) so a sample takes about 20 ms.
    warmup : int, default 1
        Untimed calls before the first sample, so first-call costs (caches, the page faults of
        fresh buffers) are paid before measurement.

    Returns
    -------
    Timing
        ``.best`` and ``.median`` in seconds per call.

    Examples
    --------
    >>> import numpy as np
    >>> t = time_call(np.add, np.ones(1000), np.ones(1000), out=np.empty(1000), repeat=3)
    >>> t.best <= t.median
    True
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    (result,) = _timed([lambda: fn(*args, **kwargs)], repeat, number, warmup)
    return result


@dataclass(frozen=True)
class AllocatorShare:
    """The same computation timed allocating its outputs and writing into preallocated ones.

    Attributes
    ----------
    allocating, preallocated : Timing
        The two forms, timed interleaved.
    seconds : float
        ``allocating.best - preallocated.best``: the time per call spent obtaining fresh memory
        (``malloc``/``free``, page faults, the kernel zeroing pages). It can come out slightly
        negative when the two are equal within noise.
    share : float
        ``seconds / allocating.best``: the fraction of the allocating form's time.
    """

    allocating: Timing
    preallocated: Timing

    @property
    def seconds(self) -> float:
        return self.allocating.best - self.preallocated.best

    @property
    def share(self) -> float:
        return self.seconds / self.allocating.best


def allocator_share(
    allocating: Callable[[], object],
    preallocated: Callable[[], object],
    *,
    repeat: int = 7,
    number: int | None = None,
    warmup: int = 1,
) -> AllocatorShare:
    """Separate the allocator's share of a computation's time.

    ``allocating()`` and ``preallocated()`` must do the same arithmetic; the second writes into
    buffers created once outside it (``out=`` arguments), so it never asks for fresh memory. Both
    are warmed up, then timed with their samples interleaved, so a change in the machine's load
    affects both alike.

    Parameters
    ----------
    allocating, preallocated : callable
        Zero-argument callables, e.g. ``lambda: a * b + c`` and
        ``lambda: np.add(np.multiply(a, b, out=t), c, out=t)``.
    repeat, number, warmup
        As in :func:`time_call` (``number`` chosen per callable when None).

    Returns
    -------
    AllocatorShare
    """
    for name, fn in (("allocating", allocating), ("preallocated", preallocated)):
        if not callable(fn):
            raise TypeError(f"{name} must be a zero-argument callable, got {type(fn).__name__}")
    alloc, pre = _timed([allocating, preallocated], repeat, number, warmup)
    return AllocatorShare(allocating=alloc, preallocated=pre)


#: Environment that makes glibc keep up to 1 GiB of freed memory at the top of its heap, so big
#: temporaries reuse pages already faulted in (see the module docstring); for ``run_fresh``.
WARM_HEAP = {"MALLOC_TOP_PAD_": str(2**30)}


def run_fresh(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``script`` in a fresh Python interpreter and return what it printed.

    The allocator reads ``MALLOC_TOP_PAD_`` only when a process starts, so timing a computation
    with and without ``WARM_HEAP`` (``MALLOC_TOP_PAD_`` of 1 GiB) takes two fresh processes.
    ``env`` is added to this process's environment; ``args`` become the script's
    ``sys.argv[1:]``. A failing script raises ``subprocess.CalledProcessError`` (its traceback
    is on stderr).
    """
    cmd = [sys.executable, "-c", script, *args]
    return subprocess.check_output(cmd, env={**os.environ, **(env or {})}, text=True)
