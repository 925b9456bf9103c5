# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kvmops.virt.libvirt_events: an ansible-rulebook event source for the lifecycle events of
the guests of KVM hypervisors."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

try:
    from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
except ImportError:  # ansible-rulebook runs this file by path; the collection root is 7 levels up
    sys.path.insert(0, str(Path(__file__).absolute().parents[7]))
    from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection
from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    LibvirtOperationError, redact_uri, run_event_loop)
from ansible_collections.kvmops.virt.plugins.plugin_utils.eda import (
    SourceArgumentError, hypervisors_from_args, number_argument)

try:
    import libvirt
except ImportError:
    libvirt = None

DOCUMENTATION = r"""
---
short_description: Lifecycle events of the guests of KVM hypervisors, reconnecting on loss.
description:
  - Holds one connection per hypervisor with libvirt's lifecycle event callback, and puts
    one event per guest lifecycle change on the queue - C(guest_started),
    C(guest_stopped), C(guest_crashed), C(guest_suspended), C(guest_resumed),
    C(guest_shutdown), C(guest_defined), C(guest_undefined), C(guest_pmsuspended), and
    C(guest_migrated) once for each end of a migration (C(direction) V(out) when it has
    left the source, V(in) when it runs on the destination).
  - Each event has C(type), C(guest), C(uuid), C(host), C(uri) (without password), C(at)
    (epoch seconds), C(event) and C(detail) (libvirt's names, for example V(stopped) and
    V(destroyed)).
  - A hypervisor that cannot be reached, or whose connection drops (keepalive), gives
    C(host_unreachable); the source tries again every O(reconnect_interval) seconds and
    gives C(host_reachable) when it is back. It never raises once started.
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
  types:
    description: Only these event types (for example V(guest_crashed), V(guest_migrated)); all when empty.
    type: list
    elements: str
    default: []
  reconnect_interval:
    description: Seconds between attempts to reach a hypervisor that is not connected.
    type: float
    default: 5
  connect_timeout:
    description: Seconds to open each hypervisor's connection.
    type: float
    default: 5
  keepalive_interval:
    description: Seconds between keepalive messages; after 3 unanswered the connection counts as lost.
    type: int
    default: 5
"""

EXAMPLES = r"""
- name: Restart crashed guests and audit migrations
  hosts: localhost
  sources:
    - kvmops.virt.libvirt_events:
        inventory: /etc/kvmops/hypervisors.yml
        types: [guest_crashed, guest_migrated]
  rules:
    - name: A guest crashed
      condition: event.type == "guest_crashed"
      action:
        run_playbook:
          name: restart-guest.yml
          extra_vars:
            guest: "{{ event.guest }}"
            uri: "{{ event.uri }}"
    - name: Audit a migration
      condition: event.type == "guest_migrated"
      action:
        print_event:
"""

LOGGER = logging.getLogger(__name__)
LIFECYCLE = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended", "crashed")


def _details():
    """event name -> {detail code: detail name}, from libvirt's VIR_DOMAIN_EVENT_<EVENT>_<DETAIL> constants."""
    found = {}
    for event in LIFECYCLE:
        prefix = "VIR_DOMAIN_EVENT_%s_" % event.upper()
        found[event] = {getattr(libvirt, name): name[len(prefix):].lower() for name in dir(libvirt)
                        if name.startswith(prefix) and not name.endswith("_LAST")}
    return found


def lifecycle_event(host, uri, name, uuid, event, detail, details, now=None):
    """The queue event for one libvirt lifecycle callback."""
    event_name = LIFECYCLE[event] if 0 <= event < len(LIFECYCLE) else "event%d" % event
    detail_name = details.get(event_name, {}).get(detail, "detail%d" % detail)
    record = dict(type="guest_" + event_name, guest=name, uuid=uuid, host=host, uri=uri,
                  at=round(time.time() if now is None else now, 3), event=event_name, detail=detail_name)
    # one event per end: the guest runs at the destination (resumed), it is gone from the source (stopped)
    if detail_name == "migrated" and event_name in ("resumed", "stopped"):
        record.update(type="guest_migrated", direction="out" if event_name == "stopped" else "in")
    return record


class HypervisorEvents:  # pylint: disable=too-many-instance-attributes
    """One hypervisor's connection with its lifecycle callback; ``lost`` once it drops."""

    def __init__(self, hypervisor, connection, emit, details, keepalive):
        self.name, self.uri = hypervisor["name"], hypervisor["uri"]
        self.public_uri = redact_uri(self.uri)
        self.connection_options = connection
        self.emit, self.details, self.keepalive = emit, details, keepalive
        self.connection = None
        self.callback_id = None
        self.dropped = False   # set by libvirt's close callback; the next pass closes and reconnects
        self.reachable = None  # unknown until the first attempt

    def connect(self):
        """Open and subscribe; raises LibvirtOperationError when the hypervisor does not answer."""
        connection = LibvirtConnection(self.uri, readonly=True, **self.connection_options)
        handle = connection.open()
        try:
            try:
                handle.setKeepAlive(self.keepalive, 3)
            except libvirt.libvirtError as error:
                if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                    raise  # local URIs (qemu:///system) have no keepalive, and need none
            handle.registerCloseCallback(self._closed, None)
            self.callback_id = handle.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                             self._lifecycle, None)
        except libvirt.libvirtError as error:
            connection.close()
            raise LibvirtOperationError(self.uri, "subscribe to lifecycle events", str(error)) from None
        self.connection, self.dropped = connection, False

    def _lifecycle(self, _conn, domain, event, detail, _opaque):
        self.emit(lifecycle_event(self.name, self.public_uri, domain.name(), domain.UUIDString(), event, detail,
                                  self.details))

    def _closed(self, _conn, reason, _opaque):
        # closing the handle inside libvirt's own callback would deadlock: keep_up does it
        LOGGER.warning("kvmops.virt.libvirt_events: connection to %s closed (reason %s)", self.name, reason)
        self.dropped = True

    def close(self):
        """Unsubscribe and close; callbacks must not outlive the source (its queue is gone)."""
        connection, self.connection = self.connection, None
        if connection is None:
            return
        try:
            if self.callback_id is not None and not self.dropped:
                connection.handle.domainEventDeregisterAny(self.callback_id)
                connection.handle.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass  # the connection is gone already: nothing is left to unsubscribe
        connection.close()

    def unreachable(self, error):
        if self.reachable is not False:
            self.reachable = False
            self.emit(dict(type="host_unreachable", host=self.name, uri=self.public_uri, at=round(time.time(), 3),
                           error=error))

    def reachable_again(self):
        was, self.reachable = self.reachable, True
        if was is False:
            self.emit(dict(type="host_reachable", host=self.name, uri=self.public_uri, at=round(time.time(), 3)))


class LibvirtEventsSource:
    """Every hypervisor's subscription, kept up: ``run`` never raises out of its loop."""

    def __init__(self, args, emit):
        if libvirt is None:
            raise SourceArgumentError("the Python package libvirt-python is not installed")
        hypervisors = hypervisors_from_args(args)
        self.wanted = set(args.get("types") or [])
        self.interval = number_argument(args, "reconnect_interval", 5.0)
        connection = dict(username=args.get("username"), password=args.get("password"),
                          connect_timeout=number_argument(args, "connect_timeout", 5.0))
        keepalive = int(number_argument(args, "keepalive_interval", 5))
        details = _details()
        self.watches = [HypervisorEvents(hypervisor, connection, self._filtered(emit), details, keepalive)
                        for hypervisor in hypervisors]

    def _filtered(self, emit):
        def put(event):
            if not self.wanted or event["type"] in self.wanted or event["type"].startswith("host_"):
                emit(event)
        return put

    def keep_up(self):
        """Connect every hypervisor that is not connected (one pass)."""
        for watch in self.watches:
            if watch.connection is not None and not watch.dropped:
                continue
            if watch.connection is not None:
                watch.close()
                watch.unreachable("the connection closed")
            try:
                watch.connect()
            except LibvirtOperationError as error:
                watch.unreachable(str(error))
            else:
                watch.reachable_again()

    async def run(self):
        try:
            while True:
                try:
                    await asyncio.to_thread(self.keep_up)
                except Exception as error:  # noqa: BLE001  pylint: disable=broad-except  # the source must outlive any one attempt
                    LOGGER.warning("kvmops.virt.libvirt_events: %s", error)
                await asyncio.sleep(self.interval)
        finally:  # cancelled (ansible-rulebook stopping): no callback may reach a closed loop
            for watch in self.watches:
                watch.close()


async def main(queue: asyncio.Queue, args: dict):
    """ansible-rulebook's entry point. Bad arguments stop it with a message; nothing else does."""
    loop = asyncio.get_running_loop()

    def emit(event):  # called on libvirt's event thread
        try:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        except RuntimeError:
            return  # the loop has closed (the rulebook is stopping): nobody is listening
        LOGGER.info("kvmops.virt.libvirt_events: %s %s", event["type"],
                    "%s on %s" % (event["guest"], event["host"]) if "guest" in event else event["host"])

    try:
        source = LibvirtEventsSource(args, emit)
    except SourceArgumentError as error:
        raise ValueError("kvmops.virt.libvirt_events: %s" % error) from None
    run_event_loop()
    LOGGER.info("kvmops.virt.libvirt_events: watching %s", ", ".join(watch.name for watch in source.watches))
    await source.run()


if __name__ == "__main__":
    # python libvirt_events.py qemu+tcp://127.0.0.2/system [more URIs]: print the events
    class _PrintQueue:  # pylint: disable=too-few-public-methods
        def put_nowait(self, event):
            print(event, flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), dict(hypervisors=[dict(name="host%d" % index, uri=uri)
                                                      for index, uri in enumerate(sys.argv[1:], 1)])))
