# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the collection's event sources share: the hypervisors to watch, from their
arguments or from an Ansible inventory.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.
"""

from __future__ import annotations

import os


class SourceArgumentError(ValueError):
    """An event source argument that cannot be used; the message says which and why."""


def hypervisors_from_args(args):
    """[{name, uri}] from ``hypervisors`` (a list of dicts with name and uri) or from
    ``inventory`` (a path to any Ansible inventory; the hosts of ``group``, default
    kvm_hypervisors, that have the variable ``uri_var``, default libvirt_uri)."""
    given, inventory = args.get("hypervisors"), args.get("inventory")
    if bool(given) == bool(inventory):
        raise SourceArgumentError("give either hypervisors (a list of name and uri) or inventory (a path), not %s"
                                  % ("both" if given else "neither"))
    if inventory:
        return _from_inventory(str(inventory), args.get("group") or "kvm_hypervisors",
                               args.get("uri_var") or "libvirt_uri")
    if not isinstance(given, list):
        raise SourceArgumentError("hypervisors must be a list of dicts with name and uri, got %r" % (given,))
    hypervisors, problems = [], []
    for index, entry in enumerate(given):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("uri"):
            problems.append("hypervisors[%d] needs a name and a uri" % index)
        elif any(known["name"] == str(entry["name"]) for known in hypervisors):
            problems.append("hypervisor %s is listed twice" % entry["name"])
        else:
            hypervisors.append(dict(name=str(entry["name"]), uri=str(entry["uri"])))
    if problems:
        raise SourceArgumentError("; ".join(problems))
    return hypervisors


def _from_inventory(path, group, uri_var):
    if not os.path.exists(path):
        raise SourceArgumentError("inventory %s does not exist" % path)
    # controller-side Ansible: the event sources run where ansible-rulebook runs, beside ansible-core
    from ansible.inventory.manager import InventoryManager  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel

    manager = InventoryManager(loader=DataLoader(), sources=[path])
    if group not in manager.groups:
        raise SourceArgumentError("inventory %s has no group %s (groups: %s)"
                                  % (path, group, ", ".join(sorted(manager.groups)) or "none"))
    hypervisors = [dict(name=host.name, uri=str(host.vars[uri_var]))
                   for host in manager.groups[group].get_hosts() if host.vars.get(uri_var)]
    if not hypervisors:
        raise SourceArgumentError("no host of group %s in inventory %s has %s" % (group, path, uri_var))
    return hypervisors


def number_argument(args, key, default, zero=False):
    """``args[key]`` as a number above 0 (or at least 0 with ``zero``), ``default`` when not given."""
    value = args.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceArgumentError("%s must be a number, got %r" % (key, value)) from None
    if number < 0 or (number == 0 and not zero):
        raise SourceArgumentError("%s must be %s, got %r" % (key, "0 or more" if zero else "above 0", value))
    return number
