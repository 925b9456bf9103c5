# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage pools and volumes: look up, create, copy, fill and delete.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Every function takes an open ``LibvirtConnection`` and raises ``LibvirtOperationError``
(through ``conn.operation``) or ``StorageError`` with a sentence that names the pool and
volume, so modules only have to report it.
"""

from __future__ import annotations

import os
import stat
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import libvirt_size_bytes

try:
    import libvirt
except ImportError:
    libvirt = None

# 4 MiB chunks keep an upload's memory flat however large the image is.
UPLOAD_CHUNK = 4 * 1024 * 1024

# Pools whose volumes are files, so they have an image format and can be qcow2 overlays.
FILE_POOL_TYPES = ("dir", "fs", "netfs")

# What libvirt sizes volumes in: it hands qemu-img sizes in KiB, and LVM rounds logical
# volumes up to whole extents (4 MiB unless the volume group was made otherwise).
_KIB = 1024
_LVM_EXTENT = 4 * 1024 * 1024

# First bytes of image formats that an upload cannot take as they are.
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2
_OTHER_IMAGE_MAGIC = ((0, b"QED\x00", "qed"), (0, b"KDMV", "vmdk"), (0, b"conectix", "vpc"),
                      (0, b"vhdxfile", "vhdx"), (64, b"\x7f\x10\xda\xbe", "vdi"))


class StorageError(Exception):
    """A storage request that cannot be met; str() is a sentence for a person."""


def check_name(name, what, option):
    """StorageError unless ``name`` can name a pool or volume: libvirt takes it as a file name."""
    if not isinstance(name, str) or not name:
        raise StorageError("%s: the %s name must not be empty" % (option, what))
    if "/" in name or name.startswith(".") or any(ord(char) < 32 for char in name):
        raise StorageError("%s: %r is not a usable %s name (no '/', no leading '.', no control characters)"
                           % (option, name, what))
    if len(name.encode("utf-8")) > 255:
        raise StorageError("%s: the %s name %r is longer than 255 bytes" % (option, what, name))


def _not_found(error):
    return error.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL)


def find_pool(conn, name):
    """The virStoragePool called ``name``, or None."""
    try:
        return conn.handle.storagePoolLookupByName(name)
    except libvirt.libvirtError as error:
        if _not_found(error):
            return None
        raise


def require_pool(conn, name, active=True):
    """The pool called ``name``; StorageError when it does not exist (or is not running)."""
    with conn.operation("look up storage pool %s" % name):
        pool = find_pool(conn, name)
        known = "" if pool else ", ".join(sorted(p.name() for p in conn.handle.listAllStoragePools()))
    if pool is None:
        raise StorageError("storage pool %r does not exist on %s (pools: %s)" % (name, conn.uri, known or "none"))
    if active and not pool.isActive():
        raise StorageError("storage pool %r on %s is not started" % (name, conn.uri))
    return pool


def find_volume(pool, name):
    """The virStorageVol called ``name`` in ``pool``, or None."""
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as error:
        if _not_found(error):
            return None
        raise


def find_volume_by_path(conn, path):
    """The volume whose target path is ``path`` in any pool, or None when no pool holds it."""
    try:
        return conn.handle.storageVolLookupByPath(path)
    except libvirt.libvirtError as error:
        if _not_found(error):
            return None
        raise


def volume_facts(volume):
    """name, pool, path, format, capacity and allocation (bytes) and backing path of a volume."""
    root = parse_xml(volume.XMLDesc(0), "volume XML")
    return dict(
        name=volume.name(),
        pool=volume.storagePoolLookupByVolume().name(),
        path=root.findtext("target/path"),
        format=(root.find("target/format").get("type") if root.find("target/format") is not None else None),
        capacity=libvirt_size_bytes(root.find("capacity"), "bytes"),
        allocation=libvirt_size_bytes(root.find("allocation"), "bytes"),
        backing=root.findtext("backingStore/path"),
    )


def volume_xml(name, capacity, fmt=None, backing_path=None, backing_format=None, allocation=None):
    """Volume XML for virStorageVolCreateXML; sizes in bytes."""
    root = ElementTree.Element("volume")
    sub_element(root, "name", name)
    sub_element(root, "capacity", capacity, unit="bytes")
    if allocation is not None:
        sub_element(root, "allocation", allocation, unit="bytes")
    if fmt:
        target = sub_element(root, "target")
        sub_element(target, "format", type=fmt)
    if backing_path:
        backing = sub_element(root, "backingStore")
        sub_element(backing, "path", backing_path)
        if backing_format:
            sub_element(backing, "format", type=backing_format)
    return to_xml(root)


def readable_size(size_bytes):
    """About how big, for messages: '98.9 GiB', '512.0 MiB', '300 B'."""
    for name, factor in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if size_bytes >= factor:
            return "%.1f %s" % (size_bytes / factor, name)
    return "%d B" % size_bytes


def check_pool_room(pool, size, what):
    """StorageError when ``pool`` has fewer than ``size`` bytes available for ``what``."""
    root = parse_xml(pool.XMLDesc(0), "pool XML")
    available = libvirt_size_bytes(root.find("available"), "bytes")
    if available is not None and size > available:
        raise StorageError("storage pool %r is too full: %s needs %s (%d bytes) and only %s (%d bytes) "
                           "are available" % (pool.name(), what, readable_size(size), size,
                                              readable_size(available), available))


def pool_type(pool):
    """The pool's type as its XML says: dir, fs, netfs, logical..."""
    return parse_xml(pool.XMLDesc(0), "pool XML").get("type")


def pool_path(pool):
    """The pool's target path: the directory of a dir pool, /dev/VG of a logical pool."""
    return parse_xml(pool.XMLDesc(0), "pool XML").findtext("target/path")


def refresh_pool(conn, pool):
    """Have libvirt look at the pool again, so files added behind its back and the free space are current."""
    try:
        pool.refresh(0)
    except libvirt.libvirtError:
        # A pool refuses to refresh while a volume of it is being built (another task
        # creating one at the same moment); what libvirt knows already is then the best
        # there is, and the calls that follow report any real trouble.
        pass


def volume_granularity(pool_kind, fmt):
    """The unit a new or grown volume's capacity is rounded up to by libvirt and its tools."""
    if pool_kind not in FILE_POOL_TYPES:
        return _LVM_EXTENT
    if fmt == "raw":
        return 1
    return _KIB


def round_up(size, granularity):
    return -(-size // granularity) * granularity


def define_volume(conn, pool, name, capacity, fmt=None, backing_path=None, backing_format=None):
    """Create a volume from settings already checked; returns it."""
    with conn.operation("create volume %s in storage pool %s" % (name, pool.name())):
        return pool.createXML(volume_xml(name, capacity, fmt, backing_path, backing_format), 0)


def create_volume(conn, pool, name, capacity, fmt=None, backing=None):
    """Create a volume (a copy-on-write overlay when ``backing`` is a volume) and return it."""
    backing_path = backing_format = None
    if backing is not None:
        facts = volume_facts(backing)
        backing_path, backing_format = facts["path"], facts["format"]
        capacity = max(capacity or 0, facts["capacity"])
        fmt = fmt or "qcow2"
        if fmt != "qcow2":
            raise StorageError("volume %r: a volume with a backing image must be qcow2, not %s" % (name, fmt))
    else:
        check_pool_room(pool, capacity if fmt == "raw" else 0, "volume %r" % name)
    return define_volume(conn, pool, name, capacity, fmt, backing_path, backing_format)


def copy_volume(conn, pool, name, source, fmt=None, check_room=True):
    """A full, independent copy of volume ``source`` called ``name`` in ``pool``.

    ``fmt`` converts the copy (for example raw to qcow2); by default it keeps the source's format."""
    facts = volume_facts(source)
    if check_room:
        check_pool_room(pool, facts["allocation"] or 0, "a copy of volume %r" % facts["name"])
    with conn.operation("copy volume %s to %s in storage pool %s" % (facts["name"], name, pool.name())):
        return pool.createXMLFrom(volume_xml(name, facts["capacity"], fmt or facts["format"]), source, 0)


def resize_volume(conn, volume, capacity):
    """Grow ``volume`` to ``capacity`` bytes (libvirt refuses to shrink without a flag we never pass)."""
    with conn.operation("resize volume %s to %d bytes" % (volume.name(), capacity)):
        volume.resize(capacity, 0)


def upload_to_volume(conn, volume, chunks, length):
    """Write ``length`` bytes from the iterable ``chunks`` to the start of ``volume``."""
    with conn.operation("upload %d bytes to volume %s" % (length, volume.name())):
        stream = conn.handle.newStream(0)
        try:
            volume.upload(stream, 0, length, 0)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:  # a stream may take fewer bytes than offered
                    view = view[stream.send(bytes(view)):]
            stream.finish()
        except BaseException:
            try:
                stream.abort()
            except libvirt.libvirtError:
                pass  # the original error says more than the abort's
            raise


def file_chunks(path):
    """An image file in UPLOAD_CHUNK pieces."""
    with open(path, "rb") as source:
        while True:
            chunk = source.read(UPLOAD_CHUNK)
            if not chunk:
                return
            yield chunk


def image_file_info(path, option="upload"):
    """format ('qcow2' or 'raw'), virtual_size and file_size of an image file to upload.

    Raises StorageError for a file that cannot be read, is empty, needs a backing file or is
    in a format other than raw or qcow2 (the volume would hold bytes no guest can read)."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise StorageError("%s: %s is not a regular file" % (option, path))
        with open(path, "rb") as image:
            header = image.read(512)
    except OSError as error:
        raise StorageError("%s: cannot read %s: %s" % (option, path, error.strerror)) from None
    if status.st_size == 0:
        raise StorageError("%s: %s is empty" % (option, path))
    if header.startswith(_QCOW2_MAGIC) and len(header) >= 32:
        if int.from_bytes(header[8:16], "big"):
            raise StorageError("%s: %s is a qcow2 overlay that needs a backing file; upload a standalone image "
                               "(qemu-img convert -O qcow2 %s standalone.qcow2)" % (option, path, path))
        # qcow2 v3 incompatible feature bit 2: the guest's data lives in an external file
        # named inside the image - like a backing file, a path on the hypervisor the image
        # (and whoever made it) chooses
        if int.from_bytes(header[4:8], "big") >= 3 and len(header) >= 80 \
                and int.from_bytes(header[72:80], "big") & _QCOW2_INCOMPAT_DATA_FILE:
            raise StorageError("%s: %s is a qcow2 image whose data is in an external file it names; upload a "
                               "standalone image (qemu-img convert -O qcow2 %s standalone.qcow2)" % (option, path, path))
        return dict(format="qcow2", virtual_size=int.from_bytes(header[24:32], "big"), file_size=status.st_size)
    for offset, magic, fmt in _OTHER_IMAGE_MAGIC:
        if header[offset:offset + len(magic)] == magic:
            raise StorageError("%s: %s is a %s image; only raw and qcow2 images can be uploaded "
                               "(convert it first: qemu-img convert -O qcow2 ...)" % (option, path, fmt))
    return dict(format="raw", virtual_size=status.st_size, file_size=status.st_size)


def _disk_references(domain_root):
    """(path, (pool, volume)) of every disk source of a domain, its backing chains included."""
    for disk in domain_root.iterfind("devices/disk"):
        for source in disk.iter("source"):
            path = source.get("file") or source.get("dev")
            pair = (source.get("pool"), source.get("volume")) if source.get("volume") else None
            yield path, pair


def _guest_xmls(domain):
    yield parse_xml(domain.XMLDesc(0), "domain XML")
    if domain.isActive() and domain.isPersistent():
        # the next boot's definition may name disks the running guest does not have yet
        yield parse_xml(domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), "domain XML")


def volume_users(conn, volumes):
    """Who would break if ``volumes`` went away: guests using them, and other volumes backed by them.

    Returns sentences such as "guest 'web-1'" or "volume 'web-1.qcow2' in pool 'default'
    (its backing image)"; empty when nothing uses them."""
    facts = [volume_facts(volume) for volume in volumes]
    paths = {fact["path"] for fact in facts}
    pairs = {(fact["pool"], fact["name"]) for fact in facts}
    users = []
    with conn.operation("find the guests and volumes that use %s" % ", ".join(sorted(paths))):
        for domain in conn.handle.listAllDomains(0):
            for root in _guest_xmls(domain):
                if any(path in paths or pair in pairs for path, pair in _disk_references(root)):
                    users.append("guest %r" % domain.name())
                    break
        for pool in conn.handle.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            for volume in pool.listAllVolumes(0):
                root = parse_xml(volume.XMLDesc(0), "volume XML")
                if root.findtext("target/path") not in paths and root.findtext("backingStore/path") in paths:
                    users.append("volume %r in pool %r (it is backed by it)" % (volume.name(), pool.name()))
    return users


def delete_volume(conn, volume):
    """Delete a volume (its data and its pool entry)."""
    with conn.operation("delete volume %s" % volume.name()):
        volume.delete(0)
