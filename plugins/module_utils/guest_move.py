# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One whole move of a guest: checks, migration, verdict, record; what the migrate module
does, and what the maintenance drain does for each guest.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.
"""

from __future__ import annotations

import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import (
    LibvirtOperationError, advice_for, redact_uri)
from ansible_collections.kvmops.virt.plugins.module_utils.migration import (
    PEER_TO_PEER, Migration, MigrationError, check_placement, completed_figures, expected_placement, figures_of, locate,
    migration_flags, migration_params, placement_on, preflight, record_migration)

# after a failure, how long to keep trying to reach a hypervisor to see where the guest is
# (a libvirtd restarted by systemd answers within seconds)
RECONNECT_SECONDS = 30

# How a migration runs: options of the migrate module, and of each migration of a drain.
MIGRATION_ARGUMENT_SPEC = dict(
    transport=dict(type="str", choices=["p2p", "tunnelled", "direct"], default="p2p"),
    bandwidth=dict(type="int"),
    max_downtime=dict(type="int"),
    auto_converge=dict(type="bool", default=False),
    postcopy=dict(type="float"),
    compressed=dict(type="bool", default=False),
    parallel_connections=dict(type="int"),
    copy_storage=dict(type="str", choices=["none", "all", "incremental"], default="none"),
    unsafe=dict(type="bool", default=False),
    tls=dict(type="bool", default=False),
    timeout=dict(type="float"),
)

# the migrate module's options with their defaults, for callers that set only some
MOVE_DEFAULTS = dict(live=True, persistent=True, undefine_source=True, transport="p2p", p2p_uri=None, bandwidth=None,
                     max_downtime=None, auto_converge=False, postcopy=None, compressed=False,
                     parallel_connections=None, copy_storage="none", unsafe=False, tls=False, timeout=None, force=False,
                     verify=True)


def option_problems(params):
    problems = []
    for key in ("bandwidth", "max_downtime", "parallel_connections", "timeout"):
        if params[key] is not None and params[key] <= 0:
            problems.append("%s must be a positive number, got %s" % (key, params[key]))
    if params["postcopy"] is not None and params["postcopy"] < 0:
        problems.append("postcopy must be 0 or more seconds, got %s" % params["postcopy"])
    if not params["live"]:
        for key in ("postcopy", "bandwidth", "max_downtime", "parallel_connections"):
            if params[key] is not None:
                problems.append("%s applies to live migrations only (live=false)" % key)
        if params["auto_converge"] or params["compressed"]:
            problems.append("auto_converge and compressed apply to live migrations only (live=false)")
    if params["p2p_uri"] and params["transport"] not in PEER_TO_PEER:
        problems.append("p2p_uri is for transport=p2p or tunnelled")
    if params["transport"] == "tunnelled":
        # libvirt refuses both: memory goes through the one libvirt connection
        for key in ("parallel_connections", "postcopy"):
            if params[key] is not None:
                problems.append("%s does not work with transport=tunnelled (memory goes through the one libvirt "
                                "connection); use transport=p2p" % key)
        if params.get("tls"):
            problems.append("tls is for transport=p2p or direct: with tunnelled, memory already goes through the "
                            "libvirt connection (encrypted when that is ssh or TLS)")
    return problems


def describe(placement):
    def where(key):
        hosts = [host for host in ("source", "destination") if placement[host][key]]
        return " and ".join(hosts) or "neither"
    return "runs on %s, defined on %s" % (where("active"), where("persistent"))


class MoveFailed(Exception):
    """The move did not happen, or not cleanly; str() says what, ``result`` what is known."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


class GuestMove:
    """One guest from one hypervisor to another: the checks, the move, the verdict.

    ``params`` are the migrate module's options (name, live, persistent, undefine_source,
    transport, p2p_uri, bandwidth, max_downtime, auto_converge, postcopy, compressed,
    parallel_connections, copy_storage, timeout, force, verify); ``source`` and
    ``destination`` open LibvirtConnections. ``run()`` returns the result dict or raises
    MoveFailed."""

    def __init__(self, source, destination, params, check_mode=False, diff=False):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.source = source
        self.destination = destination
        self.result = dict(changed=False, moved=False, name=self.params["name"], source=redact_uri(source.uri),
                           destination=redact_uri(destination.uri))

    def fail(self, message, **extra):
        self.result.update(extra)
        raise MoveFailed(message, self.result)

    def run(self):
        params = self.params
        names = dict(source_name="the source (%s)" % self.result["source"],
                     destination_name="the destination (%s)" % self.result["destination"])
        try:
            with self.source.operation("check guest %s for migration" % params["name"]):
                found = preflight(self.source.handle, self.destination.handle, params["name"], live=params["live"],
                                  force=params["force"], **names)
        except MigrationError as error:
            self.fail(str(error))
        self.result["uuid"] = found.uuid
        if found.already_there:
            return self.already_there(found)
        self.result["changed"] = True
        if self.diff:
            self.result["diff"] = dict(before=dict(hypervisor=self.result["source"]),
                                       after=dict(hypervisor=self.result["destination"]))
        if self.check_mode:
            self.result["placement"] = locate(self.source.handle, self.destination.handle, found.uuid)
            return self.result
        return self.move(found)

    def already_there(self, found):
        placement = locate(self.source.handle, self.destination.handle, found.uuid)
        self.result["placement"] = placement
        expected = expected_placement("moved", live=self.params["live"], persistent=self.params["persistent"],
                                      undefine_source=self.params["undefine_source"],
                                      was_persistent=placement["source"]["persistent"]
                                      or placement["destination"]["persistent"])
        problems = check_placement(placement, expected) if self.params["verify"] else []
        if problems:
            self.fail("guest %s is already on the destination, but %s (%s)"
                      % (self.params["name"], "; ".join(problems), describe(placement)))
        return self.result

    def move(self, found):
        params = self.params
        was_persistent = bool(found.domain.isPersistent())
        flags = migration_flags(live=params["live"], persistent=params["persistent"],
                                undefine_source=params["undefine_source"], transport=params["transport"],
                                auto_converge=params["auto_converge"], postcopy=params["postcopy"],
                                compressed=params["compressed"], parallel_connections=params["parallel_connections"],
                                copy_storage=params["copy_storage"], unsafe=params["unsafe"], tls=params["tls"])
        migration = Migration(found.domain, self.destination.handle, params["p2p_uri"] or self.destination.uri, flags,
                              migration_params(params["bandwidth"], params["parallel_connections"]),
                              transport=params["transport"], timeout=params["timeout"],
                              postcopy_after=params["postcopy"], max_downtime=params["max_downtime"])
        with self.source.operation("migrate guest %s" % params["name"]):
            migration.run()
        placement = self.placement_after(found.uuid)
        outcome = "moved" if self.arrived(placement) else "stayed"
        expected = expected_placement(outcome, live=params["live"], persistent=params["persistent"],
                                      undefine_source=params["undefine_source"], was_persistent=was_persistent)
        problems = check_placement(placement, expected) if params["verify"] else []
        what = self.what_happened(migration, outcome)
        if problems:
            self.fail("migration of guest %s %s; and now %s (%s). Nothing was changed after that: look at both "
                      "hypervisors before acting" % (params["name"], what, "; ".join(problems), describe(placement)),
                      changed=outcome == "moved")
        if outcome == "stayed":
            self.fail("migration of guest %s %s; it %s as before" % (params["name"], what, describe(placement)),
                      changed=False)
        at = int(time.time())
        with self.destination.operation("record the migration in guest %s's metadata" % params["name"]):
            record_migration(self.destination.handle, found.uuid, at, self.source.handle.getHostname(),
                             self.destination.handle.getHostname())
        figures = completed_figures(self.destination.handle, self.source.handle, found.uuid) \
            or figures_of(migration.last_stats)
        self.result.update(moved=True, elapsed_ms=int(migration.elapsed * 1000), figures=figures,
                           postcopy=migration.postcopy,
                           auto_converge=bool(migration.auto_converge_seen or figures.get("auto_converge_throttle_percent")),
                           migrated_at=at)
        return self.result

    def placement_after(self, uuid):
        """Where the guest is now. A connection may be the casualty of what went wrong (a
        daemon killed mid-way): then reconnect, for up to RECONNECT_SECONDS (a restarted
        libvirtd answers within seconds), before saying the state is unknown."""
        placement = {}
        for key in ("source", "destination"):
            conn = getattr(self, key)
            deadline = time.monotonic() + RECONNECT_SECONDS
            while key not in placement:
                try:
                    conn.open()
                    with conn.operation("look for the guest"):
                        placement[key] = placement_on(conn.handle, uuid)
                except LibvirtOperationError as error:
                    conn.close()
                    if time.monotonic() > deadline:
                        self.fail("could not look for guest %s on the %s after the migration attempt: %s; its "
                                  "state there is unknown, look before acting" % (self.params["name"], key, error))
                    time.sleep(1)
        self.result["placement"] = placement
        return placement

    def arrived(self, placement):
        if self.params["live"]:
            return placement["destination"]["active"] and not placement["source"]["active"]
        return placement["destination"]["persistent"]

    def what_happened(self, migration, outcome):
        if migration.timed_out:
            return "was aborted after %.0f s (timeout)" % migration.timeout
        if migration.error is not None:
            detail = (migration.error.get_error_message() or str(migration.error)).rstrip()
            # with p2p the source dialled the destination: any advice is about that leg
            p2p = self.params["transport"] in PEER_TO_PEER
            advice = advice_for(self.params["p2p_uri"] or self.destination.uri, detail, p2p=p2p)
            return "failed: %s" % detail + (" (what to do: %s)" % advice if advice else "")
        return "finished" if outcome == "moved" else "returned without moving it"
