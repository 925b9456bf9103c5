# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet snapshot: every hypervisor with its capacity and its guests, gathered in parallel.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

One snapshot type serves the inventory plugin, the event sources and the planner. It is
made of plain JSON-able dicts, so it can be cached and compared:

    {"name": "kvm1", "uri": "qemu+tcp://...", "reachable": True, "error": None,
     "host": {hostname, host_uuid, logical_cpus, memory_total, memory_free, allocated...},
     "guests": [{name, uuid, state, id, vcpus, memory, ..., tags, disks, interfaces}, ...]}

Per hypervisor the calls are bulk: one ``listAllDomains``, one ``getAllDomainStats``, and
one ``XMLDesc`` per guest only when definitions are wanted; those run several at a time
over the one connection (libvirt's RPC client multiplexes them), so a hypervisor far away
costs a few round trips, not one per guest. Hypervisors are gathered in parallel threads,
one connection each, each bounded by the connection's timeout.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    LibvirtConnection, LibvirtOperationError, redact_uri)
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import (
    STATE_NAMES, memory_bytes, read_view, vcpu_counts)
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import XMLError, parse_xml

try:
    import libvirt
except ImportError:
    libvirt = None

KIB = 1024
MIB = 1024 * 1024
DEFINITION_WORKERS = 8


def _guest_stats_groups():
    return (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
            | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_BALLOON)


def _definition(domain):
    """The live domain XML of a guest, or None when it vanished since the listing."""
    try:
        return domain.XMLDesc(0)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def guest_record(domain, stats, definition, hypervisor):
    """One guest of the snapshot from its bulk statistics and (optional) definition."""
    state = STATE_NAMES.get(stats.get("state.state"), "unknown")
    record = dict(name=domain.name(), uuid=domain.UUIDString(), state=state, hypervisor=hypervisor,
                  vcpus=stats.get("vcpu.current"), max_vcpus=stats.get("vcpu.maximum"),
                  memory=stats["balloon.current"] * KIB if "balloon.current" in stats else None,
                  max_memory=stats["balloon.maximum"] * KIB if "balloon.maximum" in stats else None,
                  cpu_time=stats.get("cpu.time"))
    if definition is not None:
        root = parse_xml(definition, "domain XML of %s" % record["name"])
        view = read_view(root)
        # drivers without vcpu/balloon statistics (the test driver): the definition says
        vcpus, max_vcpus = vcpu_counts(root)
        memory, max_memory = memory_bytes(root)
        record.update(
            vcpus=record["vcpus"] or vcpus,
            max_vcpus=record["max_vcpus"] or max_vcpus,
            memory=record["memory"] or memory,
            max_memory=record["max_memory"] or max_memory,
            virt_type=view["virt_type"], arch=view["arch"], machine=view["machine"],
            tags=view["tags"], disks=view["disks"], interfaces=view["interfaces"],
        )
    return record


def host_record(conn):
    """Capacity and identity of one hypervisor, in a few calls."""
    with conn.operation("read the hypervisor's capacity"):
        capabilities = parse_xml(conn.handle.getCapabilities(), "capabilities XML")
        _arch, memory_mib, cpus, _mhz, _nodes, _sockets, _cores, _threads = conn.handle.getInfo()
        try:
            memory = conn.handle.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
            memory_total, memory_free = memory["total"] * KIB, memory["free"] * KIB
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
            memory_total, memory_free = memory_mib * MIB, conn.handle.getFreeMemory()
        return dict(hostname=conn.handle.getHostname(), host_uuid=capabilities.findtext("host/uuid"),
                    driver=conn.handle.getType(), arch=capabilities.findtext("host/cpu/arch"),
                    logical_cpus=cpus, memory_total=memory_total, memory_free=memory_free)


def dhcp_addresses(conn):
    """MAC -> IPv4 address from the DHCP leases of the hypervisor's active networks."""
    addresses = {}
    with conn.operation("read DHCP leases"):
        for network in conn.handle.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
            try:
                leases = network.DHCPLeases()
            except libvirt.libvirtError as error:
                if error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    return addresses  # the driver keeps no leases at all
                raise
            for lease in leases:
                if lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and lease.get("mac"):
                    addresses[lease["mac"].lower()] = lease.get("ipaddr")
    return addresses


def gather_hypervisor(conn, name, want_definitions=True, want_addresses=True):
    """The snapshot of one hypervisor (see the module docstring) over an open connection."""
    started = time.monotonic()
    host = host_record(conn)
    with conn.operation("list the guests and their statistics"):
        records = conn.handle.getAllDomainStats(_guest_stats_groups(),
                                                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
    definitions = [None] * len(records)
    if want_definitions and records:
        with conn.operation("read the guests' definitions"):
            with ThreadPoolExecutor(max_workers=min(DEFINITION_WORKERS, len(records))) as pool:
                definitions = list(pool.map(lambda record: _definition(record[0]), records))
    guests = [guest_record(domain, stats, definition, name)
              for (domain, stats), definition in zip(records, definitions)
              if not (want_definitions and definition is None)]
    if want_addresses and want_definitions:
        addresses = dhcp_addresses(conn)
        for guest in guests:
            for nic in guest.get("interfaces", []):
                nic["address"] = addresses.get(nic["mac"])
    running = [guest for guest in guests if guest["state"] in ("running", "paused")]
    host.update(
        guests_defined=len(guests), guests_running=len(running),
        vcpus_allocated=sum(guest["vcpus"] or 0 for guest in running),
        memory_allocated=sum(guest["memory"] or 0 for guest in running),
    )
    return dict(name=name, uri=redact_uri(conn.uri), reachable=True, error=None, host=host,
                guests=sorted(guests, key=lambda guest: guest["name"]),
                seconds=round(time.monotonic() - started, 3))


def _gather_one(hypervisor, connection_options, want_definitions, want_addresses):
    try:
        with LibvirtConnection(hypervisor["uri"], readonly=True, **connection_options) as conn:
            return gather_hypervisor(conn, hypervisor["name"], want_definitions, want_addresses)
    except (LibvirtOperationError, XMLError) as error:
        return dict(name=hypervisor["name"], uri=redact_uri(hypervisor["uri"]), reachable=False, error=str(error),
                    host=None, guests=[], seconds=None)


def gather_fleet(hypervisors, connection_options=None, max_workers=16, want_definitions=True, want_addresses=True):
    """The snapshots of ``hypervisors`` (dicts with name and uri), in their order.

    An unreachable hypervisor comes back with ``reachable: False`` and ``error``; the others
    are complete. Each connection is bounded by ``connect_timeout`` in ``connection_options``."""
    options = dict(connection_options or {})
    workers = max(1, min(max_workers, len(hypervisors)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda hypervisor: _gather_one(hypervisor, options, want_definitions, want_addresses),
                             hypervisors))
