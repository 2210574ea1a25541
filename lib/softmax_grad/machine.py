"""The CPU caches of this machine, read once from Linux's sysfs."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["cache_sizes", "parse_size"]

_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in a size written as sysfs or ``lscpu`` writes it, in binary units.

    Parameters
    ----------
    text : str
        An integer with an optional unit ``K``, ``M``, ``G`` or ``T`` (powers of 1024), optionally
        followed by ``B`` or ``iB``: ``"32K"``, ``"32768K"``, ``"1 MiB"``, ``"4096"``.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If ``text`` is not such a size (the text is shown).

    Examples
    --------
    >>> parse_size("32K"), parse_size("1 MiB"), parse_size("512")
    (32768, 1048576, 512)
    """
    match = _SIZE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"not a size: {text!r}; expected an integer with an optional unit K, M, G or T "
            "(powers of 1024), e.g. '32K' or '1 MiB'"
        )
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def cache_sizes(cache_dir: str | Path = _CACHE_DIR) -> dict[str, int | None]:
    """Sizes in bytes of CPU 0's data caches: ``{"L1d": ..., "L2": ..., "L3": ...}``.

    Read from ``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}`` (Linux). The L3
    size is the cache CPU 0 shares with its neighbours, not a per-core share. Instruction
    caches are left out.

    Parameters
    ----------
    cache_dir : path, optional
        The sysfs directory (a parameter so it can be tested).

    Returns
    -------
    dict
        Keys ``"L1d"``, ``"L2"``, ``"L3"`` always present, with ``None`` for a level this
        machine does not report (every value is ``None`` off Linux); an ``"L4"`` key appears
        only where there is one.
    """
    sizes: dict[str, int | None] = {"L1d": None, "L2": None, "L3": None}
    root = Path(cache_dir)
    if not root.is_dir():
        return sizes
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text().strip())
            size = parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue  # an unreadable or unusual entry is a level we do not report
        if kind == "Instruction":
            continue
        sizes[f"L{level}d" if kind == "Data" else f"L{level}"] = size
    return sizes
