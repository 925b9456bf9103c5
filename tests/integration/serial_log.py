"""What a lab guest printed on its serial port, read from the file QEMU logs it to.

The lab guest's init prints what it found at boot (``kvmops-lab: disk ...``,
``kvmops-lab: cidata ...``) and loadd prints a tick every second with the vCPUs online
and MemTotal, so tests read what the guest kernel itself saw.
"""

import re
import time
from dataclasses import dataclass

TICK = re.compile(r"kvmops-lab: tick=(\d+) up=([\d.]+) load=\d+ dirty=\d+ cpus=(\d+) "
                  r"mem_total_kib=(\d+) cpus_online=(\d+)")


@dataclass
class Tick:
    number: int
    uptime: float
    workers: int
    mem_total_kib: int
    cpus_online: int


class SerialLog:
    """What the guest printed on its serial port, read from the file QEMU logs it to."""

    def __init__(self, path):
        self.path = path

    def size(self):
        return self.path.stat().st_size if self.path.exists() else 0

    def text(self, since=0):
        if not self.path.exists():
            return ""
        with self.path.open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace").replace("\r", "")

    def ticks(self, since=0):
        return [Tick(int(n), float(up), int(workers), int(mem), int(online))
                for n, up, workers, mem, online in TICK.findall(self.text(since))]

    def wait_for_tick(self, condition, since=0, timeout=30, what=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for tick in self.ticks(since):
                if condition(tick):
                    return tick
            time.sleep(0.2)
        last = self.ticks(since)[-1:] or "none"
        wanted = f"tick with {what}" if what else "tick at all"
        raise AssertionError(f"the guest printed no {wanted} within {timeout} s (last: {last})")

    def line(self, prefix):
        """The rest of the first line starting with ``kvmops-lab: <prefix>``."""
        for line in self.text().splitlines():
            if line.startswith("kvmops-lab: " + prefix):
                return line[len("kvmops-lab: " + prefix):]
        raise AssertionError(f"the guest never printed 'kvmops-lab: {prefix}...':\n{self.text()[-2000:]}")
