#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Take, describe, revert to and delete snapshots of a libvirt guest
version_added: 0.1.0
description:
  - Makes one snapshot of a guest exist (O(state=present)), go away (O(state=absent)), or
    brings the guest back to it (O(state=reverted)). Every run also returns all the
    guest's snapshots, oldest first, as RV(snapshots); O(state=listed) only does that.
  - Snapshots are libvirt B(internal) snapshots, stored inside the guest's qcow2 disk
    images. A snapshot of a running or paused guest also holds its memory and device
    state (a live, full-system checkpoint; reverting to it resumes the guest at that very
    moment). A snapshot of a stopped guest holds its disks only.
  - Every writable disk of the guest must be qcow2 (read-only disks, CD-ROMs, empty drives
    and disks marked C(snapshot='no') in the domain XML are left out of a snapshot).
    A guest with a raw disk, or without any writable disk, is refused with a message
    naming the disk, before anything is changed.
  - While the memory of a running guest is being written, the guest is paused (QEMU's
    C(savevm)); for small guests this takes well under a second, for large ones about as
    long as writing their RAM to the disk image.
  - Reverting keeps the guest's power state. A running guest is running afterwards. Reverted
    to a snapshot with memory it resumes where the snapshot was taken; reverted to a
    snapshot without memory (taken while it was stopped) it is powered off, its disks are
    reverted and it boots from them. A paused guest stays paused the same way. A stopped
    guest reverted to a snapshot without memory stays stopped; reverted to a snapshot with
    memory it comes back running (or paused, if it was paused when the snapshot was taken),
    because restoring memory means resuming the guest.
  - Removing a snapshot deletes its metadata and its data in the disk images. Its children
    are kept and become children of its parent; when it was the current snapshot, its parent
    becomes current.
  - Quiesced snapshots (C(quiesce), freezing the guest's file systems through the QEMU guest
    agent) are not supported; libvirt quiesces only external disk-only snapshots, which
    libvirt 9.0 can neither revert to nor delete.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
attributes:
  check_mode:
    description:
      - Checks everything the real run checks and reports the same C(changed) and diff,
        without changing anything. RV(snapshot) is the predicted snapshot (its
        RV(snapshot.creation_time) is then V(null)).
    support: full
  diff_mode:
    description:
      - O(state=present) and O(state=absent) show the snapshot (name, description, captured
        guest state, memory, current, parent, disks) before and after.
      - O(state=reverted) shows the guest (state, current snapshot, the snapshot it was reverted to).
    support: full
  idempotent:
    description:
      - O(state=present), O(state=absent) and O(state=listed) are idempotent.
      - O(state=reverted) reverts on every run and always reports a change. A guest diverges
        from its snapshot as soon as it runs, and nothing tells whether it still is as the
        snapshot left it. Guard the task (C(when)) if it must run only once.
    support: partial
options:
  guest:
    description:
      - Name of the guest (libvirt domain) whose snapshots to manage. It must exist.
    type: str
    required: true
  name:
    description:
      - Name of the snapshot. Required unless O(state=listed); with O(state=listed) it selects
        the snapshot returned as RV(snapshot).
      - A new snapshot's name must not be empty, contain C(/), C("), C(\) or control characters,
        start with C(.), consist of digits only (QEMU looks internal snapshots up by numeric ID
        before name, so a revert could restore another snapshot), or be longer than 200 bytes.
        QEMU or libvirt accept some of these, then fail to revert to them or leave data behind.
    type: str
  state:
    description:
      - V(present) creates the snapshot when the guest has none of that name. An existing
        snapshot is kept as it is; only its O(description) and O(current) can be updated
        (a snapshot's contents never change).
      - V(absent) deletes the snapshot if it exists.
      - V(reverted) brings the guest back to the snapshot, which must exist; see the
        description for the guest's power state afterwards.
      - V(listed) changes nothing and returns the guest's snapshots.
    type: str
    choices: [present, absent, reverted, listed]
    default: present
  description:
    description:
      - Description of the snapshot (O(state=present) only).
      - When the snapshot exists with another description, its description is updated
        in place (libvirt redefines the snapshot's metadata; its contents stay as they are).
        V("") removes the description. Not given, an existing description is kept.
    type: str
  memory:
    description:
      - Whether the new snapshot holds the guest's memory and device state (O(state=present) only).
      - Not given, it is V(true) for a running or paused guest and V(false) for a stopped one;
        the snapshot captures the guest as it is.
      - V(true) for a stopped guest fails (there is no memory to capture). V(false) for a
        running or paused guest fails too, because libvirt takes internal snapshots of a running
        guest only together with its memory; shut the guest down first.
      - For an existing snapshot it is compared with what the snapshot holds, and a mismatch
        fails (what a snapshot holds cannot change).
    type: bool
  current:
    description:
      - V(true) makes the snapshot the guest's current one (the parent of the next snapshot,
        and the one C(virsh snapshot-revert --current) uses). Only its metadata changes;
        the guest itself is not reverted.
      - V(false) leaves the current snapshot as libvirt sets it, and libvirt makes every new
        snapshot current. Reverting to a snapshot also makes it current.
      - Applies to O(state=present) and O(state=reverted).
    type: bool
    default: false
notes:
  - The guest's memory state is stored in the first qcow2 disk, so a snapshot with memory
    takes about as much room in that image as the guest's used RAM.
  - Reverting a running guest to a snapshot with memory needs a guest definition compatible
    with the one the snapshot was taken with; libvirt refuses otherwise and says why.
seealso:
  - name: libvirt snapshot XML format
    description: What libvirt stores about each snapshot.
    link: https://libvirt.org/formatsnapshot.html
"""

EXAMPLES = r"""
- name: Take a live snapshot (with memory) before an upgrade
  kvmops.virt.snapshot:
    uri: qemu+ssh://root@kvm1.example.com/system
    guest: web-1
    name: before-upgrade
    description: "Before the upgrade to 2.4 (change CHG-1234)"

- name: Go back to it if the upgrade failed; the guest keeps running
  kvmops.virt.snapshot:
    uri: qemu+ssh://root@kvm1.example.com/system
    guest: web-1
    name: before-upgrade
    state: reverted
  when: upgrade is failed

- name: Take a disk-only snapshot of a stopped guest
  kvmops.virt.snapshot:
    guest: template-debian12
    name: golden
    memory: false

- name: Reset a test bed to its clean state before every test run
  kvmops.virt.snapshot:
    guest: "{{ item }}"
    name: clean
    state: reverted
  loop: "{{ groups['testbed'] }}"

- name: Make an older snapshot the current one (the parent of the next snapshot)
  kvmops.virt.snapshot:
    guest: web-1
    name: baseline
    current: true

- name: Remove the snapshot once the upgrade is confirmed
  kvmops.virt.snapshot:
    guest: web-1
    name: before-upgrade
    state: absent

- name: List the snapshots of a guest
  kvmops.virt.snapshot:
    guest: web-1
    state: listed
  register: web1_snapshots

- name: Remove all snapshots older than 7 days
  kvmops.virt.snapshot:
    guest: web-1
    name: "{{ item.name }}"
    state: absent
  loop: "{{ web1_snapshots.snapshots }}"
  loop_control:
    label: "{{ item.name }}"
  when: item.creation_timestamp < (now(utc=true).timestamp() - 7 * 86400)
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot named by O(name) after the run; V(null) when it does not exist (after
      O(state=absent), or O(state=listed) for a name the guest has no snapshot of).
    - In check mode, the snapshot as the run would leave it.
  returned: success
  type: dict
  contains:
    name:
      description: Name of the snapshot.
      type: str
      sample: before-upgrade
    description:
      description: Its description, V(null) when it has none.
      type: str
      sample: Before the upgrade to 2.4
    creation_time:
      description: When it was taken, ISO 8601 in UTC (V(null) in check mode for a new snapshot).
      type: str
      sample: "2024-05-02T09:41:07Z"
    creation_timestamp:
      description: When it was taken, in seconds since the epoch (V(null) in check mode for a new snapshot).
      type: int
      sample: 1714642867
    state:
      description:
        - The guest's state captured by the snapshot, named as the guest module names power
          states, for example V(running), V(paused) or V(stopped). V(disk-snapshot) for an
          external disk-only snapshot taken by another tool.
      type: str
      sample: running
    memory:
      description: Whether it holds the guest's memory and device state.
      type: bool
      sample: true
    current:
      description: Whether it is the guest's current snapshot.
      type: bool
      sample: true
    parent:
      description: Name of its parent snapshot; V(null) for a root snapshot.
      type: str
      sample: baseline
    disks:
      description:
        - The guest's disks by target name, and how the snapshot holds each one
          (V(internal), or V(no) when left out).
      type: list
      elements: dict
      sample: [{"name": "vda", "snapshot": "internal"}, {"name": "sda", "snapshot": "no"}]
snapshots:
  description:
    - Every snapshot of the guest after the run, oldest first (a parent before its children
      when they were taken within the same second); each has the keys of RV(snapshot).
    - In check mode, the snapshots as they are (nothing was changed).
  returned: success
  type: list
  elements: dict
  sample:
    - name: baseline
      description: null
      creation_time: "2024-05-01T07:00:00Z"
      creation_timestamp: 1714546800
      state: stopped
      memory: false
      current: false
      parent: null
      disks: [{"name": "vda", "snapshot": "internal"}]
    - name: before-upgrade
      description: Before the upgrade to 2.4
      creation_time: "2024-05-02T09:41:07Z"
      creation_timestamp: 1714642867
      state: running
      memory: true
      current: true
      parent: baseline
      disks: [{"name": "vda", "snapshot": "internal"}]
guest_state:
  description:
    - The guest's power state after the run (V(running), V(paused), V(stopped), ...);
      in check mode, the state the run would leave it in.
  returned: success
  type: str
  sample: running
"""

from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.snapshots import (
    STATES, SnapshotError, SnapshotRequest, run)

ARGUMENT_SPEC = dict(
    guest=dict(type="str", required=True),
    name=dict(type="str"),
    state=dict(type="str", default="present", choices=list(STATES)),
    description=dict(type="str"),
    memory=dict(type="bool"),
    current=dict(type="bool", default=False),
)


def main():
    module = LibvirtModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
        required_if=[["state", state, ["name"]] for state in ("present", "absent", "reverted")],
    )
    request = SnapshotRequest.from_params(module.params)
    with module.connection() as conn:
        try:
            # pylint: disable-next=protected-access
            result = run(conn, request, check_mode=module.check_mode, diff=module._diff)
        except SnapshotError as error:
            module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
