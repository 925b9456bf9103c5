"""The lock that makes test runs on one machine take turns with its one lab.

It lives in /tmp, so that runs from different checkouts see the same lock; /tmp is
writable by everybody, so the file is opened without following a symlink (another user
could point one at a file root can write) and never truncated.
"""

import fcntl
import os
from contextlib import contextmanager

LAB_LOCK = "/tmp/kvmops-lab.lock"  # shared by every checkout on purpose; opened safely below


def open_lock_file(path=LAB_LOCK):
    """A file descriptor of the lock file, created 0600 if missing; OSError for a symlink."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


@contextmanager
def lab_turn(path=LAB_LOCK):
    """Hold the machine's lab for the block (waits for another run to finish)."""
    fd = open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
