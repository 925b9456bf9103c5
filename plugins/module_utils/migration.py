# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Moving a guest from one hypervisor to another, and making sure where it ended up.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Three steps, each usable alone:

- ``preflight`` checks everything that can be checked without moving anything: the
  guest, its state and ``migratable`` tag, the destination (reachable, a name clash, free
  memory, CPU model), and whether the guest is already there (nothing to do).
- ``Migration.run`` starts libvirt's migration in a thread and watches its job from
  this one: progress figures, the switch to post-copy, the timeout (which aborts the job
  while it still can be aborted).
- ``locate`` and ``check_placement`` say afterwards, whatever happened, where the guest
  runs and where it is defined, and what is wrong with that: the caller reports facts,
  never a guess.
"""

from __future__ import annotations

import threading
import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import redact_uri
from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import memory_bytes
from ansible_collections.kvmops.virt.plugins.module_utils.metadata import (
    METADATA_NAMESPACE, METADATA_PREFIX, GuestMetadata)
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml, to_xml
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import approximate_size

try:
    import libvirt
except ImportError:
    libvirt = None

KIB = 1024
MIB = 1024 * 1024
POLL_SECONDS = 0.25
# after an abort (or a lost destination) libvirt's call returns within seconds; this bounds
# the wait for it before the outcome is read from the hosts anyway
RETURN_GRACE_SECONDS = 60


class MigrationError(Exception):
    """A migration that must not (or could not) happen; str() says why for a person."""


# ----------------------------------------------------------------------------- where it is

def _domain_or_none(lookup, key):
    """``lookup(key)`` (a virConnect lookup method), None when there is no such guest."""
    try:
        return lookup(key)
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _lookup(handle, uuid):
    return _domain_or_none(handle.lookupByUUIDString, uuid)


def placement_on(handle, uuid):
    """``{"active": bool, "persistent": bool}`` for the guest on one hypervisor (both False
    when it is not there)."""
    domain = _lookup(handle, uuid)
    if domain is None:
        return dict(active=False, persistent=False)
    try:
        return dict(active=bool(domain.isActive()), persistent=bool(domain.isPersistent()))
    except libvirt.libvirtError as error:
        if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:  # gone in between
            return dict(active=False, persistent=False)
        raise


def locate(source, destination, uuid):
    """Where the guest is, on the two hypervisors (open virConnect handles)."""
    return dict(source=placement_on(source, uuid), destination=placement_on(destination, uuid))


def expected_placement(outcome, live=True, persistent=True, undefine_source=True, was_persistent=True):
    """Where the guest must be after ``outcome`` (``moved`` or ``stayed``): the host it runs on
    (None for an offline migration) and on which hosts it is defined."""
    if outcome == "moved":
        return dict(active="destination" if live else None,
                    persistent=dict(source=was_persistent and not undefine_source,
                                    destination=persistent or not live))
    return dict(active="source" if live else None, persistent=dict(source=was_persistent, destination=False))


def check_placement(placement, expected):
    """Problems (sentences) of a placement against ``expected_placement``; empty when the
    guest runs exactly once where it should and is defined exactly where it should."""
    problems = []
    runs = [host for host in ("source", "destination") if placement[host]["active"]]
    if len(runs) == 2:
        problems.append("it runs on both hypervisors")
    elif expected["active"] and not runs:
        problems.append("it runs on neither hypervisor")
    elif runs and runs != [expected["active"]]:
        problems.append("it runs on the %s, not on the %s" % (runs[0], expected["active"] or "neither"))
    defined = [host for host in ("source", "destination") if placement[host]["persistent"]]
    if len(defined) == 2 and not all(expected["persistent"].values()):
        problems.append("it is defined on both hypervisors")
    else:
        for host in ("source", "destination"):
            if expected["persistent"][host] and not placement[host]["persistent"]:
                problems.append("it is not defined on the %s" % host)
            elif placement[host]["persistent"] and not expected["persistent"][host]:
                problems.append("it is still defined on the %s" % host)
    return problems


# ----------------------------------------------------------------------------- checks

def _memory_free(handle):
    """Bytes a new guest may use on the host, or None when the driver does not say (libvirt's
    test driver: its free memory is 0 or a made-up figure)."""
    try:
        stats = handle.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        return None
    # page cache is given back on demand: it counts as free for a guest's memory
    return (stats.get("free", 0) + stats.get("buffers", 0) + stats.get("cached", 0)) * KIB


def _cpu_compatible(destination, root):
    """None when the destination can run the guest's CPU model, else the reason."""
    cpu = root.find("cpu")
    if cpu is None or cpu.get("mode") == "host-passthrough" or cpu.find("model") is None:
        return None  # nothing named to compare; libvirt checks the rest when the guest starts there
    os_type = root.find("os/type")
    try:
        result = destination.compareHypervisorCPU(
            None, os_type.get("arch") if os_type is not None else None,
            os_type.get("machine") if os_type is not None else None, root.get("type"), to_xml(cpu), 0)
    except libvirt.libvirtError as error:
        if error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return None
        return "the destination cannot compare the guest's CPU model: %s" % error.get_error_message()
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        return "the destination's CPU cannot run the guest's CPU model %s" % cpu.findtext("model")
    return None


class Preflight:
    """What preflight found: ``domain`` on the source (None when already moved), ``uuid``,
    ``state``, ``memory`` bytes, ``tags`` and ``already_there``."""

    def __init__(self, domain, uuid, state, memory, tags, already_there):
        self.domain = domain
        self.uuid = uuid
        self.state = state
        self.memory = memory
        self.tags = tags
        self.already_there = already_there


def _by_name(handle, name):
    return _domain_or_none(handle.lookupByName, name)


def preflight(source, destination, name, live=True, force=False, source_name="the source",
              destination_name="the destination"):
    """Check that ``name`` can move from ``source`` to ``destination`` (virConnect handles);
    MigrationError when it cannot, a Preflight when it can or already did."""
    if source.getURI() == destination.getURI():
        raise MigrationError("the destination is the source hypervisor (%s)" % redact_uri(source.getURI()))
    domain = _by_name(source, name)
    there = _by_name(destination, name)
    if domain is None:
        if there is not None and there.isActive() == live:
            root = parse_xml(there.XMLDesc(0), "domain XML of %s" % name)
            return Preflight(None, there.UUIDString(), "running" if live else "stopped", memory_bytes(root)[0],
                             GuestMetadata.from_domain(root).tags, True)
        raise MigrationError("guest %s is not on %s%s" % (
            name, source_name, "" if there is None else " (%s has it, %s)" % (
                destination_name, "running" if there.isActive() else "stopped")))
    uuid = domain.UUIDString()
    if there is not None and there.UUIDString() != uuid:
        raise MigrationError("%s already has a different guest called %s (UUID %s, this one is %s)"
                             % (destination_name, name, there.UUIDString(), uuid))
    root = parse_xml(domain.XMLDesc(0), "domain XML of %s" % name)
    tags = GuestMetadata.from_domain(root).tags
    active = bool(domain.isActive())
    if there is not None and bool(there.isActive()) and active:
        raise MigrationError("guest %s runs on both %s and %s; refusing to touch it, stop one copy first"
                             % (name, source_name, destination_name))
    if there is not None and bool(there.isActive()) and not active:
        return Preflight(None, uuid, "running", memory_bytes(root)[0], tags, True)
    if tags.get("migratable") is False and not force:
        raise MigrationError("guest %s is tagged migratable=false; give force=true to move it anyway" % name)
    if live and not active:
        raise MigrationError("guest %s is not running: a live migration needs a running guest "
                             "(live=false moves a stopped guest's definition)" % name)
    if not live and active:
        raise MigrationError("guest %s is running: an offline migration (live=false) needs it stopped" % name)
    if not live and not domain.isPersistent():
        raise MigrationError("guest %s is not persistent: a stopped transient guest has nothing to move" % name)
    memory = memory_bytes(root)[0] or 0
    if live:
        free = _memory_free(destination)
        if free is not None and memory > free:
            raise MigrationError("%s has %s of memory free (with page cache), guest %s needs %s"
                                 % (destination_name, approximate_size(free), name, approximate_size(memory)))
        incompatible = _cpu_compatible(destination, root)
        if incompatible:
            raise MigrationError("guest %s cannot run on %s: %s" % (name, destination_name, incompatible))
    return Preflight(domain, uuid, "running" if active else "stopped", memory, tags, False)


# ----------------------------------------------------------------------------- the move

# Transports where the source's libvirtd dials the destination's itself; with
# "tunnelled", guest memory also flows through that libvirt connection (ssh or TLS)
# instead of a QEMU migration port of its own.
PEER_TO_PEER = ("p2p", "tunnelled")


def migration_flags(live=True, persistent=True, undefine_source=True, transport="p2p", auto_converge=False,
                    postcopy=None, compressed=False, parallel_connections=None, copy_storage="none", unsafe=False,
                    tls=False):
    flags = 0
    if tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if live:
        flags |= libvirt.VIR_MIGRATE_LIVE
    else:
        flags |= libvirt.VIR_MIGRATE_OFFLINE
    if persistent or not live:
        flags |= libvirt.VIR_MIGRATE_PERSIST_DEST
    if undefine_source:
        flags |= libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if transport in PEER_TO_PEER:
        flags |= libvirt.VIR_MIGRATE_PEER2PEER
    if transport == "tunnelled":
        flags |= libvirt.VIR_MIGRATE_TUNNELLED
    if auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if postcopy is not None:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    if compressed:
        flags |= libvirt.VIR_MIGRATE_COMPRESSED
    if parallel_connections:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
    if copy_storage == "all":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    elif copy_storage == "incremental":
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    if unsafe:
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    return flags


def migration_params(bandwidth=None, parallel_connections=None):
    params = {}
    if bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth)
    if parallel_connections:
        params[libvirt.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(parallel_connections)
    return params


# jobStats keys -> result keys (libvirt's VIR_DOMAIN_JOB_* typed parameters)
_FIGURES = (("time_elapsed", "elapsed_ms"), ("downtime", "downtime_ms"), ("data_total", "data_total_bytes"),
            ("data_processed", "data_processed_bytes"), ("memory_processed", "memory_processed_bytes"),
            ("memory_iteration", "memory_iterations"), ("memory_dirty_rate", "dirty_rate_pages_per_second"),
            ("memory_page_size", "page_size_bytes"), ("auto_converge_throttle", "auto_converge_throttle_percent"),
            ("memory_postcopy_requests", "postcopy_requests"))


def figures_of(stats):
    return {name: stats[key] for key, name in _FIGURES if key in stats}


class Migration:  # pylint: disable=too-many-instance-attributes
    """One migration of ``domain`` (on the source) to ``destination`` (an open virConnect,
    used for transport ``direct``; ``destination_uri`` is what the source daemon dials for
    ``p2p``), watched from the calling thread."""

    def __init__(self, domain, destination, destination_uri, flags, params, transport="p2p", timeout=None,
                 postcopy_after=None, max_downtime=None, poll_seconds=POLL_SECONDS):
        self.domain = domain
        self.destination = destination
        self.destination_uri = destination_uri
        self.flags = flags
        self.params = params
        self.transport = transport
        self.timeout = timeout
        self.postcopy_after = postcopy_after
        self.max_downtime = max_downtime
        self.poll_seconds = poll_seconds
        self.error = None          # the libvirtError the migration call raised, if any
        self.timed_out = False
        self.aborted = False
        self.postcopy = False
        self.auto_converge_seen = False
        self.last_stats = {}
        self.samples = 0
        self.elapsed = None
        self._done = threading.Event()

    def _call(self):
        try:
            if self.transport in PEER_TO_PEER:
                self.domain.migrateToURI3(self.destination_uri, self.params, self.flags)
            else:
                self.domain.migrate3(self.destination, self.params, self.flags)
        except libvirt.libvirtError as error:
            self.error = error
        finally:
            self._done.set()

    def run(self):
        """Migrate, watching the job; returns when libvirt's call has returned (or after the
        grace period following an abort). Does not raise for a failed migration: see
        ``error``, ``timed_out``, ``aborted``."""
        if self.max_downtime:
            self.domain.migrateSetMaxDowntime(int(self.max_downtime), 0)
        started = time.monotonic()
        worker = threading.Thread(target=self._call, name="kvmops-migrate", daemon=True)
        worker.start()
        while not self._done.wait(self.poll_seconds):
            elapsed = time.monotonic() - started
            self._sample()
            if self.postcopy_after is not None and not self.postcopy and elapsed >= self.postcopy_after:
                self._start_postcopy()
            if self.timeout and elapsed >= self.timeout and not self.postcopy and not self.aborted:
                self.timed_out = True
                self._abort()
            if self.aborted and elapsed >= (self.timeout or 0) + RETURN_GRACE_SECONDS:
                break
        self.elapsed = time.monotonic() - started
        return self

    def _sample(self):
        try:
            stats = self.domain.jobStats(0)
        except libvirt.libvirtError:
            return  # the job just ended, or the guest left the source: the last sample stands
        if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
            return
        self.samples += 1
        self.last_stats = stats
        if stats.get("auto_converge_throttle"):
            self.auto_converge_seen = True

    def _start_postcopy(self):
        try:
            self.domain.migrateStartPostCopy(0)
        except libvirt.libvirtError:
            return  # not started yet, or already over: asked again at the next poll
        self.postcopy = True

    def _abort(self):
        try:
            self.domain.abortJob()
        except libvirt.libvirtError:
            pass  # it ended meanwhile; the placement check says how
        self.aborted = True


def completed_figures(destination, source, uuid):
    """The finished job's figures, from the destination (where the guest lives now), else the source."""
    for handle in (destination, source):
        domain = _lookup(handle, uuid)
        if domain is None:
            continue
        try:
            stats = domain.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            continue
        if stats:
            return figures_of(stats)
    return {}


# ----------------------------------------------------------------------------- the record

def record_migration(handle, uuid, at, source_name, destination_name):
    """Note the migration (epoch seconds, from, to) in the guest's metadata, live and in its
    persistent definition; the planner reads it for per-guest cooldown."""
    domain = _lookup(handle, uuid)
    if domain is None:
        return False
    root = parse_xml(domain.XMLDesc(0), "domain XML of %s" % domain.name())
    metadata = GuestMetadata.from_domain(root)
    metadata.set_migration(at, source_name, destination_name)
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if domain.isActive() else 0
    if domain.isPersistent():
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata.libvirt_fragment(), METADATA_PREFIX,
                       METADATA_NAMESPACE, flags)
    return True
