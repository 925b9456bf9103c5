# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Facts about one hypervisor: identity, CPU, memory, guests' allocation, storage, networks.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Every function takes an open ``LibvirtConnection`` (or data read from one) and returns
plain dicts and lists of str, int, float, bool and None, ready for a module result, an
inventory's host vars or an event. They keep no state between calls and share nothing
but their connection, so the facts of many hosts can be gathered in parallel threads,
one connection per thread:

    def facts_of(uri):
        with LibvirtConnection(uri, readonly=True) as conn:
            return gather_host_facts(conn, sample_seconds=1.0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        fleet = dict(zip(uris, pool.map(facts_of, uris)))

The hosts' CPU sampling windows then overlap, so the whole fleet takes about one
``sample_seconds``. A poller that keeps ``cpu_times`` between rounds needs no sleep at all.

Sizes are in bytes, CPU times in nanoseconds. Guests are read with one bulk call
(``getAllDomainStats``), never by looking them up one by one.
"""

from __future__ import annotations

import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import redact_uri
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import libvirt_size_bytes

try:
    import libvirt
except ImportError:
    libvirt = None

SUBSETS = ("cpu", "memory", "guests", "storage", "networks")
KIB = 1024
MIB = 1024 * 1024

# getCPUStats(-1) keys that count time (ns); "busy" is what guests and the host itself ran.
_BUSY_TIMES = ("user", "kernel")
_ALL_TIMES = ("user", "kernel", "idle", "iowait")


def version_string(number):
    """libvirt encodes versions as major * 1,000,000 + minor * 1,000 + release."""
    return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)


def _unsupported(error):
    return error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT


def _ratio(part, whole, digits=3):
    return round(part / whole, digits) if whole else None


# ---------------------------------------------------------------- identity

def read_capabilities(conn):
    """The hypervisor's capabilities XML as an Element (raises XMLError if it does not parse)."""
    with conn.operation("read the host's capabilities"):
        text = conn.handle.getCapabilities()
    return parse_xml(text, "capabilities XML of %s" % redact_uri(conn.uri))


def virtualization_facts(capabilities):
    """Which domain types the host offers for its own architecture: kvm (hardware) or only qemu (TCG)."""
    host_arch = capabilities.findtext("host/cpu/arch")
    domain_types = set()
    for arch in capabilities.findall("guest/arch"):
        if arch.get("name") == host_arch:
            domain_types.update(domain.get("type") for domain in arch.findall("domain"))
    domain_types.discard(None)
    return dict(kvm="kvm" in domain_types, domain_types=sorted(domain_types))


def host_identity(conn, capabilities):
    """hostname, uri, host_uuid, driver, arch, versions and virtualisation support."""
    with conn.operation("ask the hypervisor who it is"):
        identity = dict(
            hostname=conn.handle.getHostname(),
            uri=redact_uri(conn.uri),
            host_uuid=capabilities.findtext("host/uuid"),
            driver=conn.handle.getType(),
            arch=capabilities.findtext("host/cpu/arch"),
            libvirt_version=version_string(conn.handle.getLibVersion()),
            hypervisor_version=version_string(conn.handle.getVersion()),
        )
    identity["virtualization"] = virtualization_facts(capabilities)
    return identity


# ---------------------------------------------------------------- CPU

def node_info(conn):
    """libvirt's virNodeInfo as a dict (memory in bytes; per-NUMA-node on some hosts)."""
    with conn.operation("read the host's node information"):
        arch, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.handle.getInfo()
    return dict(arch=arch, memory=memory_mib * MIB, logical_cpus=cpus, mhz=mhz, numa_nodes=nodes,
                sockets_per_node=sockets, cores_per_socket=cores, threads_per_core=threads)


def cpu_topology(capabilities, node):
    """Model, vendor and topology of the host's CPUs."""
    return dict(
        model=capabilities.findtext("host/cpu/model"),
        vendor=capabilities.findtext("host/cpu/vendor"),
        mhz=node["mhz"],
        numa_nodes=node["numa_nodes"],
        sockets=node["numa_nodes"] * node["sockets_per_node"],
        cores_per_socket=node["cores_per_socket"],
        threads_per_core=node["threads_per_core"],
        logical_cpus=node["logical_cpus"],
    )


def cpu_times(conn):
    """The host's cumulative CPU time counters over all CPUs (ns), or None where unsupported.

    Keep one and pass it with a later one to ``cpu_usage_percent``: a poller needs no sleep.
    """
    with conn.operation("read the host's CPU time counters"):
        try:
            return conn.handle.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
        except libvirt.libvirtError as error:
            if _unsupported(error):
                return None
            raise


def cpu_usage_percent(before, after):
    """Busy share (user + kernel over all time including idle and iowait) between two samples.

    None when either sample is missing or the counters did not advance (or went back, as
    after a reboot of the host).
    """
    if before is None or after is None:
        return None
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in _ALL_TIMES}
    total = sum(delta.values())
    busy = sum(delta[key] for key in _BUSY_TIMES)
    if total <= 0 or busy < 0:
        return None
    return round(100.0 * busy / total, 1)


def sample_cpu_usage(conn, seconds):
    """The host's CPU use in percent of all its CPUs over ``seconds``; None where unmeasurable."""
    before = cpu_times(conn)
    if before is None:
        return None
    time.sleep(seconds)
    return cpu_usage_percent(before, cpu_times(conn))


# ---------------------------------------------------------------- memory

def memory_facts(conn, node):
    """Total and free memory of the whole host, in bytes.

    ``getMemoryStats`` over all cells is the truth; ``getInfo`` may count NUMA node 0 only,
    so it is the fallback for drivers without node memory stats (the test driver).
    """
    with conn.operation("read the host's memory statistics"):
        try:
            stats = conn.handle.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        except libvirt.libvirtError as error:
            if not _unsupported(error):
                raise
            return dict(total=node["memory"], free=conn.handle.getFreeMemory(), buffers_cached=None,
                        source="node_info")
    buffers_cached = None
    if "buffers" in stats or "cached" in stats:
        buffers_cached = (stats.get("buffers", 0) + stats.get("cached", 0)) * KIB
    return dict(total=stats["total"] * KIB, free=stats["free"] * KIB, buffers_cached=buffers_cached,
                source="memory_stats")


# ---------------------------------------------------------------- guests

_GUEST_STATS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_VCPU
                | libvirt.VIR_DOMAIN_STATS_BALLOON) if libvirt else 0


def guest_resources(conn):
    """name, uuid, active, vcpus and memory (bytes, current) of every guest, in one bulk call.

    NOWAIT: a guest busy with a job (a migration) does not make the whole call wait for
    that job; its figures then come from what libvirt already knows about it.
    """
    with conn.operation("read the statistics of all guests"):
        records = conn.handle.getAllDomainStats(_GUEST_STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
        guests = [_guest_record(dom, stats) for dom, stats in records]
    return [guest for guest in guests if guest is not None]


def _guest_record(dom, stats):
    vcpus, memory_kib = stats.get("vcpu.current"), stats.get("balloon.current")
    state = stats.get("state.state")
    if vcpus is None or memory_kib is None or state is None:
        # Drivers without these stat groups (the test driver) only have the per-guest call.
        try:
            state, _max_kib, memory_kib, vcpus, _cpu_time = dom.info()
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None  # gone since the bulk call: it holds nothing any more
            raise
    return dict(name=dom.name(), uuid=dom.UUIDString(), active=state != libvirt.VIR_DOMAIN_SHUTOFF,
                vcpus=vcpus, memory=memory_kib * KIB)


def allocation_totals(guests):
    """Counts, vCPUs and memory of the running (active) guests and of all defined guests."""
    running = [guest for guest in guests if guest["active"]]
    return dict(
        defined=len(guests),
        running=len(running),
        vcpus_running=sum(guest["vcpus"] for guest in running),
        vcpus_defined=sum(guest["vcpus"] for guest in guests),
        memory_running=sum(guest["memory"] for guest in running),
        memory_defined=sum(guest["memory"] for guest in guests),
    )


def overcommit_ratios(totals, logical_cpus, memory_total):
    """vCPUs per logical CPU and guest memory per byte of host memory (None: unknown capacity)."""
    return dict(
        vcpus_running=_ratio(totals["vcpus_running"], logical_cpus),
        vcpus_defined=_ratio(totals["vcpus_defined"], logical_cpus),
        memory_running=_ratio(totals["memory_running"], memory_total),
        memory_defined=_ratio(totals["memory_defined"], memory_total),
    )


# ---------------------------------------------------------------- storage and networks

def _uuids(objects):
    # Filtered listings say which pools or networks are active or autostarted in one call
    # each, instead of two calls per object.
    return {obj.UUIDString() for obj in objects}


def storage_pool_summaries(conn):
    """name, type, active, autostart, capacity, allocation and available (bytes) of every pool."""
    with conn.operation("list storage pools"):
        pools = conn.handle.listAllStoragePools()
        active = _uuids(conn.handle.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE))
        autostart = _uuids(conn.handle.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART))
    summaries = []
    for pool in pools:
        with conn.operation("read storage pool %s" % pool.name()):
            root = parse_xml(pool.XMLDesc(0), "XML of storage pool %s" % pool.name())
        summaries.append(dict(
            name=pool.name(),
            type=root.get("type"),
            active=pool.UUIDString() in active,
            autostart=pool.UUIDString() in autostart,
            capacity=libvirt_size_bytes(root.find("capacity"), "bytes"),
            allocation=libvirt_size_bytes(root.find("allocation"), "bytes"),
            available=libvirt_size_bytes(root.find("available"), "bytes"),
        ))
    return sorted(summaries, key=lambda summary: summary["name"])


def network_summaries(conn):
    """name, active, autostart, bridge and forward mode of every virtual network."""
    with conn.operation("list virtual networks"):
        networks = conn.handle.listAllNetworks()
        active = _uuids(conn.handle.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
        autostart = _uuids(conn.handle.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART))
    summaries = []
    for network in networks:
        with conn.operation("read virtual network %s" % network.name()):
            root = parse_xml(network.XMLDesc(0), "XML of virtual network %s" % network.name())
        bridge, forward = root.find("bridge"), root.find("forward")
        summaries.append(dict(
            name=network.name(),
            active=network.UUIDString() in active,
            autostart=network.UUIDString() in autostart,
            bridge=bridge.get("name") if bridge is not None else None,
            # libvirt's own meaning of a network without <forward>
            forward_mode=forward.get("mode", "nat") if forward is not None else "isolated",
        ))
    return sorted(summaries, key=lambda summary: summary["name"])


# ---------------------------------------------------------------- all together

def normalize_subsets(requested):
    """The set of subsets to gather from a list that may say "all"; ValueError for unknown ones."""
    requested = list(requested)
    unknown = sorted(set(requested) - set(SUBSETS) - {"all"})
    if unknown:
        raise ValueError("gather: unknown subset(s) %s; choose from all, %s" % (", ".join(unknown), ", ".join(SUBSETS)))
    return set(SUBSETS) if "all" in requested else set(requested)


def gather_host_facts(conn, subsets=SUBSETS, sample_seconds=1.0):
    """All facts of one host as one dict; the identity always, the rest per ``subsets``.

    CPU use is sampled last, over ``sample_seconds`` (0: not sampled, usage_percent None),
    so the other calls do not count in the window.
    """
    subsets = normalize_subsets(subsets)
    capabilities = read_capabilities(conn)
    node = node_info(conn)
    facts = host_identity(conn, capabilities)
    memory = memory_facts(conn, node) if subsets & {"memory", "guests"} else None
    if "memory" in subsets:
        facts["memory"] = memory
    if "guests" in subsets:
        totals = allocation_totals(guest_resources(conn))
        facts["guests"] = totals
        facts["overcommit"] = overcommit_ratios(totals, node["logical_cpus"], memory["total"])
    if "storage" in subsets:
        facts["storage_pools"] = storage_pool_summaries(conn)
    if "networks" in subsets:
        facts["networks"] = network_summaries(conn)
    if "cpu" in subsets:
        cpu = cpu_topology(capabilities, node)
        cpu["usage_percent"] = sample_cpu_usage(conn, sample_seconds) if sample_seconds > 0 else None
        cpu["sample_seconds"] = sample_seconds
        facts["cpu"] = cpu
    facts["gathered"] = sorted(subsets)
    return facts
