"""What runs where in the lab, and how much CPU each guest uses right now.

CPU use comes from libvirt's bulk stats (``cpu.time``) sampled twice on every host, in
parallel, ``seconds`` apart: the same counters the collection reads.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import libvirt

from .connection import LibvirtOperationError, open_lab_connection
from .guests import recorded_settings

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}
_STATS = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU


@dataclass
class GuestStatus:
    name: str
    state: str
    vcpus: int
    memory_mib: int
    persistent: bool
    cpu_percent: float = None  # of the guest's vCPUs; None when not running
    load_set: int = None
    dirty_set: int = None


@dataclass
class HostStatus:
    name: str
    uri: str
    pid: int
    error: str = None
    guests: list = field(default_factory=list)

    @property
    def cpu_cores(self):
        return sum(g.cpu_percent * g.vcpus / 100 for g in self.guests if g.cpu_percent is not None)


def _cpu_times(conn):
    return {dom.UUIDString(): (stats.get("cpu.time"), time.monotonic())
            for dom, stats in conn.getAllDomainStats(_STATS)}


def _describe(conn, first_sample):
    guests = []
    for dom, stats in conn.getAllDomainStats(_STATS):
        now = time.monotonic()
        state, _reason = dom.state()
        guest = GuestStatus(
            name=dom.name(), state=_STATE_NAMES.get(state, str(state)),
            vcpus=stats.get("vcpu.current") or dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CURRENT),
            memory_mib=dom.maxMemory() // 1024, persistent=bool(dom.isPersistent()))
        before = first_sample.get(dom.UUIDString())
        if state == libvirt.VIR_DOMAIN_RUNNING and before and before[0] is not None and "cpu.time" in stats:
            elapsed_ns = (now - before[1]) * 1e9
            guest.cpu_percent = 100.0 * (stats["cpu.time"] - before[0]) / elapsed_ns / max(guest.vcpus, 1)
        guest.load_set, guest.dirty_set = recorded_settings(dom)
        guests.append(guest)
    return sorted(guests, key=lambda g: g.name)


def collect(hosts, seconds=1.0):
    """HostStatus for every LabHost, CPU use measured over `seconds`."""
    def connect(host):
        if not host.is_running():
            return None, "not running"
        try:
            conn = open_lab_connection(host.spec.uri)
        except LibvirtOperationError as error:
            return None, error.detail
        try:
            return conn, _cpu_times(conn)
        except libvirt.libvirtError as error:
            conn.close()
            return None, error.get_error_message()

    with ThreadPoolExecutor(max_workers=max(len(hosts), 1)) as pool:
        opened = list(pool.map(connect, hosts))
        time.sleep(seconds)

        def finish(pair):
            host, (conn, first) = pair
            status = HostStatus(host.spec.name, host.spec.uri, host.pid())
            if conn is None:
                status.error = first
                return status
            try:
                status.guests = _describe(conn, first)
            except libvirt.libvirtError as error:
                status.error = error.get_error_message()
            finally:
                conn.close()
            return status

        return list(pool.map(finish, zip(hosts, opened)))


def _percent(value):
    return "-" if value is None else f"{value:.0f}%"


def render(statuses):
    lines = []
    for host in statuses:
        header = f"{host.name:<6} {host.uri:<28}"
        if host.error:
            lines.append(f"{header} DOWN: {host.error}")
            continue
        running = sum(g.state == "running" for g in host.guests)
        lines.append(f"{header} libvirtd pid {host.pid:<8} {running} of {len(host.guests)} guests running"
                     f"   CPU {host.cpu_cores:.2f} cores")
        if host.guests:
            lines.append(f"    {'GUEST':<20} {'STATE':<9} {'vCPU':>4} {'MEMORY':>8} {'LOAD SET':>8} {'CPU USE':>8}")
        for guest in host.guests:
            lines.append(f"    {guest.name:<20} {guest.state:<9} {guest.vcpus:>4} {guest.memory_mib:>4} MiB"
                         f" {_percent(guest.load_set):>8} {_percent(guest.cpu_percent):>8}")
    return "\n".join(lines) if lines else "the lab has no hosts (run 'make lab-up')"
