# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Remove a guest, and with it only the storage that is its own.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The guest is undefined before it is powered off, so a refusal leaves it defined and
running. ``remove_storage`` deletes its writable pool volumes and its cloud-init seed,
never a disk another guest uses or a volume that backs another.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils import guest_xml, storage
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml

try:
    import libvirt
except ImportError:
    libvirt = None

# The cloud-init seed volume of guest NAME is NAME + SEED_SUFFIX, in the pool of its disks.
SEED_SUFFIX = "-cidata.iso"


def removable_volumes(conn, domain):
    """Volumes that remove_storage deletes: the guest's own writable disks and its seed; and
    the disks it keeps, with the reason."""
    name = domain.name()
    with conn.operation("read the definition of guest %s" % name):
        root = parse_xml(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML of %s" % name)
    mine, skipped = [], []
    for disk in root.findall("devices/disk"):
        path = guest_xml.disk_source(disk)
        seed = bool(path) and path.endswith("/" + name + SEED_SUFFIX)
        if not path or (not seed and (disk.find("readonly") is not None or disk.find("shareable") is not None)):
            continue
        with conn.operation("look up the volume behind %s" % path):
            volume = storage.find_volume_by_path(conn, path)
        if volume is None:
            skipped.append("%s (not in a storage pool)" % path)
            continue
        users = _other_users(conn, name, path)
        if users:
            skipped.append("%s (used by %s)" % (path, ", ".join(users)))
            continue
        mine.append(volume)
    return mine, skipped


def _other_users(conn, name, path):
    """Other guests whose disks are ``path``, and volumes backed by it."""
    users = []
    with conn.operation("list the guests and volumes that use %s" % path):
        for other in conn.handle.listAllDomains():
            if other.name() == name:
                continue
            root = parse_xml(other.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML")
            if path in (guest_xml.disk_source(disk) for disk in root.findall("devices/disk")):
                users.append("guest " + other.name())
        for pool in conn.handle.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            for volume in pool.listAllVolumes():
                if storage.volume_facts(volume)["backing"] == path:
                    users.append("volume %s (backing image)" % volume.name())
    return users


def remove_guest(conn, domain, remove_storage):
    """Power off and undefine a guest (with its storage when asked); (actions, warnings)."""
    name = domain.name()
    actions = []
    volumes, skipped = removable_volumes(conn, domain) if remove_storage else ([], [])
    active = domain.isActive()
    # Undefined first: if that fails the guest is still defined and still running.
    with conn.operation("undefine guest %s" % name):
        undefine(domain)
    actions.append("undefined guest %s" % name)
    if active:
        with conn.operation("power off guest %s after undefining it" % name):
            domain.destroy()
        actions.append("powered off guest %s" % name)
    for volume in volumes:
        volume_name = volume.name()
        storage.delete_volume(conn, volume)
        actions.append("deleted volume %s" % volume_name)
    return actions, ["kept disk %s" % path for path in skipped]


def _count_or_zero(call):
    """A count from a libvirt call the driver may not implement (then there is nothing to count)."""
    try:
        return call()
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
            return 0
        raise


def undefine(domain):
    """Undefine with what would otherwise block it: NVRAM, snapshots, checkpoints, managed save.

    Each flag is passed only when the guest has that thing: drivers refuse flags they do
    not implement even when there is nothing to remove."""
    root = parse_xml(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML")
    flags = 0
    if root.find("os/nvram") is not None or guest_xml.read_view(root)["firmware"] == "uefi":
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    if _count_or_zero(lambda: domain.snapshotNum(0)):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    if _count_or_zero(lambda: len(domain.listAllCheckpoints(0))):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    if _count_or_zero(lambda: domain.hasManagedSaveImage(0)):
        flags |= libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    domain.undefineFlags(flags)
