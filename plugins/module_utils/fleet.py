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
     "host": {hostname, host_uuid, logical_cpus, memory_total, memory_free, allocated...,
              maintenance: None or {since, reason, by}},
     "guests": [{name, uuid, state, vcpus, max_vcpus, memory, max_memory, memory_used,
                 cpu_time, cpu_cores, cpu_percent, ...,
                 tags, disks, interfaces, last_migrated, agent_channel, agent}, ...]}

Per hypervisor the calls are bulk: one ``listAllDomains``, one ``getAllDomainStats``, and
one ``XMLDesc`` per guest only when definitions are wanted; those run several at a time
over the one connection (libvirt's RPC client multiplexes them), so a hypervisor far away
costs a few round trips, not one per guest. Hypervisors are gathered in parallel threads,
one connection each; a hypervisor that does not finish within ``timeout`` is reported
unreachable (its thread is left behind as a daemon thread, so it cannot hold up the exit).

CPU use (``cpu_cores``, ``cpu_percent``) comes from the change of ``cpu.time`` between the
first bulk statistics and a second one at least ``sample_seconds`` later; the definitions
are read in between, so sampling costs at most ``sample_seconds`` per hypervisor, in parallel.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    LibvirtConnection, LibvirtOperationError, redact_uri)
from ansible_collections.kvmops.virt.plugins.module_utils.guest_agent import (
    agent_channel_state, agent_info, apply_agent_addresses, worth_asking)
from ansible_collections.kvmops.virt.plugins.module_utils.guest_facts import cpu_usage
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import (
    STATE_NAMES, memory_bytes, read_inventory_view, vcpu_counts)
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import read_mark
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import XMLError, parse_xml

try:
    import libvirt
except ImportError:
    libvirt = None

KIB = 1024
MIB = 1024 * 1024
DEFINITION_WORKERS = 8
AGENT_WORKERS = 8
DEFAULT_TIMEOUT = 120.0
DEFAULT_AGENT_TIMEOUT = 3.0


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
                  cpu_time=stats.get("cpu.time"), memory_used=_balloon_used(stats))
    if definition is not None:
        root = parse_xml(definition, "domain XML of %s" % record["name"])
        view = read_inventory_view(root)
        # drivers without vcpu/balloon statistics (the test driver): the definition says
        vcpus, max_vcpus = vcpu_counts(root)
        memory, max_memory = memory_bytes(root)
        record.update(
            vcpus=record["vcpus"] or vcpus,
            max_vcpus=record["max_vcpus"] or max_vcpus,
            memory=record["memory"] or memory,
            max_memory=record["max_memory"] or max_memory,
            virt_type=view["virt_type"], arch=view["arch"], machine=view["machine"],
            tags=view["tags"], disks=view["disks"], interfaces=view["interfaces"], last_migrated=view["last_migrated"],
            agent_channel=agent_channel_state(root),
        )
    return record


def _balloon_used(stats):
    """Memory the guest's own kernel uses, as its balloon driver reports it; None without one."""
    available, unused = stats.get("balloon.available"), stats.get("balloon.unused")
    return None if available is None or unused is None else max(available - unused, 0) * KIB


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
                    logical_cpus=cpus, memory_total=memory_total, memory_free=memory_free,
                    maintenance=read_mark(conn.handle))


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


def _ask_agents(domains, guests, timeout):
    """Fill ``agent`` (or ``agent_error``) of the guests worth asking, several at a time;
    none is asked after ``timeout`` seconds (one asked before may take libvirt's own agent
    timeout to answer)."""
    deadline = time.monotonic() + timeout

    def ask(index):
        guest = guests[index]
        if time.monotonic() > deadline:
            guest["agent_error"] = "not asked: agent_timeout reached"
            return
        try:
            guest["agent"] = agent_info(domains[index])
        except libvirt.libvirtError as error:
            guest["agent_error"] = error.get_error_message() or str(error)
            return
        apply_agent_addresses(guest)

    wanted = [index for index, guest in enumerate(guests) if worth_asking(guest)]
    if wanted:
        with ThreadPoolExecutor(max_workers=min(AGENT_WORKERS, len(wanted))) as pool:
            list(pool.map(ask, wanted))


def _sample_cpu(conn, domains, guests, first_stats, first_time, sample_seconds):
    """cpu_cores and cpu_percent of the running guests over at least ``sample_seconds``."""
    active = [index for index, guest in enumerate(guests) if guest["state"] in ("running", "paused")]
    time.sleep(max(0.0, sample_seconds - (time.monotonic() - first_time)))
    with conn.operation("sample the guests' CPU use"):
        second = conn.handle.domainListGetStats([domains[index] for index in active],
                                                libvirt.VIR_DOMAIN_STATS_CPU_TOTAL, 0) if active else []
    window = time.monotonic() - first_time
    after = {domain.UUIDString(): stats for domain, stats in second}
    for index in active:
        guest = guests[index]
        guest.update(cpu_usage(first_stats[index], after.get(guest["uuid"], {}), window, guest["vcpus"]))


def gather_hypervisor(conn, name, want_definitions=True, want_addresses=True, sample_seconds=0.0,
                      want_agent=False, agent_timeout=DEFAULT_AGENT_TIMEOUT):
    """The snapshot of one hypervisor (see the module docstring) over an open connection."""
    started = time.monotonic()
    host = host_record(conn)
    with conn.operation("list the guests and their statistics"):
        records = conn.handle.getAllDomainStats(_guest_stats_groups(),
                                                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
    sampled_at = time.monotonic()
    definitions = [None] * len(records)
    if want_definitions and records:
        with conn.operation("read the guests' definitions"):
            with ThreadPoolExecutor(max_workers=min(DEFINITION_WORKERS, len(records))) as pool:
                definitions = list(pool.map(lambda record: _definition(record[0]), records))
    kept = [(domain, stats, definition) for (domain, stats), definition in zip(records, definitions)
            if not (want_definitions and definition is None)]
    domains = [domain for domain, _stats, _definition in kept]
    guests = [guest_record(domain, stats, definition, name) for domain, stats, definition in kept]
    if sample_seconds:
        _sample_cpu(conn, domains, guests, [stats for _domain, stats, _definition in kept], sampled_at, sample_seconds)
    if want_addresses and want_definitions:
        addresses = dhcp_addresses(conn)
        for guest in guests:
            for nic in guest.get("interfaces", []):
                nic["address"] = addresses.get(nic["mac"])
    if want_agent and want_definitions:
        _ask_agents(domains, guests, agent_timeout)
    running = [guest for guest in guests if guest["state"] in ("running", "paused")]
    host.update(
        guests_defined=len(guests), guests_running=len(running),
        vcpus_allocated=sum(guest["vcpus"] or 0 for guest in running),
        memory_allocated=sum(guest["memory"] or 0 for guest in running),
    )
    return dict(name=name, uri=redact_uri(conn.uri), reachable=True, error=None, host=host,
                guests=sorted(guests, key=lambda guest: guest["name"]),
                seconds=round(time.monotonic() - started, 3))


def _unreachable(hypervisor, error):
    return dict(name=hypervisor["name"], uri=redact_uri(hypervisor["uri"]), reachable=False, error=error,
                host=None, guests=[], seconds=None)


def _gather_one(hypervisor, connection_options, options):
    # an agent call needs a read-write connection (libvirt refuses it on a read-only one)
    readonly = not options.get("want_agent")
    try:
        with LibvirtConnection(hypervisor["uri"], readonly=readonly, **connection_options) as conn:
            return gather_hypervisor(conn, hypervisor["name"], **options)
    except (LibvirtOperationError, XMLError) as error:
        return _unreachable(hypervisor, str(error))


def hypervisor_uris(entries):
    """(name -> URI, problems) from a module's ``hypervisors`` option (dicts with name and uri)."""
    uris, problems = {}, []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("uri"):
            problems.append("hypervisors[%d] needs a name and a uri" % index)
        elif str(entry["name"]) in uris:
            problems.append("hypervisor %s is listed twice" % entry["name"])
        else:
            uris[str(entry["name"])] = str(entry["uri"])
    return uris, problems


def gather_fleet(hypervisors, connection_options=None, max_workers=16, want_definitions=True, want_addresses=True,
                 sample_seconds=0.0, want_agent=False, agent_timeout=DEFAULT_AGENT_TIMEOUT, timeout=DEFAULT_TIMEOUT):
    """The snapshots of ``hypervisors`` (dicts with name and uri), in their order.

    An unreachable hypervisor comes back with ``reachable: False`` and ``error``; the others
    are complete. Opening each connection is bounded by ``connect_timeout`` in
    ``connection_options``, and all of one hypervisor's work by ``timeout`` seconds from
    the moment a worker picks it up."""
    connection_options = dict(connection_options or {})
    options = dict(want_definitions=want_definitions, want_addresses=want_addresses,
                   sample_seconds=sample_seconds, want_agent=want_agent, agent_timeout=agent_timeout)
    results = [None] * len(hypervisors)
    pending = queue.Queue()
    for index in range(len(hypervisors)):
        pending.put(index)

    def gather(index, answer, done):
        answer.append(_gather_one(hypervisors[index], connection_options, options))
        done.set()

    def worker():
        # Each hypervisor runs in a daemon thread of its own, waited for at most ``timeout``:
        # a daemon that hangs mid-call (libvirt calls cannot be cancelled) is abandoned, and a
        # daemon thread does not keep the process from exiting.
        while True:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            answer, done = [], threading.Event()
            threading.Thread(target=gather, args=(index, answer, done), daemon=True,
                             name="kvmops-fleet-%s" % hypervisors[index]["name"]).start()
            if done.wait(timeout):
                results[index] = answer[0]
            else:
                results[index] = _unreachable(hypervisors[index], "no complete answer within %g seconds (timeout); "
                                              "the hypervisor or its libvirtd hangs" % timeout)

    count = max(1, min(max_workers, len(hypervisors)))
    workers = [threading.Thread(target=worker, daemon=True) for _worker in range(count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return results
