# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The desired state of one guest, checked before anything touches a hypervisor.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``GuestSpec.from_params`` turns the guest module's options into plain values (sizes in
bytes, lists of ``DiskSpec``/``InterfaceSpec``) or raises ``GuestSpecError`` with a
sentence naming the option. ``None`` always means "not given: leave it as it is".
"""

from __future__ import annotations

import re

from ansible_collections.kvmops.virt.plugins.module_utils.host_names import names_the_controller_or_an_address
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import TagError, validate_tags
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import SizeError, parse_size

MIB = 1024 * 1024
# Defaults for a guest that is created from nothing (clones start from their template).
NEW_GUEST_VCPUS = 1
NEW_GUEST_MEMORY = 1024 * MIB

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd"}
DISK_BUSES = tuple(sorted(_TARGET_PREFIX))


class GuestSpecError(ValueError):
    """An option value that cannot work; str() names the option and what would."""


def check_guest_name(name, option="name"):
    """Raise GuestSpecError unless ``name`` is a guest name the collection creates."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise GuestSpecError(
            "%s: %r is not a usable guest name; use 1 to 64 letters, digits, '_', '.', '+' or '-', "
            "starting with a letter, digit or '_'" % (option, name))
    if names_the_controller_or_an_address(name):
        raise GuestSpecError(
            "%s: %r is not a usable guest name: Ansible would take a host of that name for the controller or "
            "for that address (the kvmops.virt.libvirt inventory lists such a guest as <name>@<hypervisor>)"
            % (option, name))


def check_volume_name(name, option):
    if not name or "/" in name or name.startswith(".") or any(ord(char) < 32 for char in name):
        raise GuestSpecError("%s: %r is not a usable volume name (no '/', no leading '.', no control characters)"
                             % (option, name))


def _size(value, option, default_unit):
    if value is None:
        return None
    try:
        return parse_size(value, option, default_unit)
    except SizeError as error:
        raise GuestSpecError(str(error)) from None


def _memory(value, option):
    size = _size(value, option, "MiB")
    if size is not None and (size < 16 * MIB or size % MIB):
        raise GuestSpecError("%s: %r must be a whole number of MiB, at least 16 MiB" % (option, value))
    return size


class DiskSpec:
    """One entry of ``disks``: a pool volume (existing or to create) or a path."""

    def __init__(self, index, options):
        where = "disks[%d]" % index
        self.pool = options.get("pool")
        self.volume = options.get("name")
        self.path = options.get("path")
        self.device = options.get("device") or "disk"
        self.bus = options.get("bus") or ("virtio" if self.device == "disk" else "scsi")
        self.format = options.get("format")
        self.size = _size(options.get("size"), where + ".size", "GiB")
        self.backing = options.get("backing")
        self.readonly = bool(options.get("readonly")) or self.device == "cdrom"
        self.target = options.get("target")
        if bool(self.path) == bool(self.pool):
            raise GuestSpecError("%s: give either pool (with name or size) or path" % where)
        if self.path and (self.size is not None or self.backing):
            raise GuestSpecError("%s: size and backing create a volume in a pool; a path must already exist" % where)
        if self.path and not self.path.startswith("/"):
            raise GuestSpecError("%s.path: %r is not an absolute path" % (where, self.path))
        if self.volume is not None:
            check_volume_name(self.volume, where + ".name")
        if self.pool and self.volume is None and self.size is None:
            raise GuestSpecError("%s: give the name of an existing volume, or a size to create one" % where)
        if self.size is not None and self.size < MIB:
            raise GuestSpecError("%s.size: %r is smaller than 1 MiB" % (where, options.get("size")))
        if self.target and not self.target.startswith(_TARGET_PREFIX[self.bus]):
            raise GuestSpecError("%s.target: %r does not fit bus %s (its disks are %s*)"
                                 % (where, self.target, self.bus, _TARGET_PREFIX[self.bus]))

    def volume_name(self, guest_name):
        """The volume's name; a volume to create defaults to <guest>-<target>.<format>."""
        if self.volume:
            return self.volume
        return "%s-%s.%s" % (guest_name, self.target, self.format or "qcow2")


class InterfaceSpec:
    """One entry of ``interfaces``: a NIC on a libvirt network or a host bridge."""

    def __init__(self, index, options):
        where = "interfaces[%d]" % index
        network, bridge = options.get("network"), options.get("bridge")
        if bool(network) == bool(bridge):
            raise GuestSpecError("%s: give exactly one of network or bridge" % where)
        self.type = "network" if network else "bridge"
        self.source = network or bridge
        self.model = options.get("model") or "virtio"
        self.mac = (options.get("mac") or "").lower() or None
        if self.mac is not None:
            if not _MAC.match(self.mac):
                raise GuestSpecError("%s.mac: %r is not a MAC address like 52:54:00:12:34:56" % (where, options["mac"]))
            if int(self.mac[:2], 16) & 1:
                raise GuestSpecError("%s.mac: %s is a multicast address; a NIC needs a unicast one" % (where, self.mac))


def next_free_target(bus, taken):
    """The first device name of ``bus`` (vda, sdb, hdc...) that is not in ``taken``."""
    prefix = _TARGET_PREFIX[bus]
    letter = 0
    while "%s%s" % (prefix, chr(ord("a") + letter)) in taken:
        letter += 1
    return "%s%s" % (prefix, chr(ord("a") + letter))


def assign_targets(disks):
    """Give each disk without an explicit target the next free name of its bus (vda, vdb, sda...)."""
    taken = {disk.target for disk in disks if disk.target}
    for disk in disks:
        if not disk.target:
            disk.target = next_free_target(disk.bus, taken)
            taken.add(disk.target)
    seen = set()
    for disk in disks:
        if disk.target in seen:
            raise GuestSpecError("disks: target %s is used twice" % disk.target)
        seen.add(disk.target)


class GuestSpec:
    """The guest module's options, checked and normalised."""

    # pylint: disable-next=too-many-statements
    def __init__(self, params):
        self.name = params["name"]
        self.state = params["state"]
        self.vcpus = params.get("vcpus")
        self.max_vcpus = params.get("max_vcpus")
        self.memory = _memory(params.get("memory"), "memory")
        self.max_memory = _memory(params.get("max_memory"), "max_memory")
        self.cpu_mode = params.get("cpu_mode")
        self.machine = params.get("machine")
        self.arch = params.get("arch")
        self.virt_type = params.get("virt_type")
        self.firmware = params.get("firmware")
        self.boot = params.get("boot")
        self.kernel = params.get("kernel")
        self.initrd = params.get("initrd")
        self.cmdline = params.get("cmdline")
        self.autostart = params.get("autostart")
        self.serial = params.get("serial")
        self.serial_log = params.get("serial_log")
        self.clone_from = params.get("clone_from")
        self.clone_mode = params.get("clone_mode") or "full"
        self.xml = params.get("xml")
        self.restart = params.get("restart") or "never"
        self.shutdown_timeout = params.get("shutdown_timeout")
        self.force = bool(params.get("force"))
        self.remove_storage = bool(params.get("remove_storage"))
        self.purge_tags = params.get("purge_tags", True)
        self.cloud_init = params.get("cloud_init")
        try:
            self.tags = validate_tags(params["tags"]) if params.get("tags") is not None else None
        except TagError as error:
            raise GuestSpecError(str(error)) from None
        self.disks = None
        if params.get("disks") is not None:
            self.disks = [DiskSpec(index, options) for index, options in enumerate(params["disks"])]
            assign_targets(self.disks)
        self.interfaces = None
        if params.get("interfaces") is not None:
            self.interfaces = [InterfaceSpec(index, options) for index, options in enumerate(params["interfaces"])]
            macs = [nic.mac for nic in self.interfaces if nic.mac]
            if len(macs) != len(set(macs)):
                raise GuestSpecError("interfaces: the same MAC address is given twice")
        self._check_counts()
        for option in ("kernel", "initrd", "serial_log"):
            value = getattr(self, option)
            if value and not value.startswith("/"):
                raise GuestSpecError("%s: %r is not an absolute path on the hypervisor" % (option, value))
        if self.serial is False and self.serial_log:
            raise GuestSpecError("serial_log needs the serial console (serial: true)")
        if self.clone_from is not None:
            check_guest_name(self.clone_from, "clone_from")
            if self.clone_from == self.name:
                raise GuestSpecError("clone_from: a guest cannot be cloned from itself")
        if self.shutdown_timeout is not None and self.shutdown_timeout < 0:
            raise GuestSpecError("shutdown_timeout: must be 0 or more seconds")

    def _check_counts(self):
        if self.vcpus is not None and self.vcpus < 1:
            raise GuestSpecError("vcpus: must be at least 1")
        if self.max_vcpus is not None and self.max_vcpus < 1:
            raise GuestSpecError("max_vcpus: must be at least 1")
        if self.vcpus and self.max_vcpus and self.max_vcpus < self.vcpus:
            raise GuestSpecError("max_vcpus (%d) is less than vcpus (%d)" % (self.max_vcpus, self.vcpus))
        if self.memory and self.max_memory and self.max_memory < self.memory:
            raise GuestSpecError("max_memory (%d MiB) is less than memory (%d MiB)"
                                 % (self.max_memory // MIB, self.memory // MIB))

    @classmethod
    def from_params(cls, params):
        return cls(params)

    def defines_resources(self):
        """Whether any option describes the machine itself: a guest is not created from a power
        state, tags or autostart alone (a typo in a name would otherwise become a new guest)."""
        return any(getattr(self, option) is not None for option in (
            "vcpus", "max_vcpus", "memory", "max_memory", "cpu_mode", "machine", "arch", "virt_type",
            "firmware", "boot", "kernel", "initrd", "cmdline", "serial", "serial_log", "disks",
            "interfaces", "cloud_init", "xml"))
