# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``plan(snapshot, policy, **settings)``: the one entry to the planner.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The result is plain data, the same for the same input (hosts and guests are taken in name
order, every tie is broken by name):

- ``plan``: moves ``{guest, source, destination, wave, reason, memory_mb, cpu_cores,
  estimated_seconds}`` in the order to run them (wave by wave);
- ``hosts_before`` / ``hosts_after``: per host its load as the planner sees it;
- ``unresolved``: per problem left (a hot host, a host that cannot be drained, a guest
  that cannot be placed) why, guest by guest;
- ``growth``: guests on hosts the plan leaves hot that may grow in place instead (tagged
  ``grow_tag``, using nearly all they have), and ``growth_refused``: tagged guests there
  that cannot, and why (see ``growth``);
- ``power_off`` (hosts left without guests), ``not_emptied`` (consolidate: low hosts kept,
  and why) and ``summary``.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils.placement.growth import plan_growth
from ansible_collections.kvmops.virt.plugins.module_utils.placement.policies import (
    POLICIES, cpu_shares, place_unplaced, spread)
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import (
    Settings, check_hosts_known, parse_snapshot)
from ansible_collections.kvmops.virt.plugins.module_utils.placement.state import FleetState
from ansible_collections.kvmops.virt.plugins.module_utils.placement.waves import assign_waves


def plan(snapshot, policy, **settings):
    """The plan for ``snapshot`` under ``policy``; raises PlanError on bad input."""
    settings = Settings(policy, **settings)
    hosts, guests = parse_snapshot(snapshot)
    check_hosts_known(settings, hosts)
    # a drain is an operator's order: a guest that moved recently leaves the host all the same
    state = FleetState(hosts, guests, settings, honour_cooldown=policy != "evacuate")
    before = host_views(state)
    spread_before = spread(cpu_shares(state, state.pool))
    hot_before = sum(1 for host in state.pool if state.is_hot(host))
    unresolved, extra = [], {}
    place_unplaced(state, unresolved)
    POLICIES[policy](state, unresolved, extra)
    moves = []
    seconds_per_wave = {}
    for move, wave in assign_waves(state):
        for guest in move.unit.members:
            record = state.guests[guest]
            seconds = state.guest_cost[guest]
            moves.append(dict(guest=record.name, source=None if move.source is None else hosts[move.source].name,
                              destination=hosts[move.destination].name, wave=wave, reason=move.reason,
                              memory_mb=round(record.memory_mb, 1), cpu_cores=round(record.cpu_cores, 3),
                              estimated_seconds=round(seconds, 1)))
            if move.source is not None:
                seconds_per_wave[wave] = max(seconds_per_wave.get(wave, 0.0), seconds)
    after = host_views(state)
    growth, growth_refused = plan_growth(state)
    power_off = [hosts[host].name for host in state.pool if not state.members[host]]
    hot_after = sum(1 for host in state.pool if state.is_hot(host))
    summary = dict(
        policy=policy, migrations=state.migrations, placements=sum(1 for move in moves if move["source"] is None),
        waves=max([move["wave"] for move in moves] or [0]), hot_hosts_before=hot_before, hot_hosts_after=hot_after,
        unresolved=len(unresolved), cpu_spread_before=round(spread_before * 100, 2),
        cpu_spread_after=round(spread(cpu_shares(state, state.pool)) * 100, 2),
        memory_moved_mb=round(sum(move["memory_mb"] for move in moves if move["source"] is not None), 1),
        estimated_seconds=round(sum(seconds_per_wave.values()), 1), power_off=len(power_off), growth=len(growth))
    summary["message"] = _message(summary, unresolved)
    result = dict(policy=policy, plan=moves, hosts_before=before, hosts_after=after, unresolved=unresolved,
                  growth=growth, growth_refused=growth_refused, power_off=power_off, summary=summary)
    if "not_emptied" in extra:
        result["not_emptied"] = extra["not_emptied"]
    return result


def host_views(state):
    views = []
    for host, record in enumerate(state.hosts):
        cpus = state.cpus[host]
        status = state.role[host] or ("hot" if state.is_hot(host) else "ok" if state.members[host] else "empty")
        views.append(dict(name=record.name, status=status, guests=len(state.members[host]), cpus=cpus,
                          memory_mb=round(record.memory_mb, 1), vcpus=state.vcpus[host],
                          cpu_percent=round(100.0 * state.cpu_now[host] / cpus, 1),
                          cpu_planned_percent=round(100.0 * state.cpu[host] / cpus, 1),
                          memory_percent=round(100.0 * state.memory[host] / state.memory_total[host], 1)))
    return views


def _message(summary, unresolved):
    text = "%d migration%s in %d wave%s" % (summary["migrations"], "" if summary["migrations"] == 1 else "s",
                                            summary["waves"], "" if summary["waves"] == 1 else "s")
    if summary["hot_hosts_before"]:
        text += "; hot hosts %d -> %d" % (summary["hot_hosts_before"], summary["hot_hosts_after"])
    if summary["policy"] in ("balance", "consolidate"):
        text += "; CPU spread %.1f -> %.1f points" % (summary["cpu_spread_before"], summary["cpu_spread_after"])
    if summary["policy"] == "consolidate":
        text += "; %d host%s can be powered off" % (summary["power_off"], "" if summary["power_off"] == 1 else "s")
    if summary["growth"]:
        text += "; %d guest%s can grow in place" % (summary["growth"], "" if summary["growth"] == 1 else "s")
    if unresolved:
        text += "; %d problem%s left (see unresolved)" % (len(unresolved), "" if len(unresolved) == 1 else "s")
    return text
