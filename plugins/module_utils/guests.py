# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bring one guest to its desired state: plan everything first, then change, or undo.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``GuestRun.plan()`` reads the hypervisor and works out the new domain XML, the volumes to
create and the live changes, raising ``GuestError`` for anything that cannot work before a
single thing has changed. Check mode stops there: its diff is the plan's diff. ``apply()``
then creates volumes, defines the guest, applies live changes and power changes; when a
step fails it deletes what it created and restores the previous definition, so an error
never leaves a guest half-defined or stopped when it was running.
"""

from __future__ import annotations

import hashlib

from ansible_collections.kvmops.virt.plugins.module_utils import guest_xml, storage
from ansible_collections.kvmops.virt.plugins.module_utils.changes import resource_diff
from ansible_collections.kvmops.virt.plugins.module_utils.cloud_init import CloudInitError, render_seed, seed_texts
from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.guest_live import LiveChanges
from ansible_collections.kvmops.virt.plugins.module_utils.guest_power import PowerError, change_power, shut_down, start
from ansible_collections.kvmops.virt.plugins.module_utils.guest_removal import SEED_SUFFIX, remove_guest, undefine
from ansible_collections.kvmops.virt.plugins.module_utils.guest_spec import (
    NEW_GUEST_MEMORY, NEW_GUEST_VCPUS, GuestSpecError, check_guest_name, next_free_target)
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import power_state, read_view
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import XMLError, parse_xml, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import format_size

try:
    import libvirt
except ImportError:
    libvirt = None


class GuestError(Exception):
    """The desired state cannot be reached; str() says why, nothing has been changed."""


class PlannedVolume:
    """A volume the run will create: a new disk, a clone of a template disk, or a seed."""

    def __init__(self, pool, name, path, size, fmt, backing=None, copy_of=None, content=None):
        self.pool, self.name, self.path, self.size, self.format = pool, name, path, size, fmt
        self.backing, self.copy_of, self.content = backing, copy_of, content

    def describe(self):
        how = "linked clone of %s" % self.backing.name() if self.backing is not None else (
            "copy of %s" % self.copy_of.name() if self.copy_of is not None else format_size(self.size))
        return "created volume %s in pool %s (%s)" % (self.name, self.pool.name(), how)


def find_guest(conn, name):
    """The virDomain called ``name``, or None."""
    with conn.operation("look up guest %s" % name):
        try:
            return conn.handle.lookupByName(name)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise


def pool_target_path(pool):
    return parse_xml(pool.XMLDesc(0), "pool XML").findtext("target/path")


class GuestRun:  # pylint: disable=too-many-instance-attributes
    """One run of the guest module against one hypervisor."""

    def __init__(self, conn, spec):
        self.conn = conn
        self.spec = spec
        self.domain = None
        self.before_root = None
        self.after_root = None
        self.volumes = []            # PlannedVolume, in creation order
        self.grown = []              # (volume, new size in bytes, target)
        self.catalog = {}            # path -> dict(pool, volume, size) for the views
        self.actions = []
        self.warnings = []
        self.live = None             # LiveChanges of a running guest
        self._capabilities = None

    # ------------------------------------------------------------ reading

    def capabilities(self):
        if self._capabilities is None:
            with self.conn.operation("read the hypervisor's capabilities"):
                self._capabilities = parse_xml(self.conn.handle.getCapabilities(), "capabilities XML")
        return self._capabilities

    def host_seed(self):
        """What makes derived MACs differ between hypervisors: the host UUID, else its name."""
        uuid = self.capabilities().findtext("host/uuid")
        if uuid:
            return uuid
        with self.conn.operation("read the hypervisor's host name"):
            return self.conn.handle.getHostname()

    def _guest_domain_types(self, arch):
        for guest in self.capabilities().findall("guest"):
            if guest.find("arch") is not None and guest.find("arch").get("name") == arch:
                return [domain.get("type") for domain in guest.findall("arch/domain")]
        return []

    def canonical_machine(self, arch, machine):
        """The machine type libvirt will record for ``machine`` (q35 -> pc-q35-7.2)."""
        for guest in self.capabilities().findall("guest"):
            if guest.find("arch") is None or guest.find("arch").get("name") != arch:
                continue
            for element in guest.findall("arch/machine"):
                if element.text == machine and element.get("canonical"):
                    return element.get("canonical")
        return machine

    def _describe_paths(self, root):
        """Fill the catalog for every disk of ``root`` that is a volume of some pool."""
        for disk in root.findall("devices/disk"):
            path = guest_xml.disk_source(disk)
            if not path or path in self.catalog:
                continue
            with self.conn.operation("look up the volume behind %s" % path):
                volume = storage.find_volume_by_path(self.conn, path)
                facts = storage.volume_facts(volume) if volume is not None else None
            self.catalog[path] = facts and dict(pool=facts["pool"], volume=facts["name"], size=facts["capacity"])

    def view(self, root, domain=None, state=None, autostart=None):
        if root is None:
            return None
        self._describe_paths(root)
        view = dict(name=root.findtext("name"), state=state, autostart=autostart)
        view.update(read_view(root, self.catalog))
        if domain is not None and state is None:
            view["state"] = power_state(domain)
        return view

    # ------------------------------------------------------------ planning

    def plan(self):
        """Work out the whole change; raises GuestError when it cannot work."""
        spec = self.spec
        self.domain = find_guest(self.conn, spec.name)
        if spec.state == "absent":
            return
        try:
            if self.domain is None:
                check_guest_name(spec.name)
                if not (spec.defines_resources() or spec.clone_from):
                    raise GuestError("guest %s does not exist on %s; describe it (vcpus, memory, disks, ...) or "
                                     "give clone_from to create it" % (spec.name, self.conn.uri))
                root = self._clone_base() if spec.clone_from else self._new_base()
            else:
                with self.conn.operation("read the definition of guest %s" % spec.name):
                    self.before_root = parse_xml(
                        self.domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML of %s" % spec.name)
                root = guest_xml.inactive_copy(self.before_root)
            if spec.xml is not None:
                root = self._from_user_xml(root)
            else:
                self._apply_spec(root)
            self.after_root = root
            if self.domain is not None and power_state(self.domain) in ("running", "paused"):
                self.live = LiveChanges(self.conn, self.domain, self.after_root, self.catalog)
        except (GuestSpecError, XMLError, CloudInitError, storage.StorageError) as error:
            raise GuestError(str(error)) from None

    def _new_base(self):
        spec = self.spec
        arch = spec.arch or self.capabilities().findtext("host/cpu/arch")
        offered = self._guest_domain_types(arch)
        if not offered:
            raise GuestError("arch: this hypervisor cannot run %s guests" % arch)
        virt_type = spec.virt_type or ("kvm" if "kvm" in offered else offered[0])
        if virt_type not in offered:
            raise GuestError("virt_type: this hypervisor offers %s for %s guests, not %s"
                             % (", ".join(offered), arch, virt_type))
        root = guest_xml.new_domain(spec.name, virt_type, arch, with_acpi=arch in ("x86_64", "i686"))
        vcpus = spec.vcpus or NEW_GUEST_VCPUS
        memory = spec.memory or min(NEW_GUEST_MEMORY, spec.max_memory or NEW_GUEST_MEMORY)
        guest_xml.set_vcpus(root, vcpus, max(vcpus, spec.max_vcpus or vcpus))
        guest_xml.set_memory(root, memory, max(memory, spec.max_memory or memory))
        return root

    def _clone_base(self):
        spec = self.spec
        template = find_guest(self.conn, spec.clone_from)
        if template is None:
            raise GuestError("clone_from: guest %s does not exist on %s" % (spec.clone_from, self.conn.uri))
        if power_state(template) != "stopped":
            raise GuestError("clone_from: guest %s is %s; stop it first so that its disks are consistent"
                             % (spec.clone_from, power_state(template)))
        with self.conn.operation("read the definition of guest %s" % spec.clone_from):
            root = parse_xml(template.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML of %s" % spec.clone_from)
        root.find("name").text = spec.name
        for tag in ("uuid", "genid"):
            for element in root.findall(tag):
                root.remove(element)
        for nvram in root.findall("os/nvram"):
            root.find("os").remove(nvram)  # libvirt makes a fresh one from the firmware's template
        guest_xml.set_cloud_init_mark(root, None)
        devices = root.find("devices")
        for serial in devices.findall("serial"):
            for log in serial.findall("log"):
                serial.remove(log)  # the template's log file is not the clone's
        for disk in list(devices.findall("disk")):
            path = guest_xml.disk_source(disk)
            if path and path.endswith("/" + spec.clone_from + SEED_SUFFIX):
                devices.remove(disk)  # the template's own cloud-init seed is not the clone's
            elif path and disk.get("device", "disk") == "disk" and disk.find("readonly") is None \
                    and disk.find("shareable") is None:
                self._plan_disk_clone(disk, path)
        taken = set()
        for index, nic in enumerate(devices.findall("interface")):
            mac = guest_xml.derived_mac("%s/%s" % (self.host_seed(), spec.name), index, taken)
            taken.add(mac)
            guest_xml.ensure_child(nic, "mac").attrib = {"address": mac}
        return root

    def _plan_disk_clone(self, disk, path):
        spec = self.spec
        target = disk.find("target").get("dev")
        with self.conn.operation("look up the volume behind %s" % path):
            source = storage.find_volume_by_path(self.conn, path)
        if source is None:
            raise GuestError("clone_from: disk %s of %s (%s) is not a volume of any storage pool on %s; "
                             "cloning copies pool volumes" % (target, spec.clone_from, path, self.conn.uri))
        facts = storage.volume_facts(source)
        pool = source.storagePoolLookupByVolume()
        linked = spec.clone_mode == "linked"
        fmt = "qcow2" if linked else (facts["format"] or "raw")
        name = "%s-%s.%s" % (spec.name, target, "qcow2" if fmt == "qcow2" else "img")
        self._refuse_existing_volume(pool, name)
        new_path = "%s/%s" % (pool_target_path(pool), name)
        self.volumes.append(PlannedVolume(pool, name, new_path, facts["capacity"], fmt,
                                          backing=source if linked else None, copy_of=None if linked else source))
        self.catalog[new_path] = dict(pool=pool.name(), volume=name, size=facts["capacity"])
        guest_xml.ensure_child(disk, "source").attrib = {"file": new_path}
        guest_xml.ensure_child(disk, "driver").set("type", fmt)
        disk.set("type", "file")
        for backing in disk.findall("backingStore"):
            disk.remove(backing)

    def _refuse_existing_volume(self, pool, name):
        with self.conn.operation("look up volume %s in pool %s" % (name, pool.name())):
            if storage.find_volume(pool, name) is not None:
                raise GuestError("volume %s already exists in pool %s; remove it or choose another guest name"
                                 % (name, pool.name()))

    def _apply_spec(self, root):
        spec = self.spec
        vcpus, max_vcpus = guest_xml.vcpu_counts(root)
        want_vcpus = spec.vcpus or vcpus
        want_max_vcpus = spec.max_vcpus or max(max_vcpus, want_vcpus)
        if want_max_vcpus < want_vcpus:
            raise GuestError("max_vcpus (%d) is less than the guest's %d vCPUs; set vcpus too"
                             % (want_max_vcpus, want_vcpus))
        guest_xml.set_vcpus(root, want_vcpus, want_max_vcpus)
        memory, max_memory = guest_xml.memory_bytes(root)
        want_memory = spec.memory or memory
        want_max_memory = spec.max_memory or max(max_memory, want_memory)
        if want_max_memory < want_memory:
            raise GuestError("max_memory (%s) is less than the guest's memory (%s); set memory too"
                             % (format_size(want_max_memory), format_size(want_memory)))
        if (want_memory, want_max_memory) != (memory, max_memory):
            guest_xml.set_memory(root, want_memory, want_max_memory)
        if spec.virt_type and spec.virt_type != root.get("type"):
            arch = root.find("os/type").get("arch")
            if spec.virt_type not in self._guest_domain_types(arch):
                raise GuestError("virt_type: this hypervisor does not offer %s for %s guests" % (spec.virt_type, arch))
            root.set("type", spec.virt_type)
        if spec.cpu_mode in ("host-passthrough", "host-model") and root.get("type") == "qemu":
            raise GuestError("cpu_mode %s needs virt_type kvm; with qemu (TCG) use maximum or leave it unset"
                             % spec.cpu_mode)
        machine = None
        if spec.machine:
            arch = spec.arch or root.find("os/type").get("arch")
            current = root.find("os/type").get("machine")
            machine = spec.machine if self.canonical_machine(arch, spec.machine) != current else None
        guest_xml.set_os(root, spec, machine)
        if root.find("os/kernel") is None and (root.find("os/initrd") is not None or root.find("os/cmdline") is not None):
            raise GuestError("initrd and cmdline need kernel (direct kernel boot)")
        if spec.cpu_mode:
            guest_xml.set_cpu_mode(root, spec.cpu_mode)
        if spec.disks is not None:
            self._apply_disks(root)
        if spec.interfaces is not None:
            self._apply_interfaces(root)
        if spec.serial is not None or spec.serial_log is not None:
            enabled = spec.serial if spec.serial is not None else True
            guest_xml.set_serial(root, enabled, spec.serial_log if enabled else None)
        if spec.tags is not None:
            guest_xml.set_tags(root, spec.tags, spec.purge_tags)
        if spec.cloud_init is not None:
            self._apply_cloud_init(root)
        guest_xml.ensure_scsi_controller(root)

    # ------------------------------------------------------------ disks

    def _apply_disks(self, root):
        current = {}
        for disk in root.findall("devices/disk"):
            target = disk.find("target")
            if target is not None:
                current[target.get("dev")] = disk
        seed_disks = [disk for disk in current.values()
                      if (guest_xml.disk_source(disk) or "").endswith("/" + self.spec.name + SEED_SUFFIX)]
        wanted = []
        for disk_spec in self.spec.disks:
            path, fmt = self._resolve_disk(disk_spec)
            existing = current.get(disk_spec.target)
            if existing is not None and existing not in seed_disks and guest_xml.read_disk(existing) == dict(
                    target=disk_spec.target, device=disk_spec.device, bus=disk_spec.bus, path=path, format=fmt,
                    readonly=disk_spec.readonly):
                wanted.append(existing)
            else:
                wanted.append(guest_xml.disk_element(path, disk_spec.device, disk_spec.bus, disk_spec.target, fmt,
                                                     disk_spec.readonly))
        taken = {disk_spec.target for disk_spec in self.spec.disks}
        for seed in seed_disks:
            if seed.find("target").get("dev") in taken:
                raise GuestError("disks: target %s is the cloud-init seed's; choose another" % seed.find("target").get("dev"))
        guest_xml.replace_devices(root, "disk", wanted + seed_disks)

    def _resolve_disk(self, disk_spec):
        """(path, format) of a disk, planning its volume when it has to be created or grown."""
        if disk_spec.path:
            with self.conn.operation("look up the volume behind %s" % disk_spec.path):
                volume = storage.find_volume_by_path(self.conn, disk_spec.path)
            fmt = storage.volume_facts(volume)["format"] if volume is not None else None
            return disk_spec.path, disk_spec.format or fmt or "raw"
        pool = storage.require_pool(self.conn, disk_spec.pool)
        name = disk_spec.volume_name(self.spec.name)
        with self.conn.operation("look up volume %s in pool %s" % (name, pool.name())):
            volume = storage.find_volume(pool, name)
        where = "disks[%s] (volume %s in pool %s)" % (disk_spec.target, name, pool.name())
        if volume is not None:
            facts = storage.volume_facts(volume)
            actual_format = facts["format"] or "raw"
            if disk_spec.format and disk_spec.format != actual_format:
                raise GuestError("%s: the volume is %s, not %s" % (where, actual_format, disk_spec.format))
            wanted_size = disk_spec.size
            if wanted_size is not None and disk_spec.backing and facts["backing"]:
                # an overlay was made at least as large as its backing image
                with self.conn.operation("look up backing image %s" % facts["backing"]):
                    backing = storage.find_volume_by_path(self.conn, facts["backing"])
                if backing is not None:
                    wanted_size = max(wanted_size, storage.volume_facts(backing)["capacity"])
            if wanted_size is not None and wanted_size < facts["capacity"]:
                raise GuestError("%s: the volume is %s, larger than size %s; shrinking a disk loses data and is "
                                 "not done" % (where, format_size(facts["capacity"]), format_size(disk_spec.size)))
            if wanted_size is not None and wanted_size > facts["capacity"]:
                self.grown.append((volume, wanted_size, disk_spec.target))
                self.catalog[facts["path"]] = dict(pool=pool.name(), volume=name, size=wanted_size)
            return facts["path"], actual_format
        if disk_spec.size is None:
            raise GuestError("%s does not exist; give size to create it" % where)
        backing = None
        if disk_spec.backing:
            backing = self._find_backing(pool, disk_spec.backing, where)
        fmt = disk_spec.format or "qcow2"
        if backing is not None and fmt != "qcow2":
            raise GuestError("%s: a disk with a backing image must be qcow2" % where)
        path = "%s/%s" % (pool_target_path(pool), name)
        size = max(disk_spec.size, storage.volume_facts(backing)["capacity"]) if backing is not None else disk_spec.size
        if fmt == "raw":
            storage.check_pool_room(pool, size + sum(v.size for v in self.volumes if v.pool.name() == pool.name()
                                                     and v.format == "raw"), "disk %s" % disk_spec.target)
        self.volumes.append(PlannedVolume(pool, name, path, size, fmt, backing=backing))
        self.catalog[path] = dict(pool=pool.name(), volume=name, size=size)
        return path, fmt

    def _find_backing(self, pool, backing, where):
        with self.conn.operation("look up backing image %s" % backing):
            if backing.startswith("/"):
                volume = storage.find_volume_by_path(self.conn, backing)
            else:
                volume = storage.find_volume(pool, backing)
        if volume is None:
            raise GuestError("%s: backing image %s is not a volume %s" % (
                where, backing, "of any pool" if backing.startswith("/") else "in pool %s" % pool.name()))
        return volume

    # ------------------------------------------------------------ interfaces

    def _apply_interfaces(self, root):
        spec = self.spec
        current = root.findall("devices/interface")
        by_mac = {guest_xml.read_interface(nic)["mac"]: nic for nic in current}
        wanted, used = [], set()
        taken = set(by_mac) | {nic.mac for nic in spec.interfaces if nic.mac}
        for index, nic in enumerate(spec.interfaces):
            if nic.type == "network":
                self._require_network(nic.source, index)
            match = by_mac.get(nic.mac) if nic.mac else None
            if match is None and not nic.mac and index < len(current) and current[index] not in used:
                seen = guest_xml.read_interface(current[index])
                if (seen["type"], seen["source"]) == (nic.type, nic.source) and seen["mac"] not in \
                        {other.mac for other in spec.interfaces if other.mac}:
                    match = current[index]
            if match is not None and guest_xml.read_interface(match)[
                    "type"] == nic.type and guest_xml.read_interface(match)["source"] == nic.source \
                    and guest_xml.read_interface(match)["model"] == nic.model:
                wanted.append(match)
                used.add(match)
                continue
            mac = nic.mac or (guest_xml.read_interface(match)["mac"] if match is not None else None)
            if mac is None:
                mac = guest_xml.derived_mac("%s/%s" % (self.host_seed(), spec.name), index, taken)
                taken.add(mac)
            if match is not None:
                used.add(match)
            wanted.append(guest_xml.interface_element(nic.type, nic.source, nic.model, mac))
        guest_xml.replace_devices(root, "interface", wanted)

    def _require_network(self, name, index):
        with self.conn.operation("look up network %s" % name):
            try:
                self.conn.handle.networkLookupByName(name)
                return
            except libvirt.libvirtError as error:
                if error.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
            known = ", ".join(sorted(net.name() for net in self.conn.handle.listAllNetworks())) or "none"
        raise GuestError("interfaces[%d]: network %s does not exist on %s (networks: %s)"
                         % (index, name, self.conn.uri, known))

    # ------------------------------------------------------------ cloud-init

    def _apply_cloud_init(self, root):
        options = self.spec.cloud_init
        seed = render_seed(*seed_texts(options.get("user_data"), options.get("meta_data"),
                                       options.get("network_config"), hostname=self.spec.name))
        digest = hashlib.sha256(seed).hexdigest()
        pool_name = options.get("pool") or self._first_disk_pool(root) or "default"
        pool = storage.require_pool(self.conn, pool_name)
        name = self.spec.name + SEED_SUFFIX
        path = "%s/%s" % (pool_target_path(pool), name)
        attached = [disk for disk in root.findall("devices/disk") if guest_xml.disk_source(disk) == path]
        current_digest = read_view(root)["cloud_init"]
        if current_digest != digest:
            self.volumes.append(PlannedVolume(pool, name, path, len(seed), "raw", content=seed))
        guest_xml.set_cloud_init_mark(root, digest)
        self.catalog[path] = dict(pool=pool.name(), volume=name, size=len(seed))
        if not attached:
            taken = {disk.find("target").get("dev") for disk in root.findall("devices/disk")
                     if disk.find("target") is not None}
            bus = options.get("bus") or "scsi"
            cdrom = guest_xml.disk_element(path, "cdrom", bus, next_free_target(bus, taken), "raw", True)
            disks = root.findall("devices/disk")
            guest_xml.replace_devices(root, "disk", disks + [cdrom])

    def _first_disk_pool(self, root):
        self._describe_paths(root)
        for disk in root.findall("devices/disk"):
            known = self.catalog.get(guest_xml.disk_source(disk))
            if known:
                return known["pool"]
        return None

    # ------------------------------------------------------------ user XML

    def _from_user_xml(self, current_root):
        spec = self.spec
        desired = parse_xml(spec.xml, "xml")
        if desired.tag != "domain":
            raise GuestError("xml: the root element must be <domain>, not <%s>" % desired.tag)
        name = desired.findtext("name")
        if name is None:
            guest_xml.sub_element(desired, "name", spec.name)
        elif name != spec.name:
            raise GuestError("xml: the XML names the guest %s but name is %s" % (name, spec.name))
        if self.before_root is not None:
            if guest_xml.xml_covers(self.before_root, desired):
                desired = guest_xml.inactive_copy(self.before_root)
            else:
                self._keep_identity(desired)
        if spec.tags is not None:
            guest_xml.set_tags(desired, spec.tags, spec.purge_tags)
        if self.before_root is None and current_root is not None:
            self._give_macs(desired)
        return desired

    def _keep_identity(self, desired):
        """A redefinition keeps the guest's UUID and, NIC by NIC, its MAC addresses."""
        if desired.find("uuid") is None:
            guest_xml.sub_element(desired, "uuid", self.before_root.findtext("uuid"))
        old_macs = [guest_xml.read_interface(nic)["mac"] for nic in self.before_root.findall("devices/interface")]
        for index, nic in enumerate(desired.findall("devices/interface")):
            if nic.find("mac") is None and index < len(old_macs):
                guest_xml.sub_element(nic, "mac", address=old_macs[index])
        self._give_macs(desired)

    def _give_macs(self, root):
        taken = set()
        for index, nic in enumerate(root.findall("devices/interface")):
            if nic.find("mac") is None:
                mac = guest_xml.derived_mac("%s/%s" % (self.host_seed(), self.spec.name), index, taken)
                guest_xml.sub_element(nic, "mac", address=mac)
            taken.add(nic.find("mac").get("address"))

    # ------------------------------------------------------------ results

    def definition_changed(self):
        if self.after_root is None:
            return False
        return self.before_root is None or guest_xml.canonical_xml(self.before_root) != guest_xml.canonical_xml(self.after_root)

    @property
    def restart_required(self):
        return bool(self.restart_keys)

    @property
    def restart_keys(self):
        """View keys in which the running guest differs from its definition until a restart."""
        return self.live.restart_keys if self.live is not None else []

    def will_restart(self):
        return self.restart_required and self.spec.restart == "if_needed" and self.wanted_state() == "running"

    def predicts_change(self):
        """Whether apply() will change anything: what check mode reports as ``changed``."""
        if self.spec.state == "absent":
            return self.domain is not None
        before, after = self.views()
        return before != after or bool(self.volumes or self.grown or (self.live and self.live.live_keys)) or self.will_restart()

    def wanted_state(self):
        if self.spec.state == "present":
            return power_state(self.domain) if self.domain is not None else "stopped"
        return self.spec.state

    def wanted_autostart(self, current):
        return self.spec.autostart if self.spec.autostart is not None else current

    def views(self):
        """(before, after) views for the diff: the guest as it is and as it will be."""
        before = after = None
        autostart = self._autostart()
        if self.domain is not None:
            before = self.view(self.before_root if self.before_root is not None else self._inactive_root(),
                               self.domain, autostart=autostart)
        if self.spec.state != "absent":
            after = self.view(self.after_root, state=self.wanted_state(),
                              autostart=self.wanted_autostart(autostart if autostart is not None else False))
        return before, after

    def _inactive_root(self):
        with self.conn.operation("read the definition of guest %s" % self.spec.name):
            return parse_xml(self.domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML")

    def _autostart(self):
        if self.domain is None:
            return None
        with self.conn.operation("read the autostart flag of guest %s" % self.spec.name):
            return bool(self.domain.autostart())

    def diff(self):
        before, after = self.views()
        if self.spec.xml is not None and before is not None and after is not None and before == after \
                and self.definition_changed():
            return dict(before=to_xml(self.before_root), after=to_xml(self.after_root))
        return resource_diff(before, after)

    # ------------------------------------------------------------ changing

    def apply(self):
        """Make the plan real; on failure undo what this run did and raise GuestError."""
        if self.spec.state == "absent":
            return self._remove()
        previous_xml = to_xml(self.before_root) if self.before_root is not None else None
        was = power_state(self.domain) if self.domain is not None else "stopped"
        created = []
        defined = False
        try:
            for volume in self.volumes:
                self._create_volume(volume, created)
            if self.definition_changed():
                with self.conn.operation("define guest %s" % self.spec.name):
                    self.domain = self.conn.handle.defineXML(to_xml(self.after_root))
                defined = True
                self.actions.append("defined guest %s" % self.spec.name if previous_xml is None
                                    else "updated the definition of guest %s" % self.spec.name)
            self._grow_disks(was)
            if self.live is not None:
                self.live.apply(self.actions, self.warnings)
            self._set_autostart()
            self.actions.extend(change_power(self.conn, self.domain, self.wanted_state(),
                                             self._shutdown_timeout(), self.spec.force))
            if self.will_restart() and power_state(self.domain) == "running":
                self._restart(previous_xml if defined else None)
        except (LibvirtOperationError, PowerError, storage.StorageError) as error:
            notes = self._undo(created, previous_xml if defined else None, was)
            raise GuestError("%s%s" % (error, "; " + ", ".join(notes) if notes else "")) from None
        return None

    def _shutdown_timeout(self):
        return self.spec.shutdown_timeout if self.spec.shutdown_timeout is not None else 120

    def _create_volume(self, planned, created):
        conn = self.conn
        if planned.content is not None:
            old = storage.find_volume(planned.pool, planned.name)
            if old is not None:
                storage.delete_volume(conn, old)  # a seed is rebuilt whole, never patched
        if planned.copy_of is not None:
            volume = storage.copy_volume(conn, planned.pool, planned.name, planned.copy_of)
        else:
            volume = storage.create_volume(conn, planned.pool, planned.name, planned.size, planned.format,
                                           backing=planned.backing)
        created.append(volume)
        if planned.content is not None:
            storage.upload_to_volume(conn, volume, [planned.content], len(planned.content))
        self.actions.append(planned.describe())

    def _grow_disks(self, was):
        for volume, size, target in self.grown:
            if was in ("running", "paused"):
                with self.conn.operation("grow disk %s of running guest %s" % (target, self.spec.name)):
                    self.domain.blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            else:
                with self.conn.operation("grow volume %s" % volume.name()):
                    volume.resize(size, 0)
            self.actions.append("grew disk %s to %s" % (target, format_size(size)))

    def _set_autostart(self):
        wanted = self.spec.autostart
        if wanted is None or bool(self.domain.autostart()) == wanted:
            return
        with self.conn.operation("set autostart of guest %s" % self.spec.name):
            self.domain.setAutostart(1 if wanted else 0)
        self.actions.append("%s autostart of guest %s" % ("enabled" if wanted else "disabled", self.spec.name))

    def _restart(self, previous_xml):
        """A clean restart to apply what a running guest cannot take live."""
        timeout = self._shutdown_timeout()
        self.actions.append(shut_down(self.conn, self.domain, timeout, self.spec.force))
        try:
            self.actions.append(start(self.conn, self.domain))
        except LibvirtOperationError as error:
            if previous_xml is None:
                raise
            with self.conn.operation("restore the previous definition of guest %s" % self.spec.name):
                self.domain = self.conn.handle.defineXML(previous_xml)
            self.actions.append(start(self.conn, self.domain))
            raise GuestError("guest %s did not start with its new definition (%s); the previous definition was "
                             "restored and the guest started again" % (self.spec.name, error)) from None
        self.live.restart_keys = []

    def _undo(self, created, previous_xml, was):
        """Put back what this run changed, so that a failure leaves the guest as it was."""
        notes = []
        try:
            if previous_xml is not None:
                self.domain = self.conn.handle.defineXML(previous_xml)
                notes.append("the previous definition was restored")
            elif self.before_root is None and self.domain is not None:
                if self.domain.isActive():
                    self.domain.destroy()
                undefine(self.domain)
                self.domain = None
                notes.append("the new guest was removed")
            for volume in created:
                volume.delete(0)
            if created:
                notes.append("%d new volume(s) deleted" % len(created))
            if self.domain is not None and was == "running" and power_state(self.domain) == "stopped":
                self.domain.create()
                notes.append("the guest was started again")
        except libvirt.libvirtError as undo_error:
            notes.append("undoing failed too: %s" % undo_error.get_error_message())
        return notes

    # ------------------------------------------------------------ removal

    def _remove(self):
        actions, warnings = remove_guest(self.conn, self.domain, self.spec.remove_storage)
        self.actions.extend(actions)
        self.warnings.extend(warnings)


def describe_guest(conn, domain, catalog=None):
    """The ``guest`` return value: the view plus identity, state and where it runs."""
    with conn.operation("describe guest %s" % domain.name()):
        root = parse_xml(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML")
        result = dict(name=domain.name(), uuid=domain.UUIDString(), state=power_state(domain),
                      autostart=bool(domain.autostart()), persistent=bool(domain.isPersistent()),
                      host=conn.handle.getHostname())
    result.update(read_view(root, catalog))
    return result
