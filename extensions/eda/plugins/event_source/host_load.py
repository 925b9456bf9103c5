# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kvmops.virt.host_load: an ansible-rulebook event source that watches the load of KVM hypervisors."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

try:
    from ansible_collections.kvmops.virt.plugins.module_utils.fleet import gather_fleet
except ImportError:  # ansible-rulebook runs this file by path; the collection root is 7 levels up
    sys.path.insert(0, str(Path(__file__).absolute().parents[7]))
    from ansible_collections.kvmops.virt.plugins.module_utils.fleet import gather_fleet
from ansible_collections.kvmops.virt.plugins.module_utils.load_watch import LoadWatch, WatchSettingsError
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import from_fleet
from ansible_collections.kvmops.virt.plugins.plugin_utils.eda import (
    SourceArgumentError, hypervisors_from_args, number_argument)

DOCUMENTATION = r"""
---
short_description: Watch the CPU and memory load of KVM hypervisors and report hot hosts.
description:
  - Every O(interval) seconds reads all hypervisors in parallel (one bulk statistics call
    each, over a fresh connection) and computes each host's CPU load from its guests' CPU
    counters since the last reading (the sum of their use in cores over the host's logical
    CPUs, in percent) and its memory load (its running guests' memory over its total).
  - Emits events only on transitions. C(host_overloaded) when a host has been at or above
    O(cpu_high) (or O(memory_high)) in every reading for O(duration) seconds, with the
    figures, the window and its busiest guests (O(top)); C(host_recovered) when an
    overloaded host stays below O(cpu_low) and O(memory_low) for O(recovery_duration); C(host_unreachable) and
    C(host_reachable) when a hypervisor stops or starts answering.
  - Hosts under maintenance (the mark of kvmops.virt.hypervisor_maintenance) are not judged.
  - A hypervisor that fails, hangs (O(timeout)) or goes away costs a C(host_unreachable)
    event, never the source: an exception in a source stops ansible-rulebook.
  - Every event has C(type), C(host), C(uri) (without password) and C(at) (epoch seconds);
    load events also C(cpu_percent), C(memory_percent), C(cpu_cores), C(cpus), C(guests),
    C(top_guests) (C(name), C(cpu_cores), C(vcpus), C(memory_mb)), C(window) (C(since),
    C(seconds)), C(thresholds), and for C(host_overloaded) C(repeat).
  - With O(snapshot_every), a C(fleet_snapshot) event carries the whole fleet in the
    planner's snapshot form (C(snapshot), for kvmops.virt.rebalance_plan's C(snapshot)
    option) and each host's last figures (C(hosts)).
options:
  hypervisors:
    description: The hypervisors, each with C(name) and C(uri). Or give O(inventory).
    type: list
    elements: dict
  inventory:
    description: Path of an Ansible inventory whose group O(group) holds the hypervisors.
    type: str
  group:
    description: The inventory group of the hypervisors.
    type: str
    default: kvm_hypervisors
  uri_var:
    description: The host variable that holds each hypervisor's libvirt URI.
    type: str
    default: libvirt_uri
  username:
    description: Username for every hypervisor's libvirt connection.
    type: str
  password:
    description: Password for every hypervisor's libvirt connection.
    type: str
  interval:
    description: Seconds between readings.
    type: float
    default: 5
  cpu_high:
    description: CPU load in percent at or above which a host is hot.
    type: float
    default: 80
  cpu_low:
    description: CPU load in percent below which an overloaded host has recovered.
    type: float
    default: 60
  memory_high:
    description: Memory load in percent at or above which a host is hot.
    type: float
    default: 90
  memory_low:
    description: Memory load in percent below which an overloaded host has recovered.
    type: float
    default: 80
  duration:
    description: Seconds a host must stay hot before C(host_overloaded).
    type: float
    default: 60
  recovery_duration:
    description: Seconds an overloaded host must stay below the lows before C(host_recovered); by default O(duration).
    type: float
  repeat_after:
    description: Seconds after which a host still hot fires C(host_overloaded) again; V(0) never.
    type: float
    default: 0
  top:
    description: How many of the busiest guests an event lists.
    type: int
    default: 5
  snapshot_every:
    description: Seconds between C(fleet_snapshot) events; V(0) sends none.
    type: float
    default: 0
  connect_timeout:
    description: Seconds to open each hypervisor's connection.
    type: float
    default: 5
  timeout:
    description: Seconds one hypervisor's reading may take before it counts as unreachable.
    type: float
    default: 30
"""

EXAMPLES = r"""
- name: Rebalance on peak load
  hosts: all
  sources:
    - kvmops.virt.host_load:
        inventory: /etc/kvmops/hypervisors.yml
        interval: 5
        cpu_high: 80
        cpu_low: 60
        duration: 60
  rules:
    - name: A host stays hot
      condition: event.type == "host_overloaded"
      action:
        run_playbook:
          name: kvmops.virt.rebalance
          extra_vars:
            host: "{{ event.host }}"
"""

LOGGER = logging.getLogger(__name__)
WATCH_KEYS = ("cpu_high", "cpu_low", "memory_high", "memory_low", "duration", "recovery_duration", "repeat_after",
              "top")


class HostLoadSource:
    """The readings, the watch and the periodic snapshots; ``run`` never raises out of its loop."""

    def __init__(self, args):
        self.hypervisors = hypervisors_from_args(args)
        self.watch = LoadWatch(**{key: args.get(key) for key in WATCH_KEYS})
        self.interval = number_argument(args, "interval", 5.0)
        self.snapshot_every = number_argument(args, "snapshot_every", 0.0, zero=True)
        self.timeout = number_argument(args, "timeout", 30.0)
        self.connection = dict(username=args.get("username"), password=args.get("password"),
                               connect_timeout=number_argument(args, "connect_timeout", 5.0))
        self.last_snapshot = None

    def read(self, definitions=False):
        """The fleet now: bulk statistics only, or with every guest's definition (tags, last
        migration) when a snapshot for the planner is due."""
        return gather_fleet(self.hypervisors, self.connection, want_definitions=definitions, want_addresses=False,
                            timeout=self.timeout)

    def snapshot_due(self, now):
        return bool(self.snapshot_every) and (self.last_snapshot is None or now - self.last_snapshot >= self.snapshot_every)

    async def run(self, queue):
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            snapshot = self.snapshot_due(time.time())
            try:
                fleet = await asyncio.to_thread(self.read, snapshot)
            except Exception as error:  # noqa: BLE001  pylint: disable=broad-except  # the source must outlive any one reading
                LOGGER.warning("kvmops.virt.host_load: reading the hypervisors failed: %s", error)
            else:
                for event in self.events(fleet, time.time(), snapshot):
                    await queue.put(event)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def events(self, fleet, now, snapshot=False):
        events = self.watch.observe(fleet, now)
        for event in events:
            LOGGER.info("kvmops.virt.host_load: %s %s", event["type"], event["host"])
        if snapshot:
            self.last_snapshot = now
            events.append(self.snapshot_event(fleet, now))
        return events

    def snapshot_event(self, fleet, now):
        """The fleet in the planner's form, each guest with the CPU use of the last reading."""
        cores = {}
        for state in self.watch.hosts.values():
            cores.update(state.guest_cores)
        measured = [dict(hypervisor, guests=[dict(guest, cpu_cores=cores.get(guest["uuid"]))
                                             for guest in hypervisor["guests"]]) for hypervisor in fleet]
        hosts = {name: state.last for name, state in self.watch.hosts.items() if state.last is not None}
        return dict(type="fleet_snapshot", at=round(now, 3), snapshot=from_fleet(measured), hosts=hosts)


async def main(queue: asyncio.Queue, args: dict):
    """ansible-rulebook's entry point. Bad arguments stop it with a message; nothing else does."""
    try:
        source = HostLoadSource(args)
    except (SourceArgumentError, WatchSettingsError) as error:
        raise ValueError("kvmops.virt.host_load: %s" % error) from None
    LOGGER.info("kvmops.virt.host_load: watching %s every %s s", ", ".join(h["name"] for h in source.hypervisors),
                source.interval)
    await source.run(queue)


if __name__ == "__main__":
    # python host_load.py qemu+tcp://127.0.0.2/system [more URIs]: print the events
    class _PrintQueue:  # pylint: disable=too-few-public-methods
        async def put(self, event):
            print(event, flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), dict(hypervisors=[dict(name="host%d" % index, uri=uri)
                                                      for index, uri in enumerate(sys.argv[1:], 1)],
                                         interval=2, duration=6)))
