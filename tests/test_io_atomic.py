"""mcjepa.utils.atomic: the one atomic writer (checkpoints, releases, manifests, download cache)."""

import os
import stat

import pytest

from mcjepa.utils.atomic import atomic_write_bytes, atomic_writer


def test_atomic_write_bytes_writes_chunks_with_the_usual_mode(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", [b"ab", memoryview(b"cd")])
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"abcd"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~0o027
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "b.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_writer(target) as fh:
        fh.write(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]
