# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kvmops.virt.alertmanager: an ansible-rulebook event filter that turns Prometheus
Alertmanager webhook notifications into the host events of kvmops.virt.host_load."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

try:
    from ansible_collections.kvmops.virt.plugins.plugin_utils.eda import SourceArgumentError, hypervisors_from_args
except ImportError:  # ansible-rulebook runs this file by path; the collection root is 7 levels up
    sys.path.insert(0, str(Path(__file__).absolute().parents[7]))
    from ansible_collections.kvmops.virt.plugins.plugin_utils.eda import SourceArgumentError, hypervisors_from_args

DOCUMENTATION = r"""
---
short_description: Split Alertmanager notifications into host events, without duplicates.
description:
  - For events of C(eda.builtin.webhook) receiving Prometheus Alertmanager's webhook
    (C(event.payload) is the notification). Each alert of the notification becomes one
    event, shaped like those of kvmops.virt.host_load, so the same rules serve both - a
    firing alert C(host_overloaded), a resolved one C(host_recovered) (see O(event_types)).
  - Drops an alert seen with the same C(fingerprint) and C(status) within O(ttl) seconds
    (Alertmanager re-sends notifications, and a group notification repeats its alerts); a
    change of status always passes, so a host that recovers and turns hot again fires again.
  - Names the hypervisor from the alert label O(host_label) and finds its URI in
    O(hypervisors) or O(inventory); without either, the label O(uri_label) gives it.
  - A notification that is not one, an alert without the label, or a host it does not know
    gives a warning in ansible-rulebook's log and no event. It never raises.
  - ansible-rulebook does not template filter arguments (unlike source arguments): give
    literal values.
  - Each event - C(type), C(host), C(uri), C(at), C(source) (V(alertmanager)), C(alert)
    (C(name), C(status), C(labels), C(annotations), C(starts_at), C(ends_at),
    C(fingerprint)), and C(cpu_percent) when the alert has a numeric C(value) annotation.
options:
  hypervisors:
    description: The hypervisors, each with C(name) and C(uri).
    type: list
    elements: dict
  inventory:
    description: Path of an Ansible inventory whose group O(group) holds the hypervisors.
    type: str
  group:
    description: The inventory group of the hypervisors.
    type: str
    default: kvm_hypervisors
  uri_var:
    description: The host variable that holds each hypervisor's libvirt URI.
    type: str
    default: libvirt_uri
  host_label:
    description: The alert label that names the hypervisor.
    type: str
    default: kvm_host
  uri_label:
    description: The alert label with the hypervisor's libvirt URI, when neither O(hypervisors) nor O(inventory) is given.
    type: str
    default: libvirt_uri
  alert_names:
    description: Only alerts with these C(alertname) labels; all alerts when empty.
    type: list
    elements: str
    default: []
  event_types:
    description: The event type for each alert status.
    type: dict
    default: {firing: host_overloaded, resolved: host_recovered}
  ttl:
    description: Seconds during which an alert with the same fingerprint and status is a duplicate.
    type: float
    default: 3600
"""

EXAMPLES = r"""
- name: Rebalance on Prometheus alerts
  hosts: all
  sources:
    - eda.builtin.webhook:
        host: 127.0.0.1
        port: 5000
        token: "{{ webhook_token }}"
      filters:
        - kvmops.virt.alertmanager:
            inventory: /etc/kvmops/hypervisors.yml
            alert_names: [KvmHostCpuHigh]
  rules:
    - name: A host stays hot
      condition: event.type == "host_overloaded"
      action:
        run_playbook:
          name: kvmops.virt.rebalance
          extra_vars:
            host: "{{ event.host }}"
"""

LOGGER = logging.getLogger(__name__)
DEFAULT_TYPES = {"firing": "host_overloaded", "resolved": "host_recovered"}
_SEEN = {}  # fingerprint -> (status, when) last let through; lives as long as the rulebook
_URIS = {}  # the hypervisors' URIs by the arguments they came from (an inventory is read once)


def _uris(arguments):
    key = (arguments.get("inventory"), repr(arguments.get("hypervisors")), arguments.get("group"),
           arguments.get("uri_var"))
    if key not in _URIS:
        _URIS[key] = {entry["name"]: entry["uri"] for entry in hypervisors_from_args(arguments)}
    return _URIS[key]


def _warn(message, *values):
    LOGGER.warning("kvmops.virt.alertmanager: " + message, *values)


def _seen_recently(fingerprint, status, ttl, now):
    """Whether this alert came with this status less than ``ttl`` seconds ago. A change of
    status is news (a host that recovers and turns hot again fires again)."""
    for key in [key for key, (_status, when) in _SEEN.items() if now - when >= ttl]:
        del _SEEN[key]
    if _SEEN.get(fingerprint, (None, None))[0] == status:
        return True
    _SEEN[fingerprint] = (status, now)
    return False


def _number(text):
    try:
        return round(float(text), 1)
    except (TypeError, ValueError):
        return None


def _host_event(alert, index, arguments, uris, now):
    """The host event of one alert, or None (with a warning) when it cannot be one."""
    if not isinstance(alert, dict) or not isinstance(alert.get("labels"), dict):
        _warn("alert %d has no labels; skipped", index)
        return None
    labels, status = alert["labels"], alert.get("status")
    name = labels.get("alertname")
    wanted = arguments.get("alert_names") or []
    if wanted and name not in wanted:
        return None
    types = dict(DEFAULT_TYPES, **(arguments.get("event_types") or {}))
    if status not in types:
        _warn("alert %s has status %r, not one of %s; skipped", name, status, ", ".join(sorted(types)))
        return None
    host_label = arguments.get("host_label") or "kvm_host"
    host = labels.get(host_label)
    if not host:
        _warn("alert %s has no label %s naming the hypervisor; skipped", name, host_label)
        return None
    if uris is not None:
        uri = uris.get(host)
        if uri is None:
            _warn("alert %s names hypervisor %s, which is not among %s; skipped", name, host, ", ".join(sorted(uris)))
            return None
    else:
        uri = labels.get(arguments.get("uri_label") or "libvirt_uri")
    fingerprint = alert.get("fingerprint") or repr(sorted(labels.items()))
    ttl = arguments.get("ttl")
    if _seen_recently(fingerprint, status, 3600.0 if ttl is None else float(ttl), now):
        LOGGER.info("kvmops.virt.alertmanager: alert %s (%s, %s) seen already; dropped", name, fingerprint, status)
        return None
    annotations = alert.get("annotations") if isinstance(alert.get("annotations"), dict) else {}
    event = dict(type=types[status], host=host, uri=uri, at=round(now, 3), source="alertmanager",
                 alert=dict(name=name, status=status, labels=labels, annotations=annotations,
                            starts_at=alert.get("startsAt"), ends_at=alert.get("endsAt"), fingerprint=fingerprint))
    value = _number(annotations.get("value"))
    if value is not None:
        event["cpu_percent"] = value
    return event


def main(event: dict, **arguments):
    """ansible-rulebook's entry point: one webhook event in, a list of host events out."""
    payload = event.get("payload") if isinstance(event, dict) else None
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        _warn("not an Alertmanager notification (no payload.alerts); dropped: %.200r", event)
        return []
    try:
        uris = _uris(arguments) if arguments.get("hypervisors") or arguments.get("inventory") else None
    except SourceArgumentError as error:
        _warn("%s; notification dropped", error)
        return []
    now = time.time()
    events = [_host_event(alert, index, arguments, uris, now) for index, alert in enumerate(payload["alerts"])]
    return [host_event for host_event in events if host_event is not None]


if __name__ == "__main__":
    # python alertmanager.py < notification.json: print the events
    import json  # pylint: disable=ungrouped-imports

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(main(dict(payload=json.load(sys.stdin))), indent=2))
