# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: rebalance_report
short_description: A rebalance as one self-contained HTML page
version_added: 0.1.0
description:
  - Renders the result of the P(kvmops.virt.rebalance#role) role (C(rebalance_result)) or of
    M(kvmops.virt.rebalance_plan) as an HTML page with no external assets - inline CSS, no
    scripts, nothing fetched - that can be attached to a job, mailed or opened offline.
  - "The page shows the hosts' CPU and memory before and after (or as planned) as bars with
    the limits, the moves with their reasons and outcome, guests grown in place, what blocked
    the rest (the planner's explanations), and the timings."
  - Every name and reason is escaped; guest names and tags come from the guests.
author:
  - kvmops.virt developers (@kvmops)
options:
  _input:
    description: C(rebalance_result) of the role, or the registered result of M(kvmops.virt.rebalance_plan).
    type: dict
    required: true
  cpu_high:
    description: CPU load in percent drawn as the limit on the CPU bars.
    type: float
  memory_high:
    description: Memory load in percent drawn as the limit on the memory bars.
    type: float
  title:
    description: The page's title.
    type: str
    default: Rebalance report
"""

EXAMPLES = r"""
- name: Keep a report of the rebalance
  ansible.builtin.copy:
    content: "{{ rebalance_result | kvmops.virt.rebalance_report(cpu_high=80, memory_high=90) }}"
    dest: /var/www/reports/rebalance.html
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The HTML page.
  type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.kvmops.virt.plugins.module_utils.rebalance_report import render


def rebalance_report(result, cpu_high=None, memory_high=None, title="Rebalance report"):
    if not isinstance(result, dict) or "plan" not in result:
        raise AnsibleFilterError("rebalance_report needs rebalance_result or a rebalance_plan result (a mapping with 'plan'),"
                                 " got %s" % type(result).__name__)
    try:
        return render(result, cpu_high=None if cpu_high is None else float(cpu_high),
                      memory_high=None if memory_high is None else float(memory_high), title=str(title))
    except (TypeError, ValueError, KeyError) as error:
        raise AnsibleFilterError("rebalance_report: the result is not in the expected form: %s" % error) from error


class FilterModule:  # pylint: disable=too-few-public-methods
    def filters(self):
        return {"rebalance_report": rebalance_report}
