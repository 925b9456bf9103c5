#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: host_info
short_description: Facts about one KVM hypervisor, its capacity, load and guests
version_added: 0.1.0
description:
  - Reports, over a read-only connection, a libvirt hypervisor's host name and UUID, CPU
    model and topology, memory, CPU use sampled over a short window, how many guests it
    runs and defines, the vCPUs and memory given to them, over-commit ratios, libvirt and
    hypervisor versions, whether it offers hardware (KVM) virtualisation, and a summary of
    its storage pools and virtual networks.
  - Guests are read with one bulk call however many there are, so the module stays fast
    on a crowded host. Use O(gather) to skip what you do not need, and O(sample_seconds=0)
    to skip the CPU sampling window.
  - Changes nothing on the hypervisor.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
  - kvmops.virt.attributes.INFO_MODULE
options:
  sample_seconds:
    description:
      - Length of the window, in seconds, over which the host's CPU use is measured
        (from the host's CPU time counters at its start and end).
      - V(0) does not sample; RV(host.cpu.usage_percent) is then V(null).
      - Only used when O(gather) includes V(cpu). At most V(300).
    type: float
    default: 1.0
  gather:
    description:
      - Which groups of facts to read besides the host's identity (always returned).
      - V(cpu) is the CPU model, topology and sampled use; V(memory) the host's memory;
        V(guests) the guest counts, their vCPUs and memory, and the over-commit ratios;
        V(storage) the storage pools; V(networks) the virtual networks; V(all) everything.
      - An empty list returns the identity only, the fastest call there is.
    type: list
    elements: str
    choices: [all, cpu, memory, guests, storage, networks]
    default: [all]
notes:
  - Memory comes from the host's memory statistics over all NUMA cells. Drivers without
    them (libvirt's test driver) fall back to the node information, which on some hosts
    counts NUMA node 0 only; RV(host.memory.source) says which was used.
  - CPU use is the share of time all the host's CPUs spent in user and kernel mode,
    idle and I/O wait counting as not busy. It covers everything the host runs, guests and
    anything else.
  - Storage pool sizes are libvirt's figures as of the pool's last refresh; this module
    does not refresh pools (it changes nothing).
seealso:
  - module: kvmops.virt.ping
  - name: libvirt host capabilities
    description: Where the CPU model, host UUID and virtualisation types come from.
    link: https://libvirt.org/formatcaps.html
"""

EXAMPLES = r"""
- name: Everything about the local hypervisor
  kvmops.virt.host_info:
  register: hypervisor

- name: Refuse to add guests to a host whose memory is over-committed
  ansible.builtin.assert:
    that: hypervisor.host.overcommit.memory_running < 1.0
    fail_msg: "{{ hypervisor.host.hostname }} already gives its guests more memory than it has"

- name: Only capacity and allocation, no sampling window, for a quick placement decision
  kvmops.virt.host_info:
    uri: "{{ libvirt_uri }}"
    gather: [cpu, memory, guests]
    sample_seconds: 0
  register: capacity

- name: CPU use over 5 seconds
  kvmops.virt.host_info:
    uri: qemu+tcp://127.0.0.2/system
    gather: [cpu]
    sample_seconds: 5
  register: load

- name: Show it
  ansible.builtin.debug:
    msg: "{{ load.host.hostname }} is {{ load.host.cpu.usage_percent }}% busy"

- name: Names of the storage pools that are not running
  ansible.builtin.debug:
    msg: "{{ hypervisor.host.storage_pools | rejectattr('active') | map(attribute='name') | list }}"
"""

RETURN = r"""
host:
  description: Facts about the hypervisor.
  returned: success
  type: dict
  contains:
    hostname:
      description: The hypervisor's host name.
      returned: always
      type: str
      sample: kvm1.example.com
    uri:
      description: The URI the facts were read through (a password in it is masked).
      returned: always
      type: str
      sample: qemu+tcp://127.0.0.2/system
    host_uuid:
      description:
        - The hypervisor's UUID (libvirtd's C(host_uuid) setting, else the machine's).
        - V(null) when the driver reports none (libvirt's test driver).
      returned: always
      type: str
      sample: f470db81-07bc-5f8b-890f-5d30a4d520b3
    driver:
      description: The hypervisor driver, for example C(QEMU) or C(TEST).
      returned: always
      type: str
      sample: QEMU
    arch:
      description: The host's CPU architecture.
      returned: always
      type: str
      sample: x86_64
    libvirt_version:
      description: Version of the libvirt daemon serving the connection.
      returned: always
      type: str
      sample: 9.0.0
    hypervisor_version:
      description: Version of the hypervisor behind the driver (QEMU's for C(qemu://) URIs).
      returned: always
      type: str
      sample: 7.2.0
    virtualization:
      description: What kind of guests the host can run for its own architecture.
      returned: always
      type: dict
      contains:
        kvm:
          description:
            - Whether the host offers hardware-accelerated C(kvm) guests.
            - V(false) means guests can only be emulated (C(qemu), TCG), many times slower.
          returned: always
          type: bool
          sample: true
        domain_types:
          description: Domain types libvirt offers for the host's architecture, sorted.
          returned: always
          type: list
          elements: str
          sample: [kvm, qemu]
    cpu:
      description: The host's CPUs and how busy they are.
      returned: when O(gather) includes V(cpu) or V(all)
      type: dict
      contains:
        model:
          description: The CPU model as libvirt names it (its closest named model), V(null) when unknown.
          returned: always
          type: str
          sample: EPYC-Milan
        vendor:
          description: The CPU vendor, V(null) when unknown.
          returned: always
          type: str
          sample: AMD
        mhz:
          description: The CPU frequency in MHz.
          returned: always
          type: int
          sample: 2596
        numa_nodes:
          description: Number of NUMA nodes.
          returned: always
          type: int
          sample: 1
        sockets:
          description: Number of CPU sockets over all NUMA nodes.
          returned: always
          type: int
          sample: 1
        cores_per_socket:
          description: Cores in each socket.
          returned: always
          type: int
          sample: 2
        threads_per_core:
          description: Hardware threads in each core.
          returned: always
          type: int
          sample: 1
        logical_cpus:
          description: Logical CPUs online, the capacity vCPUs are compared with.
          returned: always
          type: int
          sample: 2
        usage_percent:
          description:
            - Share of all the host's CPU time that was busy (user and kernel) during the
              sampling window, in percent (0 to 100, one decimal).
            - V(null) when O(sample_seconds=0) or when the host's counters cannot be read
              or did not advance (libvirt's test driver).
          returned: always
          type: float
          sample: 37.5
        sample_seconds:
          description: The sampling window asked for, O(sample_seconds).
          returned: always
          type: float
          sample: 1.0
    memory:
      description: The host's memory, in bytes.
      returned: when O(gather) includes V(memory) or V(all)
      type: dict
      contains:
        total:
          description: Total memory of the host, all NUMA nodes, in bytes.
          returned: always
          type: int
          sample: 25276502016
        free:
          description: Memory not used for anything, in bytes (page cache not counted as free).
          returned: always
          type: int
          sample: 24812331008
        buffers_cached:
          description:
            - Memory the host's kernel uses for buffers and page cache, in bytes; most of it
              can be reclaimed.
            - V(null) when the driver does not report it.
          returned: always
          type: int
          sample: 183119872
        source:
          description:
            - Where the figures come from, V(memory_stats) (the host's memory statistics)
              or V(node_info) (fallback for drivers without them).
          returned: always
          type: str
          sample: memory_stats
    guests:
      description:
        - The guests of the host and what they are given.
        - C(running) counts every active guest (running, paused, or otherwise started),
          since each holds its vCPUs and memory. C(defined) counts every guest the host knows,
          active or not, persistent or transient.
        - vCPUs are the guests' current vCPUs, memory their current memory (equal to
          their maximum unless ballooned down).
      returned: when O(gather) includes V(guests) or V(all)
      type: dict
      contains:
        running:
          description: Number of active guests.
          returned: always
          type: int
          sample: 3
        defined:
          description: Number of guests the host knows, active or not.
          returned: always
          type: int
          sample: 5
        vcpus_running:
          description: vCPUs of the active guests.
          returned: always
          type: int
          sample: 4
        vcpus_defined:
          description: vCPUs of all guests.
          returned: always
          type: int
          sample: 7
        memory_running:
          description: Memory of the active guests, in bytes.
          returned: always
          type: int
          sample: 805306368
        memory_defined:
          description: Memory of all guests, in bytes.
          returned: always
          type: int
          sample: 1342177280
    overcommit:
      description:
        - How much the guests are given relative to what the host has (three decimals).
          Above V(1.0) the host is over-committed.
        - A ratio is V(null) when the host reports no capacity to compare with.
      returned: when O(gather) includes V(guests) or V(all)
      type: dict
      contains:
        vcpus_running:
          description: vCPUs of the active guests per logical CPU of the host.
          returned: always
          type: float
          sample: 2.0
        vcpus_defined:
          description: vCPUs of all guests per logical CPU of the host.
          returned: always
          type: float
          sample: 3.5
        memory_running:
          description: Memory of the active guests per byte of the host's total memory.
          returned: always
          type: float
          sample: 0.032
        memory_defined:
          description: Memory of all guests per byte of the host's total memory.
          returned: always
          type: float
          sample: 0.053
    storage_pools:
      description: Every storage pool of the host, sorted by name.
      returned: when O(gather) includes V(storage) or V(all)
      type: list
      elements: dict
      contains:
        name:
          description: Name of the pool.
          returned: always
          type: str
          sample: default
        type:
          description: Pool type, for example C(dir), C(logical), C(netfs).
          returned: always
          type: str
          sample: dir
        active:
          description: Whether the pool is started.
          returned: always
          type: bool
          sample: true
        autostart:
          description: Whether the pool starts with libvirtd.
          returned: always
          type: bool
          sample: true
        capacity:
          description: Size of the pool in bytes.
          returned: always
          type: int
          sample: 107374182400
        allocation:
          description: Bytes allocated to volumes.
          returned: always
          type: int
          sample: 21474836480
        available:
          description: Bytes still free for new volumes.
          returned: always
          type: int
          sample: 85899345920
    networks:
      description: Every virtual network of the host, sorted by name.
      returned: when O(gather) includes V(networks) or V(all)
      type: list
      elements: dict
      contains:
        name:
          description: Name of the network.
          returned: always
          type: str
          sample: default
        active:
          description: Whether the network is started.
          returned: always
          type: bool
          sample: true
        autostart:
          description: Whether the network starts with libvirtd.
          returned: always
          type: bool
          sample: true
        bridge:
          description: Name of the network's bridge device, V(null) when it has none.
          returned: always
          type: str
          sample: virbr0
        forward_mode:
          description:
            - How the network reaches the outside, libvirt's forward mode (C(nat), C(route),
              C(bridge), C(open), ...), or C(isolated) when it does not forward at all.
          returned: always
          type: str
          sample: nat
    gathered:
      description: The groups of facts that were read, sorted (O(gather) with V(all) expanded).
      returned: always
      type: list
      elements: str
      sample: [cpu, guests, memory, networks, storage]
"""

from ansible_collections.kvmops.virt.plugins.module_utils.connection import redact_uri
from ansible_collections.kvmops.virt.plugins.module_utils.host_facts import SUBSETS, gather_host_facts
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import XMLError

# Longer windows are a monitoring system's job; a task that sleeps minutes is a mistake.
MAX_SAMPLE_SECONDS = 300

ARGUMENT_SPEC = dict(
    sample_seconds=dict(type="float", default=1.0),
    gather=dict(type="list", elements="str", choices=["all"] + list(SUBSETS), default=["all"]),
)


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    sample_seconds = module.params["sample_seconds"]
    if not 0 <= sample_seconds <= MAX_SAMPLE_SECONDS:
        module.fail_json(msg="sample_seconds must be between 0 and %d seconds (0: do not sample), got %s"
                         % (MAX_SAMPLE_SECONDS, sample_seconds))
    with module.connection(readonly=True) as conn:
        try:
            facts = gather_host_facts(conn, module.params["gather"], sample_seconds)
        except XMLError as error:
            module.fail_json(msg=str(error), uri=redact_uri(conn.uri))
    module.exit_json(changed=False, host=facts)


if __name__ == "__main__":
    main()
