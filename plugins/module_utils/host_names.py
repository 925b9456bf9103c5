# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Host names Ansible gives a meaning of its own: the controller's, and addresses.

A guest's name is chosen by whoever runs it; listed as an inventory host under such a name,
it would be taken for the controller (``localhost``, ``delegate_to``) or be connected to at
that address.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.
"""

from __future__ import annotations

import ipaddress

# Names by which Ansible and the usual /etc/hosts mean the machine itself.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback")


def is_address(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def names_the_controller_or_an_address(name, controller_names=()):
    """Whether ``name`` is a local name, one of ``controller_names``, or an IP address."""
    return name.lower() in LOCAL_NAMES or name.lower() in controller_names or is_address(name)
