#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: guest_info
short_description: List the guests of one hypervisor, with their definition, tags and live usage
version_added: 0.1.0
description:
  - Returns the guests of one hypervisor, described the way M(kvmops.virt.guest) describes
    a guest (resources, disks, NICs with MACs, tags), plus identity, power state and live usage.
  - Filters by name (exact names or globs), power state and tags; O(query) applies a
    JMESPath expression to the result.
  - Live usage comes from one bulk statistics call per sample, however many guests there are.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
  - kvmops.virt.attributes.INFO_MODULE
options:
  name:
    description: Only guests with one of these names; shell-style globs such as V(web-*) are allowed.
    type: list
    elements: str
    aliases: [names]
  state:
    description: Only guests in one of these power states.
    type: list
    elements: str
    choices: [running, paused, stopped, crashed, suspended, stopping]
  tags:
    description: Only guests that have all of these tags with these values (values compare with their type).
    type: dict
  sample_seconds:
    description:
      - Length of the window over which CPU use is measured. V(0) skips the measurement
        (C(usage.cpu_cores) and C(usage.cpu_percent) are then V(null)) and answers at once.
    type: float
    default: 1.0
  query:
    description:
      - A JMESPath expression applied to the list of guests; its result is returned as RV(query_result).
      - Needs the C(jmespath) Python library where the module runs.
    type: str
requirements:
  - jmespath (only for O(query))
seealso:
  - module: kvmops.virt.guest
  - module: kvmops.virt.host_info
  - name: JMESPath
    description: The query language of O(query).
    link: https://jmespath.org/
"""

EXAMPLES = r"""
- name: All guests of a hypervisor
  kvmops.virt.guest_info:
    uri: qemu+ssh://root@kvm1.example.com/system
  register: all_guests

- name: Running web guests of production, without measuring CPU
  kvmops.virt.guest_info:
    name: ["web-*"]
    state: [running]
    tags:
      env: prod
    sample_seconds: 0

- name: Names of the guests that use more than half a core
  kvmops.virt.guest_info:
    query: "[?usage.cpu_cores > `0.5`].name"
  register: busy

- name: Show them
  ansible.builtin.debug:
    var: busy.query_result
"""

RETURN = r"""
guests:
  description: The guests that match the filters, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web-1
    uuid:
      description: UUID.
      type: str
    id:
      description: libvirt's ID of a running or paused guest, else V(null).
      type: int
    state:
      description: Power state.
      type: str
      sample: running
    persistent:
      description: Whether the guest has a persistent definition.
      type: bool
    autostart:
      description: Whether the guest starts with the hypervisor.
      type: bool
    virt_type:
      description: "V(kvm) or V(qemu)."
      type: str
    arch:
      description: CPU architecture.
      type: str
    machine:
      description: Machine type.
      type: str
    firmware:
      description: "V(bios) or V(uefi)."
      type: str
    cpu_mode:
      description: CPU mode or V(null).
      type: str
    vcpus:
      description: vCPUs (of the running guest when it runs).
      type: int
    max_vcpus:
      description: Most vCPUs without a restart.
      type: int
    memory:
      description: Memory (balloon target).
      type: str
      sample: 2 GiB
    max_memory:
      description: Memory at boot.
      type: str
    boot:
      description: Boot order.
      type: list
      elements: str
    kernel:
      description: Kernel for direct boot.
      type: str
    initrd:
      description: Initrd for direct boot.
      type: str
    cmdline:
      description: Kernel command line.
      type: str
    disks:
      description: Disks (C(target), C(device), C(bus), C(path), C(format), C(readonly)).
      type: list
      elements: dict
    interfaces:
      description: NICs (C(type), C(source), C(model), C(mac)).
      type: list
      elements: dict
    serial:
      description: Whether the guest has a serial console.
      type: bool
    serial_log:
      description: Log file of the serial console.
      type: str
    cloud_init:
      description: SHA-256 of the attached cloud-init seed, or V(null).
      type: str
    tags:
      description: Tags from the collection's metadata.
      type: dict
    usage:
      description: Live usage; V(null) values when the guest is not running or the hypervisor does not say.
      type: dict
      contains:
        cpu_cores:
          description: CPU time used per second over the window, in cores.
          type: float
          sample: 0.52
        cpu_percent:
          description: The same as a percentage of the guest's vCPUs.
          type: float
          sample: 26.0
        memory_actual:
          description: Memory the guest has now (balloon), in bytes.
          type: int
        memory_used:
          description: Memory in use inside the guest, in bytes (needs the guest's balloon driver).
          type: int
        memory_rss:
          description: Host memory the guest's process occupies, in bytes.
          type: int
query_result:
  description: The result of O(query) applied to RV(guests).
  returned: when O(query) is given
  type: raw
"""

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kvmops.virt.plugins.module_utils.guest_facts import gather_guests
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import TagError, validate_tags
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule

try:
    import jmespath
except ImportError:
    jmespath = None
    JMESPATH_IMPORT_ERROR = traceback.format_exc()
else:
    JMESPATH_IMPORT_ERROR = None

ARGUMENT_SPEC = dict(
    name=dict(type="list", elements="str", aliases=["names"]),
    state=dict(type="list", elements="str",
               choices=["running", "paused", "stopped", "crashed", "suspended", "stopping"]),
    tags=dict(type="dict"),
    sample_seconds=dict(type="float", default=1.0),
    query=dict(type="str"),
)


def compile_query(module):
    if module.params["query"] is None:
        return None
    if jmespath is None:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)
    try:
        return jmespath.compile(module.params["query"])
    except jmespath.exceptions.ParseError as error:
        module.fail_json(msg="query: %s" % error)


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if params["sample_seconds"] < 0:
        module.fail_json(msg="sample_seconds: must be 0 or more")
    try:
        tags = validate_tags(params["tags"])
    except TagError as error:
        module.fail_json(msg=str(error))
    query = compile_query(module)
    with module.connection(readonly=True) as conn:
        guests = gather_guests(conn, params["name"], params["state"], tags, params["sample_seconds"])
    result = dict(changed=False, guests=guests)
    if query is not None:
        result["query_result"] = query.search(guests)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
