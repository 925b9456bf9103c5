# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The four policies: relieve hot spots, balance, consolidate, evacuate (and placing new guests).

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Each policy changes a ``FleetState`` through ``apply`` only, so the rules in ``state`` hold
for every move whatever the policy, and appends to ``unresolved`` one explanation per
problem it could not fix: the host, the problem, and per guest why it did not move.
"""

from __future__ import annotations

import math

from ansible_collections.kvmops.virt.plugins.module_utils.placement.search import shortest_clearing
from ansible_collections.kvmops.virt.plugins.module_utils.placement.state import EPSILON

BALANCE_CANDIDATES = 8  # most and least loaded hosts a balancing step looks at


def _percent(value, capacity):
    return 100.0 * value / capacity if capacity else 0.0


def hot_problem(state, host):
    """'CPU 95% above cpu_high 80%' (and/or memory) for a hot host."""
    settings, parts = state.settings, []
    if state.cpu[host] > state.cpu_hot[host] + EPSILON:
        parts.append("CPU %.0f%% above cpu_high %g%%" % (_percent(state.cpu[host], state.cpus[host]), settings.cpu_high))
    if state.memory[host] > state.memory_cap[host] + EPSILON:
        parts.append("memory %.0f%% above memory_high %g%%"
                     % (_percent(state.memory[host], state.memory_total[host]), settings.memory_high))
    return " and ".join(parts)


def _explanation(state, host, problem, blocked):
    reasons = [dict(guest=label, reason=blocked[label]) for label in sorted(blocked)]
    if not reasons:
        summary = "no guest on it can move"
    else:
        kinds = {}
        for item in reasons:
            kind = _kind(item["reason"])
            kinds[kind] = kinds.get(kind, 0) + 1
        summary = "; ".join("%d %s" % (count, kind) for kind, count in sorted(kinds.items()))
    return dict(host=None if host is None else state.hosts[host].name, problem=problem, guests=reasons,
                reason=summary)


def _kind(reason):
    for prefix, kind in (("no host can take", "without a destination"), ("tagged migratable", "pinned"),
                         ("migrated ", "in cooldown"), ("max_migrations", "over max_migrations"),
                         ("moving it would not help", "too small to help")):
        if reason.startswith(prefix) or (": " in reason and reason.split(": ", 1)[1].startswith(prefix)):
            return kind
    return "other"


def place_unplaced(state, unresolved):
    """Put guests that have no host yet (new guests) where the policy's placement says."""
    units = sorted(state.unplaced_units(), key=lambda unit: (-unit.cpu, -unit.memory, unit.label))
    for unit in units:
        destination = state.destination(unit, state.settings.placement)
        if destination is None:
            unresolved.append(_explanation(state, None, "cannot place %s" % unit.label,
                                           {unit.label: state.no_destination(unit)}))
        else:
            state.apply(unit, destination, "place: it has no host yet")


def _coverage(unit, excess_cpu, excess_memory):
    cover = 0.0
    if excess_cpu > EPSILON:
        cover += min(unit.cpu / excess_cpu, 1.0)
    if excess_memory > EPSILON:
        cover += min(unit.memory / excess_memory, 1.0)
    return cover


def relieve(state, host, placement, unresolved, allow_empty=True):
    """Move units off one hot host until it is not hot: one unit that clears the excess alone
    if any (the cheapest), else the one that removes most of it, each to the best host."""
    blocked, name = {}, state.hosts[host].name
    problem = hot_problem(state, host)
    while state.is_hot(host):
        excess_cpu = state.cpu[host] - state.cpu_hot[host]
        excess_memory = state.memory[host] - state.memory_cap[host]
        candidates = []
        for unit in state.units_on(host):
            if unit.label in blocked:
                continue
            if unit.blocked:
                blocked[unit.label] = unit.blocked
            elif _coverage(unit, excess_cpu, excess_memory) <= EPSILON:
                blocked[unit.label] = "moving it would not help: it uses %.2f cores and %d MiB" % (unit.cpu, unit.memory)
            elif not state.budget_allows(len(unit.members)):
                blocked[unit.label] = "max_migrations (%d) reached" % state.settings.max_migrations
            else:
                candidates.append(unit)
        clearing = [unit for unit in candidates
                    if unit.cpu >= excess_cpu - EPSILON and unit.memory >= excess_memory - EPSILON]
        others = [unit for unit in candidates if unit not in clearing]
        ordered = (sorted(clearing, key=lambda unit: (len(unit.members), unit.cost, unit.label))
                   + sorted(others, key=lambda unit: (-_coverage(unit, excess_cpu, excess_memory), unit.cost, unit.label)))
        for unit in ordered:
            destination = state.destination(unit, placement, allow_empty)
            if destination is None:
                blocked[unit.label] = state.no_destination(unit, allow_empty)
                continue
            state.apply(unit, destination, "relieve %s: %s" % (name, problem))
            break
        else:
            if not any(_make_room(state, unit, placement, "relieve %s: %s" % (name, problem)) for unit in ordered):
                unresolved.append(_explanation(state, host, problem, blocked))
                return
            blocked = {}


ROOM_HOSTS = 16  # hosts a chain move tries to make room on
ROOM_UNITS = 8  # guests per such host it tries to move away


def _make_room(state, unit, placement, reason):
    """Move one unit off a host that lacks room only for ``unit`` (CPU, memory or vCPUs), so that
    ``unit`` fits there; True when both moves are made."""
    if not state.budget_allows(len(unit.members) + 1):
        return False
    hosts = [host for host in state.pool if state.refusal(unit, host) in ("cpu", "memory", "vcpus")]
    hosts.sort(key=lambda host: (max(state.cpu[host] / state.cpus[host], state.memory[host] / state.memory_total[host]), host))
    for host in hosts[:ROOM_HOSTS]:
        others = [other for other in state.units_on(host) if not other.blocked and state.budget_allows(len(other.members))]
        for other in sorted(others, key=lambda other: (-other.cpu, other.cost, other.label))[:ROOM_UNITS]:
            if not state.budget_allows(len(other.members) + len(unit.members)):
                continue
            target = state.destination(other, placement)
            if target is None or target == unit.host:
                continue
            freed = state.apply(other, target, "make room on %s for %s" % (state.hosts[host].name, unit.label))
            if state.refusal(unit, host) is None:
                state.apply(unit, host, reason)
                return True
            state.revert(freed)
    return False


def hot_hosts(state):
    """Hot hosts of the pool, worst first (by the larger of CPU and memory excess)."""
    def severity(host):
        return max((state.cpu[host] - state.cpu_hot[host]) / state.cpus[host],
                   (state.memory[host] - state.memory_cap[host]) / state.memory_total[host])
    return sorted((host for host in state.pool if state.is_hot(host)), key=lambda host: (-severity(host), host))


def relieve_all(state, unresolved):
    """Relieve every hot host greedily with the policy's placement; when that leaves some hot, try
    the other placement (packing leaves bigger holes than spreading, and the other way round),
    then the shortest sequence of moves that clears them all, if a search on a fleet this size
    finds one. The first that clears everything wins; else the greedy pass that left least."""
    started = len(state.moves)
    first = state.settings.placement
    attempts = []
    for placement in (first, "pack" if first == "spread" else "spread"):
        left = []
        for host in hot_hosts(state):
            relieve(state, host, placement, left)
        made = state.moves[started:]
        attempts.append((len(left), len(attempts), [(move.unit, move.destination, move.reason) for move in made], left))
        for move in reversed(made):
            state.revert(move)
        if not left:
            break
    _count, _order, chosen, left = min(attempts, key=lambda attempt: (attempt[0], len(attempt[2]), attempt[1]))
    if left:
        limit = state.settings.max_migrations
        found = shortest_clearing(state, None if limit is None else limit - state.migrations)
        if found is not None:
            problems = {host: hot_problem(state, host) for host in state.pool if state.is_hot(host)}
            chosen = [(unit, destination,
                       "relieve %s: %s" % (state.hosts[unit.host].name, problems[unit.host]) if unit.host in problems
                       else "make room on %s for a guest of a hot host" % state.hosts[unit.host].name)
                      for unit, destination in found]
            left = []
    for unit, destination, reason in chosen:
        state.apply(unit, destination, reason)
    unresolved.extend(left)


def hotspot(state, unresolved, _extra):
    relieve_all(state, unresolved)


def cpu_shares(state, hosts):
    return [state.cpu[host] / state.cpus[host] for host in hosts]


def spread(shares):
    """Population standard deviation of host CPU shares."""
    if not shares:
        return 0.0
    mean = sum(shares) / len(shares)
    return math.sqrt(max(sum(share * share for share in shares) / len(shares) - mean * mean, 0.0))


def balance(state, _unresolved, _extra):
    """Best single moves (the largest drop of the spread of CPU shares) from the most to the least
    loaded hosts, each closing the gap between its two hosts by at least ``min_improvement``
    percentage points, while the spread keeps falling."""
    pool = state.pool
    count = len(pool)
    if count < 2:
        return
    share = {host: state.cpu[host] / state.cpus[host] for host in pool}
    threshold = state.settings.min_improvement / 100.0
    while True:
        total = sum(share.values())
        squares = sum(value * value for value in share.values())
        current = math.sqrt(max(squares / count - (total / count) ** 2, 0.0))
        ordered = sorted(pool, key=lambda host: (share[host], host))
        best, best_key = None, None
        for source in reversed(ordered[-BALANCE_CANDIDATES:]):
            for unit in state.units_on(source):
                if unit.blocked or unit.cpu <= EPSILON or not state.budget_allows(len(unit.members)):
                    continue
                for destination in ordered[:BALANCE_CANDIDATES]:
                    if destination == source or state.refusal(unit, destination):
                        continue
                    source_share = share[source] - unit.cpu / state.cpus[source]
                    destination_share = share[destination] + unit.cpu / state.cpus[destination]
                    gap_closed = (share[source] - share[destination]) - abs(source_share - destination_share)
                    if gap_closed < threshold - EPSILON:
                        continue
                    new_total = total - share[source] - share[destination] + source_share + destination_share
                    new_squares = (squares - share[source] ** 2 - share[destination] ** 2
                                   + source_share ** 2 + destination_share ** 2)
                    after = math.sqrt(max(new_squares / count - (new_total / count) ** 2, 0.0))
                    key = (after, unit.cost, unit.label, destination)
                    if best_key is None or key < best_key:
                        best, best_key = (unit, destination), key
        if best is None or best_key[0] >= current - EPSILON:
            return
        unit, destination = best
        state.apply(unit, destination, "balance: CPU %s %.0f%% -> %s %.0f%%" % (
            state.hosts[unit.host].name, share[unit.host] * 100, state.hosts[destination].name,
            share[destination] * 100))
        for host in (unit.host, destination):
            share[host] = state.cpu[host] / state.cpus[host]


def consolidate(state, unresolved, extra):
    """Relieve hot spots, then empty the least loaded hosts below ``cpu_low`` onto hosts that run
    guests (best fit, never above ``cpu_target``); a host is emptied whole or not at all."""
    settings = state.settings
    relieve_all(state, unresolved)
    kept = extra.setdefault("not_emptied", [])
    candidates = sorted((host for host in state.pool if state.members[host] and state.cpu[host] < state.cpu_low[host] - EPSILON),
                        key=lambda host: (state.cpu[host] / state.cpus[host], len(state.members[host]), host))
    for host in candidates:
        if state.received[host]:
            continue
        units = state.units_on(host)
        blocked = [unit for unit in units if unit.blocked]
        if blocked:
            kept.append(dict(host=state.hosts[host].name, reason="%s stays: %s" % (blocked[0].label, blocked[0].blocked)))
            continue
        if not state.budget_allows(len(state.members[host])):
            kept.append(dict(host=state.hosts[host].name, reason="max_migrations (%d) reached" % settings.max_migrations))
            continue
        reason = "consolidate: empty %s (CPU %.0f%% below cpu_low %g%%)" % (
            state.hosts[host].name, _percent(state.cpu[host], state.cpus[host]), settings.cpu_low)
        done = []
        for unit in sorted(units, key=lambda unit: (-unit.cpu, -unit.memory, unit.label)):
            destination = state.destination(unit, "pack", allow_empty=False)
            if destination is None:
                kept.append(dict(host=state.hosts[host].name,
                                 reason="%s: %s" % (unit.label, state.no_destination(unit, allow_empty=False))))
                break
            done.append(state.apply(unit, destination, reason))
        else:
            state.emptied.add(host)
            continue
        for move in reversed(done):
            state.revert(move)


def evacuate(state, unresolved, _extra):
    """Move every unit off the hosts in ``drain``, biggest first, each where it spreads best."""
    for name in state.settings.drain:
        host = state.index[name]
        blocked = {}
        for unit in sorted(state.units_on(host), key=lambda unit: (-unit.memory, -unit.cpu, unit.label)):
            if unit.blocked:
                blocked[unit.label] = unit.blocked
                continue
            if not state.budget_allows(len(unit.members)):
                blocked[unit.label] = "max_migrations (%d) reached" % state.settings.max_migrations
                continue
            destination = state.destination(unit, state.settings.placement)
            if destination is None:
                blocked[unit.label] = state.no_destination(unit)
            else:
                state.apply(unit, destination, "evacuate %s" % name)
        if blocked:
            count = sum(len(unit.members) for unit in state.units_on(host))
            unresolved.append(_explanation(state, host, "draining: %d guest%s cannot leave" % (count, "" if count == 1 else "s"),
                                           blocked))


POLICIES = dict(hotspot=hotspot, balance=balance, consolidate=consolidate, evacuate=evacuate)
