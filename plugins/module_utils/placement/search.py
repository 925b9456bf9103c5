# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The exhaustive fallback: the fewest moves that clear every hot spot, on small fleets.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The greedy relief moves guests off hot hosts only. Sometimes the only way out is a chain:
make room on a cool host by moving one of its guests elsewhere first. When the greedy
leaves hot spots and the fleet is small enough (few units times hosts), a breadth-first
search over every sequence of valid moves (each unit at most once) finds the shortest
sequence that clears them all, or proves there is none within the budget of states.
"""

from __future__ import annotations

MAX_CHOICES = 400  # units x receiving hosts above which the search is not tried
MAX_STATES = 4000


def _hot_left(state):
    return any(state.is_hot(host) for host in state.pool)


def shortest_clearing(state, room):
    """[(unit, destination)] of at most ``room`` moves (None: no limit) that leaves no hot host in
    the pool, the fewest there are; None when there is none (or the fleet is too big to search)."""
    units = [unit for host in state.pool for unit in state.units_on(host) if not unit.blocked]
    if not units or len(units) * len(state.pool) > MAX_CHOICES:
        return None
    frontier, seen, visited = [()], {frozenset()}, 0
    while frontier:
        next_frontier = []
        for path in frontier:
            used = sum(len(units[index].members) for index, _host in path)
            applied = [state.apply(units[index], host, "") for index, host in path]
            moved = {index for index, _host in path}
            try:
                for index, unit in enumerate(units):
                    if index in moved or (room is not None and used + len(unit.members) > room):
                        continue
                    for host in state.pool:
                        if state.refusal(unit, host):
                            continue
                        key = frozenset(path + ((index, host),))
                        if key in seen:
                            continue
                        seen.add(key)
                        visited += 1
                        trial = state.apply(unit, host, "")
                        clear = not _hot_left(state)
                        state.revert(trial)
                        if clear:
                            return [(units[i], h) for i, h in path + ((index, host),)]
                        next_frontier.append(path + ((index, host),))
                        if visited > MAX_STATES:
                            return None
            finally:
                for move in reversed(applied):
                    state.revert(move)
        frontier = next_frontier
    return None
