# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Domain XML <-> the guest *view*: what the guest module manages, in readable form.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``read_view`` turns a domain XML tree into the view (the dict that diffs and results
show). The ``set_*`` functions edit a domain XML tree in place so that it describes a
``GuestSpec``; they touch only what the spec gives and keep everything else libvirt
wrote (addresses, aliases, controllers, driver options) as it was, so that re-defining an
unchanged guest changes nothing.
"""

from __future__ import annotations

import copy
import hashlib
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.metadata import METADATA_NAMESPACE, GuestMetadata
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import ensure_child, sub_element, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import format_size, libvirt_size_bytes

CLOUD_INIT_MARK = "{%s}cloud-init" % METADATA_NAMESPACE
# Devices that libvirt never adds by itself: a user XML with fewer of them means "remove".
_COUNTED_DEVICES = ("disk", "interface", "filesystem", "hostdev", "channel", "graphics", "sound",
                    "rng", "tpm", "watchdog", "smartcard", "redirdev", "shmem")
_SIZED_ELEMENTS = ("memory", "currentMemory", "maxMemory")

KIB = 1024

# libvirt's virDomainState numbers -> the names the module uses
STATE_NAMES = {0: "unknown", 1: "running", 2: "running", 3: "paused", 4: "stopping", 5: "stopped",
               6: "crashed", 7: "suspended"}


def power_state(domain):
    """The guest's power state name (running, paused, stopped, ...)."""
    return STATE_NAMES.get(domain.state()[0], "unknown")


# ---------------------------------------------------------------- reading


def _vcpus(root):
    vcpu = root.find("vcpu")
    if vcpu is None or not (vcpu.text or "").strip():
        return None, None
    maximum = int(vcpu.text)
    return int(vcpu.get("current", maximum)), maximum


def _firmware(os_element):
    if os_element is None:
        return None
    if os_element.get("firmware") == "efi" or (os_element.find("loader") is not None
                                               and os_element.find("loader").get("type") == "pflash"):
        return "uefi"
    return "bios"


def disk_source(disk):
    """The file or block device behind a <disk> element, or None (an empty CD-ROM drive)."""
    source = disk.find("source")
    if source is None:
        return None
    return source.get("file") or source.get("dev")


def read_disk(disk, catalog=None):
    """The view of one <disk>; ``catalog`` maps paths to their pool, volume and size."""
    target = disk.find("target")
    driver = disk.find("driver")
    path = disk_source(disk)
    view = dict(
        target=target.get("dev") if target is not None else None,
        device=disk.get("device", "disk"),
        bus=target.get("bus") if target is not None else None,
        path=path,
        format=driver.get("type") if driver is not None else None,
        readonly=disk.find("readonly") is not None,
    )
    known = (catalog or {}).get(path)
    if known:
        view.update(pool=known["pool"], volume=known["volume"], size=format_size(known["size"]))
    return view


def read_interface(interface):
    source, mac, model = interface.find("source"), interface.find("mac"), interface.find("model")
    kind = interface.get("type")
    return dict(
        type=kind,
        source=(source.get(kind) if source is not None else None),
        model=(model.get("type") if model is not None else None),
        mac=(mac.get("address").lower() if mac is not None else None),
    )


def read_view(root, catalog=None):
    """The guest view of a domain XML tree (see the module's RETURN for the keys)."""
    os_element = root.find("os")
    os_type = os_element.find("type") if os_element is not None else None
    vcpus, max_vcpus = _vcpus(root)
    cpu = root.find("cpu")
    serial = root.find("devices/serial")
    metadata = GuestMetadata.from_domain(root)
    cloud_init = [child for child in metadata.others if child.tag == CLOUD_INIT_MARK]
    return dict(
        virt_type=root.get("type"),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        firmware=_firmware(os_element),
        cpu_mode=cpu.get("mode") if cpu is not None else None,
        vcpus=vcpus,
        max_vcpus=max_vcpus,
        memory=format_size(libvirt_size_bytes(root.find("currentMemory")) or libvirt_size_bytes(root.find("memory"))),
        max_memory=format_size(libvirt_size_bytes(root.find("memory"))),
        boot=[boot.get("dev") for boot in root.findall("os/boot")],
        kernel=root.findtext("os/kernel"),
        initrd=root.findtext("os/initrd"),
        cmdline=root.findtext("os/cmdline"),
        disks=[read_disk(disk, catalog) for disk in root.findall("devices/disk")],
        interfaces=[read_interface(nic) for nic in root.findall("devices/interface")],
        serial=serial is not None,
        serial_log=serial.find("log").get("file") if serial is not None and serial.find("log") is not None else None,
        cloud_init=cloud_init[0].get("sha256") if cloud_init else None,
        tags=metadata.tags,
    )


def read_inventory_view(root):
    """The part of read_view the fleet snapshot keeps (same keys and values) plus
    ``last_migrated`` (epoch seconds of the last migration by the collection, or None), read
    in about half read_view's time: it runs for every guest of every hypervisor."""
    os_type = root.find("os/type")
    devices = root.find("devices")
    metadata = GuestMetadata.from_domain(root)
    migration = metadata.last_migration
    return dict(
        virt_type=root.get("type"),
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        disks=[read_disk(disk) for disk in devices.iterfind("disk")] if devices is not None else [],
        interfaces=[read_interface(nic) for nic in devices.iterfind("interface")] if devices is not None else [],
        tags=metadata.tags,
        last_migrated=migration["at"] if migration else None,
    )


def memory_bytes(root):
    """(current, maximum) memory of a domain XML tree in bytes."""
    maximum = libvirt_size_bytes(root.find("memory"))
    return libvirt_size_bytes(root.find("currentMemory")) or maximum, maximum


def vcpu_counts(root):
    """(current, maximum) vCPUs of a domain XML tree."""
    return _vcpus(root)


# ---------------------------------------------------------------- writing


def new_domain(name, virt_type, arch, with_acpi=True):
    """The skeleton of a new guest: everything a spec does not set has a sensible default."""
    root = ElementTree.Element("domain", type=virt_type)
    sub_element(root, "name", name)
    sub_element(root, "memory", 0, unit="KiB")
    sub_element(root, "currentMemory", 0, unit="KiB")
    sub_element(root, "vcpu", 1, placement="static")
    os_element = sub_element(root, "os")
    sub_element(os_element, "type", "hvm", arch=arch)
    if with_acpi:
        features = sub_element(root, "features")
        sub_element(features, "acpi")
        sub_element(features, "apic")
    sub_element(root, "clock", offset="utc")
    sub_element(root, "on_poweroff", "destroy")
    sub_element(root, "on_reboot", "restart")
    sub_element(root, "on_crash", "destroy")
    devices = sub_element(root, "devices")
    # A balloon lets memory change on a running guest, and its statistics (every 10 s) tell
    # how much memory the guest really uses; an RNG spares cloud images a slow first boot
    # waiting for entropy.
    balloon = sub_element(devices, "memballoon", model="virtio")
    sub_element(balloon, "stats", period=10)
    rng = sub_element(devices, "rng", model="virtio")
    sub_element(rng, "backend", "/dev/urandom", model="random")
    return root


def set_vcpus(root, vcpus, max_vcpus):
    vcpu = ensure_child(root, "vcpu")
    vcpu.text = str(max_vcpus)
    vcpu.set("placement", vcpu.get("placement", "static"))
    if vcpus < max_vcpus:
        vcpu.set("current", str(vcpus))
    elif "current" in vcpu.attrib:
        del vcpu.attrib["current"]


def set_memory(root, memory, max_memory):
    for tag, size in (("memory", max_memory), ("currentMemory", memory)):
        element = ensure_child(root, tag)
        element.attrib = {"unit": "KiB"}
        element.text = str(size // KIB)


def set_os(root, spec, machine=None):
    """Architecture, machine type, firmware, boot order and direct kernel boot."""
    os_element = ensure_child(root, "os")
    os_type = ensure_child(os_element, "type", 0)
    os_type.text = os_type.text or "hvm"
    if spec.arch:
        os_type.set("arch", spec.arch)
    if machine:
        os_type.set("machine", machine)
    if spec.firmware == "uefi":
        os_element.set("firmware", "efi")
    elif spec.firmware == "bios" and _firmware(os_element) == "uefi":
        os_element.attrib.pop("firmware", None)
        for tag in ("loader", "nvram", "firmware"):
            for child in os_element.findall(tag):
                os_element.remove(child)
    if spec.boot is not None:
        for child in os_element.findall("boot"):
            os_element.remove(child)
        for device in spec.boot:
            sub_element(os_element, "boot", dev=device)
    for tag in ("kernel", "initrd", "cmdline"):
        value = getattr(spec, tag)
        if value is None:
            continue
        element = ensure_child(os_element, tag)
        element.text = value


def set_cpu_mode(root, mode):
    cpu = root.find("cpu")
    if cpu is None:
        cpu = ElementTree.Element("cpu")
        root.insert(list(root).index(root.find("os")) + 1 if root.find("os") is not None else len(root), cpu)
    if cpu.get("mode") != mode:
        cpu.clear()  # a model or features of another mode would contradict the new one
        cpu.set("mode", mode)
        if mode == "host-passthrough":
            cpu.set("check", "none")


def disk_element(path, device, bus, target, fmt, readonly):
    disk = ElementTree.Element("disk", type="block" if path and path.startswith("/dev/") else "file", device=device)
    sub_element(disk, "driver", name="qemu", type=fmt or "raw")
    if path:
        sub_element(disk, "source", **{"dev" if path.startswith("/dev/") else "file": path})
    sub_element(disk, "target", dev=target, bus=bus)
    if readonly:
        sub_element(disk, "readonly")
    return disk


def interface_element(kind, source, model, mac):
    nic = ElementTree.Element("interface", type=kind)
    sub_element(nic, "mac", address=mac)
    sub_element(nic, "source", **{kind: source})
    sub_element(nic, "model", type=model)
    return nic


def replace_devices(root, tag, wanted):
    """Make the <devices> children called ``tag`` exactly ``wanted`` (Elements), keeping their
    place: existing elements that are in ``wanted`` (the same objects) stay untouched."""
    devices = ensure_child(root, "devices")
    current = devices.findall(tag)
    position = list(devices).index(current[0]) if current else _device_position(devices, tag)
    for element in current:
        devices.remove(element)
    for offset, element in enumerate(wanted):
        devices.insert(position + offset, element)


# libvirt writes devices in this order; new ones go where it would put them.
_DEVICE_ORDER = ("emulator", "disk", "controller", "lease", "filesystem", "interface", "input", "sound",
                 "hostdev", "graphics", "video", "console", "serial", "parallel", "channel", "watchdog",
                 "memballoon", "rng")


def _device_position(devices, tag):
    rank = _DEVICE_ORDER.index(tag) if tag in _DEVICE_ORDER else len(_DEVICE_ORDER)
    for index, child in enumerate(devices):
        if child.tag in _DEVICE_ORDER and _DEVICE_ORDER.index(child.tag) > rank:
            return index
    return len(devices)


def ensure_scsi_controller(root):
    """A virtio-scsi controller when some disk is on the SCSI bus and no SCSI controller exists.

    Left to itself libvirt adds an LSI controller, which cloud kernels (Debian's among them)
    have no driver for; virtio-scsi they all have, on pc and q35 alike, with hot-plug."""
    devices = root.find("devices")
    if devices is None or devices.find("controller[@type='scsi']") is not None:
        return
    if any(disk.find("target") is not None and disk.find("target").get("bus") == "scsi"
           for disk in devices.findall("disk")):
        controller = ElementTree.Element("controller", type="scsi", index="0", model="virtio-scsi")
        devices.insert(_device_position(devices, "controller"), controller)


def set_serial(root, enabled, log_file):
    """One pty serial port (and its console) with an optional log file, or none."""
    devices = ensure_child(root, "devices")
    current = root.find("devices/serial")
    current_log = current.find("log").get("file") if current is not None and current.find("log") is not None else None
    if enabled and current is not None and current_log == log_file:
        return
    for tag in ("serial", "console"):
        for element in devices.findall(tag):
            devices.remove(element)
    if not enabled:
        return
    serial = ElementTree.Element("serial", type="pty")
    if log_file:
        sub_element(serial, "log", file=log_file, append="on")
    sub_element(serial, "target", port=0)
    console = ElementTree.Element("console", type="pty")
    sub_element(console, "target", type="serial", port=0)
    position = _device_position(devices, "console")
    devices.insert(position, console)
    devices.insert(position + 1, serial)


def set_tags(root, tags, purge):
    metadata = GuestMetadata.from_domain(root)
    metadata.tags = dict(tags) if purge else dict(metadata.tags, **tags)
    metadata.write_into(root)
    return metadata


def set_cloud_init_mark(root, digest):
    metadata = GuestMetadata.from_domain(root)
    metadata.others = [child for child in metadata.others if child.tag != CLOUD_INIT_MARK]
    if digest:
        mark = ElementTree.Element(CLOUD_INIT_MARK, sha256=digest)
        metadata.others.append(mark)
    metadata.write_into(root)


def derived_mac(seed, index, taken):
    """A MAC in QEMU's 52:54:00 range that depends only on ``seed`` and ``index``.

    Derived rather than random so that check mode predicts the MAC the real run will use,
    and so that re-creating a guest (same host, same name) gives it the same MACs."""
    attempt = 0
    while True:
        digest = hashlib.sha256(("%s/%d/%d" % (seed, index, attempt)).encode()).digest()
        mac = "52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2])
        if mac not in taken:
            return mac
        attempt += 1


def inactive_copy(root):
    """A deep copy with what only a running guest has (id, live-only aliases) left out."""
    duplicate = copy.deepcopy(root)
    duplicate.attrib.pop("id", None)
    return duplicate


def canonical_xml(root):
    """The XML text without the indentation, which libvirt rewrites anyway."""
    duplicate = copy.deepcopy(root)
    for element in duplicate.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        element.tail = None
    return to_xml(duplicate)


def xml_covers(actual, desired):
    """Whether libvirt's normalised ``actual`` says everything ``desired`` says.

    libvirt adds defaults (addresses, controllers, aliases) and converts units, so the user's
    XML is compared as a subset, except that devices libvirt never adds must match in number:
    an XML with one disk fewer is a different guest."""
    if desired.tag != actual.tag:
        return False
    if desired.tag in _SIZED_ELEMENTS:
        return libvirt_size_bytes(desired) == libvirt_size_bytes(actual)
    for key, value in desired.attrib.items():
        if actual.get(key) != value:
            return False
    if (desired.text or "").strip() and (desired.text or "").strip() != (actual.text or "").strip():
        return False
    for tag in {child.tag for child in desired}:
        wanted, present = desired.findall(tag), actual.findall(tag)
        counted = actual.tag == "devices" and tag in _COUNTED_DEVICES
        if len(present) < len(wanted) or (counted and len(present) != len(wanted)):
            return False
        if not all(xml_covers(have, want) for want, have in zip(wanted, present)):
            return False
    if actual.tag == "devices":
        for tag in _COUNTED_DEVICES:
            if len(actual.findall(tag)) != len(desired.findall(tag)):
                return False
    return True
