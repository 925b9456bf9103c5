#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: rebalance_plan
short_description: Plan which guests to move where to relieve hot spots, balance, consolidate or drain hypervisors
version_added: 0.1.0
description:
  - Computes a plan of live migrations for a fleet of hypervisors and changes nothing. The
    role P(kvmops.virt.rebalance#role) carries a plan out with P(kvmops.virt.migrate#module).
  - The fleet comes either from the hypervisors themselves (O(hypervisors); CPU use is
    sampled over O(sample_seconds)) or from a ready O(snapshot), for planning offline or
    from monitoring data.
  - "Policies: V(hotspot) brings every host above O(cpu_high) or O(memory_high) below it
    with the fewest and cheapest migrations (cost: the guest's memory, slowed by its dirty
    rate when known); V(balance) narrows the spread of host CPU loads, one move at a time,
    each closing the gap between its two hosts by at least O(min_improvement) points;
    V(consolidate) relieves hot spots, then empties hosts below O(cpu_low) onto hosts that
    run guests, never above O(cpu_target), and lists the hosts that can be powered off;
    V(evacuate) drains the hosts in O(drain)."
  - "Rules every move obeys: a destination stays at or below O(cpu_target) (CPU),
    O(memory_high) (memory) and O(cpu_overcommit) (vCPUs per core); hosts in maintenance,
    draining, excluded or unreachable receive nothing; a guest tagged C(migratable=false)
    never moves; guests of one C(affinity_group) on a host move together to one host; two
    guests of one C(anti_affinity_group) never meet on a host; a guest migrated less than
    O(cooldown) ago stays (except when draining); a plan has at most O(max_migrations)
    migrations."
  - The plan is in waves that run one after the other; within a wave no destination is
    ever over its limits while its guests arrive (moves that make room come in earlier
    waves), and no more than O(max_parallel) migrations run, O(max_per_source) from one
    host and O(max_per_destination) to one host.
  - When a problem cannot be fixed, RV(unresolved) says per host and per guest which rule
    stopped each move.
  - "Where the plan leaves a host hot, guests there that allow it (tag O(grow_tag) true) and
    use at least O(grow_threshold) percent of their vCPUs or memory are listed in
    RV(growth): they may grow in place by O(grow_step) percent, never past their live
    maxima (vCPU hot-plug limit, balloon maximum) nor past the host's O(cpu_overcommit) and
    O(memory_high). Memory use comes from the guest's balloon driver. The role
    P(kvmops.virt.rebalance#role) applies them with P(kvmops.virt.guest#module); this module
    changes nothing."
  - The same input always gives the same plan.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection.CREDENTIALS
options:
  hypervisors:
    description:
      - The hypervisors to gather the fleet from, each with a C(name) and a libvirt C(uri)
        (the same form as the inventory plugin's O(kvmops.virt.libvirt#inventory:hypervisors)).
      - Running and paused guests count; a hypervisor that does not answer is left out
        (neither source nor destination) and listed in C(summary.unreachable).
      - Exactly one of O(hypervisors) and O(snapshot) is required.
    type: list
    elements: dict
  sample_seconds:
    description: Seconds over which the guests' CPU use is measured when gathering from O(hypervisors).
    type: float
    default: 5
  snapshot:
    description:
      - A ready fleet snapshot instead of O(hypervisors).
      - "C(hosts): list of C(name), C(cpus) (cores), C(memory_mb), and optionally
        C(maintenance) (bool), C(reachable) (bool), C(cpu_overcommit) and
        C(memory_overcommit) (override the options for this host), C(max_incoming) and
        C(max_outgoing) (concurrent migrations to and from this host)."
      - "C(guests): list of C(name), C(host) (null for a guest to place), C(memory_mb), and
        optionally C(vcpus) (1), C(cpu_cores) (current demand in cores, for example 1.5),
        C(cpu_history) (recent demand in cores, oldest first), C(tags) (a dict, as
        P(kvmops.virt.guest#module) stores them: C(migratable), C(affinity_group),
        C(anti_affinity_group), O(grow_tag)), C(last_migrated) (epoch seconds), C(dirty_rate_mb) (MB/s),
        and for growing in place C(max_vcpus), C(max_memory_mb) (the live maxima) and
        C(memory_used_mb) (memory the guest uses, as its balloon reports it)."
      - A host's CPU load in percent is the sum of its guests' C(cpu_cores) over its
        C(cpus) times 100; its memory load the sum of its guests' C(memory_mb) over
        C(memory_mb) times O(memory_overcommit).
      - A guest with a C(cpu_history) is planned at the O(history_percentile) of it when that
        is above C(cpu_cores).
    type: dict
  policy:
    description: What the plan is for.
    type: str
    choices: [hotspot, balance, consolidate, evacuate]
    default: hotspot
  cpu_high:
    description: CPU load in percent above which a host is hot.
    type: float
    default: 80
  cpu_target:
    description: CPU load in percent no destination may pass; defaults to O(cpu_high).
    type: float
  cpu_low:
    description: CPU load in percent below which V(consolidate) tries to empty a host.
    type: float
    default: 25
  memory_high:
    description: Memory load in percent above which a host is hot, and that no destination may pass.
    type: float
    default: 90
  cpu_overcommit:
    description: vCPUs a host may carry per core.
    type: float
    default: 4.0
  memory_overcommit:
    description: Memory a host may give its guests per MiB it has (V(1.0) never over-commits).
    type: float
    default: 1.0
  max_migrations:
    description: Most migrations in one plan; V(0) for no limit.
    type: int
    default: 20
  cooldown:
    description: Seconds after a guest's last migration during which it is not moved again.
    type: float
    default: 3600
  min_improvement:
    description: Percentage points by which a V(balance) move must close the gap between its two hosts.
    type: float
    default: 5.0
  drain:
    description: Hosts to empty (V(evacuate)); they receive nothing under any policy.
    type: list
    elements: str
    default: []
  exclude:
    description: Hosts left out of the plan entirely (nothing leaves, nothing arrives).
    type: list
    elements: str
    default: []
  placement:
    description:
      - Where a guest goes among the hosts that may take it. V(spread) picks the host left least
        loaded (the larger of its CPU and memory shares); V(pack) the host left most loaded on
        CPU among those running guests, an empty host only when none fits.
      - Defaults to V(pack) for V(consolidate), V(spread) otherwise.
    type: str
    choices: [spread, pack]
  history_percentile:
    description: Percentile of a guest's C(cpu_history) the plan sizes it for.
    type: float
    default: 90
  max_parallel:
    description: Most migrations in one wave.
    type: int
    default: 4
  max_per_source:
    description: Most migrations in one wave from one host (a host's C(max_outgoing) overrides it).
    type: int
    default: 2
  max_per_destination:
    description: Most migrations in one wave to one host (a host's C(max_incoming) overrides it).
    type: int
    default: 1
  migration_bandwidth:
    description: MB/s one migration copies memory at, for the estimated durations.
    type: float
    default: 1250
  grow_tag:
    description: The tag (true) by which a guest allows growing in place (see RV(growth)).
    type: str
    default: autogrow
  grow_threshold:
    description: Percent of its vCPUs (CPU demand) or of its memory (balloon) a guest must use to grow.
    type: float
    default: 90
  grow_step:
    description: Percent by which a guest grows in one plan, at least one vCPU.
    type: float
    default: 50
  report:
    description:
      - Also write the plan as a self-contained HTML page (hosts' loads before and as planned,
        the moves and their reasons, what blocked the rest, timings) to this path, on the host
        that runs the module. Not in check mode.
      - The same page as the filter P(kvmops.virt.rebalance_report#filter) renders.
    type: path
  now:
    description: The time (epoch seconds) cooldowns are counted from; defaults to now. For replaying an old snapshot.
    type: float
attributes:
  check_mode:
    support: full
    description: The module changes nothing on the hypervisors and plans the same in check mode; it writes no O(report) then.
  diff_mode:
    support: N/A
    description: Nothing changes, so there is no difference to show.
  idempotent:
    support: full
    description: Always C(changed=false).
seealso:
  - module: kvmops.virt.migrate
  - module: kvmops.virt.hypervisor_maintenance
notes:
  - Run it once per play (C(run_once), C(delegate_to=localhost)).
  - The planner is pure Python (no libvirt) and plans 1,000 hosts with 20,000 guests in
    under a second; libvirt is only used to gather the fleet.
"""

EXAMPLES = r"""
- name: Which guests would relieve the hot hypervisors?
  kvmops.virt.rebalance_plan:
    hypervisors:
      - {name: kvm1, uri: "qemu+ssh://root@kvm1/system"}
      - {name: kvm2, uri: "qemu+ssh://root@kvm2/system"}
      - {name: kvm3, uri: "qemu+ssh://root@kvm3/system"}
    cpu_high: 75
    sample_seconds: 10
  run_once: true
  delegate_to: localhost
  register: rebalance

- name: Say what it would do
  ansible.builtin.debug:
    msg: "{{ rebalance.summary.message }}: {{ rebalance.plan | map(attribute='guest') | join(', ') }}"

- name: Plan offline from monitoring data
  kvmops.virt.rebalance_plan:
    snapshot:
      hosts:
        - {name: kvm1, cpus: 32, memory_mb: 262144}
        - {name: kvm2, cpus: 32, memory_mb: 262144, maintenance: true}
        - {name: kvm3, cpus: 16, memory_mb: 131072}
      guests:
        - {name: db1, host: kvm1, vcpus: 8, memory_mb: 32768, cpu_cores: 7.5, tags: {migratable: false}}
        - {name: web1, host: kvm1, vcpus: 4, memory_mb: 8192, cpu_cores: 3.8, tags: {anti_affinity_group: web}}
        - {name: web2, host: kvm3, vcpus: 4, memory_mb: 8192, cpu_cores: 3.1, tags: {anti_affinity_group: web}}
    policy: balance
  register: offline

- name: Which hosts could be powered off tonight?
  kvmops.virt.rebalance_plan:
    hypervisors: "{{ fleet }}"
    policy: consolidate
    cpu_low: 30
    cpu_target: 70
    max_migrations: 0
  register: night

- name: Where would kvm2's guests go?
  kvmops.virt.rebalance_plan:
    hypervisors: "{{ fleet }}"
    policy: evacuate
    drain: [kvm2]
    max_migrations: 0
"""

RETURN = r"""
plan:
  description: The moves in the order to run them, wave by wave (placements of new guests are wave 0).
  returned: always
  type: list
  elements: dict
  contains:
    guest: {description: The guest's name., type: str, returned: always}
    source: {description: The host it leaves (null for a guest placed for the first time)., type: str, returned: always}
    destination: {description: The host it goes to., type: str, returned: always}
    wave: {description: The wave it belongs to (1 is the first to run)., type: int, returned: always}
    reason: {description: Why it moves., type: str, returned: always}
    memory_mb: {description: The guest's memory., type: float, returned: always}
    cpu_cores: {description: The guest's current CPU demand., type: float, returned: always}
    estimated_seconds: {description: Time to copy its memory at O(migration_bandwidth)., type: float, returned: always}
  sample:
    - {guest: web1, source: kvm1, destination: kvm3, wave: 1, reason: "relieve kvm1: CPU 93% above cpu_high 80%",
       memory_mb: 8192.0, cpu_cores: 3.8, estimated_seconds: 6.6}
hosts_before:
  description: Each host as the planner found it.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: The host., type: str, returned: always}
    status: {description: "V(hot), V(ok), V(empty), V(maintenance), V(draining), V(excluded) or V(unreachable).", type: str, returned: always}
    guests: {description: Running guests., type: int, returned: always}
    cpus: {description: Cores., type: float, returned: always}
    memory_mb: {description: Memory., type: float, returned: always}
    vcpus: {description: vCPUs of its guests., type: int, returned: always}
    cpu_percent: {description: Current CPU load., type: float, returned: always}
    cpu_planned_percent: {description: CPU load the planner used (with the guests' history)., type: float, returned: always}
    memory_percent: {description: Memory load., type: float, returned: always}
  sample:
    - {name: kvm1, status: hot, guests: 12, cpus: 32.0, memory_mb: 262144.0, vcpus: 48,
       cpu_percent: 93.1, cpu_planned_percent: 93.1, memory_percent: 61.0}
hosts_after:
  description: Each host as the plan leaves it (same fields as RV(hosts_before)).
  returned: always
  type: list
  elements: dict
unresolved:
  description: What the plan could not fix, and why, guest by guest.
  returned: always
  type: list
  elements: dict
  contains:
    host: {description: The host (null when a new guest cannot be placed)., type: str, returned: always}
    problem: {description: "What is wrong, for example V(CPU 95% above cpu_high 80%).", type: str, returned: always}
    guests: {description: "Per guest C(guest) and C(reason): the rule that kept it, or per constraint how many hosts refused it.", type: list, returned: always}
    reason: {description: A count of the reasons., type: str, returned: always}
  sample:
    - host: kvm1
      problem: CPU 95% above cpu_high 80%
      guests:
        - {guest: db1, reason: tagged migratable=false}
        - {guest: web1, reason: "no host can take it (3.80 cores, 8192 MiB, 4 vCPUs): CPU would pass cpu_target on 2 hosts;
                                 runs a guest of its anti-affinity group on 1 host"}
      reason: 1 pinned; 1 without a destination
growth:
  description:
    - Guests on hosts the plan leaves hot that may grow in place instead (see O(grow_tag)).
      Growing takes room on the host, so later guests of the list see less.
  returned: always
  type: list
  elements: dict
  contains:
    guest: {description: The guest., type: str, returned: always}
    host: {description: Its host., type: str, returned: always}
    vcpus: {description: "vCPUs to give it (the same as RV(growth[].vcpus_from) when only memory grows).", type: int, returned: always}
    vcpus_from: {description: vCPUs it has., type: int, returned: always}
    memory_mb: {description: "Memory to give it, in whole MiB.", type: float, returned: always}
    memory_mb_from: {description: Memory it has., type: float, returned: always}
    reason: {description: Why it grows., type: str, returned: always}
  sample:
    - {guest: db1, host: kvm1, vcpus: 6, vcpus_from: 4, memory_mb: 8192.0, memory_mb_from: 8192.0,
       reason: "no move relieves kvm1; CPU 98% of 4 vCPUs (at least 90%)"}
growth_refused:
  description: Guests tagged O(grow_tag) on hosts the plan leaves hot that cannot grow, and why.
  returned: always
  type: list
  elements: dict
  contains:
    guest: {description: The guest., type: str, returned: always}
    host: {description: Its host., type: str, returned: always}
    reason: {description: "Why not, each rule that stopped it; for example: uses 35% of its 2 vCPUs.", type: str, returned: always}
power_off:
  description: Hosts that may receive guests and run none after the plan (V(consolidate) makes more of them).
  returned: always
  type: list
  elements: str
not_emptied:
  description: Hosts below O(cpu_low) that V(consolidate) could not empty, and why.
  returned: when O(policy=consolidate)
  type: list
  elements: dict
summary:
  description: The plan in figures, and C(message), one line for people.
  returned: always
  type: dict
  sample:
    policy: hotspot
    migrations: 3
    placements: 0
    waves: 2
    hot_hosts_before: 1
    hot_hosts_after: 0
    unresolved: 0
    cpu_spread_before: 31.4
    cpu_spread_after: 12.2
    memory_moved_mb: 20480.0
    estimated_seconds: 13.1
    power_off: 0
    growth: 0
    unreachable: []
    planning_ms: 2.1
    message: "3 migrations in 2 waves; hot hosts 1 -> 0"
report:
  description: The path the HTML report was written to.
  returned: when O(report) is given and not in check mode
  type: str
snapshot:
  description: The snapshot gathered from O(hypervisors) (the form O(snapshot) takes), to replay the plan offline.
  returned: when O(hypervisors) is given
  type: dict
"""

import time

from ansible_collections.kvmops.virt.plugins.module_utils.fleet import gather_fleet, hypervisor_uris
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import PlanError, from_fleet
from ansible_collections.kvmops.virt.plugins.module_utils.rebalance_report import render

SETTINGS = ("cpu_high", "cpu_target", "cpu_low", "memory_high", "cpu_overcommit", "memory_overcommit",
            "max_migrations", "cooldown", "min_improvement", "drain", "exclude", "placement",
            "history_percentile", "max_parallel", "max_per_source", "max_per_destination", "now", "grow_tag",
            "grow_threshold", "grow_step")

ARGUMENT_SPEC = dict(
    hypervisors=dict(type="list", elements="dict"),
    sample_seconds=dict(type="float", default=5.0),
    snapshot=dict(type="dict"),
    policy=dict(type="str", choices=["hotspot", "balance", "consolidate", "evacuate"], default="hotspot"),
    cpu_high=dict(type="float", default=80.0),
    cpu_target=dict(type="float"),
    cpu_low=dict(type="float", default=25.0),
    memory_high=dict(type="float", default=90.0),
    cpu_overcommit=dict(type="float", default=4.0),
    memory_overcommit=dict(type="float", default=1.0),
    max_migrations=dict(type="int", default=20),
    cooldown=dict(type="float", default=3600.0),
    min_improvement=dict(type="float", default=5.0),
    drain=dict(type="list", elements="str", default=[]),
    exclude=dict(type="list", elements="str", default=[]),
    placement=dict(type="str", choices=["spread", "pack"]),
    history_percentile=dict(type="float", default=90.0),
    max_parallel=dict(type="int", default=4),
    max_per_source=dict(type="int", default=2),
    max_per_destination=dict(type="int", default=1),
    migration_bandwidth=dict(type="float", default=1250.0),
    grow_tag=dict(type="str", default="autogrow"),
    grow_threshold=dict(type="float", default=90.0),
    grow_step=dict(type="float", default=50.0),
    report=dict(type="path"),
    now=dict(type="float"),
)


def gathered_snapshot(module):
    params = module.params
    uris, problems = hypervisor_uris(params["hypervisors"])
    if params["sample_seconds"] < 0:
        problems.append("sample_seconds must not be negative, got %s" % params["sample_seconds"])
    if problems:
        module.fail_json(msg="; ".join(problems))
    options = dict(username=params["username"], password=params["password"], connect_timeout=params["connect_timeout"])
    fleet = gather_fleet([dict(name=name, uri=uri) for name, uri in uris.items()], options, want_addresses=False,
                         sample_seconds=params["sample_seconds"])
    unreachable = ["%s (%s)" % (hypervisor["name"], hypervisor["error"]) for hypervisor in fleet if not hypervisor["reachable"]]
    return from_fleet(fleet), unreachable


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, with_uri=False, supports_check_mode=True,
                           required_one_of=[("hypervisors", "snapshot")], mutually_exclusive=[("hypervisors", "snapshot")])
    params = module.params
    if params["max_migrations"] < 0:
        module.fail_json(msg="max_migrations must be 0 (no limit) or more, got %d" % params["max_migrations"])
    unreachable = []
    if params["hypervisors"] is not None:
        snapshot, unreachable = gathered_snapshot(module)
    else:
        snapshot = params["snapshot"]
    settings = {key: params[key] for key in SETTINGS}
    settings["migration_bandwidth_mb"] = params["migration_bandwidth"]
    started = time.perf_counter()
    try:
        result = plan(snapshot, params["policy"], **settings)
    except PlanError as error:
        module.fail_json(msg="cannot plan: %s" % error)
    result["summary"].update(unreachable=unreachable, planning_ms=round(1000 * (time.perf_counter() - started), 1))
    if params["report"] and not module.check_mode:
        page = render(result, cpu_high=params["cpu_high"], memory_high=params["memory_high"],
                      title="Rebalance plan (%s)" % params["policy"])
        try:
            with open(params["report"], "w", encoding="utf-8") as report:
                report.write(page)
        except OSError as error:
            module.fail_json(msg="cannot write the report to %s: %s" % (params["report"], error), **result)
        result["report"] = params["report"]
    if params["hypervisors"] is not None:
        result["snapshot"] = snapshot
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
