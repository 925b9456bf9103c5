# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planner's input: a snapshot of hosts and guests, and the settings of one plan.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

A snapshot is plain data (the ``rebalance_plan`` module documents its schema)::

    hosts:  [{name, cpus, memory_mb, maintenance, reachable, cpu_overcommit,
              memory_overcommit, max_incoming, max_outgoing}]
    guests: [{name, host, vcpus, memory_mb, cpu_cores, cpu_history, tags, last_migrated,
              dirty_rate_mb, max_vcpus, max_memory_mb, memory_used_mb}]

Every value is checked here, so a wrong snapshot fails with the path of the wrong value
(``guests[3].memory_mb``) before any planning; ``from_fleet`` turns the fleet snapshot the
inventory plugin and the modules gather into this shape.
"""

from __future__ import annotations

import math

MIB = 1024 * 1024
POLICIES = ("hotspot", "balance", "consolidate", "evacuate")
PLACEMENTS = ("spread", "pack")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class PlanError(ValueError):
    """A snapshot or a setting the planner cannot use; the message says which and why."""


def _number(value, where, minimum=0.0, above=False, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        if isinstance(value, str):
            try:
                return _number(float(value) if not integer else int(value), where, minimum, above, integer)
            except ValueError:
                pass
        raise PlanError("%s must be a number, got %r" % (where, value))
    if integer and value != int(value):
        raise PlanError("%s must be a whole number, got %r" % (where, value))
    if value < minimum or (above and value == minimum):
        raise PlanError("%s must be %s %s, got %r" % (where, "above" if above else "at least", minimum, value))
    return int(value) if integer else float(value)


def _boolean(value, where):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise PlanError("%s must be true or false, got %r" % (where, value))


def _name(value, where):
    if not isinstance(value, str) or not value.strip():
        raise PlanError("%s must be a non-empty string, got %r" % (where, value))
    return value


class Host:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """One hypervisor: capacity, and the limits that apply to it."""

    __slots__ = ("name", "cpus", "memory_mb", "maintenance", "reachable", "cpu_overcommit", "memory_overcommit",
                 "max_incoming", "max_outgoing")

    def __init__(self, record, where):
        if not isinstance(record, dict):
            raise PlanError("%s must be a mapping, got %r" % (where, record))
        self.name = _name(record.get("name"), where + ".name")
        self.cpus = _number(record.get("cpus"), where + ".cpus", above=True)
        self.memory_mb = _number(record.get("memory_mb"), where + ".memory_mb", above=True)
        self.maintenance = _boolean(record.get("maintenance", False), where + ".maintenance")
        self.reachable = _boolean(record.get("reachable", True), where + ".reachable")
        optional = {"cpu_overcommit": dict(above=True), "memory_overcommit": dict(above=True),
                    "max_incoming": dict(minimum=1, integer=True), "max_outgoing": dict(minimum=1, integer=True)}
        for key, rule in optional.items():
            value = record.get(key)
            setattr(self, key, None if value is None else _number(value, "%s.%s" % (where, key), **rule))


class Guest:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """One running guest: where it is, what it holds and uses, and its rules."""

    __slots__ = ("name", "host", "vcpus", "memory_mb", "cpu_cores", "cpu_history", "tags", "last_migrated",
                 "dirty_rate_mb", "migratable", "affinity_group", "anti_affinity_group", "max_vcpus", "max_memory_mb",
                 "memory_used_mb")

    def __init__(self, record, where, host_names):
        if not isinstance(record, dict):
            raise PlanError("%s must be a mapping, got %r" % (where, record))
        self.name = _name(record.get("name"), where + ".name")
        where = "%s (%s)" % (where, self.name)
        self.host = record.get("host")
        if self.host is not None and self.host not in host_names:
            raise PlanError("%s.host: %r is not one of the snapshot's hosts" % (where, self.host))
        self.vcpus = _number(record.get("vcpus", 1), where + ".vcpus", minimum=1, integer=True)
        self.memory_mb = _number(record.get("memory_mb"), where + ".memory_mb")
        self.cpu_cores = _number(record.get("cpu_cores") or 0, where + ".cpu_cores")
        history = record.get("cpu_history") or []
        if not isinstance(history, (list, tuple)):
            raise PlanError("%s.cpu_history must be a list of numbers, got %r" % (where, history))
        self.cpu_history = [_number(value, "%s.cpu_history[%d]" % (where, index)) for index, value in enumerate(history)]
        last = record.get("last_migrated")
        self.last_migrated = None if last is None else _number(last, where + ".last_migrated")
        dirty = record.get("dirty_rate_mb")
        self.dirty_rate_mb = 0.0 if dirty is None else _number(dirty, where + ".dirty_rate_mb")
        # what growing in place needs: the live maxima, and memory use as the guest's balloon reports it
        maximum = record.get("max_vcpus")
        self.max_vcpus = None if maximum is None else _number(maximum, where + ".max_vcpus", minimum=1, integer=True)
        for key in ("max_memory_mb", "memory_used_mb"):
            value = record.get(key)
            setattr(self, key, None if value is None else _number(value, "%s.%s" % (where, key)))
        tags = record.get("tags") or {}
        if not isinstance(tags, dict):
            raise PlanError("%s.tags must be a mapping, got %r" % (where, tags))
        self.tags = tags
        self.migratable = _boolean(tags.get("migratable", True), where + ".tags.migratable")
        self.affinity_group = _group(tags.get("affinity_group"), where + ".tags.affinity_group")
        self.anti_affinity_group = _group(tags.get("anti_affinity_group"), where + ".tags.anti_affinity_group")


def _group(value, where):
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PlanError("%s must be a name, got %r" % (where, value))
    return str(value)


def parse_snapshot(snapshot):
    """(hosts, guests) from a snapshot mapping, both sorted by name; PlanError on any bad value."""
    if not isinstance(snapshot, dict):
        raise PlanError("the snapshot must be a mapping with 'hosts' and 'guests', got %r" % type(snapshot).__name__)
    records = {}
    for key in ("hosts", "guests"):
        records[key] = snapshot.get(key) or []
        if not isinstance(records[key], (list, tuple)):
            raise PlanError("snapshot.%s must be a list, got %r" % (key, type(records[key]).__name__))
    hosts = [Host(record, "hosts[%d]" % index) for index, record in enumerate(records["hosts"])]
    if not hosts:
        raise PlanError("the snapshot has no hosts")
    _unique(hosts, "host")
    host_names = {host.name for host in hosts}
    guests = [Guest(record, "guests[%d]" % index, host_names) for index, record in enumerate(records["guests"])]
    _unique(guests, "guest")
    return sorted(hosts, key=lambda host: host.name), sorted(guests, key=lambda guest: guest.name)


def _unique(items, kind):
    seen = set()
    for item in items:
        if item.name in seen:
            raise PlanError("the snapshot has two %ss named %r" % (kind, item.name))
        seen.add(item.name)


DEFAULTS = dict(
    cpu_high=80.0, cpu_target=None, cpu_low=25.0, memory_high=90.0, cpu_overcommit=4.0, memory_overcommit=1.0,
    max_migrations=20, cooldown=3600.0, min_improvement=5.0, drain=(), exclude=(), now=None,
    max_parallel=4, max_per_source=2, max_per_destination=1, history_percentile=90.0,
    migration_bandwidth_mb=1250.0, placement=None, grow_tag="autogrow", grow_threshold=90.0, grow_step=50.0,
)


class Settings:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    """The settings of one plan, checked; ``cpu_target`` defaults to ``cpu_high``."""

    def __init__(self, policy, **given):
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise PlanError("unknown planner settings: %s" % ", ".join(unknown))
        if policy not in POLICIES:
            raise PlanError("policy must be one of %s, got %r" % (", ".join(POLICIES), policy))
        self.policy = policy
        values = dict(DEFAULTS, **{key: value for key, value in given.items() if value is not None})
        for key in ("cpu_high", "cpu_low", "memory_high"):
            setattr(self, key, _number(values[key], key, above=True))
        self.cpu_target = self.cpu_high if values["cpu_target"] is None else _number(values["cpu_target"], "cpu_target", above=True)
        if self.cpu_target > self.cpu_high:
            raise PlanError("cpu_target (%g) must not be above cpu_high (%g)" % (self.cpu_target, self.cpu_high))
        if self.cpu_low >= self.cpu_target:
            raise PlanError("cpu_low (%g) must be below cpu_target (%g)" % (self.cpu_low, self.cpu_target))
        self.cpu_overcommit = _number(values["cpu_overcommit"], "cpu_overcommit", above=True)
        self.memory_overcommit = _number(values["memory_overcommit"], "memory_overcommit", above=True)
        limit = values["max_migrations"]
        self.max_migrations = None if limit in (None, 0) else _number(limit, "max_migrations", minimum=1, integer=True)
        self.cooldown = _number(values["cooldown"], "cooldown")
        self.min_improvement = _number(values["min_improvement"], "min_improvement")
        self.now = None if values["now"] is None else _number(values["now"], "now")
        for key in ("max_parallel", "max_per_source", "max_per_destination"):
            setattr(self, key, _number(values[key], key, minimum=1, integer=True))
        self.history_percentile = _number(values["history_percentile"], "history_percentile")
        if self.history_percentile > 100:
            raise PlanError("history_percentile must be at most 100, got %r" % self.history_percentile)
        self.migration_bandwidth_mb = _number(values["migration_bandwidth_mb"], "migration_bandwidth_mb", above=True)
        self.grow_tag = _name(values["grow_tag"], "grow_tag")
        self.grow_threshold = _number(values["grow_threshold"], "grow_threshold", above=True)
        if self.grow_threshold > 100:
            raise PlanError("grow_threshold must be at most 100, got %r" % self.grow_threshold)
        self.grow_step = _number(values["grow_step"], "grow_step", above=True)
        self.drain = _names(values["drain"], "drain")
        self.exclude = _names(values["exclude"], "exclude")
        self.placement = values["placement"] or ("pack" if policy == "consolidate" else "spread")
        if self.placement not in PLACEMENTS:
            raise PlanError("placement must be one of %s, got %r" % (", ".join(PLACEMENTS), self.placement))
        if policy == "evacuate" and not self.drain:
            raise PlanError("the evacuate policy needs the hosts to drain (drain)")


def _names(value, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise PlanError("%s must be a list of host names, got %r" % (where, value))
    return sorted({_name(item, where) for item in value})


def check_hosts_known(settings, hosts):
    """PlanError when drain or exclude names a host the snapshot does not have."""
    names = {host.name for host in hosts}
    for key in ("drain", "exclude"):
        unknown = [name for name in getattr(settings, key) if name not in names]
        if unknown:
            raise PlanError("%s names hosts the snapshot does not have: %s" % (key, ", ".join(unknown)))


def from_fleet(fleet):
    """The planner's snapshot from ``fleet.gather_fleet``'s records: running and paused guests only
    (a stopped guest holds no memory and cannot live-migrate), sizes in MiB."""
    hosts, guests, seen_uuids, seen_names, found = [], [], set(), set(), []
    for hypervisor in fleet:
        host = hypervisor.get("host") or {}
        if not hypervisor.get("reachable") or not host:
            hosts.append(dict(name=hypervisor["name"], cpus=1, memory_mb=1, reachable=False))
            continue
        hosts.append(dict(name=hypervisor["name"], cpus=host["logical_cpus"], memory_mb=host["memory_total"] / MIB,
                          maintenance=bool(host.get("maintenance"))))
        found.extend((hypervisor, guest) for guest in hypervisor.get("guests") or []
                     if guest["state"] in ("running", "paused"))
    # mid-migration a guest shows on both hosts, paused where it arrives: the running one counts
    for hypervisor, guest in sorted(found, key=lambda pair: pair[1]["state"] != "running"):
        if guest.get("uuid") in seen_uuids:
            continue
        seen_uuids.add(guest.get("uuid"))
        name, tags = guest["name"], dict(guest.get("tags") or {})
        if name in seen_names:
            # two different guests with one name: the plan could not say which to move
            name, tags["migratable"] = "%s@%s" % (name, hypervisor["name"]), False
        seen_names.add(name)
        guests.append(dict(name=name, host=hypervisor["name"], vcpus=guest["vcpus"] or 1,
                           memory_mb=(guest["memory"] or 0) / MIB, cpu_cores=guest.get("cpu_cores") or 0,
                           tags=tags, last_migrated=guest.get("last_migrated"), max_vcpus=guest.get("max_vcpus"),
                           max_memory_mb=_mib(guest.get("max_memory")), memory_used_mb=_mib(guest.get("memory_used"))))
    return dict(hosts=hosts, guests=guests)


def _mib(size):
    return None if size is None else size / MIB
