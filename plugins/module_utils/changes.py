# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Before/after views of a resource, the one way every module reports changes and diffs.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

A *view* is a plain dict of what a module manages about one resource (a guest, a pool,
a volume...), with sizes in readable units, or None when the resource does not exist.
Check mode computes the same views without changing anything, so its diff is the diff
the real run will report.
"""

from __future__ import annotations


def resource_diff(before, after):
    """The ``diff`` of a module result for two views (None: the resource does not exist)."""
    return dict(before=before if before is not None else {}, after=after if after is not None else {})


def changed_keys(before, after):
    """Sorted keys whose values differ between two views (a missing view counts as empty)."""
    before, after = before or {}, after or {}
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
