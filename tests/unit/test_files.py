"""facebus.files.write_atomically: the one way every part writes a whole file (crops, gallery photos, cache,
secrets)."""

import stat

import pytest

from facebus.files import write_atomically


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_folders_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "c.jpg"
    write_atomically(path, b"one")
    write_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["c.jpg"]
    assert mode_of(path) == 0o644, "readable by the crops web server, another user"


def test_secret_mode(tmp_path):
    path = tmp_path / "passwd"
    write_atomically(path, b"secret", mode=0o600)
    assert mode_of(path) == 0o600


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "c.jpg"
    write_atomically(path, b"old")
    with pytest.raises(TypeError):
        write_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.jpg"]
