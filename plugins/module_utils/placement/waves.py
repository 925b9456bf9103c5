# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Waves: which planned moves may run at the same time.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Moves of one wave run together; a wave starts when the one before has ended. While a move
runs, its guest holds memory and CPU on both hosts, so a destination must have room for
everything arriving in the wave while everything leaving it in the same wave is still
there. Each move, in plan order, takes the earliest wave at or after the waves of the
earlier moves to its destination where its destination stays within the plan's limits
and the concurrency limits (overall, per source, per destination) hold; a unit alone on a
host in a wave is always allowed. The planner checked every move against the fleet as
left by the moves before it, so a wave after all of them always fits: every move gets a
wave. Placing a new guest is not a migration: placements are wave 0, before the others.
"""

from __future__ import annotations

from ansible_collections.kvmops.virt.plugins.module_utils.placement.state import EPSILON


class _Ledger:
    """Per host: what arrives in which wave and what leaves in which wave."""

    def __init__(self, start):
        self.start = start  # (cpu, memory, vcpus) per host before the first wave
        self.arriving = {}  # host -> list of (wave, cpu, memory, vcpus)
        self.leaving = {}

    def load(self, host, wave):
        """The host's (cpu, memory, vcpus) during ``wave``: all arrived or arriving by then,
        minus what left in earlier waves."""
        cpu, memory, vcpus = (values[host] for values in self.start)
        for when, add_cpu, add_memory, add_vcpus in self.arriving.get(host, ()):
            if when <= wave:
                cpu, memory, vcpus = cpu + add_cpu, memory + add_memory, vcpus + add_vcpus
        for when, sub_cpu, sub_memory, sub_vcpus in self.leaving.get(host, ()):
            if when < wave:
                cpu, memory, vcpus = cpu - sub_cpu, memory - sub_memory, vcpus - sub_vcpus
        return cpu, memory, vcpus


def _limit(settings, state, host, side):
    record = state.hosts[host]
    if side == "in":
        return record.max_incoming or settings.max_per_destination
    return record.max_outgoing or settings.max_per_source


def assign_waves(state):
    """[(move, wave)] in wave order (plan order within a wave)."""
    settings = state.settings
    placed = [move for move in state.moves if move.source is None]
    # loads once the new guests are placed: waves of migrations start from there
    cpu, memory, vcpus = (list(values) for values in state.initial)
    for move in placed:
        for guest in move.unit.members:
            cpu[move.destination] += state.guest_cpu[guest]
            memory[move.destination] += state.guests[guest].memory_mb
            vcpus[move.destination] += state.guests[guest].vcpus
    ledger, last_wave_to, counts, assigned = _Ledger((cpu, memory, vcpus)), {}, {}, [(move, 0) for move in placed]
    first_open = 1  # waves before it are full overall: no need to try them again
    for move in state.moves:
        if move.source is None:
            continue
        unit, size = move.unit, len(move.unit.members)
        while counts.get((first_open, "all"), 0) >= settings.max_parallel:
            first_open += 1
        wave = max(first_open, last_wave_to.get(move.destination, 1))
        while not _fits(state, ledger, counts, move, wave, size, settings):
            wave += 1
        ledger.arriving.setdefault(move.destination, []).append((wave, unit.cpu, unit.memory, unit.vcpus))
        ledger.leaving.setdefault(move.source, []).append((wave, unit.cpu, unit.memory, unit.vcpus))
        last_wave_to[move.destination] = wave
        for key in (("all",), ("in", move.destination), ("out", move.source)):
            counts[(wave,) + key] = counts.get((wave,) + key, 0) + size
        assigned.append((move, wave))
    return sorted(assigned, key=lambda pair: pair[1])


def _fits(state, ledger, counts, move, wave, size, settings):
    for key, limit in ((("all",), settings.max_parallel),
                       (("in", move.destination), _limit(settings, state, move.destination, "in")),
                       (("out", move.source), _limit(settings, state, move.source, "out"))):
        running = counts.get((wave,) + key, 0)
        if running and running + size > limit:
            return False
    cpu, memory, vcpus = ledger.load(move.destination, wave)
    unit, host = move.unit, move.destination
    return (cpu + unit.cpu <= state.cpu_dest[host] + EPSILON and memory + unit.memory <= state.memory_cap[host] + EPSILON
            and vcpus + unit.vcpus <= state.vcpu_cap[host] + EPSILON)
