"""pyro_vae.core.files: atomic writes, directories and the run-directory lock."""

import os

import pytest

from pyro_vae.core.errors import RunDirError
from pyro_vae.core.files import InUse, atomic_write, lock_dir, make_dir, temporary


def test_atomic_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    for sync in (False, True):
        atomic_write(path, lambda tmp, sync=sync: tmp.write_text(f"new {sync}"), sync=sync)
        assert path.read_text() == f"new {sync}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize(
    "error", [OSError(28, "No space left on device"), KeyboardInterrupt(), ValueError("x")]
)
def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "a.txt"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half")
        raise error

    expected = RunDirError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected) as info:
        atomic_write(path, write)
    if isinstance(error, OSError):
        assert str(info.value) == f"cannot write {str(path)!r}: no space left on device"
    assert path.read_text() == "old" and not temporary(path).exists()


def test_make_dir_says_what_is_in_the_way(tmp_path, read_only_dir):
    (tmp_path / "f").write_text("")
    assert make_dir(tmp_path / "a" / "b").is_dir()
    with pytest.raises(
        RunDirError, match=r"output 'f' is a file, not a directory|is a file, not a directory"
    ):
        make_dir(tmp_path / "f", "output")
    with pytest.raises(RunDirError, match=r"cannot create output .*: not a directory"):
        make_dir(tmp_path / "f" / "x", "output")
    with pytest.raises(
        RunDirError, match=r"cannot create output .*: (permission denied|operation not permitted)"
    ):
        make_dir(read_only_dir / "x", "output")
    with pytest.raises(
        RunDirError, match=r"cannot write in output .*: (permission denied|operation not permitted)"
    ):
        make_dir(read_only_dir, "output")


def test_the_lock_is_exclusive_and_released(tmp_path):
    with lock_dir(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith("process ")
        with pytest.raises(InUse, match=r"run directory .* is in use by process \d+"), lock_dir(tmp_path):
            pass
    with lock_dir(tmp_path):
        pass
    assert not (tmp_path / ".lock").exists()  # a directory no process works in holds no lock file


def test_a_refused_lock_leaves_the_holders_file_and_a_released_one_leaves_none(tmp_path):
    with lock_dir(tmp_path):
        held = (tmp_path / ".lock").read_text()
        for _ in range(2):
            with pytest.raises(InUse), lock_dir(tmp_path):
                pass
        assert (tmp_path / ".lock").read_text() == held
    assert list(tmp_path.iterdir()) == []


def test_a_lock_taken_on_a_file_its_holder_removed_is_taken_again_on_the_new_one(tmp_path, monkeypatch):
    """Between opening ``.lock`` and locking it, its holder let go (removing it) and another
    process made a new one: the lock must be on the file that is there, not the removed one."""
    from pyro_vae.core import files

    real, calls = files.fcntl.flock, []

    def racing(fd, op):
        if op & files.fcntl.LOCK_EX and not calls:
            (tmp_path / ".lock").unlink()
            (tmp_path / ".lock").write_text("process 1\n")
        calls.append(os.fstat(fd).st_ino)
        return real(fd, op)

    monkeypatch.setattr(files.fcntl, "flock", racing)
    with lock_dir(tmp_path):
        assert os.stat(tmp_path / ".lock").st_ino == calls[1] != calls[0]
