# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Attributes shared by the collection's modules."""

    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/kvmops.virt.libvirt) in C(module_defaults) to set the connection options.
    support: full
    membership:
      - kvmops.virt.libvirt
"""

    # For modules that only read: nothing to change, so check mode is the same run.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return the same result, since it changes nothing.
    support: full
  diff_mode:
    description: Changes nothing, so there is never a diff.
    support: N/A
  idempotent:
    description: Reading does not change the hypervisor; repeated runs return the same facts.
    support: full
"""
