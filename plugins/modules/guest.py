#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: guest
short_description: Declare one libvirt guest and have it exist, as described, in the wanted power state
version_added: 0.1.0
description:
  - Creates, updates, starts, stops, pauses and removes one guest (libvirt domain) from a
    declarative description of its resources, disks, network interfaces, cloud-init seed and tags.
  - Idempotent. Options that are not given are left as they are. Running it twice changes
    nothing the second time; check mode reports exactly the change (and diff) the real run makes.
  - Every input is checked before anything changes (names, sizes, pools, volumes, networks,
    the template of a clone). When a step fails midway, what the run did is undone (new
    volumes deleted, the previous definition restored, a running guest started again), so
    a failure never leaves a guest half-defined, stopped when it was running, or with new MACs.
  - Changes to a running guest are applied live where libvirt can (vCPUs up to O(max_vcpus),
    memory through the balloon up to O(max_memory), attaching and detaching disks and NICs,
    tags, CD-ROM media); everything else is written to the guest's definition and reported
    as RV(restart_required). O(restart=if_needed) then restarts the guest cleanly.
  - A new guest gets ACPI, a UTC clock, a virtio balloon reporting memory statistics every
    10 seconds (read by M(kvmops.virt.guest_info)) and a virtio RNG; everything else comes
    from the options or libvirt's defaults.
  - MAC addresses are kept forever once a NIC exists. New NICs get an address in QEMU's
    C(52:54:00) range derived from the hypervisor and the guest name, so check mode can
    show it and re-creating a guest gives it the same addresses.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
attributes:
  check_mode:
    description: Plans the whole change and reports it (including the diff) without changing anything.
    support: full
  diff_mode:
    description: Shows the guest's view before and after (resources, disks, NICs, tags, power state).
    support: full
  idempotent:
    description: A second run with the same options reports no change.
    support: full
options:
  name:
    description:
      - Name of the guest. New guests need 1 to 64 letters, digits, C(_), C(.), C(+) or C(-).
    type: str
    required: true
  state:
    description:
      - V(present) defines the guest (or updates its definition) and leaves its power state alone.
      - V(running), V(stopped) and V(paused) also bring it to that power state.
        V(stopped) sends an ACPI shutdown and waits up to O(shutdown_timeout) seconds; it powers
        the guest off only with O(force=true).
      - V(absent) powers the guest off and undefines it together with its NVRAM, snapshot
        metadata and managed save image; O(remove_storage=true) also deletes its volumes.
    type: str
    choices: [present, running, stopped, paused, absent]
    default: present
  vcpus:
    description:
      - Number of virtual CPUs. A new guest gets 1. A running guest gets them live when
        O(max_vcpus) stays the same.
    type: int
  max_vcpus:
    description:
      - Most vCPUs the guest can have without a restart (hot-plug limit). Defaults to O(vcpus)
        for a new guest; raised to O(vcpus) when O(vcpus) exceeds it.
    type: int
  memory:
    description:
      - Memory of the guest (balloon target). A number is MiB; a string may carry a unit
        (V(512MiB), V(2 GiB)). Whole MiB, at least 16 MiB. A new guest gets 1 GiB.
      - A running guest gets it live through its balloon device when O(max_memory) stays the same.
    type: raw
  max_memory:
    description:
      - Memory the guest boots with, the most the balloon can give it without a restart.
        Same format as O(memory). Defaults to O(memory); raised to O(memory) when O(memory) exceeds it.
    type: raw
  cpu_mode:
    description:
      - CPU model the guest sees. V(host-passthrough) and V(host-model) need O(virt_type=kvm).
      - When not set, libvirt's default.
    type: str
    choices: [host-passthrough, host-model, maximum]
  virt_type:
    description:
      - V(kvm) (hardware virtualisation) or V(qemu) (emulation, TCG).
      - A new guest gets V(kvm) when the hypervisor offers it, else what it offers.
    type: str
    choices: [kvm, qemu]
  arch:
    description: CPU architecture of a new guest; default the hypervisor's.
    type: str
  machine:
    description:
      - Machine type, such as V(q35) or V(pc). Aliases are resolved the way libvirt does, so
        V(q35) on a guest recorded as C(pc-q35-7.2) is no change.
    type: str
  firmware:
    description:
      - V(bios) or V(uefi) (libvirt picks the UEFI firmware and creates the NVRAM store).
    type: str
    choices: [bios, uefi]
  boot:
    description: Boot order, for example V([hd, cdrom]).
    type: list
    elements: str
  kernel:
    description: Path on the hypervisor of a kernel to boot directly (no boot loader).
    type: path
  initrd:
    description: Path on the hypervisor of the initrd for O(kernel).
    type: path
  cmdline:
    description: Kernel command line for O(kernel).
    type: str
  autostart:
    description: Start the guest when the hypervisor starts.
    type: bool
  serial:
    description: Give the guest a serial console (a pty, with C(virsh console)), or remove it with V(false).
    type: bool
  serial_log:
    description: Also write everything the guest prints on its serial console to this file on the hypervisor.
    type: path
  disks:
    description:
      - The guest's complete list of disks, in order; disks not listed are detached (not deleted).
      - Each is a volume in a storage pool (O(disks[].pool) with O(disks[].name) and/or O(disks[].size))
        or an existing O(disks[].path).
      - A pool volume that does not exist is created when O(disks[].size) is given, as a
        copy-on-write overlay when O(disks[].backing) is given. A volume smaller than
        O(disks[].size) is grown (live on a running guest); shrinking is refused.
      - The cloud-init seed (see O(cloud_init)) is managed on its own and never counts here.
    type: list
    elements: dict
    suboptions:
      pool:
        description: Storage pool of the volume.
        type: str
      name:
        description: Volume name. Default for a new volume C(<guest>-<target>.<format>), for example C(web-1-vda.qcow2).
        type: str
      size:
        description: Size of the volume; a number is GiB, a string may carry a unit (V(20 GiB), V(512 MiB)).
        type: raw
      format:
        description: Image format; V(qcow2) for new volumes unless given.
        type: str
        choices: [qcow2, raw]
      backing:
        description:
          - Backing image of a new qcow2 volume (copy-on-write), either a volume name in the same
            pool or the absolute path of a volume in any pool.
        type: str
      path:
        description: Absolute path on the hypervisor of an existing image or block device.
        type: str
      device:
        description: V(disk) or V(cdrom).
        type: str
        choices: [disk, cdrom]
        default: disk
      bus:
        description:
          - Bus of the disk; default V(virtio) for disks and V(scsi) for CD-ROMs.
          - V(scsi) disks get a virtio-scsi controller when the guest has no SCSI controller
            (cloud kernels have its driver, on any machine type, with hot-plug). Some cloud
            kernels (Debian's) have no SATA (AHCI) driver, and q35 has no IDE.
        type: str
        choices: [virtio, sata, scsi, ide, usb]
      target:
        description: Device name in the guest (V(vda), V(sdb)); default the next free name of the bus.
        type: str
      readonly:
        description: Attach read-only (CD-ROMs always are).
        type: bool
        default: false
  interfaces:
    description:
      - The guest's complete list of network interfaces, in order; NICs not listed are removed.
      - A listed NIC without O(interfaces[].mac) that matches an existing NIC at the same position
        (same network or bridge) keeps that NIC and its MAC address.
    type: list
    elements: dict
    suboptions:
      network:
        description: Name of a libvirt network (it must exist).
        type: str
      bridge:
        description: Name of a bridge on the hypervisor.
        type: str
      model:
        description: NIC model.
        type: str
        default: virtio
      mac:
        description: MAC address; when not given, kept or derived (see the module description).
        type: str
  cloud_init:
    description:
      - Data for cloud-init in the guest, written as a NoCloud seed (an ISO 9660 image labelled
        C(cidata)) into the volume C(<name>-cidata.iso) and attached as a CD-ROM (virtio-scsi by default).
      - The seed is rebuilt when its content changes (a digest is kept in the guest's metadata).
        cloud-init reads it at boot.
    type: dict
    suboptions:
      user_data:
        description:
          - User data. A dict is written as C(#cloud-config); a string is taken as it is
            (a C(#cloud-config) document, a C(#!) script, ...).
          - Never logged (it often holds passwords or keys); the diff shows the seed's digest.
        type: raw
      meta_data:
        description: Meta data; C(instance-id) and C(local-hostname) default to the guest's name.
        type: dict
      network_config:
        description:
          - Network configuration (version 1 or 2), as a dict or a string.
          - Never logged (it may hold Wi-Fi or VPN secrets).
        type: raw
      pool:
        description: Pool for the seed volume; default the pool of the guest's first disk, else C(default).
        type: str
      bus:
        description: Bus of the seed's CD-ROM drive (see O(disks[].bus)).
        type: str
        choices: [scsi, sata, ide]
        default: scsi
  clone_from:
    description:
      - Create the guest as a copy of this stopped template guest, with the same definition, a new
        UUID, new MAC addresses, and a copy of each of its writable disks (see O(clone_mode)).
        The other options are then applied on top.
      - Used only when the guest does not exist yet.
    type: str
  clone_mode:
    description:
      - V(full) copies the template's disks; V(linked) creates qcow2 overlays backed by them,
        which takes a moment whatever their size (the template's volumes must then stay).
    type: str
    choices: [full, linked]
    default: full
  tags:
    description:
      - Tags stored in the guest's libvirt metadata under the collection's namespace
        (C(https://github.com/kvmops/kvmops.virt/1)), read by the inventory plugin, the
        placement planner and the rulebooks, for example C(role), C(env), C(affinity_group),
        C(anti_affinity_group), C(migratable).
      - Values are strings, numbers or booleans, and keep their type.
    type: dict
  purge_tags:
    description: With O(tags), remove the tags that are not listed. V(false) only adds and updates.
    type: bool
    default: true
  xml:
    description:
      - The whole domain XML instead of the resource options. It is compared with what
        libvirt holds after its own normalisation (defaults, addresses, units), so an unchanged
        definition is no change. The UUID and the MAC addresses of existing NICs are kept
        when the XML leaves them out.
    type: str
  restart:
    description:
      - V(if_needed) restarts a running guest (clean shutdown, then start) when changes need
        it. When the new definition does not start, the previous one is restored and started.
      - V(never) only reports RV(restart_required).
    type: str
    choices: [never, if_needed]
    default: never
  shutdown_timeout:
    description: Seconds to wait for a guest to shut down after the ACPI request.
    type: int
    default: 120
  force:
    description: Power the guest off when it does not shut down within O(shutdown_timeout).
    type: bool
    default: false
  remove_storage:
    description:
      - With O(state=absent), also delete the guest's writable disk volumes and its cloud-init seed.
        Read-only and shareable disks, disks outside storage pools, disks another guest uses and
        volumes that back other volumes are kept (and reported as warnings).
    type: bool
    default: false
notes:
  - For a template guest see O(clone_from); copying twenty guests from one template is
    shown in the collection's C(playbooks/fleet_from_template.yml).
seealso:
  - module: kvmops.virt.guest_info
  - module: kvmops.virt.snapshot
  - module: kvmops.virt.volume
  - name: libvirt domain XML format
    description: What every element of O(xml) means.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: A running guest with a new 20 GiB disk on the default network
  kvmops.virt.guest:
    name: web-1
    state: running
    vcpus: 2
    memory: 2 GiB
    disks:
      - pool: default
        size: 20 GiB
        backing: debian-12-genericcloud-amd64.qcow2
    interfaces:
      - network: default
    cloud_init:
      user_data:
        users:
          - name: ops
            ssh_authorized_keys: ["{{ lookup('file', '~/.ssh/id_ed25519.pub') }}"]
    tags:
      role: web
      env: prod
      anti_affinity_group: web

- name: More memory and vCPUs, live if possible, restart if not
  kvmops.virt.guest:
    name: web-1
    vcpus: 4
    max_vcpus: 8
    memory: 4 GiB
    restart: if_needed

- name: Copy a stopped template in seconds (qcow2 overlays)
  kvmops.virt.guest:
    name: "test-{{ item }}"
    clone_from: debian-template
    clone_mode: linked
    state: running
    tags:
      env: test
  loop: "{{ range(1, 11) | list }}"

- name: Stop a guest, powering it off if it ignores ACPI for a minute
  kvmops.virt.guest:
    name: batch-1
    state: stopped
    shutdown_timeout: 60
    force: true

- name: Remove a guest and its disks
  kvmops.virt.guest:
    name: test-3
    state: absent
    remove_storage: true

- name: Define a guest from XML kept in a template
  kvmops.virt.guest:
    name: appliance
    xml: "{{ lookup('template', 'appliance.xml.j2') }}"
"""

RETURN = r"""
guest:
  description: The guest after the run (in check mode, as it would be). Sizes are readable strings.
  returned: when the guest exists after the run
  type: dict
  contains:
    name:
      description: Name.
      type: str
      sample: web-1
    uuid:
      description: UUID (V(null) in check mode for a guest not created yet).
      type: str
    state:
      description: Power state, V(running), V(paused), V(stopped), V(crashed) or V(suspended).
      type: str
    autostart:
      description: Whether the guest starts with the hypervisor.
      type: bool
    persistent:
      description: Whether the guest has a persistent definition.
      type: bool
    host:
      description: Host name of the hypervisor (V(null) in check mode).
      type: str
    virt_type:
      description: "V(kvm), V(qemu) (or V(test) on libvirt's test driver)."
      type: str
    arch:
      description: CPU architecture.
      type: str
      sample: x86_64
    machine:
      description: Machine type as libvirt records it.
      type: str
      sample: pc-q35-7.2
    firmware:
      description: "V(bios) or V(uefi)."
      type: str
    cpu_mode:
      description: CPU mode, V(null) for libvirt's default.
      type: str
    vcpus:
      description: vCPUs.
      type: int
      sample: 2
    max_vcpus:
      description: Most vCPUs without a restart.
      type: int
      sample: 4
    memory:
      description: Memory (balloon target).
      type: str
      sample: 2 GiB
    max_memory:
      description: Memory at boot, the balloon's maximum.
      type: str
      sample: 4 GiB
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
      description: Disks with C(target), C(device), C(bus), C(path), C(format), C(readonly) and, for pool volumes, C(pool), C(volume), C(size).
      type: list
      elements: dict
    interfaces:
      description: NICs with C(type) (network or bridge), C(source), C(model) and C(mac).
      type: list
      elements: dict
    serial:
      description: Whether the guest has a serial console.
      type: bool
    serial_log:
      description: File that receives the serial console's output.
      type: str
    cloud_init:
      description: SHA-256 of the attached cloud-init seed, or V(null).
      type: str
    tags:
      description: The guest's tags.
      type: dict
      sample: {role: web, migratable: false}
restart_required:
  description: The guest runs with a definition older than the one it has; a restart applies it.
  returned: always
  type: bool
  sample: false
restart_pending:
  description: Which parts of the guest's view differ between the running guest and its definition.
  returned: always
  type: list
  elements: str
  sample: [max_vcpus, machine]
actions:
  description: What the run did (or in check mode would do), in order.
  returned: always
  type: list
  elements: str
  sample: ["created volume web-1-vda.qcow2 in pool default (20 GiB)", "defined guest web-1", "started guest web-1"]
"""

from ansible_collections.kvmops.virt.plugins.module_utils.guest_spec import DISK_BUSES, GuestSpec, GuestSpecError
from ansible_collections.kvmops.virt.plugins.module_utils.guests import GuestError, GuestRun, describe_guest
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule

DISK_OPTIONS = dict(
    pool=dict(type="str"),
    name=dict(type="str"),
    size=dict(type="raw"),
    format=dict(type="str", choices=["qcow2", "raw"]),
    backing=dict(type="str"),
    path=dict(type="str"),
    device=dict(type="str", choices=["disk", "cdrom"], default="disk"),
    bus=dict(type="str", choices=list(DISK_BUSES)),
    target=dict(type="str"),
    readonly=dict(type="bool", default=False),
)

INTERFACE_OPTIONS = dict(
    network=dict(type="str"),
    bridge=dict(type="str"),
    model=dict(type="str", default="virtio"),
    mac=dict(type="str"),
)

CLOUD_INIT_OPTIONS = dict(
    # often passwords, hashes or keys: masked in the invocation; the diff shows the seed's digest
    user_data=dict(type="raw", no_log=True),
    meta_data=dict(type="dict"),
    network_config=dict(type="raw", no_log=True),
    pool=dict(type="str"),
    bus=dict(type="str", choices=["scsi", "sata", "ide"], default="scsi"),
)

_RESOURCE_OPTIONS = ["vcpus", "max_vcpus", "memory", "max_memory", "cpu_mode", "virt_type", "arch", "machine",
                     "firmware", "boot", "kernel", "initrd", "cmdline", "serial", "serial_log", "disks",
                     "interfaces", "cloud_init", "clone_from"]

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="present", choices=["present", "running", "stopped", "paused", "absent"]),
    vcpus=dict(type="int"),
    max_vcpus=dict(type="int"),
    memory=dict(type="raw"),
    max_memory=dict(type="raw"),
    cpu_mode=dict(type="str", choices=["host-passthrough", "host-model", "maximum"]),
    virt_type=dict(type="str", choices=["kvm", "qemu"]),
    arch=dict(type="str"),
    machine=dict(type="str"),
    firmware=dict(type="str", choices=["bios", "uefi"]),
    boot=dict(type="list", elements="str"),
    kernel=dict(type="path"),
    initrd=dict(type="path"),
    cmdline=dict(type="str"),
    autostart=dict(type="bool"),
    serial=dict(type="bool"),
    serial_log=dict(type="path"),
    disks=dict(type="list", elements="dict", options=DISK_OPTIONS),
    interfaces=dict(type="list", elements="dict", options=INTERFACE_OPTIONS),
    cloud_init=dict(type="dict", options=CLOUD_INIT_OPTIONS),
    clone_from=dict(type="str"),
    clone_mode=dict(type="str", choices=["full", "linked"], default="full"),
    tags=dict(type="dict"),
    purge_tags=dict(type="bool", default=True),
    xml=dict(type="str"),
    restart=dict(type="str", choices=["never", "if_needed"], default="never"),
    shutdown_timeout=dict(type="int", default=120),
    force=dict(type="bool", default=False),
    remove_storage=dict(type="bool", default=False),
)


def main():
    module = LibvirtModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        mutually_exclusive=[["xml", option] for option in _RESOURCE_OPTIONS],
        required_if=[["clone_mode", "linked", ["clone_from"]]],
    )
    try:
        spec = GuestSpec.from_params(module.params)
    except GuestSpecError as error:
        module.fail_json(msg=str(error))
    with module.connection() as conn:
        run = GuestRun(conn, spec)
        try:
            run.plan()
            changed = run.predicts_change()
            diff = run.diff()
            if not module.check_mode and changed:
                run.apply()
        except GuestError as error:
            for warning in run.warnings:
                module.warn(warning)
            module.fail_json(msg=str(error), actions=run.actions)
        # A real run reports what it did: a live change the guest refused did not happen.
        result = dict(changed=changed if module.check_mode else bool(run.actions), actions=run.actions, restart_required=run.restart_required,
                      restart_pending=sorted(run.restart_keys))
        if module.check_mode:
            result["guest"] = run.views()[1]
        elif run.domain is not None and spec.state != "absent":
            result["guest"] = describe_guest(conn, run.domain, run.catalog)
        if module._diff:  # pylint: disable=protected-access
            result["diff"] = diff
    for warning in run.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
