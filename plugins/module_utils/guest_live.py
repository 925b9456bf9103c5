# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a running guest can take without a restart, and taking it.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``LiveChanges`` compares the running guest (its live XML) with its new definition, view
key by view key: vCPUs within the hot-plug maximum, memory within the balloon's maximum,
disks and NICs attached or detached, CD-ROM media, tags. Everything else, and whatever
the guest refuses, waits for a restart (``restart_keys``).
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils import guest_xml
from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import read_view
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import (
    METADATA_NAMESPACE, METADATA_PREFIX, GuestMetadata)
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import format_size

try:
    import libvirt
except ImportError:
    libvirt = None

# View keys a running guest can take without a restart (how: see LiveChanges._apply).
LIVE_KEYS = ("vcpus", "memory", "disks", "interfaces", "tags", "cloud_init")


class LiveChanges:
    """The differences between a running guest and its new definition."""

    def __init__(self, conn, domain, after_root, catalog):
        self.conn, self.domain, self.name = conn, domain, domain.name()
        self.after_root, self.catalog = after_root, catalog
        self.live_keys = []          # view keys to change on the running guest
        self.restart_keys = []       # view keys only a restart applies
        self.actions, self.warnings = [], []
        with self.conn.operation("read the live definition of guest %s" % self.name):
            self.live_root = parse_xml(self.domain.XMLDesc(0), "live domain XML")
        self._classify()

    def _classify(self):
        """Sort what differs between the running guest and its new definition into what can
        change live (``live_keys``) and what needs a restart (``restart_keys``)."""
        live, wanted = read_view(self.live_root, self.catalog), read_view(self.after_root, self.catalog)
        for key in wanted:
            if live[key] == wanted[key]:
                continue
            if key in LIVE_KEYS and self._can_change_live(key):
                self.live_keys.append(key)
            else:
                self.restart_keys.append(key)

    def _can_change_live(self, key):
        if key == "vcpus":
            return guest_xml.vcpu_counts(self.after_root)[1] == guest_xml.vcpu_counts(self.live_root)[1]
        if key == "memory":
            balloon = self.live_root.find("devices/memballoon")
            return (guest_xml.memory_bytes(self.after_root)[1] == guest_xml.memory_bytes(self.live_root)[1]
                    and balloon is not None and balloon.get("model") != "none")
        if key in ("disks", "interfaces"):
            return not self._devices_changed_in_place(key)
        return True

    def _device_maps(self, key):
        tag, identity = ("disk", "target") if key == "disks" else ("interface", "mac")
        read = guest_xml.read_disk if tag == "disk" else guest_xml.read_interface

        def by_identity(root):
            return {read(element)[identity]: (read(element), element) for element in root.findall("devices/" + tag)}
        return tag, by_identity(self.live_root), by_identity(self.after_root)

    def _devices_changed_in_place(self, key):
        """Whether a disk or NIC that stays has changed (only a CD-ROM's medium changes live)."""
        _tag, live, wanted = self._device_maps(key)
        for identity, (view, _element) in wanted.items():
            if identity in live and live[identity][0] != view:
                if key == "interfaces" or not view["device"] == live[identity][0]["device"] == "cdrom":
                    return True
        return False

    def apply(self, actions, warnings):
        """Apply ``live_keys``; what the guest refuses moves to ``restart_keys``. Appends to
        the run's ``actions`` and ``warnings``."""
        self.actions, self.warnings = actions, warnings
        for key in list(self.live_keys):
            self._apply(key)

    def _apply(self, key):
        """Apply one view key to the running guest; a refusal moves it to ``restart_keys``."""
        name = self.name
        try:
            if key == "vcpus":
                vcpus = guest_xml.vcpu_counts(self.after_root)[0]
                with self.conn.operation("set the vCPUs of running guest %s" % name):
                    self.domain.setVcpusFlags(vcpus, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.actions.append("set %d vCPUs on running guest %s" % (vcpus, name))
            elif key == "memory":
                memory = guest_xml.memory_bytes(self.after_root)[0]
                with self.conn.operation("set the memory of running guest %s" % name):
                    self.domain.setMemoryFlags(memory // 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.actions.append("set memory to %s on running guest %s" % (format_size(memory), name))
            elif key in ("tags", "cloud_init"):
                fragment = GuestMetadata.from_domain(self.after_root).libvirt_fragment()
                with self.conn.operation("set the metadata of running guest %s" % name):
                    self.domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, fragment, METADATA_PREFIX,
                                            METADATA_NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            else:
                self._swap_devices(key)
        except LibvirtOperationError as error:
            self.warnings.append("%s; the change is in the guest's definition and applies at its next restart"
                                 % error)
            self.live_keys.remove(key)
            self.restart_keys.append(key)

    def _swap_devices(self, key):
        """Attach and detach disks or NICs live, and change CD-ROM media."""
        tag, live, wanted = self._device_maps(key)
        for identity in sorted(wanted):
            view, element = wanted[identity]
            if identity not in live:
                with self.conn.operation("attach %s %s to running guest %s" % (tag, identity, self.name)):
                    self.domain.attachDeviceFlags(to_xml(element), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.actions.append("attached %s %s to running guest %s" % (tag, identity, self.name))
            elif live[identity][0] != view:  # only CD-ROMs get here (see _devices_changed_in_place)
                with self.conn.operation("change the medium in %s of guest %s" % (identity, self.name)):
                    self.domain.updateDeviceFlags(to_xml(element), libvirt.VIR_DOMAIN_AFFECT_LIVE)
                self.actions.append("changed the medium in %s of running guest %s" % (identity, self.name))
        for identity in sorted(set(live) - set(wanted)):
            with self.conn.operation("detach %s %s from running guest %s" % (tag, identity, self.name)):
                self.domain.detachDeviceFlags(to_xml(live[identity][1]), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            self.actions.append("detached %s %s from running guest %s" % (tag, identity, self.name))
