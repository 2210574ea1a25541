"""softmax_grad.machine: size parsing and reading a sysfs-like cache directory."""

import sys

import pytest

from softmax_grad import cache_sizes, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32K", 32 * 1024),
        ("32768K\n", 32 * 1024 * 1024),
        ("1M", 1 << 20),
        ("1 MiB", 1 << 20),
        ("32 KiB", 32 << 10),
        ("2G", 2 << 30),
        ("512", 512),
        ("64KB", 64 << 10),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "K", "1.5M", "32X", "-1K", None])
def test_parse_size_rejects_and_shows_text(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def _index(root, i, level, kind, size):
    d = root / f"index{i}"
    d.mkdir()
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{kind}\n")
    (d / "size").write_text(f"{size}\n")


def test_cache_sizes_reads_data_and_unified_levels(tmp_path):
    _index(tmp_path, 0, 1, "Data", "48K")
    _index(tmp_path, 1, 1, "Instruction", "32K")
    _index(tmp_path, 2, 2, "Unified", "2048K")
    _index(tmp_path, 3, 3, "Unified", "36864K")
    assert cache_sizes(tmp_path) == {"L1d": 48 << 10, "L2": 2 << 20, "L3": 36 << 20}


def test_cache_sizes_missing_directory_gives_none(tmp_path):
    assert cache_sizes(tmp_path / "absent") == {"L1d": None, "L2": None, "L3": None}


def test_cache_sizes_skips_unreadable_entries(tmp_path):
    _index(tmp_path, 0, 1, "Data", "32K")
    _index(tmp_path, 1, 2, "Unified", "garbage")
    assert cache_sizes(tmp_path) == {"L1d": 32 << 10, "L2": None, "L3": None}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysfs is Linux")
def test_this_machine_reports_an_l1d_cache():
    sizes = cache_sizes()
    if sizes["L1d"] is None:
        pytest.skip("this Linux (container) exposes no cache information")
    assert 4 << 10 <= sizes["L1d"] <= 1 << 20
