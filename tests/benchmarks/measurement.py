"""Run one command and measure it: wall time, peak RSS, and a hard time limit.

The peak RSS is the ``ru_maxrss`` that ``wait4()`` reports for the child: the largest
resident set of that process and of any descendant it waited for (the same figure
``/usr/bin/time -v`` prints as "Maximum resident set size"). The wall time runs from just
before the fork to the moment the child is reaped, so every contender pays the same
start-up costs (Python, ansible-core's imports).

The child gets a session of its own: a time limit (or Ctrl-C in the harness) kills its
whole process group, so nothing it started outlives the measurement.
"""

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass


@dataclass
class Run:
    """One measured run."""

    seconds: float
    max_rss_kib: int
    returncode: int
    timed_out: bool

    @property
    def max_rss_mib(self):
        return self.max_rss_kib / 1024.0


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it ended on its own meanwhile


def run_measured(argv, env, cwd, timeout, stdout=None, stderr=None):
    """Run argv (stdout to the file object ``stdout`` or /dev/null) and return a Run.

    After ``timeout`` seconds the process group is killed and the Run says timed_out.
    """
    timed_out = threading.Event()

    def expire():
        timed_out.set()
        _kill_group(process.pid)

    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=stdout if stdout is not None else subprocess.DEVNULL,
                               stderr=stderr if stderr is not None else subprocess.DEVNULL,
                               start_new_session=True)
    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        _pid, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        # Ctrl-C or SIGTERM in the harness: the child is in its own session and would not see it
        _kill_group(process.pid)
        process.wait()
        raise
    finally:
        timer.cancel()
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    # a child that ended on its own may leave children of its own in its group
    _kill_group(process.pid)
    return Run(seconds=seconds, max_rss_kib=usage.ru_maxrss, returncode=process.returncode,
               timed_out=timed_out.is_set())
