# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Growing guests in place where no migration can help: the "allocate more resources" branch.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

After the moves are planned, a host may still be hot: every other host is full, or its
busy guests may not move. A guest there that allows it (tag ``grow_tag`` true) and uses
nearly all of what it has (``grow_threshold`` percent of its vCPUs, or of its memory as its
balloon reports) may grow by ``grow_step`` percent, live, never past its maxima (the
vCPU hot-plug limit and the balloon's maximum: beyond them it would need a restart), and
only as far as the host's ``cpu_overcommit`` and ``memory_high`` allow. The busiest
guests are served first. A tagged guest on such a host that cannot grow gets a reason.
"""

from __future__ import annotations

import math

from ansible_collections.kvmops.virt.plugins.module_utils.placement.state import EPSILON

_TRUE = (True, "true", "yes", "on", "1", 1)


def allows_growth(guest, tag):
    value = guest.tags.get(tag)
    return value in _TRUE or (isinstance(value, str) and value.lower() in _TRUE)


def plan_growth(state):
    """(growth, refused) for the guests of the hosts the plan leaves hot; changes ``state``'s
    vCPU and memory totals by what it grants, so later guests see the room that is left."""
    settings = state.settings
    growth, refused = [], []
    for host in state.pool:
        if not state.is_hot(host):
            continue
        candidates = [guest for guest in state.members[host] if allows_growth(state.guests[guest], settings.grow_tag)]
        for guest in sorted(candidates, key=lambda number: (-_fullness(state, number), state.guests[number].name)):
            change, reason = _grow(state, guest, host)
            record = dict(guest=state.guests[guest].name, host=state.hosts[host].name)
            if change:
                growth.append(dict(record, **change))
            else:
                refused.append(dict(record, reason=reason))
    return growth, refused


def _cpu_share(state, guest):
    """CPU demand (as the planner sizes it) over the guest's vCPUs."""
    return state.guest_cpu[guest] / state.guests[guest].vcpus


def _memory_share(state, guest):
    """Memory used (as its balloon reports it) over the guest's memory; None when unknown."""
    record = state.guests[guest]
    if record.memory_used_mb is None or not record.memory_mb:
        return None
    return record.memory_used_mb / record.memory_mb


def _fullness(state, guest):
    """The larger of the guest's CPU and memory use, as a share of what it has."""
    memory = _memory_share(state, guest)
    return max(_cpu_share(state, guest), 0.0 if memory is None else memory)


def _grow(state, guest, host):
    """({vcpus, vcpus_from, memory_mb, memory_mb_from, reason}, None) or (None, why not)."""
    record = state.guests[guest]
    vcpus, cpu_why = _more_vcpus(state, guest, host)
    memory, memory_why = _more_memory(state, guest, host)
    if vcpus is None and memory is None:
        return None, "; ".join((cpu_why, memory_why))
    reasons = [why for value, why in ((vcpus, cpu_why), (memory, memory_why)) if value is not None]
    reason = "no move relieves %s; %s (at least %g%%)" % (state.hosts[host].name, " and ".join(reasons),
                                                          state.settings.grow_threshold)
    return dict(vcpus=vcpus or record.vcpus, vcpus_from=record.vcpus, memory_mb=memory or record.memory_mb,
                memory_mb_from=record.memory_mb, reason=reason), None


def _more_vcpus(state, guest, host):
    """(vCPUs to give, why) or (None, why not); takes the vCPUs from the host's room."""
    settings, record = state.settings, state.guests[guest]
    share = _cpu_share(state, guest)
    if share + EPSILON < settings.grow_threshold / 100.0:
        return None, "uses %.0f%% of its %d vCPUs" % (100 * share, record.vcpus)
    if record.max_vcpus is None or record.vcpus >= record.max_vcpus:
        return None, "at its most vCPUs (%d)" % record.vcpus
    wanted = min(record.max_vcpus, record.vcpus + max(1, int(math.ceil(record.vcpus * settings.grow_step / 100.0))))
    room = int(math.floor(state.vcpu_cap[host] - state.vcpus[host] + EPSILON))
    vcpus = min(wanted, record.vcpus + max(room, 0))
    if vcpus <= record.vcpus:
        return None, "more vCPUs would pass cpu_overcommit on %s" % state.hosts[host].name
    state.vcpus[host] += vcpus - record.vcpus
    return vcpus, "CPU %.0f%% of %d vCPUs" % (100 * share, record.vcpus)


def _more_memory(state, guest, host):
    """(MiB to give, why) or (None, why not); takes the memory from the host's room."""
    settings, record = state.settings, state.guests[guest]
    share = _memory_share(state, guest)
    if share is None:
        return None, "its balloon reports no memory use"
    if share + EPSILON < settings.grow_threshold / 100.0:
        return None, "uses %.0f%% of its memory" % (100 * share)
    if record.max_memory_mb is None or record.memory_mb >= record.max_memory_mb - EPSILON:
        return None, "at its most memory (%d MiB)" % record.memory_mb
    wanted = min(record.max_memory_mb, record.memory_mb * (1 + settings.grow_step / 100.0))
    memory = float(math.floor(min(wanted, record.memory_mb + max(state.memory_cap[host] - state.memory[host], 0.0))))
    if memory <= record.memory_mb:
        return None, "more memory would pass memory_high on %s" % state.hosts[host].name
    state.memory[host] += memory - record.memory_mb
    return memory, "memory %.0f%% used" % (100 * share)
