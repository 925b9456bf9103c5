"""The machine-wide lab lock in /tmp is opened safely: a symlink planted there is refused
and what it points to is left alone."""

import os

import pytest

from lab.locking import lab_turn, open_lock_file


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me")
    planted = tmp_path / "kvmops-lab.lock"
    planted.symlink_to(target)
    with pytest.raises(OSError):
        open_lock_file(str(planted))
    with pytest.raises(OSError), lab_turn(str(planted)):
        pass
    assert target.read_text() == "keep me"


def test_the_lock_file_is_made_private_and_never_truncated(tmp_path):
    path = tmp_path / "kvmops-lab.lock"
    with lab_turn(str(path)):
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text("left by another run")
    os.close(open_lock_file(str(path)))
    assert path.read_text() == "left by another run"
