# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a guest's QEMU guest agent says about it: host name, OS, addresses.

This is an internal part of the kvmops.virt collection; its API may change between
releases without notice.

Only guests worth asking are asked: running, with the agent's virtio channel in their
definition, and that channel connected (QEMU reports ``state='connected'`` once the agent
in the guest opened its port). Every other guest costs no call, so a fleet without agents
costs nothing and prints nothing. A guest's answer is data the guest controls.
"""

from __future__ import annotations

try:
    import libvirt
except ImportError:
    libvirt = None

AGENT_CHANNEL = "org.qemu.guest_agent.0"


def agent_channel_state(root):
    """``connected``, ``disconnected`` or ``unknown`` (not running) for a domain XML tree
    with the agent's channel; None without one."""
    for target in root.findall("devices/channel/target"):
        if target.get("name") == AGENT_CHANNEL:
            return target.get("state") or "unknown"
    return None


def worth_asking(guest):
    """Whether a fleet guest record may get an answer from its agent."""
    return guest.get("state") == "running" and guest.get("agent_channel") == "connected"


def agent_info(domain):
    """Host name, OS and interfaces (name, MAC, addresses) from the agent; raises libvirtError."""
    info = domain.guestInfo(libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME | libvirt.VIR_DOMAIN_GUEST_INFO_OS, 0)
    interfaces = domain.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0) or {}
    return dict(
        hostname=info.get("hostname"),
        os=dict(id=info.get("os.id"), name=info.get("os.name"), version=info.get("os.version-id"),
                kernel=info.get("os.kernel-release")),
        interfaces=[dict(name=name, mac=(details.get("hwaddr") or "").lower() or None,
                         addresses=[address["addr"] for address in details.get("addrs") or [] if address.get("addr")])
                    for name, details in sorted(interfaces.items())],
    )


def apply_agent_addresses(guest):
    """Give the guest's NICs the addresses its agent reports for their MAC, as ``addresses``.

    ``address`` stays what the hypervisor knows (a DHCP lease of its network): the agent's
    word is the guest's own, so a compromised guest could name any address there; only the
    inventory's explicit opt-in (``agent_address_as_host``) lets Ansible connect to it."""
    by_mac = {nic["mac"]: nic["addresses"] for nic in (guest.get("agent") or {}).get("interfaces", []) if nic["mac"]}
    for nic in guest.get("interfaces") or []:
        nic["addresses"] = by_mac.get(nic.get("mac"), [])


def host_address(interfaces, trust_agent=False):
    """The address Ansible should connect to: the first DHCP lease of the guest's NICs; only
    with ``trust_agent``, failing that, the first IPv4 address its agent reports."""
    leased = next((nic["address"] for nic in interfaces if nic.get("address")), None)
    if leased or not trust_agent:
        return leased
    return next((address for nic in interfaces for address in nic.get("addresses") or [] if ":" not in address), None)
