#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: hypervisor_maintenance
short_description: Put hypervisors in maintenance (draining their guests live) or take them out
version_added: 0.1.0
description:
  - O(state=enter) marks each hypervisor of O(names) as in maintenance, then moves its
    running guests live to the other hypervisors of O(hypervisors), a few at a time, and
    reports what moved where with timings. O(state=exit) removes the mark; guests are not
    moved back (rebalancing does that).
  - The mark is kept by libvirt on the hypervisor itself, so the inventory plugin
    (C(kvm_maintenance)), the planner, the event sources and any other controller see it,
    and nothing places a guest there while it is set. See the inventory plugin's docs for
    where exactly it lives.
  - Where each guest goes is the placement planner's C(evacuate) policy (see
    P(kvmops.virt.rebalance_plan#module)) - biggest guests first, each where the fleet stays
    most evenly loaded, never above a host's memory (less O(memory_reserve)), its vCPUs
    times O(cpu_overcommit) or O(cpu_target) of its CPU, never to a host in maintenance or
    unreachable; affinity groups move together and anti-affinity groups stay apart.
  - Guests that cannot move (tag C(migratable=false), or no host has room) are listed with
    the planner's reason; a move that fails with the guest still on its source is retried
    once on the host the planner picks without the failed one. The hypervisor stays in
    maintenance, and the task fails unless O(allow_partial=true).
  - Stopped guests stay (their definitions are listed in RV(stopped)).
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection.CREDENTIALS
options:
  hypervisors:
    description:
      - Every hypervisor that may take part, each with a C(name) and a libvirt C(uri) (the
        same form as the inventory plugin's O(kvmops.virt.libvirt#inventory:hypervisors)).
    type: list
    elements: dict
    required: true
  names:
    description: The hypervisors (names of O(hypervisors)) to put in or take out of maintenance.
    type: list
    elements: str
    required: true
  state:
    description: V(enter) marks and drains; V(exit) removes the mark.
    type: str
    choices: [enter, exit]
    default: enter
  reason:
    description: Why, kept with the mark (shown by the inventory as C(kvm_maintenance_mark.reason)).
    type: str
  max_parallel:
    description: Most migrations at the same time, overall.
    type: int
    default: 2
  max_per_source:
    description: Most migrations at the same time from one hypervisor.
    type: int
    default: 2
  max_per_destination:
    description: Most migrations at the same time to one hypervisor.
    type: int
    default: 1
  cpu_overcommit:
    description: vCPUs a destination may carry per logical CPU.
    type: float
    default: 4.0
  memory_reserve:
    description: Memory each destination keeps for itself, never given to guests (C(2 GiB), or MiB as a number).
    type: str
    default: 1 GiB
  cpu_target:
    description: CPU load in percent (the guests' measured use over its cores) no destination may pass.
    type: float
    default: 100
  sample_seconds:
    description:
      - Seconds over which the guests' CPU use is measured before planning; V(0) plans on
        memory and vCPUs alone.
    type: float
    default: 2
  retry:
    description: Retry a failed move once on another hypervisor with room.
    type: bool
    default: true
  allow_partial:
    description: Succeed even when some guests could not move (they are listed).
    type: bool
    default: false
  migration:
    description: Options of each migration, as in P(kvmops.virt.migrate#module).
    type: dict
    default: {}
    suboptions:
      transport:
        description: V(p2p), V(tunnelled) or V(direct), as in P(kvmops.virt.migrate#module).
        type: str
        choices: [p2p, tunnelled, direct]
        default: p2p
      bandwidth:
        description: MiB/s per migration.
        type: int
      max_downtime:
        description: Longest pause at the switch-over, in ms.
        type: int
      auto_converge:
        description: Throttle guests whose memory changes faster than it is copied.
        type: bool
        default: false
      postcopy:
        description: Switch to post-copy after this many seconds.
        type: float
      compressed:
        description: Compress memory pages.
        type: bool
        default: false
      parallel_connections:
        description: Connections per migration.
        type: int
      copy_storage:
        description: V(none), V(all) or V(incremental).
        type: str
        choices: [none, all, incremental]
        default: none
      unsafe:
        description: Migrate even when libvirt cannot tell that the disks are shared (see P(kvmops.virt.migrate#module)).
        type: bool
        default: false
      tls:
        description: Encrypt guest memory between the QEMUs (see P(kvmops.virt.migrate#module)).
        type: bool
        default: false
      timeout:
        description: Abort one migration after this many seconds (the guest stays and is retried elsewhere).
        type: float
attributes:
  check_mode:
    support: full
    description: Plans where each guest would go and sets no mark.
  diff_mode:
    support: full
    description: Shows each hypervisor's maintenance mark before and after.
  idempotent:
    support: full
    description: Entering again with the hypervisors marked and empty, or exiting unmarked ones, changes nothing.
notes:
  - Run it once per play (C(run_once), C(delegate_to=localhost)); the role P(kvmops.virt.maintenance#role) does.
"""

EXAMPLES = r"""
- name: Drain kvm1 for a firmware update, two migrations at a time
  kvmops.virt.hypervisor_maintenance:
    hypervisors:
      - {name: kvm1, uri: "qemu+ssh://root@kvm1/system"}
      - {name: kvm2, uri: "qemu+ssh://root@kvm2/system"}
      - {name: kvm3, uri: "qemu+ssh://root@kvm3/system"}
    names: [kvm1]
    reason: firmware update
    max_parallel: 2
    migration:
      timeout: 600
      auto_converge: true
  register: drained

- name: Back in service
  kvmops.virt.hypervisor_maintenance:
    hypervisors: "{{ fleet }}"
    names: [kvm1]
    state: exit
"""

RETURN = r"""
marks:
  description: Each hypervisor of O(names) with its maintenance mark after the run (C(since), C(reason), C(by)), or null.
  returned: always
  type: dict
  sample: {kvm1: {since: 1763730000, reason: firmware update, by: ops@controller}}
moved:
  description:
    - The guests that moved - C(guest), C(source), C(destination), C(attempts).
    - Each attempt has C(destination), C(started) and C(ended) (seconds from the drain's
      start), C(ok), and C(elapsed_ms) and C(downtime_ms), or C(error).
  returned: state=enter
  type: list
  elements: dict
failures:
  description:
    - The guests whose moves failed (same keys, with C(error)); they are where the error says.
    - Not C(failed), which is the task's own result.
  returned: state=enter
  type: list
  elements: dict
stayed:
  description: The guests that were not moved - C(guest), C(source), C(reason) (pinned, or no host has room).
  returned: state=enter
  type: list
  elements: dict
stopped:
  description: Stopped guests of the drained hypervisors, left there.
  returned: state=enter
  type: list
  elements: str
plan:
  description: Where each running guest was to go (C(guest), C(source), C(destination), C(reason)); in check mode, what would happen.
  returned: state=enter
  type: list
  elements: dict
peak_concurrency:
  description: The most migrations that ran at once - C(overall), C(per_source), C(per_destination).
  returned: state=enter
  type: dict
  sample: {overall: 2, per_source: 2, per_destination: 1}
seconds:
  description: Wall time of the drain.
  returned: state=enter
  type: float
  sample: 12.4
"""

import getpass
import socket
import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.evacuation import Drain, DrainPlan
from ansible_collections.kvmops.virt.plugins.module_utils.fleet import gather_fleet, hypervisor_uris
from ansible_collections.kvmops.virt.plugins.module_utils.guest_move import MIGRATION_ARGUMENT_SPEC
from ansible_collections.kvmops.virt.plugins.module_utils.maintenance import clear_mark, read_mark, write_mark
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import PlanError
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import parse_size

ARGUMENT_SPEC = dict(
    hypervisors=dict(type="list", elements="dict", required=True),
    names=dict(type="list", elements="str", required=True),
    state=dict(type="str", choices=["enter", "exit"], default="enter"),
    reason=dict(type="str"),
    max_parallel=dict(type="int", default=2),
    max_per_source=dict(type="int", default=2),
    max_per_destination=dict(type="int", default=1),
    cpu_overcommit=dict(type="float", default=4.0),
    memory_reserve=dict(type="str", default="1 GiB"),
    cpu_target=dict(type="float", default=100.0),
    sample_seconds=dict(type="float", default=2.0),
    retry=dict(type="bool", default=True),
    allow_partial=dict(type="bool", default=False),
    migration=dict(type="dict", default={}, options=MIGRATION_ARGUMENT_SPEC),
)


def checked_options(module):
    params = module.params
    uris, problems = hypervisor_uris(params["hypervisors"])
    unknown = [name for name in params["names"] if name not in uris]
    if unknown and not problems:
        problems.append("names %s are not among the hypervisors (%s)" % (", ".join(unknown), ", ".join(sorted(uris))))
    for key in ("max_parallel", "max_per_source", "max_per_destination"):
        if params[key] < 1:
            problems.append("%s must be at least 1, got %d" % (key, params[key]))
    for key in ("cpu_overcommit", "cpu_target"):
        if params[key] <= 0:
            problems.append("%s must be positive, got %s" % (key, params[key]))
    if params["sample_seconds"] < 0:
        problems.append("sample_seconds must be 0 or more, got %s" % params["sample_seconds"])
    try:
        reserve = parse_size(params["memory_reserve"], "memory_reserve")
    except ValueError as error:
        problems.append(str(error))
        reserve = None
    if problems:
        module.fail_json(msg="; ".join(problems))
    return uris, reserve


def connection_options(params):
    return dict(username=params["username"], password=params["password"], connect_timeout=params["connect_timeout"])


def marks_of(uris, names, options):
    marks = {}
    for name in names:
        with LibvirtConnection(uris[name], readonly=True, **options) as conn:
            with conn.operation("read the maintenance mark"):
                marks[name] = read_mark(conn.handle)
    return marks


def exit_maintenance(module, uris, options):
    names = module.params["names"]
    before = marks_of(uris, names, options)
    changed = any(mark is not None for mark in before.values())
    if changed and not module.check_mode:
        for name in names:
            with LibvirtConnection(uris[name], **options) as conn:
                with conn.operation("remove the maintenance mark"):
                    clear_mark(conn.handle)
    result = dict(changed=changed, marks={name: None for name in names})
    if module._diff:
        result["diff"] = dict(before=dict(maintenance=before), after=dict(maintenance=result["marks"]))
    return result


def enter_maintenance(module, uris, reserve, options):
    params = module.params
    names = params["names"]
    fleet = gather_fleet([dict(name=name, uri=uri) for name, uri in uris.items()], options,
                         want_addresses=False, sample_seconds=params["sample_seconds"])
    down = ["%s (%s)" % (hypervisor["name"], hypervisor["error"]) for hypervisor in fleet
            if hypervisor["name"] in names and not hypervisor["reachable"]]
    if down:
        module.fail_json(msg="cannot drain a hypervisor that does not answer: %s" % "; ".join(down))
    before = {hypervisor["name"]: hypervisor["host"]["maintenance"] for hypervisor in fleet if hypervisor["name"] in names}
    drain_plan = DrainPlan(fleet, names, params["cpu_overcommit"], reserve, params["cpu_target"])
    moves = drain_plan.moves
    stopped = sorted(guest["name"] for hypervisor in fleet if hypervisor["name"] in names
                     for guest in hypervisor["guests"] if guest["state"] not in ("running", "paused"))
    reason = params["reason"]
    remark = [name for name in names
              if before[name] is None or (reason is not None and before[name].get("reason") != reason)]
    result = dict(changed=bool(moves) or bool(remark),
                  plan=moves, stayed=drain_plan.stays, stopped=stopped, moved=[], failures=[], seconds=0.0,
                  peak_concurrency=dict(overall=0, per_source=0, per_destination=0))
    if module.check_mode:
        result["marks"] = before
        return finish(module, result, before)
    by = "%s@%s" % (getpass.getuser(), socket.gethostname())
    marks = dict(before)
    for name in remark:  # a host already marked keeps its mark (and its since), unless the reason changed
        with LibvirtConnection(uris[name], **options) as conn:
            with conn.operation("mark the hypervisor as in maintenance"):
                marks[name] = write_mark(conn.handle, reason=reason, by=by,
                                         since=before[name]["since"] if before[name] else None)
    result["marks"] = marks
    started = time.monotonic()
    drain = Drain(uris, options, move_options=params["migration"], max_parallel=params["max_parallel"],
                  max_per_source=params["max_per_source"], max_per_destination=params["max_per_destination"],
                  retry=params["retry"], elsewhere=drain_plan.elsewhere)
    reports = drain.run(moves)
    result.update(seconds=round(time.monotonic() - started, 2), peak_concurrency=drain.peak,
                  moved=[report for report in reports if report["moved"]],
                  failures=[report for report in reports if not report["moved"]])
    return finish(module, result, before)


def finish(module, result, before):
    if module._diff:
        result["diff"] = dict(before=dict(maintenance=before), after=dict(maintenance=result["marks"]))
    left = ["%s: %s" % (item["guest"], item["reason"]) for item in result["stayed"]] + \
           ["%s: %s" % (item["guest"], item["error"]) for item in result["failures"]]
    if left and not module.params["allow_partial"] and not module.check_mode:
        module.fail_json(msg="the hypervisors stay in maintenance, but %d guest(s) could not leave: %s"
                         % (len(left), "; ".join(left)), **result)
    return result


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, with_uri=False, supports_check_mode=True)
    uris, reserve = checked_options(module)
    options = connection_options(module.params)
    try:
        if module.params["state"] == "exit":
            result = exit_maintenance(module, uris, options)
        else:
            result = enter_maintenance(module, uris, reserve, options)
    except LibvirtOperationError as error:
        module.fail_json(msg=str(error), uri=error.uri, operation=error.operation, libvirt_error=error.detail)
    except PlanError as error:
        module.fail_json(msg="cannot plan the drain: %s" % error)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
