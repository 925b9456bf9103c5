"""Reading a guest's CPU use the way the collection does: libvirt's bulk stats."""

import time

import libvirt

_STATS = libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU


def cpu_percent(conn, name, seconds=3.0):
    """CPU use of a running guest in percent of its vCPUs, from libvirt's bulk stats."""
    dom = conn.lookupByName(name)

    def sample():
        (_dom, stats), = conn.domainListGetStats([dom], _STATS)
        return stats["cpu.time"], stats["vcpu.current"], time.monotonic()

    cpu0, vcpus, t0 = sample()
    time.sleep(seconds)
    cpu1, _vcpus, t1 = sample()
    return 100.0 * (cpu1 - cpu0) / ((t1 - t0) * 1e9) / vcpus
