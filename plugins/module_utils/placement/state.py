# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet as the planner changes it: loads per host, the rules every move obeys, the moves.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Loads are kept in plain lists indexed by host (hosts sorted by name), so checking a move and
finding a destination are a few float comparisons per host: the planner stays fast at
thousands of hosts. Every move goes through ``apply`` (and back through ``revert``), which
is where the constraints live:

- a destination stays at or below ``cpu_target`` (planned CPU), ``memory_high`` (memory
  over ``memory_mb`` x ``memory_overcommit``) and ``cpu_overcommit`` (vCPUs per core);
- hosts in maintenance, being drained, excluded or unreachable receive nothing;
- a guest tagged ``migratable: false`` or migrated less than ``cooldown`` ago stays;
- guests of one ``affinity_group`` on a host move together (a unit), to one host;
- two guests of one ``anti_affinity_group`` never end up on one host;
- a guest moves at most once per plan, and a plan has at most ``max_migrations`` moves.

A guest's planned CPU is its current ``cpu_cores`` or, when it brings a ``cpu_history``,
the ``history_percentile`` of that history if higher: the planner sizes for the demand it
expects, not for the last sample.
"""

from __future__ import annotations

import math
import time

EPSILON = 1e-9

# why a host cannot take a unit, in the order the checks run; the texts are for explanations
REFUSALS = (
    ("unreachable", "unreachable"),
    ("excluded", "excluded"),
    ("maintenance", "in maintenance"),
    ("draining", "being drained"),
    ("source", "its own host"),
    ("emptied", "emptied by this plan"),
    ("empty", "empty (consolidation fills only hosts that run guests)"),
    ("cpu", "CPU would pass cpu_target"),
    ("memory", "memory would pass memory_high"),
    ("vcpus", "vCPUs would pass cpu_overcommit"),
    ("anti_affinity", "runs a guest of its anti-affinity group"),
)
REFUSAL_TEXT = dict(REFUSALS)


def percentile(values, rank):
    """The nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(rank / 100.0 * len(ordered))) - 1))]


class Unit:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """Guests that move together (one affinity group on one host, or one guest)."""

    __slots__ = ("members", "host", "label", "cpu", "memory", "vcpus", "anti", "cost", "blocked")

    def __init__(self, state, members, host):
        self.members = members
        self.host = host
        names = [state.guests[index].name for index in members]
        group = state.guests[members[0]].affinity_group
        self.label = names[0] if len(members) == 1 else "%s (affinity group %s)" % (", ".join(names), group)
        self.cpu = sum(state.guest_cpu[index] for index in members)
        self.memory = sum(state.guests[index].memory_mb for index in members)
        self.vcpus = sum(state.guests[index].vcpus for index in members)
        self.anti = sorted({state.guests[index].anti_affinity_group for index in members} - {None})
        self.cost = sum(state.guest_cost[index] for index in members)
        self.blocked = None
        for index in members:
            reason = state.guest_blocked[index]
            if reason:
                self.blocked = reason if len(members) == 1 else "%s: %s" % (state.guests[index].name, reason)
                break


class Move:  # pylint: disable=too-few-public-methods
    """One unit's move, as planned (sequence order is the order of ``FleetState.moves``)."""

    __slots__ = ("unit", "source", "destination", "reason", "received_before")

    def __init__(self, unit, source, destination, reason, received_before):
        self.unit = unit
        self.source = source
        self.destination = destination
        self.reason = reason
        self.received_before = received_before


class FleetState:  # pylint: disable=too-many-instance-attributes
    """Hosts' loads and guests' places while a plan is built."""

    def __init__(self, hosts, guests, settings, honour_cooldown=True):
        self.hosts = hosts
        self.guests = guests
        self.settings = settings
        self.index = {host.name: number for number, host in enumerate(hosts)}
        self.cpus = [host.cpus for host in hosts]
        self.cpu_hot = [host.cpus * settings.cpu_high / 100.0 for host in hosts]
        self.cpu_dest = [host.cpus * settings.cpu_target / 100.0 for host in hosts]
        self.cpu_low = [host.cpus * settings.cpu_low / 100.0 for host in hosts]
        self.memory_total = [host.memory_mb * (host.memory_overcommit or settings.memory_overcommit) for host in hosts]
        self.memory_cap = [total * settings.memory_high / 100.0 for total in self.memory_total]
        self.vcpu_cap = [host.cpus * (host.cpu_overcommit or settings.cpu_overcommit) for host in hosts]
        self.role = [self._role(host) for host in hosts]
        self.pool = [number for number, role in enumerate(self.role) if role is None]
        count = len(hosts)
        self.cpu = [0.0] * count
        self.cpu_now = [0.0] * count
        self.memory = [0.0] * count
        self.vcpus = [0] * count
        self.members = [[] for _host in range(count)]
        self.anti = [{} for _host in range(count)]
        self.received = [False] * count
        self.emptied = set()
        now = time.time() if settings.now is None else settings.now
        self.guest_host = [None if guest.host is None else self.index[guest.host] for guest in guests]
        self.guest_cpu = [self._planned_cpu(guest) for guest in guests]
        self.guest_cost = [self._cost(guest) for guest in guests]
        self.guest_blocked = [self._blocked(guest, now, honour_cooldown) for guest in guests]
        self.moved = [False] * len(guests)
        for number, host in enumerate(self.guest_host):
            if host is not None:
                self._add(number, host)
        self.moves = []
        self.migrations = 0  # guests moved from a host (placing a new guest is not a migration)
        self.initial = (list(self.cpu), list(self.memory), list(self.vcpus))

    def _role(self, host):
        if not host.reachable:
            return "unreachable"
        if host.name in self.settings.exclude:
            return "excluded"
        if host.maintenance:
            return "maintenance"
        if host.name in self.settings.drain:
            return "draining"
        return None

    def _planned_cpu(self, guest):
        if guest.cpu_history:
            return max(guest.cpu_cores, percentile(guest.cpu_history, self.settings.history_percentile))
        return guest.cpu_cores

    def _cost(self, guest):
        """Seconds to copy the guest's memory over the migration link, slowed by its dirty rate."""
        bandwidth = self.settings.migration_bandwidth_mb
        return guest.memory_mb / max(bandwidth - guest.dirty_rate_mb, bandwidth * 0.1)

    def _blocked(self, guest, now, honour_cooldown):
        if not guest.migratable:
            return "tagged migratable=false"
        if honour_cooldown and guest.last_migrated is not None and now - guest.last_migrated < self.settings.cooldown:
            return "migrated %d s ago; cooldown is %d s" % (max(0, now - guest.last_migrated), self.settings.cooldown)
        return None

    def _add(self, guest, host):
        record = self.guests[guest]
        self.cpu[host] += self.guest_cpu[guest]
        self.cpu_now[host] += record.cpu_cores
        self.memory[host] += record.memory_mb
        self.vcpus[host] += record.vcpus
        self.members[host].append(guest)
        if record.anti_affinity_group is not None:
            groups = self.anti[host]
            groups[record.anti_affinity_group] = groups.get(record.anti_affinity_group, 0) + 1
        self.guest_host[guest] = host

    def _remove(self, guest, host):
        record = self.guests[guest]
        self.cpu[host] -= self.guest_cpu[guest]
        self.cpu_now[host] -= record.cpu_cores
        self.memory[host] -= record.memory_mb
        self.vcpus[host] -= record.vcpus
        self.members[host].remove(guest)
        if record.anti_affinity_group is not None:
            self.anti[host][record.anti_affinity_group] -= 1
        self.guest_host[guest] = None

    # --- what is where ---------------------------------------------------------------------
    def is_hot(self, host):
        return self.cpu[host] > self.cpu_hot[host] + EPSILON or self.memory[host] > self.memory_cap[host] + EPSILON

    def units_on(self, host):
        """The units of a host's guests not moved yet, by label."""
        groups, units = {}, []
        for guest in sorted(self.members[host]):
            if self.moved[guest]:
                continue
            group = self.guests[guest].affinity_group
            if group is None:
                units.append(Unit(self, (guest,), host))
            else:
                groups.setdefault(group, []).append(guest)
        units.extend(Unit(self, tuple(members), host) for members in groups.values())
        return sorted(units, key=lambda unit: unit.label)

    def unplaced_units(self):
        groups, units = {}, []
        for guest, host in enumerate(self.guest_host):
            if host is None and not self.moved[guest]:
                group = self.guests[guest].affinity_group
                if group is None:
                    units.append(Unit(self, (guest,), None))
                else:
                    groups.setdefault(group, []).append(guest)
        units.extend(Unit(self, tuple(members), None) for members in groups.values())
        return units

    # --- the rules ---------------------------------------------------------------------------
    def refusal(self, unit, host, allow_empty=True):
        """Why ``host`` cannot take ``unit`` now (a REFUSALS key), or None when it can."""
        if self.role[host] is not None:
            return self.role[host]
        if host == unit.host:
            return "source"
        if host in self.emptied:
            return "emptied"
        if not allow_empty and not self.members[host]:
            return "empty"
        if self.cpu[host] + unit.cpu > self.cpu_dest[host] + EPSILON:
            return "cpu"
        if self.memory[host] + unit.memory > self.memory_cap[host] + EPSILON:
            return "memory"
        if self.vcpus[host] + unit.vcpus > self.vcpu_cap[host] + EPSILON:
            return "vcpus"
        if any(self.anti[host].get(group) for group in unit.anti):
            return "anti_affinity"
        return None

    def destination(self, unit, placement, allow_empty=True):
        """The best host for ``unit`` under the rules, or None.

        ``spread`` takes the host left least loaded (the larger of its CPU and memory shares);
        ``pack`` the host left most loaded on CPU among those running guests, and only when
        none fits (and ``allow_empty``) the biggest empty host, so packing powers on as few
        hosts as it can. Ties go to the first host by name.
        """
        cpu, cpu_dest, memory, memory_cap = self.cpu, self.cpu_dest, self.memory, self.memory_cap
        vcpus, vcpu_cap, cpus, members, anti = self.vcpus, self.vcpu_cap, self.cpus, self.members, self.anti
        need_cpu, need_memory, need_vcpus, groups = unit.cpu, unit.memory, unit.vcpus, unit.anti
        pack = placement == "pack"
        best, best_score, best_empty, best_empty_size = None, None, None, None
        for host in self.pool:
            if host == unit.host or host in self.emptied:
                continue
            load = cpu[host] + need_cpu
            if load > cpu_dest[host] + EPSILON:
                continue
            used = memory[host] + need_memory
            if used > memory_cap[host] + EPSILON or vcpus[host] + need_vcpus > vcpu_cap[host] + EPSILON:
                continue
            if groups and any(anti[host].get(group) for group in groups):
                continue
            if pack:
                if not members[host]:
                    if allow_empty and (best_empty is None or cpus[host] > best_empty_size):
                        best_empty, best_empty_size = host, cpus[host]
                    continue
                score = -load / cpus[host]
            else:
                score = max(load / cpus[host], used / self.memory_total[host])
            if best is None or score < best_score - EPSILON:
                best, best_score = host, score
        return best if best is not None else best_empty

    def no_destination(self, unit, allow_empty=True):
        """Why no host takes ``unit``: 'no host can take it: CPU would pass cpu_target on 3 hosts, ...'."""
        counts = {}
        for host in range(len(self.hosts)):
            if host == unit.host:
                continue
            reason = self.refusal(unit, host, allow_empty)
            if reason:
                counts[reason] = counts.get(reason, 0) + 1
        parts = ["%s on %d host%s" % (REFUSAL_TEXT[key], counts[key], "" if counts[key] == 1 else "s")
                 for key, _text in REFUSALS if key in counts]
        return "no host can take it (%.2f cores, %d MiB, %d vCPUs): %s" % (
            unit.cpu, unit.memory, unit.vcpus, "; ".join(parts) or "there is no other host")

    # --- moves ---------------------------------------------------------------------------------
    def apply(self, unit, destination, reason):
        move = Move(unit, unit.host, destination, reason, self.received[destination])
        for guest in unit.members:
            if unit.host is not None:
                self._remove(guest, unit.host)
            self._add(guest, destination)
            self.moved[guest] = True
        self.received[destination] = True
        self.moves.append(move)
        if unit.host is not None:
            self.migrations += len(unit.members)
        return move

    def revert(self, move):
        """Undo the last applied move (moves are undone newest first)."""
        if self.moves[-1] is not move:
            raise AssertionError("moves are undone newest first")
        self.moves.pop()
        for guest in move.unit.members:
            self._remove(guest, move.destination)
            if move.source is not None:
                self._add(guest, move.source)
            self.moved[guest] = False
        self.received[move.destination] = move.received_before
        if move.source is not None:
            self.migrations -= len(move.unit.members)

    def budget_allows(self, guests):
        """Whether ``guests`` more migrations stay within max_migrations."""
        limit = self.settings.max_migrations
        return limit is None or self.migrations + guests <= limit
