# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage pools as the kvmops.virt.pool module declares them: defined, built, started, autostarted.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

A pool's *view* (what the module manages and diffs) is its name, type, path, source,
whether it is active, autostarted and persistent. Capacity and free space change with
every write to the pool, so they are only reported in the facts, never in the view:
a view with them would differ between two runs that change nothing.
"""

from __future__ import annotations

import posixpath
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, sub_element, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.storage import (
    StorageError,
    check_name,
    delete_volume,
    find_pool,
    volume_users,
)

try:
    import libvirt
except ImportError:
    libvirt = None

POOL_TYPES = ("dir", "fs", "netfs", "logical")
FS_FORMATS = ("auto", "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "iso9660", "udf", "ocfs2", "gfs2")
NETFS_FORMATS = ("auto", "nfs", "cifs", "glusterfs")

# Which source settings each type takes; any other given for it is an error.
_SOURCE_OPTIONS = {
    "dir": (),
    "fs": ("source_devices", "source_format"),
    "netfs": ("source_host", "source_dir", "source_format"),
    "logical": ("source_name", "source_devices"),
}
_ALL_SOURCE_OPTIONS = ("source_name", "source_devices", "source_host", "source_dir", "source_format")


class PoolSpec:
    """The pool a task asks for, checked; settings the task leaves out are None."""

    def __init__(self, params):
        self.name = params["name"]
        check_name(self.name, "storage pool", "name")
        self.type = params.get("type")
        self.path = _clean_path(params.get("path"), "path")
        self.source_name = params.get("source_name")
        self.source_devices = [_clean_path(device, "source_devices") for device in params.get("source_devices") or []]
        self.source_host = params.get("source_host")
        self.source_dir = _clean_path(params.get("source_dir"), "source_dir")
        self.source_format = params.get("source_format")
        if self.type:
            self._check_type_settings(params)

    def _check_type_settings(self, params):
        allowed = _SOURCE_OPTIONS[self.type]
        for option in _ALL_SOURCE_OPTIONS:
            if params.get(option) not in (None, []) and option not in allowed:
                raise StorageError("%s does not apply to %s pools (pool %r)" % (option, self.type, self.name))
        if self.type == "logical":
            check_name(self.source_name or self.name, "volume group", "source_name")
            vg_path = "/dev/" + (self.source_name or self.name)
            if self.path and self.path != vg_path:
                raise StorageError("path: a logical pool's path is its volume group's directory %s, not %s "
                                   "(pool %r)" % (vg_path, self.path, self.name))
        if self.type == "fs" and len(self.source_devices) > 1:
            raise StorageError("source_devices: an fs pool mounts one device, %d given (pool %r)"
                               % (len(self.source_devices), self.name))
        formats = {"fs": FS_FORMATS, "netfs": NETFS_FORMATS}.get(self.type, ())
        if self.source_format and self.source_format not in formats:
            raise StorageError("source_format: %r is not a %s pool format; use one of %s"
                               % (self.source_format, self.type, ", ".join(formats)))

    def check_definable(self, build):
        """StorageError unless there is enough to define (and build) the pool from scratch."""
        if not self.type:
            raise StorageError("storage pool %r does not exist; type is required to define it" % self.name)
        if self.type == "logical" and build and not self.source_devices:
            raise StorageError("storage pool %r: building a logical pool creates its volume group on "
                               "source_devices, and none are given; for a volume group that exists already "
                               "set build: false" % self.name)
        missing = []
        if self.type != "logical" and not self.path:
            missing.append("path")
        if self.type == "fs" and not self.source_devices:
            missing.append("source_devices")
        if self.type == "netfs":
            missing += [option for option in ("source_host", "source_dir") if not getattr(self, option)]
        if missing:
            raise StorageError("storage pool %r does not exist; a %s pool needs %s to be defined"
                               % (self.name, self.type, " and ".join(missing)))

    def target_path(self):
        if self.type == "logical":
            return "/dev/" + (self.source_name or self.name)
        return self.path

    def source(self):
        """The source as pool_settings() reads it back from libvirt's XML (None for dir pools)."""
        if self.type == "logical":
            return dict(name=self.source_name or self.name, devices=list(self.source_devices))
        if self.type == "fs":
            return dict(devices=list(self.source_devices), format=self.source_format or "auto")
        if self.type == "netfs":
            return dict(host=self.source_host, dir=self.source_dir, format=self.source_format or "auto")
        return None

    def xml(self):
        """Pool XML for virStoragePoolDefineXML."""
        root = ElementTree.Element("pool", type=self.type)
        sub_element(root, "name", self.name)
        source = self.source()
        if source is not None:
            source_element = sub_element(root, "source")
            if "host" in source:
                sub_element(source_element, "host", name=source["host"])
                sub_element(source_element, "dir", path=source["dir"])
            for device in source.get("devices", ()):
                sub_element(source_element, "device", path=device)
            if self.type == "logical":
                sub_element(source_element, "name", source["name"])
                sub_element(source_element, "format", type="lvm2")
            elif "format" in source:
                sub_element(source_element, "format", type=source["format"])
        target = sub_element(root, "target")
        sub_element(target, "path", self.target_path())
        return to_xml(root)

    def conflicts_with(self, settings):
        """Sentences for each given setting that an existing pool has otherwise."""
        differences = []
        if self.type and self.type != settings["type"]:
            differences.append("type %s, not %s" % (settings["type"], self.type))
            return differences  # the other settings mean different things for another type
        if self.path and self.path != settings["path"]:
            differences.append("path %s, not %s" % (settings["path"], self.path))
        existing = settings["source"] or {}
        wanted = dict(name=self.source_name, devices=sorted(self.source_devices) or None, host=self.source_host,
                      dir=self.source_dir, format=self.source_format)
        existing = dict(existing, devices=sorted(existing.get("devices") or []))
        for key, value in wanted.items():
            if value is not None and existing.get(key) != value:
                differences.append("source %s %s, not %s" % (key, existing.get(key), value))
        return differences


def _clean_path(path, option):
    """``path`` without doubled or trailing slashes, as libvirt stores it; must be absolute."""
    if path is None:
        return None
    if not path.startswith("/") or "\0" in path:
        raise StorageError("%s: %r is not an absolute path" % (option, path))
    return posixpath.normpath(path) if path != "/" else path


def pool_settings(root):
    """type, path and source (None for dir pools) of a parsed pool XML."""
    kind = root.get("type")
    source_element = root.find("source")
    source = None
    if kind in ("logical", "fs", "netfs") and source_element is not None:
        devices = [device.get("path") for device in source_element.findall("device")]
        fmt = source_element.find("format")
        if kind == "logical":
            source = dict(name=source_element.findtext("name"), devices=devices)
        elif kind == "fs":
            source = dict(devices=devices, format=fmt.get("type") if fmt is not None else None)
        else:
            host, directory = source_element.find("host"), source_element.find("dir")
            source = dict(host=host.get("name") if host is not None else None,
                          dir=directory.get("path") if directory is not None else None,
                          format=fmt.get("type") if fmt is not None else None)
    return dict(type=kind, path=root.findtext("target/path"), source=source)


def pool_view(pool):
    """What the module manages about an existing pool; None for no pool."""
    if pool is None:
        return None
    settings = pool_settings(parse_xml(pool.XMLDesc(0), "pool XML"))
    return dict(name=pool.name(), type=settings["type"], path=settings["path"], source=settings["source"],
                active=bool(pool.isActive()), autostart=bool(pool.autostart()),
                persistent=bool(pool.isPersistent()))


def pool_facts(pool):
    """The view plus uuid, sizes in bytes and the number of volumes (None while the pool is stopped)."""
    facts = pool_view(pool)
    _state, capacity, allocation, available = pool.info()
    facts.update(uuid=pool.UUIDString(), capacity=capacity, allocation=allocation, available=available,
                 volumes=pool.numOfVolumes() if facts["active"] else None)
    return facts


def predicted_facts(view, current=None):
    """Facts for check mode: the predicted view over what is known now (figures of a new pool: None)."""
    facts = dict(uuid=None, capacity=None, allocation=None, available=None, volumes=None)
    facts.update(current or {})
    facts.update(view)
    return facts


class PoolResult:
    def __init__(self, before, after, facts):
        self.before = before
        self.after = after
        self.facts = facts

    @property
    def changed(self):
        return self.before != self.after


def ensure_present(conn, spec, active, autostart, build, check_mode):
    """Make the pool defined (and built when new), started or stopped, autostarted as asked."""
    with conn.operation("look up storage pool %s" % spec.name):
        pool = find_pool(conn, spec.name)
        before = pool_view(pool)
    if pool is None:
        spec.check_definable(build)
        after = dict(name=spec.name, type=spec.type, path=spec.target_path(), source=spec.source(),
                     active=active, autostart=bool(autostart), persistent=True)
    else:
        conflicts = spec.conflicts_with(before)
        if conflicts:
            raise StorageError("storage pool %r on %s already exists with %s; the module does not change an "
                               "existing pool's type, path or source: remove it (state: absent) and define it "
                               "again, or describe it as it is" % (spec.name, conn.uri, "; ".join(conflicts)))
        after = dict(before, active=active, persistent=True)
        if autostart is not None:
            after["autostart"] = autostart
    result = PoolResult(before, after, None)
    if check_mode:
        current = None
        if pool is not None:
            with conn.operation("read storage pool %s" % spec.name):
                current = pool_facts(pool)
        result.facts = predicted_facts(after, current)
        return result
    if pool is None:
        pool = _define_new(conn, spec, active, autostart, build)
    else:
        _update(conn, pool, before, after)
    with conn.operation("read storage pool %s" % spec.name):
        result.facts = pool_facts(pool)
    return result


def _define_new(conn, spec, active, autostart, build):
    with conn.operation("define storage pool %s" % spec.name):
        pool = conn.handle.storagePoolDefineXML(spec.xml(), 0)
    built = False
    try:
        if build:
            _build(conn, pool, spec.type)
            built = True
        if active:
            with conn.operation("start storage pool %s" % spec.name):
                pool.create(0)
        if autostart:
            with conn.operation("set storage pool %s to start with the host" % spec.name):
                pool.setAutostart(1)
    except (LibvirtOperationError, StorageError):
        _undo_define(pool, built)
        raise
    return pool


def _build(conn, pool, kind):
    # Never format over what a device holds: a logical or fs pool's build would wipe it.
    # A dir pool's build only creates the directory (and the test driver takes no flags).
    flags = 0 if kind == "dir" else libvirt.VIR_STORAGE_POOL_BUILD_NO_OVERWRITE
    with conn.operation("build storage pool %s" % pool.name()):
        pool.build(flags)


def _undo_define(pool, built):
    """Take back a pool this run defined, after a later step failed; the first error is the one to report."""
    steps = []
    if pool.isActive():
        steps.append(pool.destroy)
    if built:
        steps.append(lambda: pool.delete(0))
    steps.append(pool.undefine)
    for step in steps:
        try:
            step()
        except libvirt.libvirtError:
            pass  # the failure being reported says more; the rest of the undo still runs


def _update(conn, pool, before, after):
    name = before["name"]
    if not before["persistent"]:
        with conn.operation("define transient storage pool %s" % name):
            conn.handle.storagePoolDefineXML(pool.XMLDesc(0), 0)
    if after["active"] and not before["active"]:
        with conn.operation("start storage pool %s" % name):
            pool.create(0)
    elif before["active"] and not after["active"]:
        with conn.operation("stop storage pool %s" % name):
            pool.destroy()
    if after["autostart"] != before["autostart"]:
        with conn.operation("set autostart of storage pool %s to %s" % (name, after["autostart"])):
            pool.setAutostart(1 if after["autostart"] else 0)


def ensure_absent(conn, name, delete_data, check_mode):
    """Stop and undefine the pool; with ``delete_data`` first delete its volumes and what build made."""
    check_name(name, "storage pool", "name")
    with conn.operation("look up storage pool %s" % name):
        pool = find_pool(conn, name)
        before = pool_view(pool)
    result = PoolResult(before, None, None)
    if pool is None:
        return result
    if check_mode:
        if delete_data and before["active"]:
            _refuse_deleting_used_volumes(conn, pool)
        return result
    if delete_data:
        _delete_data_and_undefine(conn, pool, before)
    else:
        _stop_and_undefine(conn, pool, before)
    return result


def _stop_and_undefine(conn, pool, before):
    name = before["name"]
    if before["active"]:
        with conn.operation("stop storage pool %s" % name):
            pool.destroy()
    if before["persistent"]:
        with conn.operation("undefine storage pool %s" % name):
            pool.undefine()


def _refuse_deleting_used_volumes(conn, pool):
    with conn.operation("list the volumes of storage pool %s" % pool.name()):
        volumes = pool.listAllVolumes(0)
    users = volume_users(conn, volumes)
    if users:
        raise StorageError("storage pool %r on %s holds volumes in use by %s; delete_data would destroy them. "
                           "Remove those first, or remove the pool without delete_data (its files stay)"
                           % (pool.name(), conn.uri, ", ".join(users)))
    return volumes


def _delete_data_and_undefine(conn, pool, before):
    name = before["name"]
    if not before["persistent"]:
        # a transient pool vanishes when stopped, before its directory or volume group could be deleted
        with conn.operation("define transient storage pool %s" % name):
            conn.handle.storagePoolDefineXML(pool.XMLDesc(0), 0)
    if not before["active"]:
        # only a started pool lists its volumes
        with conn.operation("start storage pool %s to delete its volumes" % name):
            pool.create(0)
    try:
        volumes = _refuse_deleting_used_volumes(conn, pool)
    except StorageError:
        if not before["active"]:
            with conn.operation("stop storage pool %s again" % name):
                pool.destroy()
        raise
    for volume in volumes:
        delete_volume(conn, volume)
    with conn.operation("stop storage pool %s" % name):
        pool.destroy()
    with conn.operation("delete the directory or volume group of storage pool %s" % name):
        pool.delete(0)
    with conn.operation("undefine storage pool %s" % name):
        pool.undefine()
