# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The guests of one hypervisor, filtered, with their live usage.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Live figures come from ``getAllDomainStats`` (one bulk call per sample, whatever the
number of guests); CPU use is the change of ``cpu.time`` between two samples
``sample_seconds`` apart. Each guest's description is the guest module's view of its
definition, so ``guest_info`` and ``guest`` report a guest the same way.
"""

from __future__ import annotations

import fnmatch
import time

from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import STATE_NAMES, read_view
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml

try:
    import libvirt
except ImportError:
    libvirt = None

KIB = 1024


def _matches_names(name, patterns):
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _matches_tags(tags, wanted):
    return all(tags.get(key) == value for key, value in (wanted or {}).items())


def _bulk_stats(conn, domains):
    """{uuid: stats dict} for ``domains``, from one getAllDomainStats-style call."""
    if not domains:
        return {}
    groups = libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
    with conn.operation("read the guests' statistics"):
        records = conn.handle.domainListGetStats(domains, groups, 0)
    return {domain.UUIDString(): stats for domain, stats in records}


def cpu_usage(stats_before, stats_after, seconds, vcpus):
    """``cpu_cores`` (cores busy on average) and ``cpu_percent`` (of the guest's vCPUs) over a
    window of ``seconds`` between two samples; both None without a window or samples."""
    before, after = stats_before.get("cpu.time"), stats_after.get("cpu.time")
    if not seconds or before is None or after is None:
        return dict(cpu_cores=None, cpu_percent=None)
    cores = max(after - before, 0) / (seconds * 1e9)
    return dict(cpu_cores=round(cores, 3), cpu_percent=round(100.0 * cores / max(vcpus or 1, 1), 1))


def usage(stats_before, stats_after, seconds, vcpus):
    """Live usage of one guest from two samples: CPU (None without a window) and memory."""
    result = cpu_usage(stats_before, stats_after, seconds, vcpus)
    result.update(memory_actual=None, memory_used=None, memory_rss=None)
    actual = stats_after.get("balloon.current")
    if actual is not None:
        result["memory_actual"] = actual * KIB
    available, unused = stats_after.get("balloon.available"), stats_after.get("balloon.unused")
    if available is not None and unused is not None:
        result["memory_used"] = (available - unused) * KIB
    if stats_after.get("balloon.rss") is not None:
        result["memory_rss"] = stats_after["balloon.rss"] * KIB
    return result


def gather_guests(conn, names=None, states=None, tags=None, sample_seconds=0.0):
    """The guests of ``conn`` whose name matches one of ``names`` (globs), whose power state
    is in ``states`` and whose tags include ``tags``, sorted by name."""
    with conn.operation("list the guests"):
        domains = [domain for domain in conn.handle.listAllDomains(0) if _matches_names(domain.name(), names)]
    first = _bulk_stats(conn, domains) if sample_seconds else {}
    started = time.monotonic()
    described = []
    for domain in domains:
        with conn.operation("read the definition of guest %s" % domain.name()):
            root = parse_xml(domain.XMLDesc(0), "domain XML of %s" % domain.name())
            autostart = bool(domain.autostart()) if domain.isPersistent() else False
        view = read_view(root)
        if not _matches_tags(view["tags"], tags):
            continue
        described.append((domain, view, autostart))
    if sample_seconds:
        time.sleep(max(0.0, sample_seconds - (time.monotonic() - started)))
    window = time.monotonic() - started if sample_seconds else 0
    second = _bulk_stats(conn, [domain for domain, _view, _autostart in described])
    guests = []
    for domain, view, autostart in described:
        uuid = domain.UUIDString()
        stats = second.get(uuid, {})
        state = STATE_NAMES.get(stats.get("state.state", domain.state()[0]), "unknown")
        if states and state not in states:
            continue
        guest = dict(name=domain.name(), uuid=uuid, state=state, persistent=bool(domain.isPersistent()),
                     autostart=autostart, id=domain.ID() if state in ("running", "paused") else None)
        guest.update(view)
        live = usage(first.get(uuid, {}), stats, window, view["vcpus"]) if state in ("running", "paused") \
            else usage({}, {}, 0, None)
        guest["usage"] = live
        guests.append(guest)
    return sorted(guests, key=lambda guest: guest["name"])
