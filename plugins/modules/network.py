#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kvmops.virt contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: Declare a libvirt virtual network (NAT, isolated or bridged) with DHCP
version_added: 0.1.0
description:
  - Defines, starts, updates, stops and removes one libvirt virtual network on a hypervisor.
  - A network is always made persistent (defined), so it survives a libvirtd restart. A network
    that exists only as a transient one (C(virsh net-create)) becomes persistent.
  - Options left out keep what the existing network has; a new network gets the defaults
    documented here. An empty string for O(ipv4), O(domain) or O(forward_dev) (V(0) for O(mtu))
    removes that setting.
  - On a running network, DHCP ranges and static hosts change live and in the persistent
    definition at once (libvirt's C(virNetworkUpdate)). For static hosts dnsmasq re-reads its
    files and keeps running; a range change makes libvirt restart dnsmasq (about 2 s without
    DHCP answers), while the guests' links and addresses stay up.
  - Any other change of a running network (mode, address, bridge, domain, MTU, forward device)
    is written to the persistent definition only and reported as RV(restart_required); it takes
    effect when the network restarts. O(restart=if_needed) restarts it in the same task.
  - Every option is checked against the existing network before anything changes; when a libvirt
    call fails half-way, the calls made before it are undone and the error says so.
author:
  - kvmops.virt developers (@kvmops)
extends_documentation_fragment:
  - kvmops.virt.connection
  - kvmops.virt.attributes
attributes:
  check_mode:
    description: Changes nothing and returns the same C(changed), C(diff) and RV(restart_required) as a real run.
    support: full
  diff_mode:
    description: Shows the network's definition, running state, autostart and pending restart before and after.
    support: full
  idempotent:
    description: A second run with the same options changes nothing and reports C(changed=false).
    support: full
options:
  name:
    description:
      - Name of the network.
      - Letters, digits, V(_), V(.) and V(-), starting with a letter or digit, at most 64 characters.
    type: str
    required: true
  state:
    description:
      - V(present) defines the network (and starts it unless O(active=false)).
      - V(absent) stops and undefines it; guests attached to it lose their connection.
    type: str
    choices: [present, absent]
    default: present
  active:
    description:
      - Whether the network runs (V(true)) or is only defined (V(false)).
      - Stopping a network disconnects every guest attached to it.
    type: bool
    default: true
  autostart:
    description:
      - Whether libvirtd starts the network when it starts.
      - Left out, an existing network keeps its setting; a new one does not autostart.
    type: bool
  mode:
    description:
      - V(nat) gives guests a private network whose traffic the host masquerades out
        (O(forward_dev) limits it to one host interface). Needs O(ipv4).
        libvirt adds firewall (iptables) rules for it.
      - V(isolated) gives guests a private network that reaches only the host and each other.
        libvirt still adds firewall rules for the bridge (DHCP and DNS allowed, forwarding refused).
      - V(bridge) connects guests to an existing host bridge named O(bridge) (created outside
        libvirt, for example with C(ip link add br0 type bridge)). The network then has no address,
        DHCP, domain or MTU of its own; whatever is on the bridge's network serves them.
      - Left out, an existing network keeps its mode (also modes this module does not set, such as
        C(route) or C(open)); a new network is V(isolated), so nothing leaves the host by default.
    type: str
    choices: [nat, isolated, bridge]
  bridge:
    description:
      - For O(mode=bridge), the existing host bridge to connect guests to (required). The module
        fails when the hypervisor's interface driver knows no interface of that name.
      - For O(mode=nat) and O(mode=isolated), the name of the bridge libvirt creates for the network;
        left out, libvirt picks a free C(virbrN) when it defines the network.
      - At most 15 characters (a Linux interface name). When the mode changes between bridge and
        nat/isolated, the old bridge name is not carried over. An empty string is the same as leaving it out.
    type: str
  forward_dev:
    description:
      - For O(mode=nat), the host interface that forwarded traffic must leave through.
      - Empty string removes the restriction.
    type: str
  ipv4:
    description:
      - The host's address on the network with the network's prefix, for example V(192.168.150.1/24)
        (a netmask such as V(192.168.150.1/255.255.255.0) is accepted too). The host is the guests'
        gateway and DNS server at that address.
      - Required for O(mode=nat), optional for O(mode=isolated), not allowed for O(mode=bridge).
      - Must not be the network or broadcast address; the prefix must be V(/30) or shorter.
      - Empty string removes the address (with DHCP, which needs it).
    type: str
  dhcp:
    description:
      - The complete DHCP setting of the network's IPv4 address; what is not listed is removed
        (V({}) removes DHCP altogether). Left out, the network keeps its DHCP setting.
      - Needs O(ipv4). Addresses must lie inside its network and not be its network, broadcast
        (or, for hosts, the host's own) address. libvirt and dnsmasq accept static hosts inside
        or outside the dynamic range; dnsmasq never leases a reserved address to another guest.
    type: dict
    suboptions:
      range:
        description:
          - The addresses dnsmasq leases dynamically, first to last. Left out, only the static
            hosts get addresses. A network defined elsewhere with several ranges is reduced to this one.
        type: dict
        suboptions:
          start:
            description: First address of the range.
            type: str
            required: true
          end:
            description: Last address of the range (not before O(dhcp.range.start)).
            type: str
            required: true
      hosts:
        description:
          - Static leases. Each needs O(dhcp.hosts[].ip) and a O(dhcp.hosts[].mac) or
            O(dhcp.hosts[].name) (or both) to say which guest gets it.
          - MACs, IPs and names must each be unique in the list. A host whose MAC stays and whose
            IP or name changes is modified in place.
        type: list
        elements: dict
        suboptions:
          mac:
            description: The guest interface's MAC address, six hex pairs separated by V(:), unicast.
            type: str
          name:
            description: Host name given to the guest (a single DNS label, without the domain).
            type: str
          ip:
            description: The IPv4 address the guest gets.
            type: str
            required: true
  domain:
    description:
      - DNS domain of the network; dnsmasq answers for C(<host>.<domain>) names of its DHCP clients.
      - Not allowed for O(mode=bridge). Empty string removes it.
    type: str
  mtu:
    description:
      - MTU of the network's bridge and its guests' interfaces, 68 to 65535 bytes.
      - Not allowed for O(mode=bridge). V(0) removes the setting (the bridge's default, usually 1500).
    type: int
  restart:
    description:
      - What to do when a running network's definition changed in a way libvirt cannot apply live.
      - V(never) only writes the persistent definition and returns RV(restart_required=true).
      - V(if_needed) stops and starts the network. B(Guests attached to it lose connectivity);
        their interfaces are detached from the bridge when the network stops, and libvirt
        re-attaches them only when libvirtd restarts or the interface is re-plugged.
    type: str
    choices: [never, if_needed]
    default: never
notes:
  - libvirt's test driver (V(test:///default)) does not return a network's persistent definition
    separately and drops a redefinition made while the network runs; there a pending change is
    reported again on every run. Real hypervisors keep both definitions.
  - With libvirt 9.0, starting a V(nat) or V(isolated) network runs C(iptables) on the hypervisor
    (and fails when it is not installed); V(bridge) networks touch no firewall. DHCP and DNS need
    C(dnsmasq) on the hypervisor.
seealso:
  - name: libvirt network XML format
    description: What the module writes, and the elements it leaves alone.
    link: https://libvirt.org/formatnetwork.html
"""

EXAMPLES = r"""
- name: An isolated lab network with DHCP and two fixed guests
  kvmops.virt.network:
    uri: qemu+ssh://root@kvm1.example.com/system
    name: lab
    mode: isolated
    bridge: virbr-lab
    ipv4: 192.168.150.1/24
    domain: lab.example.com
    autostart: true
    dhcp:
      range:
        start: 192.168.150.100
        end: 192.168.150.199
      hosts:
        - mac: "52:54:00:00:15:01"
          name: db1
          ip: 192.168.150.11
        - mac: "52:54:00:00:15:02"
          name: web1
          ip: 192.168.150.12

- name: Add a static lease to the running network; applied live, guests stay connected
  kvmops.virt.network:
    name: lab
    dhcp:
      range: {start: 192.168.150.100, end: 192.168.150.199}
      hosts:
        - {mac: "52:54:00:00:15:01", name: db1, ip: 192.168.150.11}
        - {mac: "52:54:00:00:15:02", name: web1, ip: 192.168.150.12}
        - {mac: "52:54:00:00:15:03", name: web2, ip: 192.168.150.13}

- name: A NAT network that leaves only through eth0
  kvmops.virt.network:
    name: outbound
    mode: nat
    forward_dev: eth0
    ipv4: 10.77.0.1/24
    dhcp:
      range: {start: 10.77.0.10, end: 10.77.0.250}

- name: Guests straight on the host's existing bridge br0
  kvmops.virt.network:
    name: lan
    mode: bridge
    bridge: br0
    autostart: true

- name: Move the lab network to another subnet, restarting it if it runs
  kvmops.virt.network:
    name: lab
    ipv4: 192.168.160.1/24
    dhcp:
      range: {start: 192.168.160.100, end: 192.168.160.199}
    restart: if_needed
  register: moved

- name: Say when a restart is still owed
  ansible.builtin.debug:
    msg: "{{ moved.network.name }} restarts on the next maintenance window"
  when: moved.restart_required

- name: Remove the network
  kvmops.virt.network:
    name: lab
    state: absent
"""

RETURN = r"""
network:
  description:
    - The network after the task (predicted in check mode), from its persistent definition.
    - V(null) for O(state=absent).
  returned: success
  type: dict
  contains:
    name:
      description: Name of the network.
      type: str
      sample: lab
    uuid:
      description: libvirt's UUID of the network (V(null) in check mode for a network not created yet).
      type: str
      sample: 0648c3f6-44b7-4ef9-b3a9-158ca742062e
    mode:
      description: Forward mode, V(isolated) when the network forwards nothing.
      type: str
      sample: isolated
    bridge:
      description: The bridge the network uses (V(null) in check mode when libvirt will pick it).
      type: str
      sample: virbr-lab
    forward_dev:
      description: The host interface forwarded traffic leaves through, if restricted.
      type: str
      sample: null
    ipv4:
      description: The host's IPv4 address on the network with its prefix.
      type: str
      sample: 192.168.150.1/24
    domain:
      description: DNS domain of the network.
      type: str
      sample: lab.example.com
    mtu:
      description: MTU in bytes, V(null) when not set.
      type: int
      sample: null
    dhcp:
      description: DHCP ranges and static hosts (both empty without DHCP), sorted by address.
      type: dict
      sample:
        ranges: [{start: 192.168.150.100, end: 192.168.150.199}]
        hosts: [{mac: "52:54:00:00:15:01", name: db1, ip: 192.168.150.11}]
    active:
      description: Whether the network runs.
      type: bool
      sample: true
    autostart:
      description: Whether libvirtd starts the network when it starts.
      type: bool
      sample: true
    persistent:
      description: Whether the network is defined (always V(true) after O(state=present)).
      type: bool
      sample: true
restart_required:
  description:
    - V(true) when the network runs with an older definition than its persistent one, because a
      change could not be applied live and O(restart=never). Stays V(true) on later runs until the
      network restarts.
  returned: success
  type: bool
  sample: false
restarted:
  description: Whether the task stopped and started the network (O(restart=if_needed)).
  returned: success
  type: bool
  sample: false
actions:
  description: What the task did (would do, in check mode), in order.
  returned: success
  type: list
  elements: str
  sample:
    - add DHCP host ip=192.168.150.13 mac=52:54:00:00:15:03 name=web2 (live and persistent)
diff:
  description:
    - Before and after views of the network (definition, RV(network.active), RV(network.autostart)
      and C(restart_pending)), empty for a network that does not exist.
  returned: success
  type: dict
"""

from ansible_collections.kvmops.virt.plugins.module_utils.module import LibvirtModule
from ansible_collections.kvmops.virt.plugins.module_utils.networks import NetworkError, ensure_network, parse_request

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    active=dict(type="bool", default=True),
    autostart=dict(type="bool"),
    mode=dict(type="str", choices=["nat", "isolated", "bridge"]),
    bridge=dict(type="str"),
    forward_dev=dict(type="str"),
    ipv4=dict(type="str"),
    dhcp=dict(type="dict", options=dict(
        range=dict(type="dict", options=dict(start=dict(type="str", required=True),
                                             end=dict(type="str", required=True))),
        hosts=dict(type="list", elements="dict", options=dict(mac=dict(type="str"), name=dict(type="str"),
                                                              ip=dict(type="str", required=True))),
    )),
    domain=dict(type="str"),
    mtu=dict(type="int"),
    restart=dict(type="str", choices=["never", "if_needed"], default="never"),
)


def main():
    module = LibvirtModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        request = parse_request(module.params)
    except NetworkError as error:
        module.fail_json(msg=str(error))
    with module.connection() as conn:
        try:
            result = ensure_network(conn, request, check_mode=module.check_mode)
        except NetworkError as error:
            module.fail_json(msg=str(error))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
