#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Move a guest to another hypervisor, live, and make sure where it ended up
version_added: 0.1.0
description:
  - Migrates guest O(name) from the hypervisor of O(uri) (the source) to O(destination),
    live by default, watching libvirt's migration job, and returns its figures.
  - Before anything moves it checks what it can - the guest exists and may move (tag
    C(migratable=false) refuses unless O(force=true)), the destination answers, has no
    other guest of that name, has the memory and can run the guest's CPU model. Check mode
    stops there.
  - After every outcome it looks at both hypervisors and fails with a precise message if
    the guest does not run exactly once, where it should, and is not defined exactly where
    it should be. A migration that fails or times out leaves the guest running on the
    source (libvirt rolls back; the module aborts a job that outlives O(timeout)).
  - A guest already running on the destination (and gone from the source) is not changed.
  - It records the time and hosts of the migration in the guest's metadata, where the
    placement planner reads it for per-guest cooldown.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
options:
  name:
    description: Name of the guest.
    type: str
    required: true
  destination:
    description:
      - libvirt URI of the destination hypervisor, as this controller reaches it (for
        example C(qemu+ssh://root@kvm2/system)). The same O(username) and O(password) are used.
    type: str
    required: true
  p2p_uri:
    description:
      - With O(transport=p2p) or V(tunnelled), the URI the source's libvirtd dials to reach the destination,
        when it differs from O(destination) (for example C(qemu+tls://kvm2/system)).
    type: str
  live:
    description:
      - V(true) moves a running (or paused) guest without stopping it; V(false) moves the
        definition of a stopped guest (offline migration, always persistent).
    type: bool
    default: true
  persistent:
    description: Define the guest on the destination (else it runs there as a transient guest).
    type: bool
    default: true
  undefine_source:
    description: Remove the guest's definition from the source once it runs on the destination.
    type: bool
    default: true
  transport:
    description:
      - V(p2p) - the source's libvirtd connects to the destination's itself (the controller
        only watches); V(direct) - the controller holds both connections and relays the
        handshake (for sources that cannot reach the destination's libvirtd).
      - With V(p2p) and V(direct), guest memory flows straight between the two QEMUs, over
        the destination's migration port (C(migration_address), ports 49152-49215 by default).
      - V(tunnelled) - as V(p2p), but guest memory flows through the source's libvirt
        connection to the destination (ssh or TLS, so it is encrypted, and no migration
        port need be open), at the cost of speed. Not with O(parallel_connections) or
        O(postcopy).
    type: str
    choices: [p2p, tunnelled, direct]
    default: p2p
  bandwidth:
    description: Limit the migration's bandwidth, in MiB/s.
    type: int
  max_downtime:
    description: Longest pause of the guest at the switch-over that QEMU may plan for, in ms.
    type: int
  auto_converge:
    description: Let QEMU slow the guest's vCPUs down when its memory changes faster than it is copied.
    type: bool
    default: false
  postcopy:
    description:
      - Switch to post-copy after this many seconds when the migration has not finished
        (the guest then runs on the destination and fetches missing pages from the source).
        Once switched it can no longer be aborted, so O(timeout) no longer applies.
    type: float
  compressed:
    description: Compress memory pages (costs CPU on both hosts; helps on slow links).
    type: bool
    default: false
  parallel_connections:
    description: Copy memory over this many connections at once.
    type: int
  copy_storage:
    description:
      - V(none) - the disks are shared (or the guest has none); V(all) - copy every disk to
        the destination (its images must exist there); V(incremental) - copy only what
        differs from a backing image both hosts have.
    type: str
    choices: [none, all, incremental]
    default: none
  unsafe:
    description:
      - Migrate even when libvirt cannot tell that the disks are on storage both hosts
        share and refuses ("Unsafe migration") - for storage it does not recognise as
        shared, such as a cluster file system it does not know or a local path both
        hypervisors mount. As C(virsh migrate --unsafe); wrong on storage that is not shared.
    type: bool
    default: false
  tls:
    description:
      - Encrypt the guest's memory (and copied disks) between the two QEMUs with TLS
        (C(VIR_MIGRATE_TLS)). Without it, memory crosses the migration ports in clear, even
        when libvirt's own connections use TLS or ssh.
      - Both hypervisors need QEMU's migration certificates in C(migrate_tls_x509_cert_dir)
        of qemu.conf (default C(/etc/pki/qemu)) - C(ca-cert.pem), C(server-cert.pem),
        C(server-key.pem), C(client-cert.pem), C(client-key.pem) - with the destination's
        server certificate issued for its migration address. The kvmops.virt.kvm_host role
        does not install them yet; the migration fails, and the guest stays, where they are missing.
      - Not with O(transport=tunnelled), which sends memory through the libvirt connection already.
    type: bool
    default: false
  timeout:
    description: Abort a migration still running after this many seconds (the guest stays on the source).
    type: float
  force:
    description: Move a guest tagged C(migratable=false) anyway.
    type: bool
    default: false
  verify:
    description:
      - Check, after the migration, that the guest runs exactly once and is defined exactly
        where it should be, and fail with what is wrong otherwise.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Runs every check of a real run (guest, tag, destination, memory, CPU model, name) and moves nothing.
  diff_mode:
    support: full
    description: Shows the guest's hypervisor before and after.
  idempotent:
    support: full
    description: A guest already running on the destination is left alone (C(changed=false)).
notes:
  - Hosts without shared storage need O(copy_storage). libvirt 9.0 refuses a live migration
    of a guest whose disks it cannot tell are shared ("Unsafe migration").
seealso:
  - name: libvirt migration
    description: How libvirt migrates guests, and its transports.
    link: https://libvirt.org/migration.html
"""

EXAMPLES = r"""
- name: Move web-1 from kvm1 to kvm2, live
  kvmops.virt.migrate:
    uri: qemu+ssh://root@kvm1/system
    name: web-1
    destination: qemu+ssh://root@kvm2/system
    p2p_uri: qemu+tls://kvm2/system
    timeout: 300

- name: A busy guest over a slow link - converge or switch to post-copy after 60 s
  kvmops.virt.migrate:
    uri: "{{ kvm_uri }}"
    name: "{{ kvm_name }}"
    destination: qemu+tls://kvm3/system
    bandwidth: 200
    auto_converge: true
    postcopy: 60
  delegate_to: localhost

- name: Move a stopped guest's definition (its disks are on shared storage)
  kvmops.virt.migrate:
    uri: qemu+ssh://root@kvm1/system
    name: batch-7
    destination: qemu+ssh://root@kvm2/system
    live: false
"""

RETURN = r"""
name:
  description: The guest.
  returned: always
  type: str
  sample: web-1
uuid:
  description: The guest's UUID.
  returned: when the guest was found
  type: str
  sample: 0f3a3f4e-5d1e-4a4b-9d55-3cf2c6f1a2b7
source:
  description: The source's URI (passwords masked).
  returned: always
  type: str
  sample: qemu+ssh://root@kvm1/system
destination:
  description: The destination's URI (passwords masked).
  returned: always
  type: str
  sample: qemu+ssh://root@kvm2/system
moved:
  description: Whether the guest moved in this run.
  returned: always
  type: bool
  sample: true
placement:
  description:
    - Where the guest is after the run, seen from the controller - C(source) and
      C(destination), each with C(active) (running or paused there) and C(persistent)
      (defined there).
  returned: when the guest was found
  type: dict
  sample: {source: {active: false, persistent: false}, destination: {active: true, persistent: true}}
elapsed_ms:
  description: Wall time of the migration call, in milliseconds.
  returned: when the guest moved
  type: int
  sample: 2140
figures:
  description:
    - The migration job's final figures as libvirt reports them (keys present when known) -
      C(elapsed_ms), C(downtime_ms), C(data_total_bytes), C(data_processed_bytes),
      C(memory_processed_bytes), C(memory_iterations), C(dirty_rate_pages_per_second),
      C(page_size_bytes), C(auto_converge_throttle_percent), C(postcopy_requests).
  returned: when the guest moved
  type: dict
  sample: {elapsed_ms: 1890, downtime_ms: 24, memory_iterations: 3, data_processed_bytes: 271581184}
postcopy:
  description: Whether the migration switched to post-copy.
  returned: when the guest moved
  type: bool
  sample: false
auto_converge:
  description: Whether QEMU throttled the guest's vCPUs to make the migration converge.
  returned: when the guest moved
  type: bool
  sample: false
migrated_at:
  description: Epoch seconds of the end of the migration, as recorded in the guest's metadata.
  returned: when the guest moved
  type: int
  sample: 1763730000
"""

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.guest_move import (
    MIGRATION_ARGUMENT_SPEC, GuestMove, MoveFailed, option_problems)
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    destination=dict(type="str", required=True),
    p2p_uri=dict(type="str"),
    live=dict(type="bool", default=True),
    persistent=dict(type="bool", default=True),
    undefine_source=dict(type="bool", default=True),
    force=dict(type="bool", default=False),
    verify=dict(type="bool", default=True),
    **MIGRATION_ARGUMENT_SPEC
)


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    problems = option_problems(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    with module.connection() as source:
        destination = LibvirtConnection(module.params["destination"], module.params["username"],
                                        module.params["password"], module.params["connect_timeout"])
        try:
            destination.open()
            result = GuestMove(source, destination, module.params, module.check_mode, module._diff).run()
        except MoveFailed as failure:
            module.fail_json(msg=str(failure), **failure.result)
        except LibvirtOperationError as error:
            module.fail_json(msg=str(error), uri=error.uri, operation=error.operation, libvirt_error=error.detail)
        finally:
            destination.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
