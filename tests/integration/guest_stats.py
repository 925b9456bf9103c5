"""Reading a guest's CPU use the way the collection does: libvirt's bulk stats."""

import time

import libvirt

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection

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


def host_cpu_percent(lab, host, names):
    """CPU load of ``host`` from its guests' own counters (not the role's figures): the sum of
    their use in cores over the host's cores, in percent."""
    with LibvirtConnection(lab.host(host).spec.uri) as conn:
        cores = conn.handle.getInfo()[2]
        here = [domain.name() for domain in conn.handle.listAllDomains() if domain.isActive() and domain.name() in names]
        return sum(cpu_percent(conn.handle, name, seconds=2) for name in here) / 100 / cores * 100
