#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ping
short_description: Check that a libvirt hypervisor answers
version_added: 0.1.0
description:
  - Opens a connection to a libvirt hypervisor with the collection's connection options,
    asks it who it is, and closes the connection.
  - Fails with a message naming the URI and libvirt's reason when the hypervisor cannot be
    reached, refuses the credentials, or does not answer within O(connect_timeout).
  - Use it as a health check before a play, or in an AWX job that verifies a fleet.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
  - kvmops.virt.attributes.INFO_MODULE
options: {}
seealso:
  - name: libvirt connection URIs
    description: The URI formats libvirt understands.
    link: https://libvirt.org/uri.html
"""

EXAMPLES = r"""
- name: Check the local hypervisor
  kvmops.virt.ping:

- name: Check every hypervisor of the inventory, each through its own URI
  kvmops.virt.ping:
    uri: "{{ libvirt_uri }}"
    connect_timeout: 5

- name: Set the connection once for all kvmops.virt modules of a play
  hosts: kvm_hypervisors
  gather_facts: false
  module_defaults:
    group/kvmops.virt.libvirt:
      uri: "qemu+tls://{{ inventory_hostname }}/system"
      username: "{{ libvirt_sasl_user }}"
      password: "{{ libvirt_sasl_password }}"
  tasks:
    - name: Fail early if a hypervisor is down
      kvmops.virt.ping:
"""

RETURN = r"""
uri:
  description: The URI as libvirt reports it after connecting (a password in it is masked).
  returned: success
  type: str
  sample: qemu+tcp://127.0.0.2/system
hostname:
  description: The hypervisor's host name.
  returned: success
  type: str
  sample: kvm1.example.com
host_uuid:
  description:
    - The hypervisor's UUID (libvirtd's C(host_uuid) setting, else the machine's).
    - V(null) when the driver reports none (libvirt's test driver).
  returned: success
  type: str
  sample: 6b4d2f3c-8e5a-4b72-8c3f-1d2e3f4a5b62
driver:
  description: The hypervisor driver, for example C(QEMU) or C(TEST).
  returned: success
  type: str
  sample: QEMU
libvirt_version:
  description: Version of the libvirt daemon serving the connection.
  returned: success
  type: str
  sample: 9.0.0
hypervisor_version:
  description: Version of the hypervisor behind the driver (QEMU's for C(qemu://) URIs).
  returned: success
  type: str
  sample: 7.2.0
encrypted:
  description: Whether the connection is encrypted (TLS or SSH).
  returned: success
  type: bool
  sample: false
secure:
  description: Whether the connection cannot be eavesdropped (encrypted, or a local socket).
  returned: success
  type: bool
  sample: true
elapsed_ms:
  description: Time taken to connect and ask, in milliseconds.
  returned: success
  type: int
  sample: 12
"""

import time

from ansible_collections.kvmops.virt.plugins.module_utils.connection import redact_uri
from ansible_collections.kvmops.virt.plugins.module_utils.host_facts import version_string
from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.safe_xml import parse_xml


def describe_hypervisor(handle):
    capabilities = parse_xml(handle.getCapabilities(), "capabilities XML")
    return dict(
        uri=redact_uri(handle.getURI()),
        hostname=handle.getHostname(),
        host_uuid=capabilities.findtext("host/uuid"),
        driver=handle.getType(),
        libvirt_version=version_string(handle.getLibVersion()),
        hypervisor_version=version_string(handle.getVersion()),
        encrypted=bool(handle.isEncrypted()),
        secure=bool(handle.isSecure()),
    )


def main():
    module = LibvirtModule(supports_check_mode=True)
    started = time.monotonic()
    with module.connection(readonly=True) as conn:
        with conn.operation("ask the hypervisor who it is"):
            facts = describe_hypervisor(conn.handle)
    facts["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
