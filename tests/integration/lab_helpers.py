"""Small helpers of the lab tests: a spare hypervisor outside the test lab, and waiting
for an event source's events."""

import asyncio
import contextlib
import shutil
import time

SPARE_HOST = "kvm4"  # not one of the test lab's hosts: tests that start it alone use it


@contextlib.contextmanager
def spare_host(host, prepare=None):
    """``host`` (a LabHost for SPARE_HOST) started from an empty directory, after
    ``prepare(host)`` if given; stopped and its directory removed afterwards."""
    if host.is_running():
        host.stop()
    shutil.rmtree(host.dir, ignore_errors=True)
    try:
        if prepare is not None:
            prepare(host)
        host.start()
        yield host
    finally:
        host.stop()
        shutil.rmtree(host.dir, ignore_errors=True)


async def next_event(queue, wanted, timeout=30):
    """The next event for which ``wanted(event)`` holds; the ones before it are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(queue.get(), max(0.1, deadline - time.monotonic()))
        if wanted(event):
            return event
