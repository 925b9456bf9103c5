# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Storage volumes as the kvmops.virt.volume module declares them.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

A volume's *view* is its name, pool, format, capacity (readable) and backing image.
Allocation grows with every write a guest makes, so it is only reported in the facts.
Everything a task asks for is checked (pool, names, sizes, free space, backing and source
volumes, the image to upload) before the first change; a volume this run created is
deleted again when a later step (upload, resize) fails.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import format_size
from ansible_collections.kvmops.virt.plugins.module_utils.storage import (
    FILE_POOL_TYPES,
    StorageError,
    check_name,
    check_pool_room,
    copy_volume,
    define_volume,
    delete_volume,
    file_chunks,
    find_pool,
    find_volume,
    find_volume_by_path,
    image_file_info,
    pool_path,
    pool_type,
    readable_size,
    refresh_pool,
    require_pool,
    resize_volume,
    round_up,
    upload_to_volume,
    volume_facts,
    volume_granularity,
    volume_users,
)

try:
    import libvirt
except ImportError:
    libvirt = None

VOLUME_FORMATS = ("raw", "qcow2", "qed", "vdi", "vmdk", "vpc", "vhdx")
DEFAULT_FORMAT = "qcow2"
_LISTED_NAMES = 10


class VolumeRequest:
    """What a task asks for, checked as far as it can be without the hypervisor."""

    def __init__(self, params, size):
        self.pool = params["pool"]
        self.name = params["name"]
        check_name(self.pool, "storage pool", "pool")
        check_name(self.name, "volume", "name")
        self.size = size
        self.format = params.get("format")
        self.backing = params.get("backing")
        self.clone_from = params.get("clone_from")
        self.upload = params.get("upload")
        self.force = bool(params.get("force"))
        self.overcommit = bool(params.get("overcommit"))
        for option in ("backing", "clone_from"):
            value = getattr(self, option)
            if value is not None and not value.startswith("/"):
                check_name(value, "volume", option)
        if self.force and not self.upload:
            raise StorageError("force: only applies with upload (it replaces the volume by the image)")
        self._image = None

    @property
    def image(self):
        """format, virtual_size and file_size of the upload, read when a volume is made from it.

        Not before: the image of a volume that exists need not be there any more."""
        if self._image is None:
            self._image = image_file_info(self.upload)
        return self._image


def view_of(facts):
    """The view of a volume's facts (or of predicted facts); None for no volume."""
    if facts is None:
        return None
    return dict(name=facts["name"], pool=facts["pool"], format=facts["format"] or "raw",
                capacity=format_size(facts["capacity"]), backing=facts["backing"])


class NewVolume:
    """Everything needed to create one volume, worked out before anything is created."""

    def __init__(self, request, fmt, capacity):
        self.request = request
        self.format = fmt
        self.capacity = capacity  # right after creation (an upload's image, a clone's source)
        self.grow_to = None  # then grown to this, when the task asks for more
        self.backing_path = None
        self.backing_format = None
        self.source = None  # the volume to copy
        self.room = capacity

    @property
    def final_capacity(self):
        return self.grow_to or self.capacity

    def facts(self, pool_name, base_path):
        return dict(name=self.request.name, pool=pool_name, path="%s/%s" % (base_path, self.request.name),
                    format=self.format, capacity=self.final_capacity, allocation=None, backing=self.backing_path)


class VolumeResult:
    def __init__(self, before, after, facts, replaced=False):
        self.before = before
        self.after = after
        self.facts = facts
        self.replaced = replaced

    @property
    def changed(self):
        return self.replaced or self.before != self.after


def _where(request, conn):
    return "volume %r in storage pool %r on %s" % (request.name, request.pool, conn.uri)


def _volume_names(pool):
    names = sorted(volume.name() for volume in pool.listAllVolumes(0))
    shown = ", ".join(names[:_LISTED_NAMES]) or "none"
    return shown + (", ..." if len(names) > _LISTED_NAMES else "")


def _lookup_volume(conn, pool, reference, option):
    """The volume ``reference`` names: a volume of ``pool``, or any pool's volume at an absolute path."""
    with conn.operation("look up %s volume %s" % (option, reference)):
        if reference.startswith("/"):
            return find_volume_by_path(conn, reference)
        volume = find_volume(pool, reference)
        if volume is None:
            raise StorageError("%s: volume %r does not exist in storage pool %r on %s (volumes: %s)"
                               % (option, reference, pool.name(), conn.uri, _volume_names(pool)))
        return volume


def _target_size(request, kind, fmt, at_least, what):
    """The asked size rounded as libvirt will round it; StorageError when smaller than ``what`` (``at_least``)."""
    target = round_up(request.size, volume_granularity(kind, fmt))
    if at_least is not None and target < at_least:
        raise StorageError("size: %s asks for %s, but %s is %s; the volume cannot be smaller: give at least "
                           "that, or leave size out"
                           % (_where_request(request), format_size(request.size), what, format_size(at_least)))
    return target


def _where_request(request):
    return "volume %r in storage pool %r" % (request.name, request.pool)


def _written_now(request, kind, fmt, full, written):
    """Room a new volume needs: its whole capacity, or with overcommit what a sparse format writes now."""
    if request.overcommit and fmt != "raw" and kind in FILE_POOL_TYPES:
        return written
    return full


def _plan_upload(request, kind):
    image = request.image
    fmt = request.format or image["format"]
    if fmt != image["format"]:
        raise StorageError("format: %s is a %s image, so the volume must be %s, not %s (convert it first with "
                           "qemu-img convert, or leave format out)"
                           % (request.upload, image["format"], image["format"], fmt))
    plan = NewVolume(request, fmt, image["virtual_size"])
    if request.size is not None:
        target = _target_size(request, kind, fmt, image["virtual_size"], "the image %s" % request.upload)
        plan.grow_to = target if target > image["virtual_size"] else None
    plan.room = _written_now(request, kind, fmt, plan.final_capacity, image["file_size"])
    return plan


def _plan_clone(conn, pool, request, kind):
    source = _lookup_volume(conn, pool, request.clone_from, "clone_from")
    if source is None:
        raise StorageError("clone_from: no storage pool on %s holds a volume at %s" % (conn.uri, request.clone_from))
    with conn.operation("read volume %s" % request.clone_from):
        source_facts = volume_facts(source)
    fmt = request.format or source_facts["format"] or "raw"
    plan = NewVolume(request, fmt, source_facts["capacity"])
    plan.source = source
    if request.size is not None:
        target = _target_size(request, kind, fmt, source_facts["capacity"],
                              "the source volume %s" % source_facts["name"])
        plan.grow_to = target if target > source_facts["capacity"] else None
    plan.room = _written_now(request, kind, fmt, plan.final_capacity, source_facts["allocation"] or 0)
    return plan


def _plan_overlay(conn, pool, request, kind):
    if kind not in FILE_POOL_TYPES:
        raise StorageError("backing: only volumes of dir, fs and netfs pools can have a backing image; "
                           "storage pool %r is a %s pool" % (pool.name(), kind))
    fmt = request.format or "qcow2"
    if fmt != "qcow2":
        raise StorageError("format: a volume with a backing image must be qcow2, not %s (%s)"
                           % (fmt, _where(request, conn)))
    backing = _lookup_volume(conn, pool, request.backing, "backing")
    if backing is None:
        # an image no pool knows: libvirt checks it exists and probes its format when creating
        backing_path, backing_format, backing_capacity = request.backing, None, None
        if request.size is None:
            raise StorageError("size: required for %s, because no storage pool knows the backing image %s "
                               "and so its size" % (_where(request, conn), request.backing))
    else:
        with conn.operation("read volume %s" % request.backing):
            backing_facts = volume_facts(backing)
        backing_path, backing_format = backing_facts["path"], backing_facts["format"]
        backing_capacity = backing_facts["capacity"]
    if request.size is None:
        capacity = backing_capacity
    else:
        capacity = _target_size(request, kind, fmt, backing_capacity, "the backing image %s" % backing_path)
    plan = NewVolume(request, fmt, capacity)
    plan.backing_path, plan.backing_format = backing_path, backing_format
    plan.room = 0  # an overlay starts empty and holds only what the guest changes
    return plan


def _plan_empty(conn, request, kind):
    if request.size is None:
        raise StorageError("size: required to create %s (or give backing, clone_from or upload)"
                           % _where(request, conn))
    fmt = request.format or (DEFAULT_FORMAT if kind in FILE_POOL_TYPES else "raw")
    plan = NewVolume(request, fmt, round_up(request.size, volume_granularity(kind, fmt)))
    plan.room = _written_now(request, kind, fmt, plan.capacity, 0)
    return plan


def plan_new_volume(conn, pool, kind, request):
    """A NewVolume for the request; StorageError for anything that cannot work."""
    if kind not in FILE_POOL_TYPES and request.format not in (None, "raw"):
        raise StorageError("format: storage pool %r is a %s pool, whose volumes are raw; %s is not possible"
                           % (request.pool, kind, request.format))
    if request.upload:
        plan = _plan_upload(request, kind)
    elif request.clone_from:
        plan = _plan_clone(conn, pool, request, kind)
    elif request.backing:
        plan = _plan_overlay(conn, pool, request, kind)
    else:
        plan = _plan_empty(conn, request, kind)
    if kind not in FILE_POOL_TYPES and plan.format != "raw":
        raise StorageError("format: storage pool %r is a %s pool, whose volumes are raw; the source is %s"
                           % (request.pool, kind, plan.format))
    with conn.operation("read storage pool %s" % request.pool):
        check_pool_room(pool, plan.room, "volume %r" % request.name)
    return plan


def plan_growth(conn, pool, kind, request, facts):
    """The capacity to grow an existing volume to, or None; StorageError for what the module does not do."""
    where = _where(request, conn)
    current_format = facts["format"] or "raw"
    if request.format and request.format != current_format:
        raise StorageError("format: %s is %s; the module does not convert volumes (clone_from with format "
                           "makes a converted copy)" % (where, current_format))
    if request.backing:
        backing = _lookup_volume(conn, pool, request.backing, "backing")
        with conn.operation("read volume %s" % request.backing):
            wanted = request.backing if backing is None else volume_facts(backing)["path"]
        if facts["backing"] != wanted:
            raise StorageError("backing: %s has %s; the module does not rebase volumes"
                               % (where, "backing image %s" % facts["backing"] if facts["backing"]
                                  else "no backing image"))
    if request.size is None or request.size == facts["capacity"]:
        return None
    target = round_up(request.size, volume_granularity(kind, current_format))
    if target < facts["capacity"]:
        raise StorageError("size: %s is %s; %s would shrink it, and shrinking a volume loses the data at its end, "
                           "so the module only grows volumes (make a new volume for a smaller size)"
                           % (where, format_size(facts["capacity"]), format_size(request.size)))
    if target == facts["capacity"]:
        return None
    growth = target - facts["capacity"]
    if _written_now(request, kind, current_format, growth, 0):
        with conn.operation("read storage pool %s" % request.pool):
            check_pool_room(pool, growth, "growing volume %r by %s" % (request.name, readable_size(growth)))
    return target


def refuse_if_used(conn, volume, request, doing):
    users = volume_users(conn, [volume])
    if users:
        raise StorageError("%s is in use by %s; %s it would break them" % (_where(request, conn), ", ".join(users), doing))


def ensure_present(conn, request, check_mode):
    pool = require_pool(conn, request.pool)
    refresh_pool(conn, pool)
    with conn.operation("look up volume %s in storage pool %s" % (request.name, request.pool)):
        kind, base_path = pool_type(pool), pool_path(pool)
        volume = find_volume(pool, request.name)
        facts = volume_facts(volume) if volume is not None else None
    before = view_of(facts)
    replace = volume is not None and request.upload is not None and request.force
    if volume is not None and not replace:
        grow_to = plan_growth(conn, pool, kind, request, facts)
        after = dict(before, capacity=format_size(grow_to)) if grow_to else before
        result = VolumeResult(before, after, facts)
        if grow_to and not check_mode:
            resize_volume(conn, volume, grow_to)
            with conn.operation("read volume %s" % request.name):
                result.facts = volume_facts(volume)
        elif grow_to:
            result.facts = dict(facts, capacity=grow_to)
        return result
    if replace:
        refuse_if_used(conn, volume, request, "replacing")
    plan = plan_new_volume(conn, pool, kind, request)
    predicted = plan.facts(request.pool, base_path)
    result = VolumeResult(before, view_of(predicted), predicted, replaced=replace)
    if check_mode:
        return result
    if replace:
        delete_volume(conn, volume)
    volume = _create(conn, pool, plan)
    with conn.operation("read volume %s" % request.name):
        result.facts = volume_facts(volume)
    result.after = view_of(result.facts)
    return result


def _create(conn, pool, plan):
    request = plan.request
    if plan.source is not None:
        volume = copy_volume(conn, pool, request.name, plan.source, plan.format, check_room=False)
    else:
        volume = define_volume(conn, pool, request.name, plan.capacity, plan.format,
                               plan.backing_path, plan.backing_format)
    try:
        if request.upload:
            _upload(conn, volume, request)
        if plan.grow_to:
            resize_volume(conn, volume, plan.grow_to)
    except (LibvirtOperationError, StorageError):
        _delete_unfinished(volume)
        raise
    return volume


def _upload(conn, volume, request):
    try:
        upload_to_volume(conn, volume, file_chunks(request.upload), request.image["file_size"])
    except OSError as error:
        raise StorageError("upload: reading %s failed: %s" % (request.upload, error.strerror)) from None


def _delete_unfinished(volume):
    try:
        volume.delete(0)
    except libvirt.libvirtError:
        pass  # the failure that led here is the one to report


def ensure_absent(conn, request, check_mode):
    """Delete the volume unless a guest or another volume uses it. A pool that does not exist holds no volume."""
    with conn.operation("look up storage pool %s" % request.pool):
        pool = find_pool(conn, request.pool)
    if pool is None:
        return VolumeResult(None, None, None)
    require_pool(conn, request.pool)  # a stopped pool cannot tell whether the volume exists
    refresh_pool(conn, pool)
    with conn.operation("look up volume %s in storage pool %s" % (request.name, request.pool)):
        volume = find_volume(pool, request.name)
        facts = volume_facts(volume) if volume is not None else None
    result = VolumeResult(view_of(facts), None, None)
    if volume is None:
        return result
    refuse_if_used(conn, volume, request, "deleting")
    if not check_mode:
        delete_volume(conn, volume)
    return result
