#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: volume
short_description: Create, grow, fill and delete libvirt storage volumes
version_added: 0.1.0
description:
  - Makes one volume of a started storage pool be as described, or gone.
  - A new volume is empty (O(size)), a copy-on-write overlay on a backing image
    (O(backing)), a full copy of another volume (O(clone_from)), or an image file
    uploaded from the machine that runs the module (O(upload)).
  - An existing volume is grown when O(size) asks for more. It is never shrunk,
    converted to another format or rebased; the module fails instead, saying why.
  - Everything is checked before the first change (the pool exists and runs, names,
    sizes, the pool's free space, the backing or source volume, the image file). When a
    later step of creating a volume (its upload, its growth) fails, the new volume is
    deleted again.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
attributes:
  check_mode:
    description: Changes nothing and reports the same C(changed) and diff as a real run.
    support: full
  diff_mode:
    description:
      - Shows the volume's name, pool, format, capacity and backing image before and after.
      - Allocation (what the volume occupies now) changes as guests write, so it is never
        part of the diff; it is in RV(volume).
    support: full
  idempotent:
    description:
      - A second run with the same options changes nothing.
      - Except O(force=true), which replaces the volume by the uploaded image every time.
    support: partial
options:
  pool:
    description: Name of the storage pool that holds the volume. It must be started.
    type: str
    required: true
  name:
    description:
      - Name of the volume; in file based pools also its file name.
      - Must not be empty, contain C(/) or start with C(.).
    type: str
    required: true
  state:
    description:
      - V(present) creates the volume when it does not exist and grows it to O(size).
      - V(absent) deletes it and its data. Refused when a guest uses it (its disks, in the
        running or the next boot's definition) or another volume has it as backing image.
        A pool that does not exist holds no volume, so that is no error.
    type: str
    choices: [present, absent]
    default: present
  size:
    description:
      - Capacity of the volume as the guest sees it, a number of MiB (V(10240)) or a
        size with a unit (V(10 GiB), V(512MiB), V(1.5 TiB)). C(KiB), C(MiB), C(GiB),
        C(TiB) are powers of 1024; C(KB), C(MB), C(GB), C(TB) powers of 1000.
      - Required for a new empty volume. With O(backing), O(clone_from) or O(upload)
        the default is the size of that image; a larger size grows the new volume.
      - An existing volume is grown to it (C(virStorageVolResize)). Asking for less than
        the volume has fails, as shrinking loses the data at the end of the disk.
      - libvirt rounds qcow2 sizes up to whole KiB and logical volumes to whole extents
        (4 MiB); the module rounds the same way, so a second run sees no difference.
    type: raw
  format:
    description:
      - Image format of a new volume in a V(dir), V(fs) or V(netfs) pool.
      - Default V(qcow2) for new empty volumes and overlays, the image's own format for
        O(upload) (which must match it), and the source's format for O(clone_from)
        (another format converts the copy).
      - Volumes of V(logical) pools are always V(raw).
      - For an existing volume, when given, it must be the volume's format.
    type: str
    choices: [raw, qcow2, qed, vdi, vmdk, vpc, vhdx]
  backing:
    description:
      - Make the new volume a qcow2 copy-on-write overlay on this backing image, given as the name
        of a volume of the same pool, or the absolute path of an image on the hypervisor
        (any pool's volume, or a file no pool knows, in which case O(size) is required).
      - For an existing volume, when given, it must be its backing image.
    type: str
  clone_from:
    description:
      - Make the new volume a full, independent copy of this volume (C(virStorageVolCreateXMLFrom)),
        given as the name of a volume of the same pool or the absolute path of any pool's volume.
      - Ignored when the volume exists.
    type: str
  upload:
    description:
      - Path of a raw or qcow2 image file on the machine that runs the module, uploaded
        through a libvirt stream into the new volume. The volume gets the image's format,
        and its virtual size as capacity (for raw files, the file size).
      - Only when the volume is created. An existing volume is left as it is, since
        comparing contents would mean downloading it. Use O(force) to replace it.
      - A qcow2 image with a backing file cannot be uploaded (its backing file would not
        be there); make it standalone with C(qemu-img convert) first.
    type: path
  force:
    description:
      - With O(upload), replace an existing volume (delete it, create it again and upload
        the image). Reports a change on every run.
      - Refused, before anything is deleted, when a guest or another volume uses the volume.
    type: bool
    default: false
  overcommit:
    description:
      - By default a new volume must fit the pool's free space with its whole capacity,
        even a thin qcow2 one, so that guests cannot later run out of room; growing needs
        room for the growth.
      - With V(true), sparse formats (everything but V(raw)) only need room for what is
        written now (nothing for an empty volume, the file for an upload, the source's
        allocation for a copy).
      - Overlays (O(backing)) never need room up front.
    type: bool
    default: false
notes:
  - The module runs where Ansible runs it (usually the controller) and reaches the
    hypervisor through libvirt; only O(upload) is a local path, everything else is on
    the hypervisor.
  - Growing a volume that a running guest has open fails for qcow2 (the image is locked);
    stop the guest, or grow the disk through the guest.
seealso:
  - module: kvmops.virt.pool
  - name: libvirt storage volume XML
    description: Volume formats and backing stores.
    link: https://libvirt.org/formatstorage.html#storage-volume-xml
"""

EXAMPLES = r"""
- name: A 20 GiB qcow2 volume
  kvmops.virt.volume:
    pool: images
    name: data-1.qcow2
    size: 20 GiB

- name: Grow it (never shrinks)
  kvmops.virt.volume:
    pool: images
    name: data-1.qcow2
    size: 40 GiB

- name: Upload a cloud image once
  kvmops.virt.volume:
    pool: images
    name: debian-12.qcow2
    upload: /srv/images/debian-12-genericcloud-amd64.qcow2

- name: A copy-on-write disk on that image, larger than it
  kvmops.virt.volume:
    pool: images
    name: web-1.qcow2
    backing: debian-12.qcow2
    size: 30 GiB

- name: A full copy, converted to raw
  kvmops.virt.volume:
    pool: images
    name: golden.raw
    clone_from: debian-12.qcow2
    format: raw

- name: Delete a volume
  kvmops.virt.volume:
    pool: images
    name: data-1.qcow2
    state: absent
"""

RETURN = r"""
volume:
  description:
    - The volume after the task. In check mode, what it would be (allocation of a new
      volume V(null)).
  returned: when O(state=present)
  type: dict
  contains:
    name:
      description: Volume name.
      type: str
      sample: web-1.qcow2
    pool:
      description: Name of its pool.
      type: str
      sample: images
    path:
      description: Path on the hypervisor, what a guest's disk points at.
      type: str
      sample: /var/lib/libvirt/images/web-1.qcow2
    format:
      description: Image format (V(null) when libvirt reports none).
      type: str
      sample: qcow2
    capacity:
      description: Size the guest sees, in bytes.
      type: int
      sample: 32212254720
    allocation:
      description: Bytes the volume occupies in its pool now.
      type: int
      sample: 200704
    backing:
      description: Path of its backing image, V(null) when it has none.
      type: str
      sample: /var/lib/libvirt/images/debian-12.qcow2
"""

from ansible_collections.kvmops.virt.plugins.module_utils.changes import resource_diff
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import SizeError, parse_size
from ansible_collections.kvmops.virt.plugins.module_utils.storage import StorageError
from ansible_collections.kvmops.virt.plugins.module_utils.volumes import (
    VOLUME_FORMATS,
    VolumeRequest,
    ensure_absent,
    ensure_present,
)

ARGUMENT_SPEC = dict(
    pool=dict(type="str", required=True),
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    size=dict(type="raw"),
    format=dict(type="str", choices=list(VOLUME_FORMATS)),
    backing=dict(type="str"),
    clone_from=dict(type="str"),
    upload=dict(type="path"),
    force=dict(type="bool", default=False),
    overcommit=dict(type="bool", default=False),
)


def requested_size(params):
    """Bytes of the size option, or None; raises SizeError."""
    if params["size"] is None:
        return None
    size = parse_size(params["size"], "size", default_unit="MiB")
    if size <= 0:
        raise SizeError("size: %r is no size for a volume; give more than 0" % (params["size"],))
    return size


def converge(module):
    """The module's result; raises StorageError or SizeError for a request that cannot be met."""
    params = module.params
    request = VolumeRequest(params, requested_size(params))
    with module.connection() as conn:
        if params["state"] == "present":
            result = ensure_present(conn, request, module.check_mode)
        else:
            result = ensure_absent(conn, request, module.check_mode)
    output = dict(changed=result.changed, diff=resource_diff(result.before, result.after))
    if params["state"] == "present":
        output["volume"] = result.facts
    return output


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("backing", "clone_from", "upload")])
    try:
        output = converge(module)
    except (SizeError, StorageError) as error:
        module.fail_json(msg=str(error))
    else:
        module.exit_json(**output)


if __name__ == "__main__":
    main()
