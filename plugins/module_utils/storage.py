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

from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import libvirt_size_bytes

try:
    import libvirt
except ImportError:
    libvirt = None

# 4 MiB chunks keep an upload's memory flat however large the image is.
UPLOAD_CHUNK = 4 * 1024 * 1024


class StorageError(Exception):
    """A storage request that cannot be met; str() is a sentence for a person."""


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


def check_pool_room(pool, size, what):
    """StorageError when ``pool`` has fewer than ``size`` bytes available for ``what``."""
    root = parse_xml(pool.XMLDesc(0), "pool XML")
    available = libvirt_size_bytes(root.find("available"), "bytes")
    if available is not None and size > available:
        raise StorageError("storage pool %r has %d bytes available, %s needs %d"
                           % (pool.name(), available, what, size))


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
    with conn.operation("create volume %s in storage pool %s" % (name, pool.name())):
        return pool.createXML(volume_xml(name, capacity, fmt, backing_path, backing_format), 0)


def copy_volume(conn, pool, name, source):
    """A full, independent copy of volume ``source`` called ``name`` in ``pool``."""
    facts = volume_facts(source)
    check_pool_room(pool, facts["allocation"] or 0, "a copy of volume %r" % facts["name"])
    with conn.operation("copy volume %s to %s in storage pool %s" % (facts["name"], name, pool.name())):
        return pool.createXMLFrom(volume_xml(name, facts["capacity"], facts["format"]), source, 0)


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


def delete_volume(conn, volume):
    """Delete a volume (its data and its pool entry)."""
    with conn.operation("delete volume %s" % volume.name()):
        volume.delete(0)
