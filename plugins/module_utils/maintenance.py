# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The maintenance mark of a hypervisor, kept by libvirt on the hypervisor itself.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Why there: the inventory plugin, the placement planner, the event sources and the
maintenance role must all see the same mark, from any controller (AWX runs are
stateless, two operators may run playbooks from two laptops), and all of them already
talk to every hypervisor through libvirt and nothing else. libvirt has no host-level
metadata, but it keeps persistent *secret* objects, each with a free-text description,
in its own configuration (``/etc/libvirt/secrets``): they survive daemon restarts and
reboots, are readable over a read-only connection, are listed by ``virsh secret-list``
and can be removed by hand with ``virsh secret-undefine``. The mark is one such secret
with a fixed UUID (so one lookup finds it), no usage and no value; its description is
``kvmops.virt maintenance <JSON>`` with ``since`` (epoch seconds), ``reason`` and ``by``.

A driver without secrets (libvirt's test driver) cannot hold a mark: such a host is
never in maintenance.
"""

from __future__ import annotations

import json
import time
import uuid
from xml.etree import ElementTree

from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import XMLError, parse_xml, sub_element, to_xml

try:
    import libvirt
except ImportError:
    libvirt = None

MARK_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/kvmops/kvmops.virt/maintenance"))
DESCRIPTION_PREFIX = "kvmops.virt maintenance "


def _unsupported(error):
    return error.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_SECRET)


def read_mark(handle):
    """The mark of the hypervisor behind ``handle`` (a virConnect): dict or None."""
    try:
        secret = handle.secretLookupByUUIDString(MARK_UUID)
        text = secret.XMLDesc(0)
    except libvirt.libvirtError as error:
        if _unsupported(error):
            return None
        raise
    try:
        description = parse_xml(text, "maintenance mark").findtext("description") or ""
        mark = json.loads(description[len(DESCRIPTION_PREFIX):]) if description.startswith(DESCRIPTION_PREFIX) else {}
    except (XMLError, ValueError):
        mark = {}
    if not isinstance(mark, dict):
        mark = {}
    # a mark someone edited by hand still marks the host
    return dict(since=mark.get("since"), reason=mark.get("reason"), by=mark.get("by"))


def write_mark(handle, reason=None, by=None, since=None):
    """Mark the hypervisor as in maintenance (replacing an earlier mark); returns the mark."""
    mark = dict(since=int(since if since is not None else time.time()), reason=reason, by=by)
    root = ElementTree.Element("secret", ephemeral="no", private="no")
    sub_element(root, "uuid", MARK_UUID)
    sub_element(root, "description", DESCRIPTION_PREFIX + json.dumps(mark, sort_keys=True))
    handle.secretDefineXML(to_xml(root), 0)
    return mark


def clear_mark(handle):
    """Remove the mark; True when there was one."""
    try:
        handle.secretLookupByUUIDString(MARK_UUID).undefine()
    except libvirt.libvirtError as error:
        if _unsupported(error):
            return False
        raise
    return True
