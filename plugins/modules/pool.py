#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: pool
short_description: Define, build, start and remove libvirt storage pools
version_added: 0.1.0
description:
  - Makes one storage pool of a hypervisor be as described (defined and persistent, built
    when it is new, started or stopped, started with the host or not) or gone.
  - Supports directory (V(dir)), LVM volume group (V(logical)), mounted block device
    (V(fs)) and network file system (V(netfs)) pools.
  - An existing pool's type, path and source are never changed. When they differ from
    the task, the module fails and says how, before changing anything. Remove the pool
    (O(state=absent)) and define it again to move it.
  - Everything is checked before the first change. When building or starting a new pool
    fails, the module takes the new definition back, so no half-made pool is left.
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
      - Shows the pool's name, type, path, source, C(active), C(autostart) and C(persistent)
        before and after.
      - Capacity and free space are never part of the diff; they are in RV(pool).
    support: full
  idempotent:
    description: A second run with the same options changes nothing.
    support: full
options:
  name:
    description:
      - Name of the storage pool.
      - Must not be empty, contain C(/) or start with C(.).
    type: str
    required: true
  state:
    description:
      - V(present) makes the pool defined (persistent), as O(active) and O(autostart) say.
        A transient pool (started but not defined) is made persistent.
      - V(absent) stops the pool if it runs and undefines it. Its data stays unless
        O(delete_data=true).
    type: str
    choices: [present, absent]
    default: present
  type:
    description:
      - Kind of pool. Required to define a new pool; for an existing pool, when given,
        it must be the pool's type.
      - V(dir) keeps volumes as files in the directory O(path).
      - V(logical) is an LVM volume group; its volumes are logical volumes.
      - V(fs) mounts the block device in O(source_devices) on O(path).
      - V(netfs) mounts the network share O(source_host):O(source_dir) on O(path).
    type: str
    choices: [dir, fs, netfs, logical]
  path:
    description:
      - Absolute path of the pool's directory on the hypervisor (V(dir), V(fs), V(netfs));
        required to define such a pool.
      - For V(logical) pools the path is always C(/dev/VG) of the volume group; it may be
        left out, and when given must be that.
    type: str
  source_name:
    description:
      - V(logical) only. Name of the LVM volume group. Defaults to O(name).
    type: str
  source_devices:
    description:
      - V(logical) pools. Block devices (physical volumes) of the volume group. Needed
        to build a new volume group; leave out with O(build=false) for a volume group
        that already exists.
      - V(fs) pools. The one block device to mount.
    type: list
    elements: str
  source_host:
    description:
      - V(netfs) only. Host name or address of the file server.
    type: str
  source_dir:
    description:
      - V(netfs) only. Exported directory on O(source_host).
    type: str
  source_format:
    description:
      - V(fs) pools. File system type (C(auto), C(ext4), C(xfs), ...). Default C(auto).
      - V(netfs) pools. Protocol (C(auto), C(nfs), C(cifs), C(glusterfs)). Default C(auto).
    type: str
  active:
    description:
      - Whether the pool is started. Volumes can only be created in, listed in and used
        from a started pool.
      - Stopping a pool leaves its volumes and running guests as they are.
    type: bool
    default: true
  autostart:
    description:
      - Whether libvirt starts the pool when the hypervisor starts.
      - Left as it is when not given (a new pool does not start with the host).
    type: bool
  build:
    description:
      - Build the pool when this task defines it, that is create the directory of a V(dir),
        V(fs) or V(netfs) pool, format an V(fs) pool's device, create a V(logical) pool's
        volume group on O(source_devices).
      - Never formats over existing data (libvirt's C(NO_OVERWRITE)); a device that holds
        a file system or LVM label makes the build fail.
      - A pool that exists already is never built again.
    type: bool
    default: true
  delete_data:
    description:
      - With O(state=absent), also delete the pool's data (every volume in it), then what
        building made (the directory of a V(dir) pool, the volume group and physical
        volume labels of a V(logical) pool).
      - A stopped pool is started first to find its volumes.
      - Refused, before anything is deleted, when a guest or a volume of another pool
        uses one of the volumes. In check mode this is checked only for a started pool.
    type: bool
    default: false
notes:
  - The module runs where Ansible runs it (usually the controller) and reaches the
    hypervisor through libvirt; paths are paths on the hypervisor.
  - Lab hypervisors run in private mount namespaces, where C(/var/lib/libvirt) is each
    host's own directory.
seealso:
  - module: kvmops.virt.volume
  - name: libvirt storage pool XML
    description: What each pool type means to libvirt.
    link: https://libvirt.org/formatstorage.html
"""

EXAMPLES = r"""
- name: A directory pool that starts with the host
  kvmops.virt.pool:
    uri: qemu+ssh://root@kvm1.example.com/system
    name: images
    type: dir
    path: /var/lib/libvirt/images
    autostart: true

- name: An LVM volume group made from two disks
  kvmops.virt.pool:
    name: fast
    type: logical
    source_name: vg_fast
    source_devices: [/dev/sdb, /dev/sdc]
    autostart: true

- name: A volume group that exists already (no build)
  kvmops.virt.pool:
    name: vg0
    type: logical
    build: false

- name: An NFS share as a pool
  kvmops.virt.pool:
    name: shared
    type: netfs
    source_host: nfs.example.com
    source_dir: /exports/vm
    source_format: nfs
    path: /var/lib/libvirt/shared

- name: Stop a pool but keep it defined
  kvmops.virt.pool:
    name: images
    active: false

- name: Remove a pool and everything in it
  kvmops.virt.pool:
    name: scratch
    state: absent
    delete_data: true
"""

RETURN = r"""
pool:
  description:
    - The pool after the task. In check mode, what it would be; figures of a pool that
      does not exist yet are V(null).
  returned: when O(state=present)
  type: dict
  contains:
    name:
      description: Pool name.
      type: str
      sample: images
    uuid:
      description: Pool UUID.
      type: str
      sample: 0b9e3a8f-7c0e-4f7e-9a1b-3f2d5c6e7a8b
    type:
      description: Pool type.
      type: str
      sample: dir
    path:
      description: Target path on the hypervisor (C(/dev/VG) for a logical pool).
      type: str
      sample: /var/lib/libvirt/images
    source:
      description:
        - Where the pool's storage comes from; V(null) for V(dir) pools.
        - V(logical) has C(name) and C(devices), V(fs) C(devices) and C(format), V(netfs) C(host), C(dir) and C(format).
      type: dict
      sample: {"name": "vg_fast", "devices": ["/dev/sdb", "/dev/sdc"]}
    active:
      description: Whether the pool is started.
      type: bool
      sample: true
    autostart:
      description: Whether the pool starts with the hypervisor.
      type: bool
      sample: true
    persistent:
      description: Whether the pool is defined (survives being stopped).
      type: bool
      sample: true
    capacity:
      description: Size of the pool's storage in bytes.
      type: int
      sample: 107374182400
    allocation:
      description: Bytes used by volumes.
      type: int
      sample: 21474836480
    available:
      description: Bytes free for new volumes.
      type: int
      sample: 85899345920
    volumes:
      description: Number of volumes; V(null) while the pool is stopped.
      type: int
      sample: 12
"""

from ansible_collections.kvmops.virt.plugins.module_utils.changes import resource_diff
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.pools import POOL_TYPES, PoolSpec, ensure_absent, ensure_present
from ansible_collections.kvmops.virt.plugins.module_utils.storage import StorageError

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    type=dict(type="str", choices=list(POOL_TYPES)),
    path=dict(type="str"),
    source_name=dict(type="str"),
    source_devices=dict(type="list", elements="str"),
    source_host=dict(type="str"),
    source_dir=dict(type="str"),
    source_format=dict(type="str"),
    active=dict(type="bool", default=True),
    autostart=dict(type="bool"),
    build=dict(type="bool", default=True),
    delete_data=dict(type="bool", default=False),
)


def converge(module):
    """The module's result; raises StorageError for a request that cannot be met."""
    params = module.params
    spec = PoolSpec(params) if params["state"] == "present" else None
    with module.connection() as conn:
        if spec is not None:
            result = ensure_present(conn, spec, params["active"], params["autostart"], params["build"],
                                    module.check_mode)
        else:
            result = ensure_absent(conn, params["name"], params["delete_data"], module.check_mode)
    output = dict(changed=result.changed, diff=resource_diff(result.before, result.after))
    if spec is not None:
        output["pool"] = result.facts
    return output


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        output = converge(module)
    except StorageError as error:
        module.fail_json(msg=str(error))
    else:
        module.exit_json(**output)


if __name__ == "__main__":
    main()
