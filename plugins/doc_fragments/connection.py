# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """How every kvmops.virt module and plugin reaches a hypervisor."""

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - The libvirt connection URI of the hypervisor.
      - For example V(qemu:///system) (local), V(qemu+ssh://root@kvm1.example.com/system),
        V(qemu+tls://kvm1.example.com/system), V(qemu+tcp://127.0.0.2/system) or
        V(test:///default) (libvirt's test driver).
      - Set it once for all modules with C(module_defaults) and the action group
        C(group/kvmops.virt.libvirt).
    type: str
    default: qemu:///system
  username:
    description:
      - User name to give when libvirt asks for one (SASL on V(qemu+tcp) or V(qemu+tls),
        password authentication of V(qemu+libssh2)).
      - For V(qemu+ssh) put the user in the URI and use SSH keys instead.
      - Defaults to the environment variable E(KVMOPS_LIBVIRT_USERNAME), as for the inventory plugin.
    type: str
  password:
    description:
      - Password or passphrase to give when libvirt asks for one. Never logged.
      - Defaults to the environment variable E(KVMOPS_LIBVIRT_PASSWORD).
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection to open before failing.
      - Bounds every transport, including a host that accepts the TCP connection but
        never answers; a refused connection fails at once.
    type: float
    default: 10
requirements:
  - libvirt-python >= 9.0.0 on the host that runs the module (usually the controller).
notes:
  - Connections are opened and closed by each task; credentials are never logged.
"""

    # For modules that talk to a list of hypervisors: everything above but the URI.
    CREDENTIALS = r"""
options:
  username:
    description:
      - User name to give when libvirt asks for one (SASL on V(qemu+tcp) or V(qemu+tls),
        password authentication of V(qemu+libssh2)); the same for every hypervisor.
      - Defaults to the environment variable E(KVMOPS_LIBVIRT_USERNAME).
    type: str
  password:
    description:
      - Password or passphrase to give when libvirt asks for one. Never logged.
      - Defaults to the environment variable E(KVMOPS_LIBVIRT_PASSWORD).
    type: str
  connect_timeout:
    description:
      - Seconds to wait for each connection to open before failing.
    type: float
    default: 10
requirements:
  - libvirt-python >= 9.0.0 on the host that runs the module (usually the controller).
"""
