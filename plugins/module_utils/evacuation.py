# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Draining hypervisors: where each running guest goes, and moving them all, a few at a time.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

The placement here is the interim rule the maintenance issue asks for until the planner
exists: biggest guests first, each to the host that keeps the most memory free after it
(spreading them), never above a host's memory (minus a reserve) or its vCPUs times the
over-commit ratio, never onto a host in maintenance or unreachable. A guest tagged
``migratable: false`` stays and is reported, as is one that fits nowhere.

The drain runs the moves in threads under three limits: overall, per source and per
destination. A move that fails with the guest verified still on its source is retried once
on another host that has room; one that fails any other way is not (its message says
where the guest is).
"""

from __future__ import annotations

import threading
import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import LibvirtConnection, LibvirtOperationError
from ansible_collections.kvmops.virt.plugins.module_utils.guest_move import MOVE_DEFAULTS, GuestMove, MoveFailed
from ansible_collections.kvmops.virt.plugins.module_utils.sizes import approximate_size

MIB = 1024 * 1024


class Room:
    """What one hypervisor can still take: memory in bytes and vCPUs."""

    def __init__(self, name, memory, vcpus):
        self.name = name
        self.memory = memory
        self.vcpus = vcpus

    def fits(self, guest):
        return self.memory >= (guest["memory"] or 0) and self.vcpus >= (guest["vcpus"] or 0)

    def take(self, guest):
        self.memory -= guest["memory"] or 0
        self.vcpus -= guest["vcpus"] or 0

    def give_back(self, guest):
        self.memory += guest["memory"] or 0
        self.vcpus += guest["vcpus"] or 0


def rooms(fleet, excluded, cpu_overcommit=4.0, memory_reserve=1024 * MIB):
    """name -> Room for every reachable hypervisor of the snapshot that may receive guests."""
    found = {}
    for hypervisor in fleet:
        host = hypervisor.get("host")
        if not hypervisor["reachable"] or hypervisor["name"] in excluded or (host or {}).get("maintenance"):
            continue
        found[hypervisor["name"]] = Room(
            hypervisor["name"], host["memory_total"] - host["memory_allocated"] - memory_reserve,
            int(host["logical_cpus"] * cpu_overcommit) - host["vcpus_allocated"])
    return found


def choose(guest, room_by_name, excluded=()):
    """The room that keeps the most memory free after taking the guest (name order on ties)."""
    candidates = [room for name, room in sorted(room_by_name.items()) if name not in excluded and room.fits(guest)]
    # max() keeps the first of equals, so ties go by name
    return max(candidates, key=lambda room: room.memory, default=None)


def plan_drain(fleet, draining, cpu_overcommit=4.0, memory_reserve=1024 * MIB):
    """(moves, stays, rooms): moves are dicts guest, uuid, source, destination, memory, vcpus;
    stays are dicts guest, source, reason; rooms what each receiving host has left after the
    plan (a retry takes from it). Stopped guests are not moved (and not listed)."""
    room_by_name = rooms(fleet, set(draining), cpu_overcommit, memory_reserve)
    moves, stays = [], []
    by_name = {hypervisor["name"]: hypervisor for hypervisor in fleet}
    guests = [guest for name in draining for guest in by_name[name]["guests"]
              if guest["state"] in ("running", "paused")]
    for guest in sorted(guests, key=lambda guest: (-(guest["memory"] or 0), guest["name"])):
        if (guest.get("tags") or {}).get("migratable") is False:
            stays.append(dict(guest=guest["name"], source=guest["hypervisor"], reason="pinned (tag migratable=false)"))
            continue
        room = choose(guest, room_by_name)
        if room is None:
            stays.append(dict(guest=guest["name"], source=guest["hypervisor"], reason=no_room_reason(guest, room_by_name)))
            continue
        room.take(guest)
        moves.append(dict(guest=guest["name"], uuid=guest["uuid"], source=guest["hypervisor"],
                          destination=room.name, memory=guest["memory"] or 0, vcpus=guest["vcpus"] or 0))
    return moves, stays, room_by_name


def no_room_reason(guest, room_by_name):
    if not room_by_name:
        return "no host may receive it (every other host is unreachable or in maintenance)"
    best = max(room_by_name.values(), key=lambda room: room.memory)
    return ("no host has room for %s and %d vCPUs (most room: %s with %s and %d vCPUs)"
            % (approximate_size(guest["memory"] or 0), guest["vcpus"] or 0, best.name,
               approximate_size(max(best.memory, 0)), max(best.vcpus, 0)))


class Drain:  # pylint: disable=too-many-instance-attributes
    """Runs planned moves under the three limits, with one retry elsewhere."""

    def __init__(self, uris, connection_options, move_options=None, max_parallel=2, max_per_source=2,
                 max_per_destination=1, retry=True, room_by_name=None):
        self.uris = uris  # hypervisor name -> URI
        self.connection_options = connection_options
        self.move_options = dict(MOVE_DEFAULTS, **(move_options or {}))
        self.max_parallel = max_parallel
        self.max_per_source = max_per_source
        self.max_per_destination = max_per_destination
        self.retry = retry
        self.room_by_name = room_by_name or {}
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
        if not (self.retry and stayed and len(move["attempts"]) == 1):
            return False
        guest = dict(name=move["guest"], memory=move["memory"], vcpus=move["vcpus"])
        failed = self.room_by_name.get(move["destination"])
        if failed is not None:
            failed.give_back(guest)
        room = choose(guest, self.room_by_name, excluded=(move["destination"],))
        if room is None:
            return False
        room.take(guest)
        move["destination"] = room.name
        return True

    @staticmethod
    def _report(move):
        last = move["attempts"][-1]
        return dict(guest=move["guest"], source=move["source"], destination=move["destination"] if last["ok"] else None,
                    moved=last["ok"], attempts=move["attempts"], error=None if last["ok"] else last["error"])
