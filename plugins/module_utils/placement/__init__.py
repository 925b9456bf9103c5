# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The placement planner: which guests to move where. Pure Python; it never imports libvirt.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice. Start at ``planner.plan``.
"""
