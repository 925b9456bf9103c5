# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Power changes of one guest that wait until they have happened.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

``shut_down`` asks the guest (ACPI) and waits; it powers the guest off only when the caller
allows it (``force``). Each function returns a short sentence for the module's ``actions``.
"""

from __future__ import annotations

import time

from ansible_collections.kvmops.virt.plugins.module_utils.guest_xml import power_state

try:
    import libvirt
except ImportError:
    libvirt = None

POLL_SECONDS = 0.2


class PowerError(Exception):
    """A power change that did not happen; the guest is left in the state str() names."""


def _wait_for(domain, states, timeout):
    deadline = time.monotonic() + timeout
    while True:
        state = power_state(domain)
        if state in states or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_SECONDS)


def shut_down(conn, domain, timeout, force):
    """Bring a running or paused guest to 'stopped'; returns what was done."""
    name = domain.name()
    state = power_state(domain)
    if state == "stopped":
        return None
    started = time.monotonic()
    if state in ("running", "stopping"):
        if state == "running" and timeout > 0:
            with conn.operation("send an ACPI shutdown to guest %s" % name):
                domain.shutdown()
        if timeout > 0 and _wait_for(domain, ("stopped",), timeout) == "stopped":
            return "shut down guest %s (ACPI) in %.1f s" % (name, time.monotonic() - started)
        if not force:
            raise PowerError(
                "guest %s did not shut down within %s s after an ACPI shutdown request and is still %s; "
                "raise shutdown_timeout, or set force: true to power it off" % (name, timeout, power_state(domain)))
    elif not force:
        raise PowerError("guest %s is %s and cannot react to an ACPI shutdown; set force: true to power it off"
                         % (name, state))
    with conn.operation("power off guest %s" % name):
        try:
            domain.destroy()
        except libvirt.libvirtError:
            # A guest that powered itself off a moment ago stays 'stopping' while QEMU exits,
            # and libvirt refuses to destroy it ("domain is not running"): it did shut down.
            if domain.isActive():
                raise
            return "shut down guest %s (ACPI) in %.1f s" % (name, time.monotonic() - started)
    return "powered off guest %s (forced) after %.1f s" % (name, time.monotonic() - started)


def start(conn, domain, paused=False):
    name = domain.name()
    with conn.operation("start guest %s" % name):
        domain.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
    return "started guest %s%s" % (name, " paused" if paused else "")


def power_off(conn, domain):
    with conn.operation("power off guest %s" % domain.name()):
        domain.destroy()
    return "powered off guest %s" % domain.name()


def transitions(current, wanted):
    """The steps from power state ``current`` to ``wanted`` (running, stopped or paused)."""
    if current == wanted or wanted == "present":
        return []
    if wanted == "stopped":
        return ["shut_down"]
    if current in ("crashed", "stopping"):
        return ["power_off", "start_paused" if wanted == "paused" else "start"]
    if wanted == "running":
        return {"paused": ["resume"], "suspended": ["wakeup"]}.get(current, ["start"])
    if wanted == "paused":
        return ["suspend"] if current == "running" else ["start_paused"]
    raise ValueError("unknown power state %s" % wanted)


def change_power(conn, domain, wanted, timeout, force):
    """Carry out ``transitions``; returns the list of sentences for ``actions``."""
    done = []
    name = domain.name()
    for step in transitions(power_state(domain), wanted):
        if step == "shut_down":
            done.append(shut_down(conn, domain, timeout, force))
        elif step == "power_off":
            done.append(power_off(conn, domain))
        elif step in ("start", "start_paused"):
            done.append(start(conn, domain, paused=step == "start_paused"))
        elif step == "resume":
            with conn.operation("resume guest %s" % name):
                domain.resume()
            done.append("resumed guest %s" % name)
        elif step == "wakeup":
            with conn.operation("wake up guest %s" % name):
                domain.pMWakeup(0)
            done.append("woke up guest %s" % name)
        elif step == "suspend":
            with conn.operation("pause guest %s" % name):
                domain.suspend()
            done.append("paused guest %s" % name)
    return [sentence for sentence in done if sentence]
