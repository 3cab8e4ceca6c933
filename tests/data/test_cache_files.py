"""The cache's side of a download: the folders a fetch makes and takes back, and temporary
files that are renamed into place, removed, or, left by a killed process, removed by the next."""

import os

import pytest

from pyro_vae.core.errors import DataError
from pyro_vae.data import cache_files
from pyro_vae.data.cache_files import Partial, make_folder, remove_empty, remove_stale

needs_flock = pytest.mark.skipif(cache_files.fcntl is None, reason="no flock here (Windows)")


def test_make_folder_returns_the_folders_it_made_and_remove_empty_takes_them_back(tmp_path):
    made = make_folder(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    assert make_folder(tmp_path / "a" / "b" / "c") == []  # there already
    (tmp_path / "a" / "b" / "kept").write_bytes(b"")
    remove_empty(made)  # c is empty, b is not: b and a stay
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["kept"]


def test_make_folder_names_a_file_in_the_way(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DataError) as e:
        make_folder(tmp_path / "file" / "dataset")
    assert str(e.value) == (
        f"cannot fetch into {tmp_path / 'file' / 'dataset'}: {tmp_path / 'file'} is a file, not a "
        "directory; move it away, or use another cache (PYRO_VAE_DATA=DIR, or `pyro-vae data get --dir DIR`)"
    )


def test_a_partial_file_is_renamed_into_place_when_kept_and_removed_otherwise(tmp_path):
    old = os.umask(0o022)
    try:
        with Partial(tmp_path, "f.bin") as partial:
            assert partial.path.name.startswith(".f.bin.") and partial.path.name.endswith(".part")
            partial.file.write(b"whole")
            partial.keep()
    finally:
        os.umask(old)
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"] and (tmp_path / "f.bin").read_bytes() == b"whole"
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644  # readable by others, as the umask says
    with pytest.raises(KeyboardInterrupt), Partial(tmp_path, "g.bin") as partial:
        partial.file.write(b"half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


@needs_flock
def test_only_the_temporary_files_no_process_holds_are_stale(tmp_path):
    (tmp_path / ".f.bin.dead1234.part").write_bytes(b"left by a killed download")
    (tmp_path / ".other.bin.dead1234.part").write_bytes(b"another file's")
    with Partial(tmp_path, "f.bin") as alive:  # a download in progress, here or in another process
        assert remove_stale(tmp_path, "f.bin") == [tmp_path / ".f.bin.dead1234.part"]
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted([alive.path.name, ".other.bin.dead1234.part"])
    assert remove_stale(tmp_path / "absent", "f.bin") == []
