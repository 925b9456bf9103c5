# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Watching the fleet's load over time and saying when a host turns hot, cools down, goes
away or comes back: the logic of the ``kvmops.virt.host_load`` event source, with no I/O.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``LoadWatch.observe(fleet, now)`` takes one fleet snapshot (``fleet.gather_fleet``'s
records, without CPU sampling: each guest's ``cpu_time`` counter is enough) and the time it
was taken, and returns the events that snapshot causes. A host's CPU load between two
snapshots is what its guests' counters advanced, in cores, over its logical CPUs (the
planner's definition: the sum of the guests' ``cpu_cores`` over ``cpus``); its memory load
is the memory of its running guests over its total.

Events come only on transitions, each a dict with ``type``:

- ``host_overloaded``: the host has been at or above ``cpu_high`` (or ``memory_high``) in
  every reading for ``duration`` seconds, counted from the first hot reading (so never
  sooner than ``duration`` after the load rose). A single reading below ends the window,
  so a spike shorter than ``duration`` never fires. With ``repeat_after`` set, a host still hot
  that long after the event fires again (``repeat`` counts), for rules that want to retry.
- ``host_recovered``: an overloaded host has been below ``cpu_low`` and ``memory_low`` in
  every reading for ``recovery_duration`` seconds (default ``duration``; the gap between
  low and high is the hysteresis: nothing fires in it).
- ``host_unreachable`` / ``host_reachable``: the hypervisor stopped or started answering.
  Its load window starts again when it is back (counters across a gap say nothing).

A host under maintenance (its mark set) is not judged: its window is dropped, and it
cannot fire until the mark is gone.
"""

from __future__ import annotations

import time

MIB = 1024 * 1024

DEFAULTS = dict(cpu_high=80.0, cpu_low=60.0, memory_high=90.0, memory_low=80.0, duration=60.0, top=5,
                repeat_after=0.0, recovery_duration=None)


class WatchSettingsError(ValueError):
    """A setting the watch cannot use; the message says which and why."""


def watch_settings(**given):
    """DEFAULTS with ``given`` (None means default), checked: every value a number, lows below highs."""
    settings = dict(DEFAULTS)
    problems = []
    for key, value in given.items():
        if key not in DEFAULTS:
            problems.append("unknown setting %s (known: %s)" % (key, ", ".join(sorted(DEFAULTS))))
        elif value is not None:
            try:
                settings[key] = int(value) if key == "top" else float(value)
            except (TypeError, ValueError):
                problems.append("%s must be a number, got %r" % (key, value))
    if not problems:
        for low, high in (("cpu_low", "cpu_high"), ("memory_low", "memory_high")):
            if not 0 <= settings[low] < settings[high]:
                problems.append("%s (%s) must be at least 0 and below %s (%s)"
                                % (low, settings[low], high, settings[high]))
        if settings["recovery_duration"] is None:
            settings["recovery_duration"] = settings["duration"]
        for key in ("duration", "repeat_after", "top", "recovery_duration"):
            if settings[key] < 0:
                problems.append("%s must be 0 or more, got %s" % (key, settings[key]))
    if problems:
        raise WatchSettingsError("; ".join(problems))
    return settings


class _HostState:  # pylint: disable=too-few-public-methods,too-many-instance-attributes
    def __init__(self):
        self.reachable = None      # unknown until the first snapshot
        self.counters = None       # uuid -> cpu_time (ns) at the last reading
        self.read_at = None
        self.hot_since = None      # start of the current run of hot readings
        self.cool_since = None     # start of the current run of readings below the lows, once overloaded
        self.overloaded_at = None  # when host_overloaded fired (None: not overloaded)
        self.repeats = 0
        self.last = None           # the last reading's figures
        self.guest_cores = {}      # uuid -> cores each guest used in the last reading


class LoadWatch:
    """Feed it fleet snapshots in time order; it returns the events each one causes."""

    def __init__(self, **settings):
        self.settings = watch_settings(**settings)
        self.hosts = {}

    def observe(self, fleet, now=None):
        now = time.time() if now is None else now
        events = []
        for hypervisor in fleet:
            state = self.hosts.setdefault(hypervisor["name"], _HostState())
            events.extend(self._observe_host(hypervisor, state, now))
        return events

    def _observe_host(self, hypervisor, state, now):
        if not hypervisor.get("reachable"):
            was = state.reachable
            state.reachable, state.counters, state.read_at, state.hot_since = False, None, None, None
            if was is not False:
                return [self._event("host_unreachable", hypervisor, now, error=hypervisor.get("error"))]
            return []
        events = []
        if state.reachable is False:
            events.append(self._event("host_reachable", hypervisor, now))
        state.reachable = True
        reading = self._reading(hypervisor, state, now)
        if (hypervisor.get("host") or {}).get("maintenance"):
            state.hot_since = None
            return events
        if reading is None:
            state.hot_since = None
            return events
        state.last = reading
        settings = self.settings
        hot = reading["cpu_percent"] >= settings["cpu_high"] or reading["memory_percent"] >= settings["memory_high"]
        if hot:
            state.cool_since = None
            if state.hot_since is None:
                # from this reading on, not from the start of its interval: the load may have
                # risen just before it, and the event must never come before `duration` of load
                state.hot_since = now
            held = now - state.hot_since
            if state.overloaded_at is None and held >= settings["duration"]:
                state.overloaded_at, state.repeats = now, 0
                events.append(self._load_event("host_overloaded", hypervisor, state, reading, now))
            elif (state.overloaded_at is not None and settings["repeat_after"]
                  and now - state.overloaded_at >= settings["repeat_after"]):
                state.overloaded_at, state.repeats = now, state.repeats + 1
                events.append(self._load_event("host_overloaded", hypervisor, state, reading, now))
        else:
            state.hot_since = None
            cool = reading["cpu_percent"] < settings["cpu_low"] and reading["memory_percent"] < settings["memory_low"]
            if not cool:
                state.cool_since = None
            elif state.overloaded_at is not None:
                # recovered only when it stays cool: a dip (the guests starved for a moment) is not a recovery
                state.cool_since = now if state.cool_since is None else state.cool_since
                if now - state.cool_since >= settings["recovery_duration"]:
                    events.append(self._load_event("host_recovered", hypervisor, state, reading, now))
                    state.overloaded_at, state.cool_since = None, None
        return events

    def _reading(self, hypervisor, state, now):
        """The host's figures since the last snapshot, or None on the first one (no deltas yet)."""
        host = hypervisor["host"]
        running = [guest for guest in hypervisor["guests"] if guest["state"] in ("running", "paused")]
        counters = {guest["uuid"]: guest["cpu_time"] for guest in running if guest.get("cpu_time") is not None}
        before, since = state.counters, state.read_at
        state.counters, state.read_at = counters, now
        if before is None or since is None or now <= since:
            return None
        seconds = now - since
        guests, state.guest_cores = [], {}
        for guest in running:
            cpu_time, previous = guest.get("cpu_time"), before.get(guest["uuid"])
            cores = None if cpu_time is None or previous is None else max(cpu_time - previous, 0) / (seconds * 1e9)
            if cores is not None:
                state.guest_cores[guest["uuid"]] = round(cores, 3)
            guests.append(dict(name=guest["name"], cpu_cores=None if cores is None else round(cores, 3),
                               vcpus=guest.get("vcpus"), memory_mb=round((guest.get("memory") or 0) / MIB, 1)))
        cpus = host.get("logical_cpus") or 1
        busy = sum(guest["cpu_cores"] or 0 for guest in guests)
        memory = sum(guest.get("memory") or 0 for guest in running)
        top = sorted((guest for guest in guests if guest["cpu_cores"] is not None),
                     key=lambda guest: (-guest["cpu_cores"], guest["name"]))[:self.settings["top"]]
        return dict(since=since, seconds=round(seconds, 3), cpus=cpus, cpu_cores=round(busy, 3),
                    cpu_percent=round(100.0 * busy / cpus, 1),
                    memory_percent=round(100.0 * memory / host["memory_total"], 1) if host.get("memory_total") else 0.0,
                    guests=len(running), top_guests=top)

    @staticmethod
    def _event(kind, hypervisor, now, **extra):
        return dict(type=kind, host=hypervisor["name"], uri=hypervisor.get("uri"), at=round(now, 3), **extra)

    def _load_event(self, kind, hypervisor, state, reading, now):
        settings = self.settings
        since = state.hot_since if kind == "host_overloaded" else reading["since"]
        window = dict(since=round(since, 3), seconds=round(now - since, 1))
        event = self._event(kind, hypervisor, now, cpu_percent=reading["cpu_percent"],
                            memory_percent=reading["memory_percent"], cpu_cores=reading["cpu_cores"],
                            cpus=reading["cpus"], guests=reading["guests"], top_guests=reading["top_guests"],
                            window=window,
                            thresholds={key: settings[key] for key in ("cpu_high", "cpu_low", "memory_high",
                                                                       "memory_low", "duration")})
        if kind == "host_overloaded":
            event["repeat"] = state.repeats
        return event
