# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Draining hypervisors: where each running guest goes, and moving them all, a few at a time.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Where guests go is the placement planner's ``evacuate`` policy (biggest first, each where
the fleet stays most evenly loaded), over a fleet whose destinations each keep
``memory_reserve`` for themselves: never above a host's memory less that reserve, its vCPUs
times the over-commit ratio or ``cpu_target`` of its CPU, never onto a host in maintenance
or unreachable, affinity groups together, anti-affinity groups apart. What cannot leave
(``migratable: false``, no host has room) is reported with the planner's reason.

The drain runs the moves in threads under three limits: overall, per source and per
destination. A move that fails with the guest verified still on its source is retried once
on the host the planner picks when the failed one is left out; one that fails any other way
is not (its message says where the guest is).
"""

from __future__ import annotations

import threading
import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.guest_move import MOVE_DEFAULTS, GuestMove, MoveFailed
from ansible_collections.kvmops.virt.plugins.module_utils.placement.planner import plan
from ansible_collections.kvmops.virt.plugins.module_utils.placement.snapshot import from_fleet

MIB = 1024 * 1024


class DrainPlan:
    """Where the running guests of ``draining`` go: ``moves`` (guest, source, destination,
    reason) and ``stays`` (guest, source, reason); ``elsewhere`` finds a retry's host."""

    def __init__(self, fleet, draining, cpu_overcommit=4.0, memory_reserve=1024 * MIB, cpu_target=100.0):
        self.snapshot = from_fleet(fleet)
        for host in self.snapshot["hosts"]:
            if host.get("reachable", True):
                # the planner caps memory at a share of the host's: the reserve comes off the host
                host["memory_mb"] = max(host["memory_mb"] - memory_reserve / MIB, 1.0)
        self.settings = dict(drain=list(draining), cpu_overcommit=cpu_overcommit, memory_overcommit=1.0,
                             memory_high=100.0, cpu_high=cpu_target, max_migrations=0)
        result = plan(self.snapshot, "evacuate", **self.settings)
        self.moves = [dict(guest=move["guest"], source=move["source"], destination=move["destination"],
                           reason=move["reason"]) for move in result["plan"]]
        self.stays = [dict(guest=item["guest"], source=explanation["host"], reason=item["reason"])
                      for explanation in result["unresolved"] for item in explanation["guests"]]
        self._destination = {move["guest"]: move["destination"] for move in self.moves}
        self._failed_on = {}

    def elsewhere(self, guest, failed):
        """Another host for ``guest``, whose move to ``failed`` did not happen (it is still on
        its source), with the other planned moves counted where they go; None when none has room."""
        self._failed_on.setdefault(guest, set()).add(failed)
        self._destination.pop(guest, None)
        guests = [dict(record, host=self._destination.get(record["name"], record["host"]))
                  for record in self.snapshot["guests"]]
        result = plan(dict(self.snapshot, guests=guests), "evacuate",
                      **dict(self.settings, exclude=sorted(self._failed_on[guest])))
        for move in result["plan"]:
            if move["guest"] == guest:
                self._destination[guest] = move["destination"]
                return move["destination"]
        return None


class Drain:  # pylint: disable=too-many-instance-attributes
    """Runs planned moves under the three limits, with one retry elsewhere."""

    def __init__(self, uris, connection_options, move_options=None, max_parallel=2, max_per_source=2,
                 max_per_destination=1, retry=True, elsewhere=None):
        self.uris = uris  # hypervisor name -> URI
        self.connection_options = connection_options
        self.move_options = dict(MOVE_DEFAULTS, **(move_options or {}))
        self.max_parallel = max_parallel
        self.max_per_source = max_per_source
        self.max_per_destination = max_per_destination
        self.retry = retry
        self.elsewhere = elsewhere  # (guest, failed destination) -> another destination or None
        self.reports = []
        self._lock = threading.Condition()
        self._running = []  # moves in flight
        self.peak = dict(overall=0, per_source=0, per_destination=0)

    def _allowed(self, move):
        def count(key):
            return sum(1 for other in self._running if other[key] == move[key])
        return (len(self._running) < self.max_parallel and count("source") < self.max_per_source
                and count("destination") < self.max_per_destination)

    def _note_peak(self):
        self.peak["overall"] = max(self.peak["overall"], len(self._running))
        for key, name in (("source", "per_source"), ("destination", "per_destination")):
            values = [move[key] for move in self._running]
            self.peak[name] = max([self.peak[name]] + [values.count(value) for value in values])

    def run(self, moves):
        """Move them all; returns the reports (one per guest, in the order they ended)."""
        pending = [dict(move, attempts=[]) for move in moves]
        started = time.monotonic()
        with self._lock:
            while pending or self._running:
                for move in list(pending):
                    if self._allowed(move):
                        pending.remove(move)
                        self._running.append(move)
                        self._note_peak()
                        threading.Thread(target=self._move, args=(move, pending, started), daemon=True).start()
                self._lock.wait(1.0)
        return self.reports

    def _move(self, move, pending, started):
        attempt = dict(destination=move["destination"], started=round(time.monotonic() - started, 3))
        try:
            result = self._migrate(move)
        except MoveFailed as failure:
            attempt.update(ok=False, error=str(failure), placement=failure.result.get("placement"))
        else:
            attempt.update(ok=True, elapsed_ms=result.get("elapsed_ms"), downtime_ms=result["figures"].get("downtime_ms"))
        attempt["ended"] = round(time.monotonic() - started, 3)
        with self._lock:
            self._running.remove(move)
            move["attempts"].append(attempt)
            if not attempt["ok"] and self._retry_elsewhere(move, attempt):
                pending.append(move)
            else:
                self.reports.append(self._report(move))
            self._lock.notify_all()

    def _migrate(self, move):
        source = LibvirtConnection(self.uris[move["source"]], **self.connection_options)
        destination = LibvirtConnection(self.uris[move["destination"]], **self.connection_options)
        try:
            source.open()
            destination.open()
            return GuestMove(source, destination, dict(self.move_options, name=move["guest"])).run()
        except LibvirtOperationError as error:
            raise MoveFailed(str(error), dict(name=move["guest"])) from None
        finally:
            destination.close()
            source.close()

    def _retry_elsewhere(self, move, attempt):
        placement = attempt.get("placement") or {}
        stayed = (placement.get("source", {}).get("active") and not placement.get("destination", {}).get("active"))
        if not (self.retry and stayed and len(move["attempts"]) == 1 and self.elsewhere):
            return False
        destination = self.elsewhere(move["guest"], move["destination"])
        if destination is None:
            return False
        move["destination"] = destination
        return True

    @staticmethod
    def _report(move):
        last = move["attempts"][-1]
        return dict(guest=move["guest"], source=move["source"], destination=move["destination"] if last["ok"] else None,
                    moved=last["ok"], attempts=move["attempts"], error=None if last["ok"] else last["error"])
